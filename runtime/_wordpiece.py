"""Pure stages of the BERT WordPiece pipeline, bit-exact with the Rust ``tokenizers`` library.

``normalize -> pre_tokenize -> wordpiece``, as small functions over plain strings. The character
classes come from :mod:`onnxembed._unicode_tables` (generated from the reference, one table per Rust
crate, since those crates use different Unicode versions). The only part still taken from Python's
``unicodedata`` is the NFD decomposition of the code points the reference also knows, which the
Unicode stability policy freezes; code points newer than the reference's NFD tables are kept as plain
starters, as the reference does.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from . import _unicode_tables as _tables

# The CJK ranges of tokenizers' normalizers/bert.rs `is_chinese_char` (note the gap at 2B820-2B91F).
_CHINESE = "4E00-9FFF 3400-4DBF 20000-2A6DF 2A700-2B73F 2B740-2B81F 2B920-2CEAF F900-FAFF 2F800-2FA1F"


def _parse_ranges(text: str) -> list[tuple[int, int]]:
    """Parse ``"START-END CP ..."`` (hex) into inclusive ``(start, end)`` pairs."""
    out = []
    for item in text.split():
        start, _, end = item.partition("-")
        out.append((int(start, 16), int(end or start, 16)))
    return out


def _char_class(ranges: Sequence[tuple[int, int]]) -> str:
    """The body of a regex character class matching the given code point ranges."""
    return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)


def _subtract(ranges: Sequence[tuple[int, int]], remove: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Code points of ``ranges`` (a small set) that are not in ``remove``."""
    return [(c, c) for a, b in ranges for c in range(a, b + 1) if not any(x <= c <= y for x, y in remove)]


def _lowercase_table() -> dict[int, str]:
    """Rust ``char::to_lowercase`` for every code point it changes, as a ``str.translate`` table."""
    table: dict[int, str] = {}
    for item in _tables.LOWERCASE_RUNS.split():
        span, delta, *stride = item.split(":")
        start, _, end = span.partition("-")
        first, last, step = int(start, 16), int(end or start, 16), int(stride[0]) if stride else 1
        table.update({c: chr(c + int(delta)) for c in range(first, last + 1, step)})
    table.update(_tables.LOWERCASE_MULTI)
    return table


_REMOVED = _parse_ranges(_tables.REMOVED)
_WHITESPACE = _parse_ranges(_tables.WHITESPACE)
_KEPT_WHITESPACE = _subtract(_WHITESPACE, _REMOVED)  # what clean_text maps to " " (it deletes \v \f U+0085)

_REMOVED_RE = re.compile(f"[{_char_class(_REMOVED)}]+")
_CLEAN_WS_RE = re.compile(f"[{_char_class(_KEPT_WHITESPACE)}]")
_CHINESE_RE = re.compile(f"([{_char_class(_parse_ranges(_CHINESE))}])")
_NONSPACING_RE = re.compile(f"[{_char_class(_parse_ranges(_tables.NONSPACING_MARKS))}]+")
_MARKS_RE = re.compile(f"[{_char_class(_parse_ranges(_tables.MARKS))}]+")
_NFD_KNOWN_RE = re.compile(f"[{_char_class(_parse_ranges(_tables.NFD_KNOWN))}]")
_LOWER = _lowercase_table()
_WS = _char_class(_WHITESPACE)
_PUNCT = _char_class(_parse_ranges(_tables.PUNCTUATION))
_WS_SPLIT_RE = re.compile(f"[{_WS}]+")
_BERT_WORD_RE = re.compile(f"[{_PUNCT}]|[^{_PUNCT}{_WS}]+")

# Which split characters survive each normalizer, for splitting raw text before normalizing it.
SPLIT_AFTER_CLEAN_RE = re.compile(f"[{_char_class(_KEPT_WHITESPACE)}]+")
SPLIT_RE = _WS_SPLIT_RE

_ascii_clean = {c: None for a, b in _REMOVED for c in range(a, min(b, 127) + 1)}
_ascii_clean.update({c: " " for a, b in _KEPT_WHITESPACE for c in range(a, min(b, 127) + 1)})
_ASCII_CLEAN = str.maketrans(_ascii_clean)

_new_starter_cache: dict[str, bool] = {}


def _is_new_starter(ch: str) -> bool:
    """Whether Python's NFD moves or decomposes ``ch`` but the reference's older tables do not."""
    known = _new_starter_cache.get(ch)
    if known is None:
        python_active = unicodedata.combining(ch) != 0 or unicodedata.normalize("NFD", ch) != ch
        known = python_active and _NFD_KNOWN_RE.match(ch) is None
        _new_starter_cache[ch] = known
    return known


