"""Numeric checks of an exported cross-encoder against PyTorch and sentence-transformers' CrossEncoder."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import numpy.typing as npt

from ..errors import ValidationError
from ..scores import activate
from .registry import ModelSpec
from .validate import MAX_ABS_DIFF, PROBE_SENTENCES

__all__ = ["PROBE_PAIRS", "tokenize_probe_pairs", "validate_reranker_against_torch"]

logger = logging.getLogger(__name__)

# Query/document pairs of very different lengths (real padding), relevant and not, and one document
# longer than any model's window (its truncation is part of what is compared).
PROBE_PAIRS: tuple[tuple[str, str], ...] = (
    ("How many people live in Berlin?", "Berlin has a population of 3,520,031 registered inhabitants."),
    ("How many people live in Berlin?", "A man is playing a guitar."),
    ("what is onnx runtime", PROBE_SENTENCES[-1]),
    ("中文 query 🙂", PROBE_SENTENCES[3]),
    ("ok", "ok"),
    ("Which fox jumps?", " ".join([PROBE_SENTENCES[1]] * 80)),
)


def tokenize_probe_pairs(checkpoint: Path, spec: ModelSpec, pairs: Sequence[tuple[str, str]] = PROBE_PAIRS) -> dict[str, npt.NDArray[np.int64]]:
    """The probe pairs as one padded batch with the graph's inputs (the transformers tokenizer, longest_first)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(checkpoint))
    enc = tok([a for a, _ in pairs], [b for _, b in pairs], padding=True, truncation=True, max_length=spec.max_length, return_tensors="np")
    return {name: enc[name].astype(np.int64) for name in spec.input_names}


def validate_reranker_against_torch(onnx_path: Path, checkpoint: Path, spec: ModelSpec) -> dict[str, Any]:
    """Compare a cross-encoder's fp32 export with PyTorch and with ``CrossEncoder.predict`` on :data:`PROBE_PAIRS`.

    Three figures, each a max |diff| that must be <= :data:`MAX_ABS_DIFF`: the logits against
    ``AutoModelForSequenceClassification``, the logits against ``CrossEncoder.predict`` with an identity
    activation (its own tokenization and batching), and the scores after the manifest's activation
    against ``CrossEncoder.predict`` as it runs by default. Raises ValidationError, one line per failure.
    """
    import onnxruntime as ort
    import torch
    from sentence_transformers import CrossEncoder
    from transformers import AutoModelForSequenceClassification

    feeds = tokenize_probe_pairs(checkpoint, spec)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ours = sess.run(["logits"], feeds)[0]
    model = AutoModelForSequenceClassification.from_pretrained(str(checkpoint)).eval()
    with torch.no_grad():
        ref = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()
    ce = CrossEncoder(str(checkpoint), device="cpu", max_length=spec.max_length)
    pairs = [list(p) for p in PROBE_PAIRS]
    ce_logits = np.asarray(ce.predict(pairs, batch_size=2, activation_fn=torch.nn.Identity(), show_progress_bar=False), np.float32)
    ce_scores = np.asarray(ce.predict(pairs, batch_size=2, show_progress_bar=False), np.float32)
    scores = activate(ours, spec.activation)
    figures = {
        "reference": "pytorch",
        "pairs": len(PROBE_PAIRS),
        "max_abs_diff": float(np.abs(ours - ref).max()),
        "crossencoder_max_abs_diff": float(np.abs(ours.reshape(ce_logits.shape) - ce_logits).max()),
        "scores_max_abs_diff": float(np.abs(scores.reshape(ce_scores.shape) - ce_scores).max()),
        "activation": spec.activation,
        "crossencoder_activation": type(ce.activation_fn).__name__,
        "thresholds": {"max_abs_diff": MAX_ABS_DIFF},
    }
    failures = [
        f"{what}: max |diff| {figures[key]:.3g} > {MAX_ABS_DIFF:g}"
        for key, what in (("max_abs_diff", "logits vs PyTorch"), ("crossencoder_max_abs_diff", "logits vs CrossEncoder.predict"),
                          ("scores_max_abs_diff", f"{spec.activation} scores vs CrossEncoder.predict ({figures['crossencoder_activation']})"))
        if not figures[key] <= MAX_ABS_DIFF
    ]
    if failures:
        raise ValidationError(f"{onnx_path} does not reproduce the cross-encoder {checkpoint}:", failures)
    logger.info("validated %s: logits max|diff| %.2e vs PyTorch, %.2e vs CrossEncoder", onnx_path.name,
                figures["max_abs_diff"], figures["crossencoder_max_abs_diff"])
    return figures
