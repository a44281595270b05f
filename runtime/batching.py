"""Length-sorted batches under a token budget, and putting results back in input order.

Sorting by token length before batching means each batch is padded to a length close to its texts'
own, instead of to the longest text of a random mix. The token budget caps ``rows x padded length``
so one batch of long texts cannot take much more memory than a batch of short ones.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence, TypeVar

import numpy as np
import numpy.typing as npt

__all__ = ["chunked", "plan_batches"]

T = TypeVar("T")


def plan_batches(
    lengths: Sequence[int] | npt.NDArray[np.integer],
    batch_size: int,
    max_tokens: int | None = None,
    *,
    sort: bool = True,
) -> list[npt.NDArray[np.int64]]:
    """Group text indices into batches.

    Longest first, so the first batch shows the peak memory at once. A batch holds at most
    ``batch_size`` texts and at most ``max_tokens`` padded tokens (rows x its longest length); a
    single text longer than the budget still gets a batch of its own.

    Args:
        lengths: token count of each text (after truncation).
        batch_size: most texts per batch.
        max_tokens: most padded tokens per batch (None: no budget).
        sort: False keeps input order (for benchmarks and for callers that need it).

    Returns:
        Index arrays into ``lengths``; together they cover every index once.

    >>> [b.tolist() for b in plan_batches([3, 9, 5, 9], batch_size=2)]
    [[1, 3], [2, 0]]
    >>> [b.tolist() for b in plan_batches([3, 9, 5, 9], batch_size=4, max_tokens=18)]
    [[1, 3], [2, 0]]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, found {batch_size}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1 or None, found {max_tokens}")
    lens = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lens, kind="stable") if sort else np.arange(len(lens), dtype=np.int64)
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
