"""The variants an artifact folder may hold: their names and file names, declared once.

Every stage reads these: the build writes them, the quantizer names its presets' files after them,
the runtime chooses among them. File names are the ones sentence-transformers and the Hugging Face
Hub use, so a folder loads in their tools too.

>>> variant_file("fp32"), variant_file("O2")
('onnx/model.onnx', 'onnx/model_O2.onnx')
"""

from __future__ import annotations

__all__ = ["FP32", "FUSED_VARIANTS", "INT8_VARIANTS", "ALL_VARIANTS", "int8_variant_for", "variant_file"]

FP32 = "fp32"
# Graph fusion levels (onnxruntime.transformers.optimizer): O1 basic, O2 transformer fusions,
# O3 + GELU approximation, O4 + fp16 weights (for GPUs).
FUSED_VARIANTS: tuple[str, ...] = ("O1", "O2", "O3", "O4")
# int8 variant -> the CPU family (quantize preset) it is made for.
INT8_VARIANTS: dict[str, str] = {"qint8_avx512_vnni": "avx512_vnni", "quint8_avx2": "avx2", "qint8_arm64": "arm64"}
ALL_VARIANTS: tuple[str, ...] = (FP32, *FUSED_VARIANTS, *INT8_VARIANTS)


def variant_file(name: str) -> str:
    """The file of a variant inside an artifact folder."""
    if name not in ALL_VARIANTS:
        raise ValueError(f"unknown variant {name!r}; known: {list(ALL_VARIANTS)}")
    return "onnx/model.onnx" if name == FP32 else f"onnx/model_{name}.onnx"


def int8_variant_for(preset: str) -> str:
    """The int8 variant made for a CPU family (``avx512_vnni``, ``avx2``, ``arm64``)."""
    for variant, p in INT8_VARIANTS.items():
        if p == preset:
            return variant
    raise ValueError(f"unknown int8 preset {preset!r}; known: {sorted(INT8_VARIANTS.values())}")
