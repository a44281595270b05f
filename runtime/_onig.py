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


@lru_cache(maxsize=None)
def _body(name: str, ascii_only: bool = False) -> str:
    ranges = _parse_ranges(getattr(_props, name))
    if ascii_only:  # for ASCII text only the ASCII members matter; small classes match ~7x faster
        ranges = [(a, min(b, 0x7F)) for a, b in ranges if a <= 0x7F] or ranges[:1]
    return _char_class(ranges)


_PROPERTIES = {"L": "ONIG_LETTER", "Letter": "ONIG_LETTER", "N": "ONIG_NUMBER", "Number": "ONIG_NUMBER"}
_SHORTHANDS = {"s": "ONIG_SPACE", "w": "ONIG_WORD", "d": "ONIG_DIGIT"}
_PASS_ESCAPES = set("rntfvbBAxu0")


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


def _translate(pattern: str, ascii_only: bool) -> re.Pattern[str]:
    out: list[str] = []
    in_class = False
    class_start = 0
    groups: list[bool] = []  # per open group: case-insensitive?
    i, n = 0, len(pattern)

    def fail(what: str) -> UnsupportedPatternError:
        return UnsupportedPatternError(f"regex {pattern!r}: {what} is not supported (at offset {i})")

    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                raise fail("a trailing backslash")
            nxt = pattern[i + 1]
            if nxt in "pP":
                m = re.match(r"\{\^?(\w+)\}", pattern[i + 2 :])
                if m is None or m.group(1) not in _PROPERTIES:
                    raise fail(f"property \\{nxt}{pattern[i + 2 : i + 2 + (m.end() if m else 8)]}")
                body = _body(_PROPERTIES[m.group(1)], ascii_only)
                negated = (nxt == "P") != m.group().startswith("{^")
                i += 2 + m.end()
            elif nxt.lower() in _SHORTHANDS:
                body = _body(_SHORTHANDS[nxt.lower()], ascii_only)
                negated = nxt.isupper()
                i += 2
            elif nxt.isalnum() and nxt not in _PASS_ESCAPES:
                raise fail(f"escape \\{nxt}")
            else:
                out.append(pattern[i : i + 2])
                i += 2
                continue
            if in_class and negated:
                raise fail("a negated class inside a character class")
            out.append(body if in_class else f"[{'^' if negated else ''}{body}]")
            continue
        if in_class:
            if ch == "[":
                raise fail("a nested character class")
            if ch == "]" and i > class_start:
                in_class = False
            out.append(ch)
            i += 1
            continue
        if ch == "[":
            in_class = True
            class_start = i + 1 + (pattern[i + 1 : i + 2] == "^")
            if any(groups):
                raise fail("a character class under (?i:")
            out.append(ch)
            i += 1
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
