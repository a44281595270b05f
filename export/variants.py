"""The build's variant stage: fused (O1-O4) and int8 files beside the fp32 export, validated, in the manifest."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..catalog import INT8_VARIANTS, variant_file
from ..errors import ValidationError
from ..manifest import variant_entry
from ..quantize.onnx_files import data_files
from .fusion import FUSION_LEVELS, fuse_model, fused_op_counts

__all__ = ["add_variants", "refusal", "FUSED_LOGIT_THRESHOLDS", "FUSED_THRESHOLDS", "validate_fused", "validate_fused_rerank"]

logger = logging.getLogger(__name__)

# Per level: (max |diff| of last_hidden_state on real tokens or None, min pooled cosine) against fp32.
FUSED_THRESHOLDS: dict[str, tuple[float | None, float]] = {
    "O1": (1e-4, 0.99999),
    "O2": (1e-4, 0.99999),
    "O3": (None, 0.99999),  # FastGelu (tanh approximation) changes the numbers slightly
    "O4": (None, 0.9999),  # fp16 weights, checked on the CPU provider
}


def _o4_structure(path: Path) -> list[str]:
    import onnx

    m = onnx.load(str(path))
    fails = []
    fp16 = sum(1 for i in m.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16)
    if fp16 == 0:
        fails.append(f"{path.name}: no fp16 initializers; expected fp16 weights")
    for vi in list(m.graph.input) + list(m.graph.output):
        t = vi.type.tensor_type.elem_type
        if t not in (onnx.TensorProto.INT64, onnx.TensorProto.FLOAT):
            fails.append(f"{path.name}: graph {vi.name} has element type {onnx.TensorProto.DataType.Name(t)}; expected fp32/int64 (keep_io_types)")
    return fails


def validate_fused(level: str, fused: Path, fp32: Path, enc: Any) -> tuple[dict[str, Any], list[str]]:
    """Compare a fused file with the fp32 export on the probe sentences (a padded batch)."""
    from ..export.validate import PROBE_SENTENCES
    from ..pooling import pool
    from ..quantize.reference import make_session
    from ..quantize.gates import cosines

    feeds = enc.feeds(list(PROBE_SENTENCES))
    mask = feeds["attention_mask"]
    ref = make_session(fp32).run(None, feeds)[0]
    got = make_session(fused).run(None, feeds)[0].astype(np.float32)
    real = mask.astype(bool)
    max_abs = float(np.abs(got - ref)[real].max())
    min_cos = float(cosines(pool(got, mask, enc.pooling, enc.normalize), pool(ref, mask, enc.pooling, enc.normalize)).min())
    lim_abs, lim_cos = FUSED_THRESHOLDS[level]
    figures: dict[str, Any] = {"reference": "fp32", "provider": "CPUExecutionProvider", "sentences": len(PROBE_SENTENCES),
                               "max_abs_diff": max_abs, "min_cosine": min_cos,
                               "thresholds": {"max_abs_diff": lim_abs, "min_cosine": lim_cos}}
    fails = []
    if lim_abs is not None and not max_abs <= lim_abs:
        fails.append(f"{level}: last_hidden_state max |diff| vs fp32 {max_abs:.3g} > {lim_abs:g}")
    if not min_cos >= lim_cos:
        fails.append(f"{level}: pooled embedding min cosine vs fp32 {min_cos:.7f} < {lim_cos}")
    return figures, fails


# A cross-encoder's fused files, per level: the largest |diff| of the logits against fp32 on the probe pairs.
FUSED_LOGIT_THRESHOLDS: dict[str, float] = {"O1": 1e-4, "O2": 1e-4, "O3": 1e-2, "O4": 5e-2}


def validate_fused_rerank(level: str, fused: Path, fp32: Path, enc: Any) -> tuple[dict[str, Any], list[str]]:
    """Compare a cross-encoder's fused file with its fp32 export: logits of the probe pairs (a padded batch)."""
    from ..quantize.reference import make_session
    from .validate_rerank import PROBE_PAIRS

    feeds = enc.pair_feeds(list(PROBE_PAIRS))
    ref = make_session(fp32).run(None, feeds)[0]
    got = make_session(fused).run(None, feeds)[0].astype(np.float32)
    max_abs, lim = float(np.abs(got - ref).max()), FUSED_LOGIT_THRESHOLDS[level]
    figures = {"reference": "fp32", "provider": "CPUExecutionProvider", "pairs": len(PROBE_PAIRS), "max_abs_diff": max_abs,
               "thresholds": {"max_abs_diff": lim}}
    return figures, ([] if max_abs <= lim else [f"{level}: logits max |diff| vs fp32 {max_abs:.3g} > {lim:g}"])


