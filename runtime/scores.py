"""A cross-encoder's logits -> scores, as pure numpy functions (what sentence-transformers' CrossEncoder
applies in ``predict``: its ``activation_fn``, sigmoid for one label, identity otherwise)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import numpy.typing as npt

__all__ = ["ACTIVATIONS", "activate", "sigmoid", "softmax"]

F32 = npt.NDArray[np.float32]


def sigmoid(x: F32) -> F32:
    """Logistic function, stable for large |x| (no overflow warning)."""
    x = np.asarray(x, dtype=np.float32)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)


def softmax(x: F32) -> F32:
    """Softmax over the last axis (the labels)."""
    x = np.asarray(x, dtype=np.float32)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


ACTIVATIONS: dict[str, Callable[[F32], F32]] = {
    "sigmoid": sigmoid,
    "identity": lambda x: np.asarray(x, dtype=np.float32),
    "softmax": softmax,
}


def activate(logits: F32, activation: str) -> F32:
    """Scores from logits of shape ``(n, labels)``: the activation, then ``(n,)`` for a single label.

    >>> activate(np.array([[0.0], [2.0]], np.float32), "sigmoid").round(4).tolist()
    [0.5, 0.8808]
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; known: {sorted(ACTIVATIONS)}")
    out = ACTIVATIONS[activation](logits)
    return out[:, 0] if out.ndim == 2 and out.shape[1] == 1 else out