def nfd(text: str) -> str:
    """NFD as the reference computes it: Python's NFD, with code points unknown to the reference as starters.

    A starter without a decomposition splits canonical reordering, so normalizing the stretches between
    such code points separately gives exactly the reference's output.
    """
    if text.isascii() or unicodedata.is_normalized("NFD", text):
        return text
    parts, start = [], 0
    for i, ch in enumerate(text):
        if ch >= "\u0300" and _is_new_starter(ch):
            parts += (unicodedata.normalize("NFD", text[start:i]), ch)
            start = i + 1
    parts.append(unicodedata.normalize("NFD", text[start:]))
    return "".join(parts)


def clean_text(text: str) -> str:
    """Delete NUL, U+FFFD and control/format/private-use characters; map whitespace to ``" "``."""
    if text.isascii():
        return text if text.isprintable() else text.translate(_ASCII_CLEAN)
    return _CLEAN_WS_RE.sub(" ", _REMOVED_RE.sub("", text))


def pad_chinese_chars(text: str) -> str:
    """Put spaces around CJK ideographs so that each becomes a word."""
    return text if text.isascii() else _CHINESE_RE.sub(r" \1 ", text)


def strip_accents(text: str) -> str:
    """NFD, then delete nonspacing marks (BertNormalizer's strip_accents)."""
    return text if text.isascii() else _NONSPACING_RE.sub("", nfd(text))


def strip_marks(text: str) -> str:
    """Delete every combining mark (the StripAccents normalizer; it does not decompose)."""
    return text if text.isascii() else _MARKS_RE.sub("", text)


def lowercase(text: str) -> str:
    """Lowercase one code point at a time, without context (no final sigma), with Rust's tables."""
    return text.lower() if text.isascii() else text.translate(_LOWER)


@dataclass(frozen=True)
class Normalizer:
    """A chain of normalizing steps, applied in order.

    Attributes:
        steps: Names of the steps, each a key of :data:`STEPS`.
    """

    steps: tuple[str, ...]

    @property
    def cleans(self) -> bool:
        """Whether the chain deletes control characters (then \\v, \\f and U+0085 do not split words)."""
        return "clean_text" in self.steps

    def __call__(self, text: str) -> str:
        for step in self.steps:
            text = STEPS[step](text)
        return text


STEPS: Mapping[str, Callable[[str], str]] = {
    "clean_text": clean_text,
    "handle_chinese_chars": pad_chinese_chars,
    "strip_accents": strip_accents,
    "nfd": nfd,
    "strip_marks": strip_marks,
    "lowercase": lowercase,
}


def bert_normalizer(
    clean: bool = True, handle_chinese_chars: bool = True, strip_accents: bool | None = None, lowercase: bool = True
) -> Normalizer:
    """The BertNormalizer chain; ``strip_accents=None`` follows ``lowercase``, as in the reference."""
    flags = {
        "clean_text": clean,
        "handle_chinese_chars": handle_chinese_chars,
        "strip_accents": lowercase if strip_accents is None else strip_accents,
        "lowercase": lowercase,
    }
    return Normalizer(tuple(name for name, on in flags.items() if on))


def split_words(text: str, punctuation: bool = True) -> list[str]:
    """Pre-tokenize: split on whitespace (removed) and, if asked, isolate each punctuation character."""
    if punctuation:
        return _BERT_WORD_RE.findall(text)
    return [w for w in _WS_SPLIT_RE.split(text) if w]


def wordpiece(
    word: str, vocab: Mapping[str, int], unk_id: int, prefix: str = "##", max_chars: int = 100, max_piece: int = 200
) -> list[int]:
    """Greedy longest-match-first WordPiece of one word; any unmatched remainder makes the word ``[UNK]``.

    Args:
        word: A normalized, pre-tokenized word.
        vocab: Token to id.
        unk_id: Id returned for a word that cannot be split or is too long.
        prefix: Continuing-subword prefix.
        max_chars: Words with more code points than this are ``[UNK]``.
        max_piece: Length of the longest vocabulary entry (bounds the search).

    Returns:
        The ids of the word pieces.
    """
    n = len(word)
    if n > max_chars:
        return [unk_id]
    whole = vocab.get(word)
    if whole is not None:
        return [whole]
    ids = []
    start = 0
    while start < n:
        end = min(n, start + max_piece)
        while end > start:
            piece = vocab.get(word[start:end] if start == 0 else prefix + word[start:end])
            if piece is not None:
                break
            end -= 1
        else:
            return [unk_id]
        ids.append(piece)
        start = end
    return ids
