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

from . import _unicode_props as _props
from ._wordpiece import _char_class, _parse_ranges

_CACHE_SIZE = 100_000


def _cls(text: str) -> str:
    return _char_class(_parse_ranges(text))


_CONTROL = _cls(_props.GCB_CONTROL)
_EXTEND = _cls(_props.GCB_EXTEND)
_PICT = _cls(_props.EXTENDED_PICTOGRAPHIC)
_RI = _cls(_props.GCB_REGIONAL_INDICATOR)
_L, _V, _T, _LV, _LVT = (_cls(getattr(_props, f"GCB_{n}")) for n in ("L", "V", "T", "LV", "LVT"))
# UAX #29 extended grapheme clusters (GB3-GB13 without the Indic conjunct rule GB9c, which only
# joins clusters of 6 bytes or more, all looked up character by character anyway).
GRAPHEME_RE = re.compile(
    rf"\r\n|[\r\n{_CONTROL}]"
    rf"|[{_cls(_props.GCB_PREPEND)}]*"
    rf"(?:[{_RI}][{_RI}]|[{_PICT}](?:[{_EXTEND}]*\u200d[{_PICT}])*"
    rf"|[{_L}]*(?:[{_V}]+|[{_LV}][{_V}]*|[{_LVT}])[{_T}]*|[{_L}]+|[{_T}]+|[^\r\n{_CONTROL}])"
    rf"[{_EXTEND}\u200d{_cls(_props.GCB_SPACINGMARK)}]*"
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
        self._starts: dict[str, bool] = {}

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

    def _starts_key(self, ch: str) -> bool:
        """Whether some key begins with ``ch`` (only then can a cluster holding it change)."""
        known = self._starts.get(ch)
        if known is None:
            units = self._units
            unit = units[0]
            pos = (unit >> 10) << ((unit & 512) >> 6)
            known = True
            for byte in ch.encode("utf-8", "surrogatepass"):
                pos ^= byte
                if byte == 0 or pos >= len(units) or units[pos] & 0x800000FF != byte:
                    known = False
                    break
                pos ^= (units[pos] >> 10) << ((units[pos] & 512) >> 6)
            self._starts[ch] = known
        return known

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
        starts = self._starts_key
        if not any(starts(ch) for ch in set(text)):
            return text
        return GRAPHEME_RE.sub(self._cluster, text)
