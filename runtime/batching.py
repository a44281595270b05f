"""Batch planning: ``Tokens`` (tokenized texts), ``plan_batches`` (length-sorted index batches under a
token budget), and the checks of ``batch_size`` and ``max_tokens``. The caller runs the batches and
puts each row back at its text's index (``Embedder.embed_tokens``, the server's batcher).

Sorting by token length before batching means each batch is padded to a length close to its texts'
own, instead of to the longest text of a random mix. The token budget caps ``rows x padded length``
so one batch of long texts cannot take much more memory than a batch of short ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence, TypeVar

import numpy as np
import numpy.typing as npt

__all__ = ["Tokens", "check_batch_size", "check_max_tokens", "chunked", "plan_batches", "position_ids"]

T = TypeVar("T")


def position_ids(attention_mask: npt.NDArray[np.integer]) -> npt.NDArray[np.int64]:
    """Positions of a padded batch for a decoder graph that takes ``position_ids``: each row's real tokens
    count 0, 1, 2, ... whether the row is padded on the left or the right (padding gets 0).

    >>> position_ids(np.array([[0, 1, 1], [1, 1, 1]])).tolist()
    [[0, 0, 1], [0, 1, 2]]
    """
    mask = np.asarray(attention_mask, dtype=np.int64)
    return np.maximum(np.cumsum(mask, axis=1) - 1, 0) * mask


def plan_batches(
    lengths: Sequence[int] | npt.NDArray[np.integer],
    batch_size: int,
    max_tokens: int | None = None,
    *,
    sort: bool = True,
    run_cost: float = 0.0,
) -> list[npt.NDArray[np.int64]]:
    """Group text indices into batches.

    Longest first, so the first batch shows the peak memory at once. A batch holds at most
    ``batch_size`` texts and at most ``max_tokens`` padded tokens (rows x its longest length); a
    single text longer than the budget still gets a batch of its own.

    With ``run_cost`` (the fixed cost of one onnxruntime run, in padded tokens: a run costs about
    ``run_cost + rows x longest``), the sorted texts are cut where that total is least (an exact
    dynamic programme over the cut points) instead of filling each batch: a few long texts among
    short ones get a batch of their own rather than padding the short ones to their length. Worth it
    for a small set of mixed lengths (a server's queue); the default 0 keeps the fill-up cut.

    Args:
        lengths: token count of each text (after truncation).
        batch_size: most texts per batch.
        max_tokens: most padded tokens per batch (None: no budget).
        sort: False keeps input order (for benchmarks and for callers that need it).
        run_cost: the fixed cost of a run in padded tokens (0: fill each batch up to the limits).

    Returns:
        Index arrays into ``lengths``; together they cover every index once.

    >>> [b.tolist() for b in plan_batches([3, 9, 5, 9], batch_size=2)]
    [[1, 3], [2, 0]]
    >>> [b.tolist() for b in plan_batches([3, 9, 5, 9], batch_size=4, max_tokens=18)]
    [[1, 3], [2, 0]]
    >>> [b.tolist() for b in plan_batches([40, 10, 10, 10], batch_size=32, run_cost=5)]
    [[0], [1, 2, 3]]
    """
    check_batch_size(batch_size)
    if max_tokens is not None:
        _check_int("max_tokens", max_tokens)
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1 or None, found {max_tokens}")
    if not run_cost >= 0:
        raise ValueError(f"run_cost must be >= 0 (padded tokens), found {run_cost!r}")
    lens = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lens, kind="stable") if sort else np.arange(len(lens), dtype=np.int64)
    if sort and run_cost > 0 and len(order) > 1:
        return [order[a:b] for a, b in _cheapest_cuts(lens[order], batch_size, max_tokens, float(run_cost))]
    batches: list[npt.NDArray[np.int64]] = []
    start, n = 0, len(order)
    while start < n:
        end = min(start + batch_size, n)
        if max_tokens is not None:
            if sort:
                # Sorted descending: the first row is the longest, so padded size = rows * lens[first].
                rows = max(1, min(end - start, max_tokens // max(int(lens[order[start]]), 1)))
                end = start + rows
            else:
                longest = 0
                for j in range(start, end):
                    longest = max(longest, int(lens[order[j]]))
                    if j > start and (j - start + 1) * longest > max_tokens:
                        end = j
                        break
        batches.append(order[start:end])
        start = end
    return batches


def _cheapest_cuts(desc: npt.NDArray[np.int64], batch_size: int, max_tokens: int | None, run_cost: float) -> list[tuple[int, int]]:
    """The ``(start, end)`` runs of the descending lengths ``desc`` whose total ``sum(run_cost + rows x
    longest)`` is least, each within ``batch_size`` rows and ``max_tokens`` padded tokens."""
    n = len(desc)
    best = np.zeros(n + 1)
    end = np.zeros(n, dtype=np.int64)
    for i in range(n - 1, -1, -1):
        longest = max(int(desc[i]), 1)
        k = min(batch_size, n - i, max(1, max_tokens // longest) if max_tokens is not None else batch_size)
        cost = run_cost + np.arange(1, k + 1) * longest + best[i + 1: i + k + 1]
        r = int(np.argmin(cost))
        best[i] = cost[r]
        end[i] = i + r + 1
    cuts, i = [], 0
    while i < n:
        cuts.append((i, int(end[i])))
        i = int(end[i])
    return cuts


def check_batch_size(batch_size: object) -> None:
    """TypeError unless an int, ValueError unless >= 1: the one check ``plan_batches`` and ``encode`` share."""
    _check_int("batch_size", batch_size)
    if batch_size < 1:  # type: ignore[operator]
        raise ValueError(f"batch_size must be >= 1, found {batch_size}")


def check_max_tokens(max_tokens: object) -> None:
    """Refuse a token budget that is not ``"auto"``, None or an int >= 1 (before any session is built).

    Raises:
        ValueError: naming the value and what is accepted.
    """
    ok = max_tokens is None or max_tokens == "auto" or (isinstance(max_tokens, (int, np.integer)) and not isinstance(max_tokens, bool) and max_tokens >= 1)
    if not ok:
        raise ValueError(f"max_tokens must be 'auto', None or an int >= 1, found {max_tokens!r}")


def _check_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, found {type(value).__name__} {value!r}")


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter), reading lazily.

    >>> list(chunked(range(5), 2))
    [[0, 1], [2, 3], [4]]
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, found {size}")
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass(frozen=True)
class Tokens:
    """Token ids of a list of texts, ready for :func:`plan_batches` and ``Embedder.embed_batch``.

    Attributes:
        ids: per text, the ids the model sees ([CLS] ... [SEP]), truncated to ``max_length``.
        full_lengths: per text, its length in tokens before truncation.
        max_length: the truncation length used.
        type_ids: per pair, the token type ids (None for single texts).

    >>> t = Tokens(ids=[[101, 7592, 102]], full_lengths=[3], max_length=128)
    >>> t.counts, t.n_tokens, t.n_truncated
    ([3], 3, 0)
    """

    ids: list[list[int]]
    full_lengths: list[int]
    max_length: int
    # Token type ids per row, for pairs (a reranker's query and document); None for single texts.
    type_ids: list[list[int]] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def counts(self) -> list[int]:
        """Tokens per text as embedded (after truncation, special tokens included)."""
        return [len(x) for x in self.ids]

    @property
    def n_tokens(self) -> int:
        """Real (unpadded) tokens over all texts, as embedded: what ``usage`` reports."""
        return sum(len(x) for x in self.ids)

    @property
    def truncated(self) -> list[bool]:
        """Per text: was it longer than ``max_length``?"""
        return [full > len(x) for full, x in zip(self.full_lengths, self.ids)]

    @property
    def n_truncated(self) -> int:
        """How many texts were truncated."""
        return sum(self.truncated)

    def select(self, indices: Iterable[int]) -> Tokens:
        """The texts at ``indices``, in that order."""
        idx = [int(i) for i in indices]
        types = [self.type_ids[i] for i in idx] if self.type_ids is not None else None
        return Tokens([self.ids[i] for i in idx], [self.full_lengths[i] for i in idx], self.max_length, types)