def add_variants(
    workdir: Path,
    manifest: dict[str, Any],
    variants: list[str],
    *,
    gates: dict[str, float] | None = None,
    calibration: str | Path | None = None,
    gate_data: str | Path | None = None,
    skip_gates: bool = False,
    progress: Callable[[str], None] | None = None,
    external_threshold: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Write ``onnx/model_<X>.onnx`` for each requested variant and record it in ``manifest['variants']``.

    An int8 file that fails its accuracy gates is refused, not raised: its file is removed, it is not in
    ``manifest['variants']``, and ``manifest['refused']`` records why (see :func:`refusal`), so the
    validated variants are still published.

    Args:
        workdir: the artifact folder being built (tokenizer files, config.json, onnx/model.onnx exist).
        manifest: the manifest dict being built (name, architecture, hidden_size, num_heads, pooling, ...).
        variants: any of ``O1``..``O4``, ``qint8_avx512_vnni``, ``quint8_avx2``, ``qint8_arm64``.
        gates: int8 gate overrides from models.yaml (defaults: :data:`onnxembed.quantize.DEFAULT_GATES`).
        calibration, gate_data, skip_gates: where the int8 texts come from (see
            :func:`onnxembed.quantize.quantize_model`).
        progress: called with a line at most every 30 s while an int8 file is judged.
        external_threshold: weights over this many bytes go to ``<file>_data`` (see
            :func:`onnxembed.quantize.onnx_files.save_model`); each such file is recorded in the variant's entry.

    Returns:
        The refused int8 variants (also ``manifest['refused']``): ``{variant: refusal record}``.

    Raises:
        ValidationError: a fused file differs from fp32 beyond its threshold (a fault of the optimizer,
            not a recipe's accuracy); one line per failure. All requested files are written and checked first.

    >>> add_variants(Path("build/x"), manifest, ["O2", "qint8_avx512_vnni"])  # doctest: +SKIP
    """
    from ..quantize import get_preset, quantize_model
    from ..quantize.reference import ReferenceEncoder

    workdir = Path(workdir)
    fp32 = workdir / "onnx" / "model.onnx"
    unknown = [v for v in variants if v not in FUSION_LEVELS and v not in INT8_VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; known: {list(FUSION_LEVELS) + list(INT8_VARIANTS)}")
    enc = ReferenceEncoder(workdir, manifest)
    failures: list[str] = []
    refused: dict[str, dict[str, Any]] = {}
    for v in variants:
        t0 = time.perf_counter()
        if v in FUSION_LEVELS:
            rel = variant_file(v)
            counts = fuse_model(fp32, workdir / rel, v, num_heads=int(manifest["num_heads"]), hidden_size=int(manifest["hidden_size"]),
                                architecture=manifest.get("architecture", "bert"), external_threshold=external_threshold)
            check = validate_fused_rerank if manifest.get("task") == "rerank" else validate_fused
            figures, fails = check(v, workdir / rel, fp32, enc)
            if FUSION_LEVELS[v].fp16:
                fails += _o4_structure(workdir / rel)
            failures += fails
            lv = FUSION_LEVELS[v]
            manifest["variants"][v] = variant_entry(
                workdir, rel, "fp16" if lv.fp16 else "fp32", lv.device, data_files=data_files(workdir / rel), fused_ops=counts, validation=figures,
                fusion={"optimizer": "onnxruntime.transformers.optimizer", "model_type": "bert", "ort_opt_level": lv.ort_level,
                        "transformer_fusions": lv.transformer_fusions, "gelu_approximation": lv.gelu_approximation,
                        "fp16_keep_io_types": lv.fp16},
                seconds=round(time.perf_counter() - t0, 2),
            )
        else:
            r = quantize_model(workdir, INT8_VARIANTS[v], manifest=manifest, gates=gates, check=False,
                               calibration=calibration, gate_data=gate_data, skip_gates=skip_gates, progress=progress,
                               external_threshold=external_threshold)
            if r.failures:
                refused[v] = refusal(r, time.perf_counter() - t0)
                for extra in data_files(r.path):  # its external data, if it had any
                    (r.path.parent / extra).unlink(missing_ok=True)
                r.path.unlink()
                logger.info("%s refused by its int8 gates: %s", v, "; ".join(r.failures))
                continue
            manifest["variants"][v] = variant_entry(
                workdir, variant_file(v), "int8", "cpu", data_files=data_files(r.path), cpu_feature=get_preset(r.preset).cpu_feature,
                fused_ops=fused_op_counts(r.path), recipe=r.recipe, accuracy=r.accuracy, seconds=round(time.perf_counter() - t0, 2),
            )
        logger.info("variant %s done in %.1f s", v, time.perf_counter() - t0)
    _store_identical_once(workdir, manifest["variants"])
    manifest["refused"] = refused
    if failures:
        raise ValidationError(f"variants of {manifest.get('name', workdir)} failed validation:", failures)
    return refused


def refusal(r: Any, seconds: float) -> dict[str, Any]:
    """The manifest's record of an int8 file refused by its gates (a :class:`~onnxembed.quantize.QuantizeResult`):
    the failing gates with figure and threshold, one line each, every figure, and the recipe that made it."""
    acc = r.accuracy
    return {
        "failed_gates": r.failed_gates,
        "failures": list(r.failures),
        "judged_on": {"sentences": acc["heldout_sentences"]} if "heldout_sentences" in acc else {"pairs": acc.get("heldout_pairs")},
        "accuracy": acc,
        "recipe": r.recipe,
        "seconds": round(seconds, 2),
    }


def _store_identical_once(workdir: Path, entries: dict[str, dict[str, Any]]) -> None:
    """Keep one copy of byte-identical model files (e.g. the arm64 and avx512_vnni int8 files).

    The later variant's entry points at the first file (``same_as`` names it) and its own file name
    becomes a relative symlink, so sentence-transformers' ``file_name="onnx/model_qint8_arm64.onnx"``
    still loads.
    """
    first: dict[str, str] = {}
    for name, e in entries.items():
        if e.get("data_files"):  # its graph names its own data file: never byte-identical to another variant's
            continue
        owner = first.setdefault(e["sha256"], name)
        if owner == name:
            continue
        dup = workdir / e["file"]
        target = entries[owner]["file"]
        dup.unlink()
        dup.symlink_to(os.path.relpath(workdir / target, dup.parent))
        e["file"], e["same_as"] = target, owner
        logger.info("%s is byte-identical to %s: stored once, %s links to it", name, owner, dup.name)
