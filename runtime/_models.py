"""Models of ``tokenizer.json`` (WordPiece, Unigram, BPE): one class each, ``tokenize(piece) -> ids``.

Each follows the Rust library's ``models/*/model.rs``; the caller caches ids per piece, so the hot
loops below run once per distinct pre-token.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from . import _wordpiece as wp

_UNK_PENALTY = 10.0  # K_UNK_PENALTY of models/unigram/model.rs


_U64_MAX = (1 << 64) - 1
_POW10 = [float(f"1e{i}") for i in range(309)]
_POW10_ARRAY = np.array(_POW10[:23])


def serde_f64(text: str) -> float:
    """The f64 that ``serde_json`` (without ``float_roundtrip``, as the Rust library builds it) reads from ``text``.

    It accumulates the decimal digits in a u64, converts that to f64 and divides by a power of ten: two
    roundings, so it can be one ulp away from Python's correctly rounded ``float(text)``. Unigram scores
    must match to the ulp, or ties in the Viterbi search break differently.
    """
    body = text[1:] if text[:1] == "-" else text
    point = body.find(".")
    if point < 0 or "e" in body or "E" in body or len(body) > 21:
        return _serde_f64_general(text)
    significand = int(body[:point] + body[point + 1 :])
    if significand > _U64_MAX:
        return _serde_f64_general(text)
    value = float(significand) / _POW10[len(body) - point - 1]
    return -value if body is not text else value


def serde_f64_all(texts: list[str]) -> list[float]:
    """:func:`serde_f64` of many decimal strings, vectorized for those reading ``[-]digits.digits``.

    The strings become one fixed-width byte matrix (one row per character position), the significand
    is accumulated in uint64 column by column (exact for up to 19 digits), then converted and divided
    as ``serde_json`` does; any other string goes through :func:`serde_f64`.
    """
    n = len(texts)
    try:
        raw = np.array(texts, dtype=np.bytes_)
    except UnicodeEncodeError:  # not a plain decimal: the general reader decides
        return [serde_f64(t) for t in texts]
    if n == 0 or raw.dtype.itemsize > 21:
        return [serde_f64(t) for t in texts]
    cols = raw.view(np.uint8).reshape(n, raw.dtype.itemsize).T.copy()
    digit = (cols >= 48) & (cols <= 57)
    dot = cols == 46
    ndigits, ndots, negative = digit.sum(0), dot.sum(0), cols[0] == 45
    length = (cols != 0).sum(0)
    plain = (ndigits + ndots + negative == length) & (ndots == 1) & (ndigits <= 19)
    significand = np.zeros(n, np.uint64)
    for c in range(len(cols)):
        significand = np.where(digit[c], significand * np.uint64(10) + (cols[c] - np.uint8(48)), significand)
    fraction_digits = np.clip(length - dot.argmax(0) - 1, 0, len(_POW10_ARRAY) - 1)
    values = significand.astype(np.float64) / _POW10_ARRAY[fraction_digits]
    np.negative(values, out=values, where=negative)
    out: list[float] = values.tolist()
    for i in np.flatnonzero(~plain).tolist():
        out[i] = serde_f64(texts[i])
    return out


def _serde_f64_general(text: str) -> float:
    m = re.fullmatch(r"(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?", text)
    if m is None:
        return float(text)
    significand, exponent, overflow = 0, 0, False
    for k, digit in enumerate(m.group(2) + (m.group(3) or "")):
        in_fraction = k >= len(m.group(2))
        if not overflow and significand * 10 + int(digit) <= _U64_MAX:
            significand = significand * 10 + int(digit)
            exponent -= in_fraction
        else:
            overflow = True
            exponent += not in_fraction
    if m.group(3) is None and m.group(4) is None and not overflow:
        return float(text)
    exponent += int(m.group(4) or 0)
    value = float(significand)
    while True:
        if abs(exponent) < len(_POW10):
            value = value * _POW10[exponent] if exponent >= 0 else value / _POW10[-exponent]
            break
        if value == 0.0 or exponent >= 0:
            value = value * _POW10[308] if exponent >= 0 else value
            break
        value /= 1e308
        exponent += 308
    return -value if m.group(1) else value


class Model(Protocol):
    vocab: dict[str, int]

    def tokenize(self, piece: str) -> tuple[int, ...]: ...


def _byte_ids(text: str, vocab: dict[str, int], form: str) -> list[int] | None:
    """Ids of ``<0xXX>`` tokens for each UTF-8 byte of ``text``, or None if one is missing."""
    ids = [vocab.get(form % b) for b in text.encode("utf-8", "surrogatepass")]
    return None if None in ids else ids  # type: ignore[return-value]


@dataclass(frozen=True)
class UnigramVocab:
    """A Unigram ``vocab`` already read (by ``_tokenizer_json``): its pieces and their scores."""

    pieces: list[str]
    scores: list[float]


class WordPiece:
    """Greedy longest-match-first word pieces (see :func:`onnxembed._wordpiece.wordpiece`)."""

    def __init__(self, config: dict[str, Any], source: str) -> None:
        self.vocab = {str(k): int(v) for k, v in config["vocab"].items()}
        unk = config.get("unk_token", "[UNK]")
        if unk not in self.vocab:
            raise ValueError(f"{source}: unk_token {unk!r} is not in the vocabulary ({len(self.vocab)} tokens); fix the WordPiece model's unk_token")
        self.unk_id = self.vocab[unk]
        self._prefix = config.get("continuing_subword_prefix") or "##"
        self._max_chars = int(config.get("max_input_chars_per_word", 100))
        self._max_piece = max(map(len, self.vocab), default=1)

    def tokenize(self, piece: str) -> tuple[int, ...]:
        return tuple(wp.wordpiece(piece, self.vocab, self.unk_id, self._prefix, self._max_chars, self._max_piece))


class Unigram:
    """Viterbi over piece scores; unknown characters score ``min_score - 10`` and consecutive ones fuse."""

    def __init__(self, config: dict[str, Any], source: str) -> None:
        pieces = config["vocab"]
        if isinstance(pieces, UnigramVocab):
            tokens, scores = pieces.pieces, pieces.scores
        else:
            tokens = [p for p, _ in pieces]
            scores = serde_f64_all([s if type(s) is str else repr(float(s)) for _, s in pieces])
        self.vocab: dict[str, int] = dict(zip(tokens, range(len(tokens))))
        self._scores = scores
        # first character -> length of the longest piece starting with it (bounds the Viterbi's lookups)
        longest: dict[str, int] = {}
        get = longest.get
        for p in tokens:
            if p and len(p) > get(p[0], 0):
                longest[p[0]] = len(p)
        self._longest = longest
        unk_id = config.get("unk_id")
        self.unk_id = int(unk_id) if unk_id is not None else None
        self._unk_score = min(scores, default=0.0) - _UNK_PENALTY
        self._byte_fallback = bool(config.get("byte_fallback", False))

    def tokenize(self, piece: str) -> tuple[int, ...]:
        n = len(piece)
        if n == 0:
            return ()
        get, scores, longest, unk_score = self.vocab.get, self._scores, self._longest.get, self._unk_score
        best = [0.0] * (n + 1)
        start_of = [-1] * (n + 1)
        unk_node = [False] * (n + 1)
        for i in range(n):
            base = best[i]
            single = False
            for j in range(i + 1, min(n, i + longest(piece[i], 0)) + 1):
                tid = get(piece[i:j])
                if tid is not None:
                    score = base + scores[tid]
                    if start_of[j] < 0 or score > best[j]:
                        best[j], start_of[j], unk_node[j] = score, i, False
                    if j == i + 1:
                        single = True
            if not single:
                if self.unk_id is None:
                    raise ValueError(f"Unigram model has no unk_id and {piece[i]!r} is not in its vocabulary")
                score = base + unk_score
                if start_of[i + 1] < 0 or score > best[i + 1]:
                    best[i + 1], start_of[i + 1], unk_node[i + 1] = score, i, True
        strings: list[str] = []
        end = n
        unk_end = -1
        while end > 0:
            start = start_of[end]
            if unk_node[end]:
                if unk_end < 0:
                    unk_end = end
            else:
                if unk_end >= 0:
                    strings.append(piece[end:unk_end])
                    unk_end = -1
                strings.append(piece[start:end])
            end = start
        if unk_end >= 0:
            strings.append(piece[0:unk_end])
        ids: list[int] = []
        for s in reversed(strings):
            tid = get(s)
            if tid is None:
                fallback = _byte_ids(s, self.vocab, "<0x%02X>") if self._byte_fallback else None
                if fallback is not None:
                    ids += fallback
                    continue
                tid = self.unk_id
            ids.append(tid)  # type: ignore[arg-type]
        return tuple(ids)


class BPE:
    """Byte-pair merges by rank (lowest first, leftmost on ties), with the Rust library's options."""

    def __init__(self, config: dict[str, Any], source: str) -> None:
        if config.get("dropout") is not None and float(config["dropout"]) != 0.0:
            raise ValueError(f"{source}: BPE dropout={config['dropout']} is random at encode time; only dropout null is supported")
        self.vocab = {str(k): int(v) for k, v in config["vocab"].items()}
        self._unk = config.get("unk_token")
        self._prefix = config.get("continuing_subword_prefix") or ""
        self._suffix = config.get("end_of_word_suffix") or ""
        self._fuse_unk = bool(config.get("fuse_unk", False))
        self._byte_fallback = bool(config.get("byte_fallback", False))
        self._ignore_merges = bool(config.get("ignore_merges", False))
        prefix_bytes = len(self._prefix.encode())
        merges: dict[tuple[int, int], tuple[int, int]] = {}
        vocab = self.vocab
        for rank, merge in enumerate(config.get("merges") or []):
            if isinstance(merge, str):
                parts = merge.split(" ")
                if len(parts) != 2:
                    raise ValueError(f"{source}: BPE merge {merge!r} is not two tokens separated by one space")
                a, b = parts
            else:
                a, b = merge
            new = a + b.encode()[prefix_bytes:].decode("utf-8", "surrogatepass")
            try:
                merges[vocab[a], vocab[b]] = (rank, vocab[new])
            except KeyError as e:
                raise ValueError(f"{source}: BPE merge {a!r} + {b!r} uses a token missing from the vocabulary: {e}") from e
        self._merges = merges

    def _symbols(self, word: str) -> list[int]:
        vocab, prefix, suffix, last = self.vocab, self._prefix, self._suffix, len(word) - 1
        symbols: list[int] = []
        unk: int | None = None
        for i, ch in enumerate(word):
            s = ch
            if i and prefix:
                s = prefix + s
            if i == last and suffix:
                s = s + suffix
            tid = vocab.get(s)
            if tid is not None:
                if unk is not None:
                    symbols.append(unk)
                    unk = None
                symbols.append(tid)
                continue
            if self._byte_fallback:
                fallback = _byte_ids(s, vocab, "<0x%02X>")
                if fallback is not None:
                    symbols += fallback
                    continue
            if self._unk is not None:
                if self._unk not in vocab:
                    raise ValueError(f"BPE unk_token {self._unk!r} is not in the vocabulary")
                if unk is not None and not self._fuse_unk:
                    symbols.append(unk)
                unk = vocab[self._unk]
        if unk is not None:
            symbols.append(unk)
        return symbols

    def tokenize(self, piece: str) -> tuple[int, ...]:
        if not piece:
            return ()
        if self._ignore_merges:
            tid = self.vocab.get(piece)
            if tid is not None:
                return (tid,)
        symbols = self._symbols(piece)
        merges = self._merges
        while len(symbols) > 1:
            best_rank, best_at, best_id = -1, -1, -1
            for i in range(len(symbols) - 1):
                found = merges.get((symbols[i], symbols[i + 1]))
                if found is not None and (best_rank < 0 or found[0] < best_rank):
                    best_rank, best_id = found
                    best_at = i
            if best_at < 0:
                break
            symbols[best_at : best_at + 2] = [best_id]
        return tuple(symbols)


MODELS: dict[str, Callable[[dict[str, Any], str], Model]] = {"WordPiece": WordPiece, "Unigram": Unigram, "BPE": BPE}


def parse_model(config: dict[str, Any], source: str) -> Model:
    """The model of a ``model`` entry (a missing type is inferred from its fields, as the Rust library does)."""
    kind = config.get("type")
    if kind is None:
        kind = "BPE" if "merges" in config else "Unigram" if isinstance(config.get("vocab"), (list, UnigramVocab)) else "WordPiece"
    if kind not in MODELS:
        raise ValueError(f"{source}: model {kind!r} is not supported; supported: {', '.join(MODELS)}")
    return MODELS[kind](config, source)
