"""The :class:`Reranker`: a cross-encoder artifact folder on an onnxruntime session, (query, document)
pairs in, relevance scores out.

``tokenize pairs -> plan length-sorted batches -> run -> activation -> restore order``, with the same
loading (variant and provider choice, sha256 check), token budget and truncation counter as the
:class:`~onnxembed.Embedder` (shared in ``_session``). Pairs longer than ``max_length`` lose tokens
from the longer side first (``longest_first``, as sentence-transformers' CrossEncoder and the Rust
library cut them): the document, unless the query alone is longer than half the window.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, NamedTuple

import numpy as np
import numpy.typing as npt

from ._session import SessionModel, as_list
from .batching import Tokens, check_batch_size
from .progress import Progress, progress_reporter
from .scores import activate

__all__ = ["Ranked", "Reranker"]

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]


class Ranked(NamedTuple):
    """One document of :meth:`Reranker.rank`: its index in the input list and its score."""

    index: int
    score: float


class Reranker(SessionModel):
    """Relevance scores of (query, document) pairs from a cross-encoder folder, with onnxruntime only.

    Build one with :meth:`load` (a folder that ``onnxembed build`` made from a ``*ForSequenceClassification``
    checkpoint). ``score`` and ``rank`` are safe to call from several threads at once.

    >>> rr = Reranker.load("artifacts/ms-marco-minilm-l6")  # doctest: +SKIP
    >>> rr.rank("how many people live in Berlin?", ["Berlin has 3.5 million inhabitants.", "I like cats."])  # doctest: +SKIP
    [Ranked(index=0, score=0.98...), Ranked(index=1, score=0.0003...)]
    """

    TASK = "rerank"
    _log = logger

    @property
    def num_labels(self) -> int:
        """Logits per pair (1 for a relevance score)."""
        return self._manifest.dim

    @property
    def activation(self) -> str:
        """What turns logits into scores: ``sigmoid``, ``identity`` or ``softmax`` (the manifest's, as CrossEncoder applies it)."""
        return self._manifest.activation

    def __repr__(self) -> str:
        return (f"Reranker({self._manifest.name!r}, variant={self._variant!r}, providers={self.providers}, "
                f"num_labels={self.num_labels}, activation={self.activation!r}, max_length={self.max_length})")

    # ------------------------------------------------------------------------------------ scoring

    def score(self, pairs: Iterable[tuple[str, str]], batch_size: int = 32, show_progress: Progress = False, *,
              max_tokens: int | None | str = "default", raw: bool = False) -> F32:
        """Scores of (query, document) pairs, as ``CrossEncoder.predict`` gives them.

        Args:
            pairs: ``(query, document)`` tuples or 2-item lists of str.
            batch_size: most pairs per onnxruntime run.
            show_progress: as for ``Embedder.encode``.
            max_tokens: padded-token budget per batch (``"default"``: the one given to :meth:`load`).
            raw: the logits, without the activation (TEI's ``raw_scores``).

        Returns:
            float32 ``(n,)`` for a one-label model, ``(n, num_labels)`` otherwise, in input order.

        Raises:
            TypeError: ``pairs`` is a single pair or str, or an item is not a (str, str) pair (the
                message names its index).

        >>> rr.score([("query", "a relevant passage"), ("query", "noise")]).shape  # doctest: +SKIP
        (2,)
        """
        check_batch_size(batch_size)
        return self.score_tokens(self.tokenize(pairs), batch_size, max_tokens=max_tokens, raw=raw, show_progress=show_progress)

    def rank(self, query: str, documents: str | Iterable[str], top_n: int | None = None, batch_size: int = 32, *,
             max_tokens: int | None | str = "default", raw: bool = False) -> list[Ranked]:
        """Documents sorted by their score for ``query``, best first (ties keep input order).

        Args:
            query: the query.
            documents: the documents to rank.
            top_n: keep the best ``top_n`` (None: all).

        Returns:
            ``[Ranked(index, score), ...]``, at most ``top_n`` long.

        Raises:
            TypeError: ``query`` or a document is not a str.
            ValueError: ``top_n`` < 1, or the model has more than one label (no single score to sort by).

        >>> rr.rank("query", ["noise", "a relevant passage"], top_n=1)  # doctest: +SKIP
        [Ranked(index=1, score=0.97...)]
        """
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, found {type(query).__name__}")
        if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1):
            raise ValueError(f"top_n must be None or an int >= 1, found {top_n!r}")
        if self.num_labels != 1:
            raise ValueError(f"{self._manifest.name} has {self.num_labels} labels: rank needs one score per document; "
                             "use score() and pick the label's column")
        docs = as_list(documents)
        for i, d in enumerate(docs):
            if not isinstance(d, str):
                raise TypeError(f"documents[{i}] is {type(d).__name__} {d!r:.60}, expected str")
        scores = self.score([(query, d) for d in docs], batch_size, max_tokens=max_tokens, raw=raw)
        order = np.argsort(-scores, kind="stable")[:top_n]
        return [Ranked(int(i), float(scores[i])) for i in order]

    # ------------------------------------------------------------- the stages, for servers and jobs

    def tokenize(self, pairs: Iterable[tuple[str, str]]) -> Tokens:
        """Stage 1: pairs -> token ids and type ids, truncated to :attr:`max_length` (counted in :attr:`truncated`)."""
        if isinstance(pairs, (str, bytes)) or (isinstance(pairs, tuple) and len(pairs) == 2 and all(isinstance(p, str) for p in pairs)):
            raise TypeError("pairs must be an iterable of (query, document) pairs; for one pair pass [(query, document)]")
        items = list(pairs)
        ids, types, full = self._tokenizer.encode_pair_batch_full(items, max_length=self.max_length)
        tokens = Tokens(ids, full, self.max_length, types)
        n = tokens.n_truncated
        self._truncation.add(n, "%s: %d of %d pairs were longer than max_length=%d tokens and were truncated, the longer "
                             "side first (the document, unless the query fills half the window) (logged once; Reranker.truncated keeps the count)",
                             self._manifest.name, n, len(items), self.max_length)
        return tokens

    def score_batch(self, tokens: Tokens, *, raw: bool = False) -> F32:
        """Stage 3: one onnxruntime run over ``tokens`` (one batch, e.g. ``tokens.select(batch)``)."""
        if not tokens.ids:
            return np.empty((0,) if self.num_labels == 1 else (0, self.num_labels), dtype=np.float32)
        arrays = self._tokenizer.pad(tokens.ids, input_names=self._pad_names, type_ids=tokens.type_ids)
        logits = np.asarray(self._session.run([self._manifest.output_name], self._feed(arrays))[0], dtype=np.float32)
        return activate(logits, "identity" if raw else self.activation)

    def _cost_probe(self, words: int, rows: int) -> tuple[Callable[[], Any], int]:
        tok = self.tokenize([("warm", "warm " * words)])
        batch = Tokens(tok.ids * rows, tok.counts * rows, tok.max_length, tok.type_ids * rows if tok.type_ids is not None else None)
        return (lambda: self.score_batch(batch)), len(tok.ids[0])

    def score_tokens(self, tokens: Tokens, batch_size: int = 32, *, max_tokens: int | None | str = "default", raw: bool = False,
                     show_progress: Progress = False) -> F32:
        """Stages 2 and 3 over all of ``tokens``; scores in the order of ``tokens``."""
        check_batch_size(batch_size)
        out = np.empty((len(tokens.ids),) if self.num_labels == 1 else (len(tokens.ids), self.num_labels), dtype=np.float32)
        report = progress_reporter(show_progress, len(tokens.ids))

        def run(batch: Any) -> None:
            out[batch] = self.score_batch(tokens.select(batch), raw=raw)

        try:
            self.run_batches(self.plan_batches(tokens, batch_size, max_tokens=max_tokens, run_cost="measured"), run, report)
        finally:
            report(-1)
        return out


