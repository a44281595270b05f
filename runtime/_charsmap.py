"""The ``Precompiled`` normalizer: SentencePiece's double-array charsmap, applied per grapheme cluster.

This follows ``spm_precompiled`` and ``normalizers/precompiled.rs`` of the Rust library, quirks included:
each extended grapheme cluster shorter than 6 UTF-8 bytes is looked up whole, and the *shortest* key
that is a prefix of it replaces the whole cluster; otherwise (or if nothing matched) each character
is looked up alone. Lookups are cached per cluster.
"""

from __future__ import annotations

import base64
import re
import struct
import sys
from array import array
from collections.abc import Callable

from . import _unicode_props as _props
from ._onig import char_set
from ._wordpiece import _char_class, _parse_ranges

_CACHE_SIZE = 100_000


def _set(*tables: str, negated: bool = False) -> str:
    """A regex item for the union of range tables (BMP and astral parts apart: see ``_onig.char_set``)."""
    return char_set([r for t in tables for r in _parse_ranges(t)], negated)


_PREPEND = _set(_props.GCB_PREPEND)
_EXTENDERS = _parse_ranges(f"{_props.GCB_EXTEND} 200D {_props.GCB_SPACINGMARK}")
# Text where every grapheme cluster of under 6 bytes is one character: a CR LF, an extender of at most
# 2 bytes, a 3-byte extender after a character of at most 2 bytes, or a Prepend character is needed
# to form a longer one. Otherwise the cluster rule reduces to a per-character mapping.
_MULTI_CLUSTER_RE = re.compile(
    rf"\r\n|[{_char_class([(a, min(b, 0x7FF)) for a, b in _EXTENDERS if a <= 0x7FF])}]"
    rf"|[\x00-\u07ff]{char_set([(max(a, 0x800), b) for a, b in _EXTENDERS if b > 0x7FF])}|{_PREPEND}"
)
_SPACE_JOINED_RE = re.compile(rf"{_PREPEND} | {char_set(_EXTENDERS)}")
# UAX #29 extended grapheme clusters (GB3-GB13 without the Indic conjunct rule GB9c, which only
# joins clusters of 6 bytes or more, all looked up character by character anyway).
_EXTEND, _PICT, _RI = _set(_props.GCB_EXTEND), _set(_props.EXTENDED_PICTOGRAPHIC), _set(_props.GCB_REGIONAL_INDICATOR)
_L, _V, _T, _LV, _LVT = (_set(getattr(_props, f"GCB_{n}")) for n in ("L", "V", "T", "LV", "LVT"))
GRAPHEME_RE = re.compile(
    rf"\r\n|{_set('A D', _props.GCB_CONTROL)}"
    rf"|{_PREPEND}*"
    rf"(?:{_RI}{_RI}|{_PICT}(?:{_EXTEND}*\u200d{_PICT})*"
    rf"|{_L}*(?:{_V}+|{_LV}{_V}*|{_LVT}){_T}*|{_L}+|{_T}+|{_set('A D', _props.GCB_CONTROL, negated=True)})"
    rf"{_set(_props.GCB_EXTEND, '200D', _props.GCB_SPACINGMARK)}*"
)


class Precompiled:
    """Normalizer from a ``precompiled_charsmap`` (base64 of: trie size, double-array trie, NUL-separated outputs).

    >>> Precompiled(charsmap)("\\ufb01")  # doctest: +SKIP
    'fi'
    """

    def __init__(self, charsmap: str) -> None:
        blob = base64.b64decode(charsmap)
        (trie_size,) = struct.unpack_from("<I", blob)
        if trie_size % 4 or len(blob) < 4 + trie_size or trie_size == 0:
            raise ValueError(f"precompiled_charsmap is malformed: trie of {trie_size} bytes in a blob of {len(blob)}")
        units = array("I", blob[4 : 4 + trie_size])
        if sys.byteorder == "big":
            units.byteswap()
        self._units = units
        self._outputs = blob[4 + trie_size :]
        self._clusters: dict[str, str] = {}
        self._words: dict[str, str] = {}
        self._chars = _CharMap(self._lookup)
        ascii_keys = "".join(chr(c) for c in range(1, 128) if self._lookup(chr(c)) is not None)
        self._ascii_keys_re = re.compile(f"[{re.escape(ascii_keys)}]") if ascii_keys else None

    def _lookup(self, chunk: str) -> str | None:
        """The output of the shortest key that is a prefix of ``chunk``, or None (``transform``)."""
        units = self._units
        unit = units[0]
        pos = (unit >> 10) << ((unit & 512) >> 6)
        try:
            for byte in chunk.encode("utf-8", "surrogatepass"):
                if byte == 0:
                    return None
                pos ^= byte
                unit = units[pos]
                if unit & 0x800000FF != byte:
                    return None
                pos ^= (unit >> 10) << ((unit & 512) >> 6)
                if unit & 256:
                    start = units[pos] & 0x7FFFFFFF
                    end = self._outputs.find(b"\0", start)
                    return self._outputs[start : end if end >= 0 else len(self._outputs)].decode("utf-8")
        except IndexError:
            return None
        return None

    def _cluster(self, match: re.Match[str]) -> str:
        cluster = match.group()
        out = self._clusters.get(cluster)
        if out is None:
            out = self._lookup(cluster) if len(cluster.encode("utf-8", "surrogatepass")) < 6 else None
            if out is None:
                out = "".join(ch if (m := self._lookup(ch)) is None else m for ch in cluster)
            if len(self._clusters) < _CACHE_SIZE:
                self._clusters[cluster] = out
        return out

    def __call__(self, text: str) -> str:
        if text.isascii():  # only a CR LF makes a multi-character cluster
            if self._ascii_keys_re is None or self._ascii_keys_re.search(text) is None:
                return text
            if "\r\n" not in text:
                return text.translate(self._chars)
        if _MULTI_CLUSTER_RE.search(text) is None:
            return text.translate(self._chars)
        if _SPACE_JOINED_RE.search(text) is not None:  # a cluster spans a space: no word-wise shortcut
            return GRAPHEME_RE.sub(self._cluster, text)
        words = self._words
        out = []
        for word in text.split(" "):  # clusters never span a space here: map word by word, cached
            mapped = words.get(word)
            if mapped is None:
                mapped = GRAPHEME_RE.sub(self._cluster, word) if _MULTI_CLUSTER_RE.search(word) else word.translate(self._chars)
                if len(words) < _CACHE_SIZE:
                    words[word] = mapped
            out.append(mapped)
        return " ".join(out)


class _CharMap(dict):  # type: ignore[type-arg]
    """``str.translate`` table filled on demand: code point -> its own output, or itself if it is no key."""

    def __init__(self, lookup: Callable[[str], str | None]) -> None:
        super().__init__()
        self._lookup = lookup

    def __missing__(self, code: int) -> str | int:
        out = self._lookup(chr(code))
        value = code if out is None else out
        if len(self) < _CACHE_SIZE:
            self[code] = value
        return value
