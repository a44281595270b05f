"""Translate the Oniguruma patterns of ``tokenizer.json`` files into Python ``re`` patterns.

The Rust library compiles ``Split`` and ``Replace`` regexes and the ByteLevel pattern with Oniguruma.
Python's ``re`` lacks ``\\p{L}``/``\\p{N}`` and its ``\\s``, ``\\w``, ``\\d`` and case folding differ, so
those are rewritten as explicit character classes probed from the library
(:mod:`onnxembed._unicode_props`). What is left (literals, classes, groups, alternation, quantifiers,
lookarounds) means the same in both engines; anything else is refused with a message naming it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import lru_cache

from . import _unicode_props as _props
from ._wordpiece import _char_class, _parse_ranges

# GPT-2's pattern, as the ByteLevel pre-tokenizer uses it (``use_regex``).
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


_PROPERTIES = {"L": "ONIG_LETTER", "Letter": "ONIG_LETTER", "N": "ONIG_NUMBER", "Number": "ONIG_NUMBER"}
_SHORTHANDS = {"s": "ONIG_SPACE", "w": "ONIG_WORD", "d": "ONIG_DIGIT"}


class UnsupportedPatternError(ValueError):
    """A regex construct this translation does not reproduce exactly."""


class OnigPattern:
    """A translated pattern: a full-Unicode ``re`` and one with ASCII-only classes used for ASCII text."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._full = _translate(pattern, False)
        self._ascii = _translate(pattern, True)

    def _for(self, text: str) -> re.Pattern[str]:
        return self._ascii if text.isascii() else self._full

    def findall(self, text: str) -> list[str]:
        return self._for(text).findall(text)

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        return self._for(text).finditer(text)

    def sub(self, repl: Callable[[re.Match[str]], str], text: str) -> str:
        return self._for(text).sub(repl, text)


@lru_cache(maxsize=64)
def compile_onig(pattern: str) -> OnigPattern:
    """Compile an Oniguruma ``pattern`` for Python ``re`` with the Rust library's character classes.

    Raises:
        UnsupportedPatternError: If the pattern uses a construct outside the supported subset.
    """
    return OnigPattern(pattern)


_SIMPLE_ESCAPES = {"r": 13, "n": 10, "t": 9, "f": 12, "v": 11, "a": 7, "e": 27}


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def char_set(ranges: list[tuple[int, int]], negated: bool = False, ascii_only: bool = False) -> str:
    """A Python ``re`` item for a set of code points; astral ranges go in their own class.

    Python's ``re`` compiles a class wholly inside the BMP to a bitmap, but one reaching past U+FFFF to a
    list scanned range by range: keeping the two apart makes ``\\p{L}`` several times faster.
    """
    merged = _merge(ranges)
    if ascii_only:  # for ASCII text only the ASCII members matter
        merged = [(a, min(b, 0x7F)) for a, b in merged if a <= 0x7F]
    bmp = [(a, min(b, 0xFFFF)) for a, b in merged if a <= 0xFFFF]
    astral = [(max(a, 0x10000), b) for a, b in merged if b > 0xFFFF]
    astral_only = r"[\U00010000-\U0010ffff]"  # one range: a quick test that keeps BMP text off the slow class
    if negated:
        base = f"[^{_char_class(bmp)}]" if bmp else r"[\x00-\U0010ffff]"
        return f"(?:(?!{astral_only}){base}|(?![{_char_class(astral)}]){astral_only})" if astral else base
    parts = [f"[{_char_class(bmp)}]"] if bmp else []
    if astral:
        parts.append(f"(?={astral_only})[{_char_class(astral)}]")
    if not parts:
        return r"[^\x00-\U0010ffff]"
    return parts[0] if len(parts) == 1 else f"(?:{'|'.join(parts)})"


