"""Normalizers of ``tokenizer.json``: one small callable per JSON ``type``, and the table that builds them.

Each normalizer maps a string to a string as the Rust library's does (alignments are not tracked;
ids do not need them). The BERT steps live in :mod:`onnxembed._wordpiece`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

from . import _unicode_props as _props
from . import _wordpiece as wp
from ._charsmap import Precompiled
from ._onig import UnsupportedPatternError, compile_onig

Normalize = Callable[[str], str]


def _reference_form(form: str, known: str) -> Normalize:
    """Python's ``unicodedata.normalize(form)`` with code points unknown to the reference's tables as plain starters.

    Code points Python's (newer) tables decompose or reorder but the reference's do not split the text;
    the stretches between them are normalized separately, which is what the reference computes.
    """
    known_re = re.compile(f"[{wp._char_class(wp._parse_ranges(known))}]")
    new: dict[str, bool] = {}

    def is_new(ch: str) -> bool:
        flag = new.get(ch)
        if flag is None:
            active = unicodedata.combining(ch) != 0 or unicodedata.normalize(form, ch) != ch
            flag = new[ch] = active and known_re.match(ch) is None
        return flag

    def normalize(text: str) -> str:
        if text.isascii() or unicodedata.is_normalized(form, text):
            return text
        parts, start = [], 0
        for i, ch in enumerate(text):
            if ch >= "\u00a0" and is_new(ch):
                parts += (unicodedata.normalize(form, text[start:i]), ch)
                start = i + 1
        parts.append(unicodedata.normalize(form, text[start:]))
        return "".join(parts)

    return normalize


_NFD_KNOWN = wp._tables.NFD_KNOWN
_NFKD_KNOWN = f"{_NFD_KNOWN} {_props.NFKD_CHANGED}"
_WHITESPACE = wp._WS


class Strip:
    """Strip Rust-whitespace from the left and/or right."""

    def __init__(self, left: bool, right: bool) -> None:
        self._left = re.compile(f"^[{_WHITESPACE}]+") if left else None
        self._right = re.compile(f"[{_WHITESPACE}]+$") if right else None

    def __call__(self, text: str) -> str:
        if self._left is not None:
            text = self._left.sub("", text)
        if self._right is not None:
            text = self._right.sub("", text)
        return text


class Replace:
    """Replace every match of a literal string or an Oniguruma regex by ``content``."""

    def __init__(self, pattern: dict[str, str], content: str) -> None:
        if "String" in pattern:
            literal = pattern["String"]
            self._regex = re.compile(re.escape(literal)) if literal else None
        elif "Regex" in pattern:
            self._regex = compile_onig(pattern["Regex"])
        else:
            raise ValueError(f"Replace pattern {pattern!r} is neither String nor Regex")
        self._content = content

    def __call__(self, text: str) -> str:
        if self._regex is None:
            return text
        content = self._content
        return self._regex.sub(lambda _: content, text)


class Prepend:
    """Prepend a string to non-empty text."""

    def __init__(self, prepend: str) -> None:
        self._prepend = prepend

    def __call__(self, text: str) -> str:
        return self._prepend + text if text else text


class SequenceOf:
    """Apply normalizers in order."""

    def __init__(self, parts: Sequence[Normalize]) -> None:
        self._parts = tuple(parts)

    def __call__(self, text: str) -> str:
        for part in self._parts:
            text = part(text)
        return text


def _bert(c: dict[str, Any], source: str) -> Normalize:
    return wp.bert_normalizer(
        clean=bool(c.get("clean_text", True)),
        handle_chinese_chars=bool(c.get("handle_chinese_chars", True)),
        strip_accents=c.get("strip_accents"),
        lowercase=bool(c.get("lowercase", True)),
    )


def _precompiled(c: dict[str, Any], source: str) -> Normalize:
    charsmap = c.get("precompiled_charsmap")
    return Precompiled(charsmap) if charsmap else SequenceOf(())


def _replace(c: dict[str, Any], source: str) -> Normalize:
    try:
        return Replace(c["pattern"], c["content"])
    except UnsupportedPatternError as e:
        raise ValueError(f"{source}: normalizer Replace: {e}") from e


def _sequence(c: dict[str, Any], source: str) -> Normalize:
    parts = [parse_normalizer(part, source) for part in c.get("normalizers") or []]
    if all(isinstance(p, wp.Normalizer) for p in parts):  # BERT steps only: keep the WordPiece fast path
        return wp.Normalizer(tuple(step for p in parts for step in p.steps))  # type: ignore[union-attr]
    return SequenceOf(parts)


NORMALIZERS: dict[str, Callable[[dict[str, Any], str], Normalize]] = {
    "BertNormalizer": _bert,
    "Precompiled": _precompiled,
    "NFD": lambda c, s: wp.Normalizer(("nfd",)),
    "NFC": lambda c, s: _reference_form("NFC", _NFD_KNOWN),
    "NFKD": lambda c, s: _reference_form("NFKD", _NFKD_KNOWN),
    "NFKC": lambda c, s: _reference_form("NFKC", _NFKD_KNOWN),
    "Lowercase": lambda c, s: wp.Normalizer(("lowercase",)),
    "StripAccents": lambda c, s: wp.Normalizer(("strip_marks",)),
    "Strip": lambda c, s: Strip(bool(c.get("strip_left", True)), bool(c.get("strip_right", True))),
    "Replace": _replace,
    "Prepend": lambda c, s: Prepend(c["prepend"]),
    "Sequence": _sequence,
}


def parse_normalizer(config: dict[str, Any] | None, source: str) -> Normalize:
    """The normalizer of a ``normalizer`` entry (None: identity).

    Raises:
        ValueError: For a type not in :data:`NORMALIZERS`, naming it and the file.
    """
    if config is None:
        return wp.Normalizer(())
    kind = config.get("type")
    if kind not in NORMALIZERS:
        raise ValueError(f"{source}: normalizer {kind!r} is not supported; supported: {', '.join(NORMALIZERS)}")
    return NORMALIZERS[kind](config, source)
