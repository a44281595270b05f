"""Numeric checks of an exported file against PyTorch and sentence-transformers."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ValidationError
from ..pooling import pool, rowwise_cosine
from ..quantize.reference import graph_feeds
from .registry import ModelSpec

__all__ = ["PROBE_SENTENCES", "validate_against_torch", "tokenize_probe", "MAX_ABS_DIFF", "MIN_COSINE"]

logger = logging.getLogger(__name__)

MAX_ABS_DIFF = 1e-4
MIN_COSINE = 0.99999

# Fixed probe sentences of very different lengths, so the padded batch has real padding.
PROBE_SENTENCES: tuple[str, ...] = (
    "A man is playing a guitar.",
    "The quick brown fox jumps over the lazy dog.",
    "query: how do I export a sentence-transformers model to ONNX?",
    "Ünïcödé text, accents, 中文字符 and emoji 🙂 go through the same WordPiece vocabulary.",
    "ok",
    " ".join(
        ["ONNX Runtime fuses attention, layer normalization and GELU into single operators,"]
        + ["and dynamic int8 quantization then shrinks the MatMul weights to a quarter of their size."] * 8
    ),
)


def tokenize_probe(checkpoint: Path, spec: ModelSpec, sentences: tuple[str, ...] = PROBE_SENTENCES) -> dict[str, npt.NDArray[np.int64]]:
    """The probe sentences as one padded batch, with exactly the graph's inputs."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(checkpoint))
    enc = tok(list(sentences), padding=True, truncation=True, max_length=spec.max_length, return_tensors="np")
    return graph_feeds(enc, spec.input_names)


def validate_against_torch(onnx_path: Path, checkpoint: Path, spec: ModelSpec) -> dict[str, Any]:
    """Compare an fp32 export with PyTorch (last_hidden_state) and sentence-transformers (pooled).

    Returns the figures for the manifest; raises ValidationError with one line per failing output.
    """
    import onnxruntime as ort
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoModel

    feeds = tokenize_probe(checkpoint, spec)
    mask = feeds["attention_mask"]
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_hidden = sess.run(["last_hidden_state"], feeds)[0]

    model = AutoModel.from_pretrained(str(checkpoint)).eval()
    with torch.no_grad():
        torch_hidden = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).last_hidden_state.numpy()
    real = mask.astype(bool)
    max_abs = float(np.abs(onnx_hidden - torch_hidden)[real].max())

    modules = [
        models.Transformer(str(checkpoint), max_seq_length=spec.max_length),
        models.Pooling(spec.hidden_size, pooling_mode=spec.pooling),
    ]
    if spec.normalize:
        modules.append(models.Normalize())
    st_model = SentenceTransformer(modules=modules, device="cpu")
    st_emb = st_model.encode(list(PROBE_SENTENCES), batch_size=len(PROBE_SENTENCES), convert_to_numpy=True, show_progress_bar=False)
    ours = pool(onnx_hidden, mask, spec.pooling, spec.normalize)
    min_cos = float(rowwise_cosine(ours, st_emb).min())
    pooled_max_abs = float(np.abs(ours - st_emb).max())

    figures = {
        "reference": "pytorch",
        "sentences": len(PROBE_SENTENCES),
        "max_abs_diff": max_abs,
        "pooled_max_abs_diff": pooled_max_abs,
        "min_cosine": min_cos,
        "thresholds": {"max_abs_diff": MAX_ABS_DIFF, "min_cosine": MIN_COSINE},
    }
    failures = []
    if not max_abs <= MAX_ABS_DIFF:
        failures.append(f"last_hidden_state: max |diff| vs PyTorch {max_abs:.3g} > {MAX_ABS_DIFF:g}")
    if not min_cos >= MIN_COSINE:
        failures.append(f"pooled embedding: min cosine vs sentence-transformers {min_cos:.7f} < {MIN_COSINE}")
    if failures:
        raise ValidationError(f"{onnx_path} does not reproduce {checkpoint}:", failures)
    logger.info("validated %s: max|diff| %.2e, min cosine %.8f", onnx_path.name, max_abs, min_cos)
    return figures
