"""int8 presets (one per target CPU family) and the accuracy gates the build enforces."""

from __future__ import annotations

from dataclasses import dataclass

from ..catalog import int8_variant_for, variant_file
from .qdq import QuantScheme

__all__ = ["Preset", "PRESETS", "DEFAULT_GATES", "get_preset", "merge_gates"]


@dataclass(frozen=True)
class Preset:
    """A named int8 target.

    Attributes:
        name: ``avx512_vnni``, ``avx2`` or ``arm64``.
        variant: the manifest variant key (also the file's suffix: ``onnx/model_<variant>.onnx``).
        cpu_feature: what the manifest records as ``cpu_feature``.
        scheme: storage of weights and activations.
    """

    name: str
    variant: str
    cpu_feature: str
    scheme: QuantScheme

    @property
    def file(self) -> str:
        """The file inside the artifact folder, as sentence-transformers names it."""
        return variant_file(self.variant)


# Row scales for the activations whose static scale loses most (see qdq.row_scaled_activations); measured on
# all-MiniLM-L6-v2 (benchmarks/quant_recipes.py): 1.5 picks the FFN-output inputs of layers 0-4.
ROW_SCALE_RATIO = 1.5
# ... and for the activations whose range on the dev texts outgrew the calibrated one by more than 10 %
# (all-mpnet-base-v2: the last layer's GELU output, 1.38x; its held-out min cosine 0.960 -> 0.983).
ROW_RANGE_GROWTH = 1.1

PRESETS: dict[str, Preset] = {
    # u8 activations x s8 weights: the VNNI (vpdpbusd) kernel; also what AMX and OpenVINO take.
    "avx512_vnni": Preset("avx512_vnni", int8_variant_for("avx512_vnni"), "avx512_vnni", QuantScheme(weight_dtype="int8", row_scale_ratio=ROW_SCALE_RATIO, row_range_growth=ROW_RANGE_GROWTH)),
    # Without VNNI, u8 x s8 pairs are summed in saturating int16: 7-bit weights stored as uint8
    # (onnxruntime then picks its u8u8 kernel), as optimum's avx2 preset does.
    "avx2": Preset("avx2", int8_variant_for("avx2"), "avx2", QuantScheme(weight_dtype="uint8", reduce_range=True, row_scale_ratio=ROW_SCALE_RATIO, row_range_growth=ROW_RANGE_GROWTH)),
    "arm64": Preset("arm64", int8_variant_for("arm64"), "arm64", QuantScheme(weight_dtype="int8", row_scale_ratio=ROW_SCALE_RATIO, row_range_growth=ROW_RANGE_GROWTH)),
}

# Defaults of the build's int8 gates; models.yaml overrides them per model (field ``gates``).
DEFAULT_GATES: dict[str, float] = {
    "mean_cosine": 0.997,  # int8 vs fp32 pooled embeddings, held-out sentences (all of STS-B test and STS12-16)
    "min_cosine": 0.98,
    "stsb_spearman_drop": 0.5,  # STS-B test Spearman x100, fp32 minus int8
    "batch_stability": 0.999,  # a text alone vs inside a padded batch of long texts
}


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (or by its variant key, e.g. ``qint8_avx512_vnni``)."""
    for p in PRESETS.values():
        if name in (p.name, p.variant):
            return p
    raise ValueError(f"unknown int8 preset {name!r}; known: {list(PRESETS)} (or variants {[p.variant for p in PRESETS.values()]})")


def merge_gates(overrides: dict[str, float] | None, task: str = "embed") -> dict[str, float]:
    """The default gates of ``task`` (an encoder's, or a cross-encoder's: ``rerank``) with a model's
    overrides applied; unknown keys are an error."""
    from .rerank import RERANK_GATES

    defaults = RERANK_GATES if task == "rerank" else DEFAULT_GATES
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ValueError(f"unknown gate(s) {unknown} for task {task!r}; known: {list(defaults)} (models.yaml field 'gates', "
                         "or gates= of quantize_model)")
    return {**defaults, **{k: float(v) for k, v in overrides.items()}}
