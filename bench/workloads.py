"""What the bench times: fixed ``batch x seq_len`` shapes of synthetic token ids, or real texts.

A :class:`Workload` is data (its label, shape and counts); :meth:`Workload.call_for` turns it into
the zero-argument call timed for one loaded variant.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["Workload", "pair_workloads", "shape_workloads", "synthetic_feed", "text_workloads"]

logger = logging.getLogger(__name__)

Feed = dict[str, npt.NDArray[Any]]


def synthetic_feed(session: Any, vocab_size: int, batch: int, seq: int, seed: int = 0) -> Feed:
    """Random token ids (no padding) shaped ``batch x seq`` for exactly the inputs the graph declares."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, max(1001, vocab_size - 1), size=(batch, seq), dtype=np.int64)
    full = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids),
            "position_ids": np.broadcast_to(np.arange(seq, dtype=np.int64), ids.shape).copy()}  # decoders (Qwen3)
    return {i.name: full[i.name].astype(np.int32 if i.type == "tensor(int32)" else np.int64) for i in session.get_inputs()}


@dataclass(frozen=True)
class Workload:
    """One thing to time on every variant.

    Attributes:
        label: ``"32x128"`` (fixed shape), ``"text n=500 b=32"`` (real texts) or ``"1q x 100d"``
            (a reranker's query-document pairs).
        batch_size: rows per onnxruntime run (shape) or ``encode``/``score`` batch size (texts, pairs).
        seq_len: tokens per row of a fixed shape; None for real texts and pairs.
        texts_per_call: texts (or pairs) one timed call embeds (scores).
        tokens_per_call: tokens one timed call embeds (real tokens for texts and pairs, no padding counted).
        texts: the real texts, or None.
        pairs: the (query, document) pairs a reranker scores, or None.
    """

    label: str
    batch_size: int
    seq_len: int | None
    texts_per_call: int
    tokens_per_call: int
    texts: tuple[str, ...] | None = None
    pairs: tuple[tuple[str, str], ...] | None = None

    def call_for(self, embedder: Any) -> Callable[[], Any]:
        """The call to time on ``embedder`` (an Embedder or Reranker): one ``session.run`` of the shape, one
        ``encode`` of all texts, or one ``score`` of all pairs."""
        if self.pairs is not None:
            pairs, batch_size = list(self.pairs), self.batch_size
            return lambda: embedder.score(pairs, batch_size=batch_size)
        if self.texts is not None:
            texts, batch_size = list(self.texts), self.batch_size
            return lambda: embedder.encode(texts, batch_size=batch_size)
        if self.seq_len is None:
            raise ValueError(f"workload {self.label!r} has neither texts nor a seq_len")
        session = embedder.session
        feed = synthetic_feed(session, embedder.manifest.vocab_size, self.batch_size, self.seq_len)
        return lambda: session.run(None, feed)


def shape_workloads(batch_sizes: Sequence[int], seq_lens: Sequence[int], max_positions: int) -> list[Workload]:
    """Every ``batch x seq_len`` pair, sequence lengths over the model's positions left out (logged)."""
    out: list[Workload] = []
    for s in seq_lens:
        if s > max_positions:
            logger.warning("skipping seq_len %d: the model has %d positions", s, max_positions)
            continue
        out.extend(Workload(f"{b}x{s}", b, s, b, b * s) for b in batch_sizes)
    return out


def text_workloads(texts: Sequence[str], batch_sizes: Sequence[int], n_tokens: int) -> list[Workload]:
    """One workload per batch size, each embedding all ``texts`` (``n_tokens`` real tokens in all)."""
    if not texts:
        raise ValueError("texts is empty; give at least one text")
    frozen = tuple(texts)
    return [Workload(f"text n={len(frozen)} b={b}", b, None, len(frozen), n_tokens, frozen) for b in batch_sizes]


# A reranker's two usual calls: one query against a first stage's top 100, and a batch of 32 queries x 32 hits.
RERANK_SHAPES: tuple[tuple[int, int], ...] = ((1, 100), (32, 32))


def pair_workloads(texts: Sequence[str], shapes: Sequence[tuple[int, int]], batch_size: int,
                   count_tokens: Callable[[list[tuple[str, str]]], int]) -> list[Workload]:
    """One workload per ``(queries, documents per query)`` shape: every query paired with its documents.

    Queries and documents are drawn in turn from ``texts`` (a query is never paired with itself unless
    ``texts`` has one text); ``count_tokens`` gives the real tokens of a list of pairs.
    """
    if not texts:
        raise ValueError("texts is empty; give at least one text")
    if any(q < 1 or d < 1 for q, d in shapes):
        raise ValueError(f"pair shapes must be >= 1 query x >= 1 document, got {list(shapes)}")
    n = len(texts)
    out: list[Workload] = []
    for q, d in shapes:
        pairs = tuple((texts[i % n], texts[(i + 1 + j) % n]) for i in range(q) for j in range(d))
        out.append(Workload(f"{q}q x {d}d", batch_size, None, len(pairs), count_tokens(list(pairs)), pairs=pairs))
    return out
