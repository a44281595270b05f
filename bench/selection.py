"""Which variants of a folder the bench times, and loading them.

"The int8 file for this CPU" is the runtime's rule (:func:`onnxembed.providers.int8_variants_for_cpu`,
the one ``variant="int8"`` and ``"auto"`` use), so the bench never times by default a file the
runtime would refuse to pick, such as the AVX512-VNNI file on a CPU with AVX2 alone. Asked for by
name, such a file is timed, with a note, as ``Embedder.load(variant=NAME)`` would load it.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

from ..embedder import Embedder
from ..manifest import Manifest, Variant
from ..reranker import Reranker
from ..providers import CpuFeatures, int8_variants_for_cpu
from .result import VariantReport

__all__ = ["choose_variants", "load_variants", "model_class", "skip_reason"]

logger = logging.getLogger(__name__)

REFERENCE = "fp32"


def model_class(m: Manifest) -> type[Embedder] | type[Reranker]:
    """What loads the folder: :class:`Reranker` for a cross-encoder (``task: rerank``), else :class:`Embedder`."""
    return Reranker if m.task == Reranker.TASK else Embedder


def choose_variants(m: Manifest, variants: Sequence[str] | None, quick: bool, features: CpuFeatures) -> list[str]:
    """The variants to report, the fp32 reference first when the folder has it.

    Raises:
        ValueError: a requested variant is not in the folder (the message lists those present).
    """
    if variants:
        unknown = [v for v in variants if v not in m.variants]
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown} for {m.root}; present: {sorted(m.variants)}")
        names = list(dict.fromkeys(variants))
    elif quick:
        names = [REFERENCE, *int8_variants_for_cpu(m.variants, features)[:1]]
    else:
        names = list(m.variants)
    if REFERENCE in m.variants and REFERENCE not in names:
        names.insert(0, REFERENCE)
    return [n for n in names if n in m.variants]


def _other_cpu_int8(v: Variant, features: CpuFeatures, for_cpu: list[str]) -> str:
    """Why an int8 file is not this CPU's, or "" when it is (or is not int8)."""
    if v.precision != "int8" or v.name in for_cpu:
        return ""
    mine = f"this CPU ({features.int8_preset or 'no int8 preset'}) runs {for_cpu[0] if for_cpu else 'no int8 file here'}"
    return f"int8 file for another CPU; {mine}"


def skip_reason(v: Variant, providers: Sequence[Any] | None, include_gpu_formats: bool, features: CpuFeatures,
                for_cpu: list[str], explicit: bool) -> str:
    """Why ``v`` is not timed, or "". ``for_cpu``: the folder's int8 files for this CPU, best first."""
    wants_cuda = any((p if isinstance(p, str) else p[0]) == "CUDAExecutionProvider" for p in providers or [])
    if (v.device == "cuda" or v.precision == "fp16") and not wants_cuda and not include_gpu_formats:
        return "fp16 CUDA format, not timed on the CPU (include_gpu_formats=True / --include-gpu-formats to time it anyway)"
    other = _other_cpu_int8(v, features, for_cpu)
    if other and not explicit:
        return f"{other} (--variants {v.name} times it anyway)"
    return ""


def load_variants(m: Manifest, names: list[str], *, threads: int | None, providers: Sequence[Any] | None,
                  include_gpu_formats: bool, features: CpuFeatures, explicit: bool) -> tuple[dict[str, VariantReport], dict[str, Any]]:
    """A report per name and a model (Embedder or Reranker) per variant that loaded (skipped and failed ones carry a reason)."""
    for_cpu = int8_variants_for_cpu(m.variants, features)
    reports: dict[str, VariantReport] = {}
    embedders: dict[str, Any] = {}
    for name in names:
        v = m.variants[name]
        rep = reports[name] = VariantReport(name, v.file, round(v.total_size / 1e6, 1), v.precision, v.device)
        rep.reason = skip_reason(v, providers, include_gpu_formats, features, for_cpu, explicit)
        if rep.reason:
            rep.status = "skipped"
            continue
        other = _other_cpu_int8(v, features, for_cpu)
        rep.reason = f"{other}; timed because asked for" if other else ""
        emb = _load(m, name, threads, providers, rep)
        if emb is not None:
            embedders[name] = emb
    return reports, embedders


def _load(m: Manifest, name: str, threads: int | None, providers: Sequence[Any] | None, rep: VariantReport) -> Embedder | Reranker | None:
    t0 = time.perf_counter()
    try:
        emb = model_class(m).load(m.root, variant=name, providers=list(providers) if providers else None, threads=threads, verify=False)
    except Exception as e:  # onnxruntime raises its own exception types for graphs it cannot run
        rep.status, rep.reason = "failed", f"could not load: {str(e).splitlines()[0][:200]}"
        logger.warning("%s: %s", name, rep.reason)
        return None
    rep.load_s = time.perf_counter() - t0
    rep.providers = list(emb.providers)
    return emb
