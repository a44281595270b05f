"""Pre-tokenizers of ``tokenizer.json``: one small class per JSON ``type``, and the table that builds them.

A pre-tokenizer splits one normalized segment (the text between added tokens) into the pieces the
model sees: ``split(text, at_start) -> list[str]``, ``at_start`` telling whether the segment begins
the original text (Metaspace's ``first`` scheme needs it). Empty pieces are dropped, as in the Rust
library. Splitting follows ``NormalizedString::split`` and its five delimiter behaviours.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from . import _unicode_props as _props
from . import _wordpiece as wp
from ._onig import GPT2_PATTERN, OnigPattern, UnsupportedPatternError, compile_onig

BEHAVIORS = ("Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous")


class PreTokenizer:
    """Base: ``split`` gives the model's pieces; ``split_raw`` the same pieces before ``transform``.

    A pre-tokenizer whose last step maps each piece on its own (ByteLevel's bytes-as-characters) exposes
    that step as ``transform``, so the caller can cache ids by the raw piece and skip the mapping.
    """

    transform: Callable[[str], str] | None = None
    needs_start = False  # whether ``at_start`` matters (Metaspace's "first" scheme)

    def split(self, text: str, at_start: bool) -> list[str]:
        raise NotImplementedError

    def split_raw(self, text: str, at_start: bool) -> list[str]:
        return self.split(text, at_start)


def split_by(text: str, pattern: re.Pattern[str] | OnigPattern, behavior: str, invert: bool = False) -> list[str]:
    """Split ``text`` at the matches of ``pattern`` with a Rust ``SplitDelimiterBehavior``."""
    if not text:
        return []
    if behavior == "Isolated" and not invert:
        pieces = pattern.findall(text)
        if sum(map(len, pieces)) == len(text):  # the matches tile the text (the usual case)
            return [p for p in pieces if p]
    spans: list[tuple[int, int, bool]] = []
    prev = 0
    for m in pattern.finditer(text):
        start, end = m.span()
        if prev != start:
            spans.append((prev, start, invert))
        spans.append((start, end, not invert))
        prev = end
    if prev != len(text):
        spans.append((prev, len(text), invert))
    kept: list[list[int]] = []
    if behavior == "Removed":
        kept = [[s, e] for s, e, matched in spans if not matched]
    elif behavior == "Isolated":
        kept = [[s, e] for s, e, _ in spans]
    elif behavior == "Contiguous":
        previous = False
        for s, e, matched in spans:
            if matched == previous and kept:
                kept[-1][1] = e
            else:
                kept.append([s, e])
            previous = matched
    elif behavior in ("MergedWithPrevious", "MergedWithNext"):
        forward = behavior == "MergedWithPrevious"  # a delimiter joins the piece before it (or after it)
        previous = False
        for s, e, matched in spans if forward else reversed(spans):
            if matched and not previous and kept:
                kept[-1][1 if forward else 0] = e if forward else s
            else:
                kept.append([s, e])
            previous = matched
        if not forward:
            kept.reverse()
    else:
        raise ValueError(f"split behavior {behavior!r} is not one of {BEHAVIORS}")
    return [text[s:e] for s, e in kept if e > s]


def _char_re(ranges: str, run: bool = False) -> re.Pattern[str]:
    return re.compile(f"[{wp._char_class(wp._parse_ranges(ranges))}]{'+' if run else ''}")


class Split(PreTokenizer):
    """Split at a literal string or an Oniguruma regex."""

    def __init__(self, pattern: re.Pattern[str] | OnigPattern, behavior: str, invert: bool) -> None:
        if behavior not in BEHAVIORS:
            raise ValueError(f"split behavior {behavior!r} is not one of {BEHAVIORS}")
        self._pattern, self._behavior, self._invert = pattern, behavior, invert

    def split(self, text: str, at_start: bool) -> list[str]:
        return split_by(text, self._pattern, self._behavior, self._invert)


class BertPre(PreTokenizer):
    """BertPreTokenizer (punctuation isolated) or WhitespaceSplit."""

    def __init__(self, punctuation: bool) -> None:
        self._punctuation = punctuation

    def split(self, text: str, at_start: bool) -> list[str]:
        return wp.split_words(text, self._punctuation)


class Whitespace(PreTokenizer):
    """Runs of word characters, and runs of other non-space characters (Rust ``regex`` crate classes)."""

    def __init__(self) -> None:
        word = wp._char_class(wp._parse_ranges(_props.REGEX_CRATE_WORD))
        self._findall = re.compile(f"[{word}]+|[^{word}{wp._WS}]+").findall

    def split(self, text: str, at_start: bool) -> list[str]:
        return self._findall(text)


class Metaspace(PreTokenizer):
    """Spaces become ``replacement``; prepend it (always / first segment / never); split before each one."""

    def __init__(self, replacement: str, prepend_scheme: str, split: bool) -> None:
        self._rep, self._scheme, self._split = replacement, prepend_scheme, split
        self.needs_start = prepend_scheme == "first"

    def split(self, text: str, at_start: bool) -> list[str]:
        if not text:
            return []
        rep = self._rep
        text = text.replace(" ", rep)
        if (self._scheme == "always" or (self._scheme == "first" and at_start)) and not text.startswith(rep):
            text = rep + text
        if not self._split:
            return [text]
        parts = text.split(rep)
        return ([parts[0]] if parts[0] else []) + [rep + p for p in parts[1:]]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (``bytes_char`` of the Rust library)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


BYTE_TO_CHAR = _bytes_to_unicode()
_LATIN1_TO_BYTE_CHARS = str.maketrans({b: c for b, c in BYTE_TO_CHAR.items()})


def byte_chars(text: str) -> str:
    """The UTF-8 bytes of ``text`` as GPT-2's printable characters."""
    if text.isascii() and text.isalnum():
        return text
    return text.encode("utf-8", "surrogatepass").decode("latin-1").translate(_LATIN1_TO_BYTE_CHARS)


class ByteLevel(PreTokenizer):
    """Optional prefix space, GPT-2's regex split (``use_regex``), then bytes as characters."""

    def __init__(self, add_prefix_space: bool, use_regex: bool) -> None:
        self._prefix = add_prefix_space
        self._regex = compile_onig(GPT2_PATTERN) if use_regex else None

    transform = staticmethod(byte_chars)

    def split_raw(self, text: str, at_start: bool) -> list[str]:
        if not text:  # the library's prepend does nothing on an empty string
            return []
        if self._prefix and not text.startswith(" "):
            text = " " + text
        return split_by(text, self._regex, "Isolated") if self._regex is not None else ([text] if text else [])

    def split(self, text: str, at_start: bool) -> list[str]:
        return [byte_chars(p) for p in self.split_raw(text, at_start)]


class SequenceOf(PreTokenizer):
    """Apply pre-tokenizers in order, each to every piece of the previous one."""

    def __init__(self, parts: Sequence[PreTokenizer]) -> None:
        self._parts = tuple(parts)
        self.transform = parts[-1].transform if parts else None
        self.needs_start = any(p.needs_start for p in parts)

    def split(self, text: str, at_start: bool) -> list[str]:
        return self._run(text, at_start, raw_last=False)

    def split_raw(self, text: str, at_start: bool) -> list[str]:
        return self._run(text, at_start, raw_last=True)

    def _run(self, text: str, at_start: bool, raw_last: bool) -> list[str]:
        pieces = [text] if text else []
        for k, part in enumerate(self._parts):
            step = part.split_raw if raw_last and k == len(self._parts) - 1 else part.split
            out: list[str] = []
            for i, piece in enumerate(pieces):
                out += step(piece, at_start and i == 0 and text.startswith(piece))
            pieces = out
        return pieces


def _split(c: dict[str, Any], source: str) -> PreTokenizer:
    pattern = c.get("pattern") or {}
    try:
        if "String" in pattern:
            regex = re.compile(re.escape(pattern["String"])) if pattern["String"] else re.compile("(?!)")
        else:
            regex = compile_onig(pattern["Regex"])
    except (UnsupportedPatternError, KeyError) as e:
        raise ValueError(f"{source}: pre_tokenizer Split pattern {pattern!r}: {e}") from e
    return Split(regex, c.get("behavior", "Isolated"), bool(c.get("invert", False)))


def _metaspace(c: dict[str, Any], source: str) -> PreTokenizer:
    scheme = c.get("prepend_scheme", "always")
    if c.get("add_prefix_space") is False:
        scheme = "never"
    if scheme not in ("first", "always", "never"):
        raise ValueError(f"{source}: Metaspace prepend_scheme {scheme!r} is not first, always or never")
    return Metaspace(c.get("replacement", "\u2581"), scheme, bool(c.get("split", True)))


PRE_TOKENIZERS: dict[str, Callable[[dict[str, Any], str], PreTokenizer]] = {
    "BertPreTokenizer": lambda c, s: BertPre(True),
    "WhitespaceSplit": lambda c, s: BertPre(False),
    "Whitespace": lambda c, s: Whitespace(),
    "Metaspace": _metaspace,
    "ByteLevel": lambda c, s: ByteLevel(bool(c.get("add_prefix_space", True)), bool(c.get("use_regex", True))),
    "Split": _split,
    "CharDelimiterSplit": lambda c, s: Split(re.compile(re.escape(c["delimiter"])), "Removed", False),
    "Punctuation": lambda c, s: Split(_char_re(wp._tables.PUNCTUATION), c.get("behavior", "Isolated"), False),
    "Digits": lambda c, s: Split(_char_re(_props.RUST_NUMERIC, run=not c.get("individual_digits", False)), "Isolated", False),
    "Sequence": lambda c, s: SequenceOf([parse_pre_tokenizer(p, s) for p in c.get("pretokenizers") or []]),
}


def parse_pre_tokenizer(config: dict[str, Any] | None, source: str) -> PreTokenizer:
    """The pre-tokenizer of a ``pre_tokenizer`` entry (None: the whole segment is one piece).

    Raises:
        ValueError: For a type not in :data:`PRE_TOKENIZERS`, naming it and the file.
    """
    if config is None:
        return SequenceOf(())
    kind = config.get("type")
    if kind not in PRE_TOKENIZERS:
        raise ValueError(f"{source}: pre_tokenizer {kind!r} is not supported; supported: {', '.join(PRE_TOKENIZERS)}")
    return PRE_TOKENIZERS[kind](config, source)
