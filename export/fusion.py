"""Graph fusion: the fp32 export -> ``model_O1.onnx`` .. ``model_O4.onnx`` with onnxruntime's transformers optimizer.

The levels follow optimum's ``AutoOptimizationConfig`` so the files mean what the Hub's files of the
same name mean:

- ``O1``: onnxruntime's basic graph optimizations only (constant folding, redundant nodes); no
  transformer fusions.
- ``O2``: onnxruntime's extended optimizations plus the transformer fusions (Attention,
  SkipLayerNormalization, EmbedLayerNormalization, BiasGelu).
- ``O3``: ``O2`` with GELU replaced by the tanh approximation (FastGelu).
- ``O4``: ``O3`` with fp16 weights and fp32 graph inputs and outputs (``keep_io_types``): a CUDA file.

DistilBERT goes through the ``bert`` optimizer too (its graph is the same pattern without
token_type_ids). Heads and hidden size come from the checkpoint's config, never auto-detection.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..quantize.onnx_files import save_model

__all__ = ["FUSABLE", "ORT_ONLY", "FUSION_LEVELS", "FusionLevel", "fuse_model", "fused_op_counts", "FUSED_OP_TYPES"]

logger = logging.getLogger(__name__)

# The operators a fusion produces; counted in the manifest and asserted by the tests.
FUSED_OP_TYPES = (
    "Attention",
    "MultiHeadAttention",
    "EmbedLayerNormalization",
    "SkipLayerNormalization",
    "SkipSimplifiedLayerNormalization",
    "SimplifiedLayerNormalization",
    "GroupQueryAttention",
    "RotaryEmbedding",
    "QuickGelu",
    "MatMulNBits",
    "LayerNormalization",
    "BiasGelu",
    "FastGelu",
    "Gelu",
    "FusedMatMul",
    "QAttention",
    "MatMulInteger",
    "DynamicQuantizeMatMul",
    "DynamicQuantizeLinear",
    "QLinearMatMul",
    "QuantizeLinear",
    "DequantizeLinear",
    "MatMul",
)


# Architectures the BERT fusions are run on (XLM-RoBERTa and RoBERTa are BERT-shaped; their position ids,
# counted from padding_idx + 1, are matched by onnxruntime's RoBERTa embedding pattern).
FUSABLE = ("bert", "distilbert", "mpnet", "xlm-roberta", "roberta", "modernbert")
# Decoders get onnxruntime's own graph fusions only: on Qwen3 its extended level fuses RMSNorm into
# SimplifiedLayerNormalization (4 per layer with the q/k norms, + 1) and SiLU into QuickGelu; the Python BERT
# fusions match nothing (no Attention or GroupQueryAttention for a cache-less graph) and there is no GELU for O3.
ORT_ONLY = ("qwen3",)


@dataclass(frozen=True)
class FusionLevel:
    """What one O-level turns on.

    Attributes:
        ort_level: onnxruntime graph optimization level run first (1 basic, 2 extended).
        transformer_fusions: run the Python transformer fusions (Attention, SkipLayerNormalization, ...).
        gelu_approximation: replace exact GELU by the tanh approximation (FastGelu).
        fp16: convert weights to fp16, keeping fp32 graph inputs and outputs.
        device: the manifest's ``device`` for the file.
    """

    ort_level: int
    transformer_fusions: bool
    gelu_approximation: bool = False
    fp16: bool = False
    device: str = "cpu"


FUSION_LEVELS: dict[str, FusionLevel] = {
    "O1": FusionLevel(ort_level=1, transformer_fusions=False),
    "O2": FusionLevel(ort_level=2, transformer_fusions=True),
    "O3": FusionLevel(ort_level=2, transformer_fusions=True, gelu_approximation=True),
    # fp16 is a GPU format: the onnxruntime pass is skipped (level 0) so no CPU-only kernel lands in it.
    "O4": FusionLevel(ort_level=0, transformer_fusions=True, gelu_approximation=True, fp16=True, device="cuda"),
}


def fused_op_counts(model: Any) -> dict[str, int]:
    """Count the fusion-relevant operators of a model (an ``onnx.ModelProto`` or a path).

    Returns a dict with every type of :data:`FUSED_OP_TYPES` present (sorted by name), e.g.
    ``{"Attention": 6, "SkipLayerNormalization": 12, ...}``.
    """
    import onnx

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    counts = Counter(n.op_type for n in model.graph.node if n.op_type in FUSED_OP_TYPES)
    return {k: counts[k] for k in sorted(counts)}


def _fusion_options(architecture: str, level: FusionLevel, *, embed_layer_norm: bool) -> Any:
    from onnxruntime.transformers.fusion_options import FusionOptions

    opts = FusionOptions("bert")
    opts.enable_gelu_approximation = level.gelu_approximation
    # EmbedLayerNormalization needs token_type_ids-shaped inputs the DistilBERT graph does not have and
    # it has no int8 kernel: the quantization source turns it off.
    opts.enable_embed_layer_norm = embed_layer_norm and architecture == "bert"
    return opts


def fuse_model(
    src: str | Path,
    dst: str | Path,
    level: str,
    *,
    num_heads: int,
    hidden_size: int,
    architecture: str = "bert",
    embed_layer_norm: bool = True,
    external_threshold: int | None = None,
) -> dict[str, int]:
    """Write the ``level`` fusion of the fp32 export ``src`` to ``dst``.

    Args:
        src: the plain fp32 ONNX export.
        dst: the file to write (with ``<dst>_data`` beside it when the weights pass ``external_threshold``).
        level: ``O1``, ``O2``, ``O3`` or ``O4`` (see :data:`FUSION_LEVELS`).
        num_heads: attention heads, from the checkpoint's config.
        hidden_size: hidden size, from the checkpoint's config.
        architecture: one of :data:`FUSABLE`; all use onnxruntime's ``bert`` optimizer.
        embed_layer_norm: allow the EmbedLayerNormalization fusion (off for a graph to be quantized).
        external_threshold: see :func:`onnxembed.quantize.onnx_files.save_model`.

    Returns:
        The fused operator counts of the written file (see :func:`fused_op_counts`).

    >>> fuse_model("onnx/model.onnx", "onnx/model_O2.onnx", "O2", num_heads=12, hidden_size=384)  # doctest: +SKIP
    {'Attention': 6, 'BiasGelu': 6, 'EmbedLayerNormalization': 1, 'MatMul': 24, 'SkipLayerNormalization': 12}
    """
    from onnxruntime.transformers.optimizer import optimize_model

    if level not in FUSION_LEVELS:
        raise ValueError(f"unknown fusion level {level!r}; known: {list(FUSION_LEVELS)}")
    if architecture not in FUSABLE + ORT_ONLY:
        raise ValueError(f"unknown architecture {architecture!r}; known: {list(FUSABLE + ORT_ONLY)}")
    if num_heads <= 0 or hidden_size <= 0 or hidden_size % num_heads:
        raise ValueError(f"num_heads={num_heads}, hidden_size={hidden_size}: hidden_size must be a positive multiple of num_heads")
    lv = FUSION_LEVELS[level]
    if architecture in ORT_ONLY and lv.gelu_approximation and not lv.fp16:
        raise ValueError(f"{level} replaces GELU by its tanh approximation; {architecture} has no GELU (SiLU), so {level} would be O2")
    optimizer = optimize_model(
        str(src),
        model_type="bert",
        num_heads=num_heads,
        hidden_size=hidden_size,
        optimization_options=_fusion_options(architecture, lv, embed_layer_norm=embed_layer_norm),
        opt_level=lv.ort_level,
        use_gpu=False,
        only_onnxruntime=not lv.transformer_fusions or architecture in ORT_ONLY,
    )
    if lv.fp16:
        optimizer.convert_float_to_float16(keep_io_types=True)
    optimizer.topological_sort()
    model = optimizer.model
    if any(n.domain == "com.microsoft" for n in model.graph.node) and not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.add(domain="com.microsoft", version=1)  # as the optimizer's own save does
    dst = Path(dst)
    save_model(model, dst, external_threshold=external_threshold)  # an external-data src is read whole by the optimizer
    counts = fused_op_counts(optimizer.model)
    logger.info("%s: %s -> %s %s", level, Path(src).name, dst.name, counts)
    return counts
