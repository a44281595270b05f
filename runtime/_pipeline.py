"""The general encoding pipeline: added tokens, normalizer, pre-tokenizer, model, cached per pre-token.

``Pipeline(config).encode(text)`` returns the ids of one text without special tokens, as the Rust
library's ``encode(text, add_special_tokens=False)`` does. It serves every model; the WordPiece-only
fast path of :class:`onnxembed.Tokenizer` (which caches raw whitespace chunks) remains for BERT files.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._components import AddedToken, alternation, find_added
from ._models import Model
from ._normalizers import Normalize
from ._pretokenizers import PreTokenizer

CACHE_SIZE = 200_000


class Pipeline:
    """Added tokens -> normalizer -> pre-tokenizer -> model, with a bounded cache of piece -> ids."""

    def __init__(self, normalizer: Normalize, pre_tokenizer: PreTokenizer, model: Model, added_tokens: Sequence[AddedToken]) -> None:
        self._normalize = normalizer
        transform = pre_tokenizer.transform
        self._split = pre_tokenizer.split_raw if transform is not None else pre_tokenizer.split
        self._needs_start = pre_tokenizer.needs_start
        self._tokenize = model.tokenize if transform is None else (lambda piece: model.tokenize(transform(piece)))
        added = {t.content: t for t in added_tokens if t.content}
        self._raw = {c: t for c, t in added.items() if not t.normalized}
        self._raw_re = alternation(self._raw)
        self._norm = {n: t for t in added.values() if t.normalized and (n := normalizer(t.content))}
        self._norm_re = alternation(self._norm)
        self.cache: dict[str, tuple[int, ...]] = {}
        self.cache_size = CACHE_SIZE

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` without the post-processor's special tokens."""
        ids: list[int] = []
        at_start = True
        if self._raw_re is None or not self._raw_re.search(text):
            self._encode_segment(text, True, ids)
            return ids
        for token, segment in find_added(text, self._raw_re, self._raw):
            if token is not None:
                ids.append(token.id)
            else:
                self._encode_segment(segment, at_start, ids)
            at_start = False
        return ids

    def _encode_segment(self, segment: str, at_start: bool, out: list[int]) -> None:
        if at_start and self._needs_start and segment:
            # The library asks whether the normalized text still begins at original offset 0: not if
            # the normalizer deleted the first character (a stripped space, a removed control).
            at_start = self._normalize(segment[0]) != ""
        normalized = self._normalize(segment)
        if self._norm_re is None:
            self._encode_pieces(normalized, at_start, out)
            return
        for token, piece in find_added(normalized, self._norm_re, self._norm):
            if token is not None:
                out.append(token.id)
            else:
                self._encode_pieces(piece, at_start, out)
            at_start = False

    def _encode_pieces(self, text: str, at_start: bool, out: list[int]) -> None:
        cache = self.cache
        for piece in self._split(text, at_start):
            ids = cache.get(piece)
            if ids is None:
                ids = self._tokenize(piece)
                if len(cache) >= self.cache_size:
                    try:  # evict the oldest entry; another thread may be evicting too
                        del cache[next(iter(cache))]
                    except (KeyError, RuntimeError, StopIteration):
                        pass
                cache[piece] = ids
            out += ids