def _translate(pattern: str, ascii_only: bool) -> re.Pattern[str]:
    out: list[str] = []
    groups: list[bool] = []  # per open group: case-insensitive?
    i, n = 0, len(pattern)

    def fail(what: str) -> UnsupportedPatternError:
        return UnsupportedPatternError(f"regex {pattern!r}: {what} is not supported (at offset {i})")

    def escape_class(at: int) -> tuple[list[tuple[int, int]] | None, bool, int]:
        """At a backslash: (ranges, negated, next offset) for a property or shorthand, else (None, ...)."""
        nxt = pattern[at + 1] if at + 1 < n else ""
        if nxt in ("p", "P"):
            m = re.match(r"\{(\^?)(\w+)\}", pattern[at + 2 :])
            if m is None or m.group(2) not in _PROPERTIES:
                raise fail(f"property \\{nxt}{pattern[at + 2 : at + 2 + (m.end() if m else 8)]}")
            return _parse_ranges(getattr(_props, _PROPERTIES[m.group(2)])), (nxt == "P") != bool(m.group(1)), at + 2 + m.end()
        if nxt and nxt.lower() in _SHORTHANDS:
            return _parse_ranges(getattr(_props, _SHORTHANDS[nxt.lower()])), nxt.isupper(), at + 2
        return None, False, at

    def escape_char(at: int) -> tuple[int, int]:
        nxt = pattern[at + 1] if at + 1 < n else ""
        if nxt in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[nxt], at + 2
        m = re.match(r"x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})", pattern[at + 1 :])
        if m:
            return int(m.group(1) or m.group(2), 16), at + 1 + m.end()
        if not nxt or nxt.isalnum():
            raise fail(f"escape \\{nxt}")
        return ord(nxt), at + 2

    while i < n:
        ch = pattern[i]
        if ch == "\\":
            ranges, negated, after = escape_class(i)
            if ranges is not None:
                out.append(char_set(ranges, negated, ascii_only))
                i = after
            elif pattern[i + 1 : i + 2] in ("b", "B", "A", "z", "Z"):
                if pattern[i + 1] in "bB":
                    raise fail("a word boundary (its \\w differs)")
                out.append(r"\Z" if pattern[i + 1] in "zZ" else r"\A")
                i += 2
            else:
                code, i = escape_char(i)
                out.append(re.escape(chr(code)))
            continue
        if ch == "[":
            if any(groups):
                raise fail("a character class under (?i:")
            i += 1
            negated = pattern.startswith("^", i)
            i += negated
            items: list[tuple[int, int]] = []
            first = True
            while True:
                if i >= n:
                    raise fail("an unterminated character class")
                c = pattern[i]
                if c == "]" and not first:
                    i += 1
                    break
                first = False
                if c == "[":
                    raise fail("a nested character class")
                if c == "\\":
                    ranges, neg, after = escape_class(i)
                    if ranges is not None:
                        if neg:
                            raise fail("a negated class inside a character class")
                        items += ranges
                        i = after
                        continue
                    low, i = escape_char(i)
                else:
                    low, i = ord(c), i + 1
                if pattern.startswith("-", i) and i + 1 < n and pattern[i + 1] != "]":
                    if pattern[i + 1] == "\\":
                        high, i = escape_char(i + 1)
                    else:
                        high, i = ord(pattern[i + 1]), i + 2
                    items.append((low, high))
                else:
                    items.append((low, low))
            out.append(char_set(items, negated, ascii_only))
            continue
        if ch == "(":
            if pattern.startswith("(?i:", i):
                groups.append(True)
                out.append("(?:")
                i += 4
                continue
            if pattern.startswith("(?", i) and not re.match(r"\(\?(?::|!|=|<=|<!)", pattern[i:]):
                raise fail(f"group {pattern[i : i + 4]!r}")
            groups.append(bool(groups and groups[-1]))
            if not pattern.startswith("(?", i):  # capturing groups would change findall's result
                out.append("(?:")
                i += 1
                continue
        elif ch == ")":
            if not groups:
                raise fail("an unbalanced ')'")
            groups.pop()
        elif ch.isascii() and ch.isalpha() and groups and groups[-1]:
            out.append(f"[{re.escape(_props.ONIG_FOLDS[ch.lower()])}]")
            i += 1
            continue
        out.append(ch)
        i += 1
    try:
        return re.compile("".join(out))
    except re.error as e:
        raise UnsupportedPatternError(f"regex {pattern!r} does not compile as Python re ({e})") from e
