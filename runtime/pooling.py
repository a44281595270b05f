"""Pooling and normalization: token states -> one vector per text, as pure numpy functions.

Every function takes the model's ``last_hidden_state`` of shape ``(batch, seq, hidden)`` and the
attention mask ``(batch, seq)`` (1 for real tokens, 0 for padding) and returns ``(batch, hidden)``
float32. The mask is used in float32, as sentence-transformers does, so the figures match its torch
implementation to rounding.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import numpy.typing as npt

__all__ = [
    "rowwise_cosine",
    "spearman",
    "POOLERS",
    "cls_pool",
    "cosine_similarity",
    "l2_normalize",
    "lasttoken_pool",
    "max_pool",
    "mean_pool",
    "mean_sqrt_len_pool",
    "pool",
    "truncate_dimensions",
]

F32 = npt.NDArray[np.float32]


def _mask(mask: npt.ArrayLike) -> F32:
    return np.asarray(mask, dtype=np.float32)


def _summed(hidden: F32, mask: F32) -> F32:
    # (b, 1, s) @ (b, s, h) -> (b, 1, h): one batched matmul instead of a (b, s, h) temporary.
    return np.matmul(mask[:, None, :], hidden)[:, 0, :]


def mean_pool(hidden: F32, mask: npt.ArrayLike) -> F32:
    """Mean of the token states where the mask is 1 (sentence-transformers' ``mean``).

    >>> mean_pool(np.ones((1, 3, 2), np.float32), [[1, 1, 0]]).tolist()
    [[1.0, 1.0]]
    """
    m = _mask(mask)
    counts = np.maximum(m.sum(axis=1, keepdims=True), np.float32(1e-9))
    return _summed(hidden, m) / counts


def mean_sqrt_len_pool(hidden: F32, mask: npt.ArrayLike) -> F32:
    """Sum of the token states divided by sqrt(number of real tokens) (``mean_sqrt_len_tokens``)."""
    m = _mask(mask)
    counts = np.maximum(m.sum(axis=1, keepdims=True), np.float32(1e-9))
    return _summed(hidden, m) / np.sqrt(counts)


def cls_pool(hidden: F32, mask: npt.ArrayLike) -> F32:
    """The state of the first token ([CLS])."""
    return np.ascontiguousarray(hidden[:, 0, :])


def max_pool(hidden: F32, mask: npt.ArrayLike) -> F32:
    """Element-wise max over real tokens (padding set to -1e9, so a row never becomes -inf)."""
    m = _mask(mask)
    return np.where(m[:, :, None] > 0, hidden, np.float32(-1e9)).max(axis=1)


def lasttoken_pool(hidden: F32, mask: npt.ArrayLike) -> F32:
    """The state of the last real token of each row, padded on the right or on the left (a decoder's EOS).

    >>> lasttoken_pool(np.arange(6, dtype=np.float32).reshape(2, 3, 1), [[1, 1, 0], [0, 1, 1]]).tolist()
    [[1.0], [5.0]]
    """
    m = _mask(mask)
    seq = m.shape[1]
    last = seq - 1 - np.argmax(m[:, ::-1] > 0, axis=1)  # the last index whose mask is 1
    last = np.where(m.any(axis=1), last, 0)  # a row without real tokens: position 0, as sentence-transformers
    return np.ascontiguousarray(hidden[np.arange(hidden.shape[0]), last, :])


POOLERS: dict[str, Callable[[F32, npt.ArrayLike], F32]] = {
    "mean": mean_pool,
    "cls": cls_pool,
    "max": max_pool,
    "mean_sqrt_len": mean_sqrt_len_pool,
    "lasttoken": lasttoken_pool,
}


def pool(hidden: npt.ArrayLike, mask: npt.ArrayLike, mode: str, normalize: bool = False) -> F32:
    """Pool token states with the named mode (the manifest's ``pooling``), L2-normalized if ``normalize``.

    Raises:
        ValueError: unknown mode, or shapes that do not fit together.
    """
    try:
        fn = POOLERS[mode]
    except KeyError:
        raise ValueError(f"unknown pooling {mode!r}; known: {sorted(POOLERS)}") from None
    h = np.asarray(hidden, dtype=np.float32)
    m = np.asarray(mask)
    if h.ndim != 3 or m.shape != h.shape[:2]:
        raise ValueError(f"expected hidden (batch, seq, dim) and mask (batch, seq); found {h.shape} and {m.shape}")
    out = fn(h, m).astype(np.float32, copy=False)
    return l2_normalize(out) if normalize else out


def l2_normalize(x: npt.ArrayLike, eps: float = 1e-12) -> F32:
    """Divide each row by its L2 norm (at least ``eps``), like ``torch.nn.functional.normalize``.

    >>> l2_normalize(np.array([[3.0, 4.0]], np.float32)).tolist()
    [[0.6000000238418579, 0.800000011920929]]
    """
    a = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(a, axis=-1, keepdims=True)
    return a / np.maximum(norms, np.float32(eps))


def truncate_dimensions(x: npt.ArrayLike, dimensions: int, normalize: bool) -> F32:
    """Matryoshka: keep the first ``dimensions`` values of each row, then L2-normalize the kept part when
    ``normalize``. Normalizing first does not change the result (the direction of the kept part is the
    same), so this applies to pooled and to already normalized vectors alike.

    >>> truncate_dimensions(np.array([[3.0, 4.0, 12.0]], np.float32), 2, True).tolist()
    [[0.6000000238418579, 0.800000011920929]]
    """
    kept = np.ascontiguousarray(np.asarray(x, dtype=np.float32)[:, :dimensions])
    return l2_normalize(kept) if normalize else kept


def cosine_similarity(a: npt.ArrayLike, b: npt.ArrayLike) -> F32:
    """Cosine similarity of every row of ``a`` with every row of ``b``: shape ``(len(a), len(b))``.

    1-D inputs are treated as one row.

    >>> cosine_similarity([[1.0, 0.0]], [[1.0, 0.0], [0.0, 2.0]]).tolist()
    [[1.0, 0.0]]
    """
    a2 = np.atleast_2d(np.asarray(a, dtype=np.float32))
    b2 = np.atleast_2d(np.asarray(b, dtype=np.float32))
    if a2.shape[-1] != b2.shape[-1]:
        raise ValueError(f"dimensions differ: {a2.shape[-1]} vs {b2.shape[-1]}")
    return l2_normalize(a2) @ l2_normalize(b2).T


def rowwise_cosine(a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Cosine of row *i* of ``a`` with row *i* of ``b``, in float64 (the one copy every stage uses).

    A zero row gives cosine 0 instead of a division by zero.

    >>> rowwise_cosine([[1.0, 0.0], [0.0, 2.0]], [[2.0, 0.0], [1.0, 0.0]]).tolist()
    [1.0, 0.0]
    """
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a64.shape != b64.shape or a64.ndim != 2:
        raise ValueError(f"rowwise_cosine needs two 2-D arrays of the same shape, found {a64.shape} and {b64.shape}")
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    return (a64 * b64).sum(1) / np.maximum(norms, 1e-30)


def spearman(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Spearman's rank correlation in [-1, 1] (average ranks for ties), numpy only (the one copy the
    int8 gates and the bench use).

    >>> round(spearman([1.0, 2.0, 3.0], [10.0, 30.0, 20.0]), 3)
    0.5
    """

    def ranks(v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v), np.float64)
        r[order] = np.arange(len(v), dtype=np.float64)
        _, inv, counts = np.unique(v, return_inverse=True, return_counts=True)
        return np.bincount(inv, weights=r)[inv] / counts[inv]

    return float(np.corrcoef(ranks(np.asarray(x, np.float64)), ranks(np.asarray(y, np.float64)))[0, 1])

