"""Which model file to run on which execution provider, and catching a provider that silently fell back.

Pure functions over data (the manifest's variants, the CPU's features, the installed providers), so
the choice is unit-tested without a GPU. The :class:`~onnxembed.Embedder` tries the plans in order.

``variant="auto"``:

1. CUDA installed and working -> ``O4`` (fp16), else the plain fp32 file, on CUDA (never int8).
2. A CPU with AMX and ``onnxruntime-openvino`` installed -> the plain fp32 file on OpenVINO with bf16
   inference precision (``load_config``; ``precision="BF16"`` is rejected by the CPU plugin and the
   session silently falls back to the CPU provider). With OpenVINO but no AMX, on an AVX512-VNNI
   CPU -> the static int8 (QDQ) file on OpenVINO, which runs it as int8 (bf16 without AMX tiles is
   slower there, and OpenVINO beat the CPU provider on the same int8 file).
3. The CPU provider: the int8 file for the CPU's instruction set (AVX512-VNNI, AVX2, arm64), else
   the best fused fp32 file (``O2``, ``O1``, then ``fp32``). Never an fp16 file on the CPU.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

from .catalog import int8_variant_for
from .errors import ManifestError, ProviderUnavailableError
from .manifest import Variant

__all__ = [
    "CPU",
    "CUDA",
    "OPENVINO",
    "CpuFeatures",
    "Plan",
    "ProviderSpec",
    "auto_plans",
    "default_max_tokens",
    "detect_cpu_features",
    "explicit_plan",
    "fallen_back",
    "int8_variants_for_cpu",
    "normalize_providers",
    "parse_cpu_flags",
    "resolve_variant",
]

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
OPENVINO = "OpenVINOExecutionProvider"

# Padded tokens per batch (rows x longest) when the caller gives no budget, by the provider that runs.
# The CPU provider is fastest per text at about 1,000 tokens (the activations of a batch stay in cache):
# measured on 2 Zen 4 cores against one 32 x 128 run, 768-wide fp32 1.13-1.17x and int8 1.07-1.13x faster
# per text, MiniLM 1.0-1.23x depending on the host's load, never slower beyond noise
# (benchmarks/BATCH-BUDGET.md). OpenVINO measured flat across budgets; GPUs want large batches.
MAX_TOKENS_BY_PROVIDER = {CPU: 1024, OPENVINO: 8192, CUDA: 8192}
GPU_PROVIDERS = (CUDA, "TensorrtExecutionProvider", "ROCMExecutionProvider", "MIGraphXExecutionProvider")
OPENVINO_BF16_OPTIONS = {"device_type": "CPU", "load_config": json.dumps({"CPU": {"INFERENCE_PRECISION_HINT": "bf16"}})}
FEATURES_ENV = "ONNXEMBED_CPU_FEATURES"

# Per CPU int8 preset, the int8 files that run well on it, best first. An AVX512-VNNI CPU also has
# AVX2, so the avx2 file is its fallback; the VNNI file (no reduce_range) is not safe on AVX2 alone.
INT8_BY_PRESET: dict[str, tuple[str, ...]] = {
    "avx512_vnni": (int8_variant_for("avx512_vnni"), int8_variant_for("avx2")),
    "avx2": (int8_variant_for("avx2"),),
    "arm64": (int8_variant_for("arm64"),),
}
FUSED_FP32_ORDER = ("O2", "O1", "fp32")
# The static (QDQ) int8 file OpenVINO runs as int8 on VNNI CPUs; measured on an AVX512-VNNI CPU
# without AMX (benchmarks/RESULTS.md): 1.5x the same file on the CPU provider, same embeddings.
OPENVINO_INT8 = int8_variant_for("avx512_vnni")
# On AMX with OpenVINO in bf16, the fused O2 graph (OpenVINO takes its Attention/SkipLayerNorm ops whole)
# ran 4.06x the CPU provider's fp32 against 3.41x for the plain fp32 file (bare sessions, 2-core AMX
# Xeon, issue 12); same accuracy (min cosine 0.99998).
AMX_BF16_ORDER = ("O2", "fp32")
LAST_RESORT = "last resort"
INSTALL_HINT = {
    CUDA: "pip install onnxruntime-gpu (in an environment without the plain onnxruntime package), with CUDA and cuDNN",
    OPENVINO: "pip install onnxruntime-openvino (in an environment without the plain onnxruntime package)",
}

ProviderSpec = Union[str, "tuple[str, Mapping[str, Any]]"]


# --------------------------------------------------------------------------------------------- CPU


@dataclass(frozen=True)
class CpuFeatures:
    """What the CPU can do, as far as the choice of model file goes.

    Attributes:
        machine: ``platform.machine()`` (``x86_64``, ``AMD64``, ``aarch64``, ``arm64``).
        flags: the lower-case feature flags (``/proc/cpuinfo`` on Linux; empty where unknown).
    """

    machine: str
    flags: frozenset[str] = field(default_factory=frozenset)

    @property
    def arm64(self) -> bool:
        return self.machine.lower() in ("arm64", "aarch64", "armv8", "armv8l") or "arm64" in self.flags

    @property
    def avx2(self) -> bool:
        return "avx2" in self.flags

    @property
    def avx512_vnni(self) -> bool:
        return "avx512_vnni" in self.flags

    @property
    def amx(self) -> bool:
        """AMX tiles with bf16 (what OpenVINO's bf16 precision uses); amx_int8 alone does not count."""
        return "amx_tile" in self.flags and "amx_bf16" in self.flags

    @property
    def int8_preset(self) -> str | None:
        """``avx512_vnni``, ``avx2``, ``arm64``, or None when no int8 file suits this CPU."""
        if self.arm64:
            return "arm64"
        if self.avx512_vnni:
            return "avx512_vnni"
        if self.avx2:
            return "avx2"
        return None


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """Feature flags from the text of ``/proc/cpuinfo`` (``flags`` on x86, ``Features`` on ARM).

    >>> sorted(parse_cpu_flags("processor : 0\\nflags : fpu avx2 avx512_vnni\\n"))
    ['avx2', 'avx512_vnni', 'fpu']
    """
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return frozenset(value.lower().split())
    return frozenset()


def detect_cpu_features(cpuinfo: str | Path | None = None, machine: str | None = None) -> CpuFeatures:
    """Read the CPU's features with the standard library only.

    The environment variable ``ONNXEMBED_CPU_FEATURES`` (comma-separated flags, e.g.
    ``avx2,avx512_vnni``, or ``none``) overrides the detected flags, for containers whose
    ``/proc/cpuinfo`` misreports and for tests. Outside Linux the flags are unknown, so the choice
    falls to the fused fp32 file on x86 (and the arm64 int8 file on ARM).

    Args:
        cpuinfo: another cpuinfo file (default ``/proc/cpuinfo``).
        machine: override ``platform.machine()``.
    """
    mach = machine or platform.machine()
    override = os.environ.get(FEATURES_ENV)
    if override is not None:
        flags = frozenset(f.strip().lower() for f in override.split(",") if f.strip() and f.strip().lower() != "none")
        return CpuFeatures(mach, flags)
    if cpuinfo is None:
        return _detect_default(mach)
    return CpuFeatures(mach, _read_flags(Path(cpuinfo)))


@lru_cache(maxsize=4)
def _detect_default(machine: str) -> CpuFeatures:
    flags = _read_flags(Path("/proc/cpuinfo")) if sys.platform.startswith("linux") else frozenset()
    return CpuFeatures(machine, flags)


def _read_flags(path: Path) -> frozenset[str]:
    try:
        return parse_cpu_flags(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return frozenset()


# ---------------------------------------------------------------------------------------- providers


def normalize_providers(providers: str | Sequence[ProviderSpec]) -> list[tuple[str, dict[str, Any]]]:
    """``"CUDAExecutionProvider"`` / ``["A", ("B", {...})]`` -> ``[(name, options), ...]``.

    Raises:
        TypeError: an entry is neither a name nor a (name, options) pair.
        ValueError: an empty list.
    """
    items = [providers] if isinstance(providers, str) else list(providers)
    if not items:
        raise ValueError("providers is empty; pass None for automatic choice, or e.g. ['CPUExecutionProvider']")
    out: list[tuple[str, dict[str, Any]]] = []
    for i, p in enumerate(items):
        if isinstance(p, str):
            out.append((p, {}))
        elif isinstance(p, (tuple, list)) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], Mapping):
            out.append((p[0], dict(p[1])))
        else:
            raise TypeError(f"providers[{i}] should be a provider name or a (name, options dict) pair, found {p!r}")
    return out


def check_installed(requested: Sequence[tuple[str, dict[str, Any]]], available: Sequence[str]) -> None:
    """Raise ProviderUnavailableError for a requested provider that this onnxruntime does not have."""
    for name, _ in requested:
        if name not in available:
            hint = INSTALL_HINT.get(name, "install the onnxruntime package built with it")
            raise ProviderUnavailableError(
                f"execution provider {name!r} is not available in this onnxruntime; available: {list(available)}; "
                f"to get it: {hint}"
            )


def fallen_back(requested: Sequence[str], actual: Sequence[str]) -> list[str]:
    """The requested providers that the session is not using (the CPU provider never counts).

    onnxruntime may create a session on the CPU with only a log line when, say, the CUDA libraries
    are missing; compare what was asked with ``session.get_providers()``.

    >>> fallen_back(["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"])
    ['CUDAExecutionProvider']
    """
    return [p for p in requested if p != CPU and p not in actual]


# ------------------------------------------------------------------------------------------ choice


@dataclass(frozen=True)
class Plan:
    """One (model file, providers) pair to try.

    Attributes:
        variant: the manifest's variant key.
        providers: what to pass to ``onnxruntime.InferenceSession(providers=...)``.
        reason: why this plan, for the logs.
        last_resort: the plan is a poor fit (e.g. int8 made for another CPU): logged as a warning.
    """

    variant: str
    providers: tuple[tuple[str, dict[str, Any]], ...]
    reason: str
    last_resort: bool = False

    @property
    def provider_names(self) -> list[str]:
        return [name for name, _ in self.providers]


def int8_variants_for_cpu(variants: Mapping[str, Variant] | Sequence[str], features: CpuFeatures) -> list[str]:
    """The int8 variants present that suit this CPU, best first: the rule ``variant="int8"`` and ``"auto"`` use.

    An int8 file built for another instruction set is never listed: the AVX512-VNNI file (no
    ``reduce_range``) can overflow on a CPU with AVX2 alone, and the arm64 file is for arm64.

    >>> int8_variants_for_cpu(["fp32", "qint8_avx512_vnni"], CpuFeatures("x86_64", frozenset({"avx2"})))
    []
    """
    return [key for key in INT8_BY_PRESET.get(features.int8_preset or "", ()) if key in variants]


def _cpu_variant(variants: Mapping[str, Variant], features: CpuFeatures) -> tuple[str, str, bool]:
    preset = features.int8_preset
    int8 = int8_variants_for_cpu(variants, features)
    if int8:
        return int8[0], f"int8 file for this CPU ({preset})", False
    for key in FUSED_FP32_ORDER:
        if key in variants:
            why = "no int8 file for this CPU" if preset else "CPU without AVX2/AVX512-VNNI/arm64 int8 support"
            return key, f"fp32 file ({why})", False
    fp32 = sorted(k for k, v in variants.items() if v.precision == "fp32")
    if fp32:
        return fp32[0], "fp32 file", False
    other = sorted(k for k, v in variants.items() if v.precision == "int8")
    if other:
        return other[0], f"{LAST_RESORT}: the only CPU file is int8 for another CPU ({other[0]}); expect lower accuracy or speed", True
    raise ManifestError(
        f"no variant runs on the CPU provider: present {sorted(variants)} (fp16 files need CUDA); "
        "rebuild with --variants fp32"
    )


def _gpu_variant(variants: Mapping[str, Variant]) -> str | None:
    if "O4" in variants:
        return "O4"
    cuda = sorted(k for k, v in variants.items() if v.device == "cuda" and v.precision != "int8")
    if cuda:
        return cuda[0]
    return "fp32" if "fp32" in variants else None


def auto_plans(variants: Mapping[str, Variant], available: Sequence[str], features: CpuFeatures) -> list[Plan]:
    """The plans ``variant="auto"`` tries, best first; the last one is always on the CPU provider."""
    plans: list[Plan] = []
    if CUDA in available:
        gpu = _gpu_variant(variants)
        if gpu:
            plans.append(Plan(gpu, ((CUDA, {}), (CPU, {})), f"CUDA available: {gpu} file"))
    amx_file = next((v for v in AMX_BF16_ORDER if v in variants), None)
    if OPENVINO in available and features.amx and amx_file:
        plans.append(Plan(amx_file, ((OPENVINO, dict(OPENVINO_BF16_OPTIONS)), (CPU, {})), f"AMX CPU with OpenVINO: {amx_file} file, bf16"))
    elif OPENVINO in available and features.int8_preset == "avx512_vnni" and OPENVINO_INT8 in variants:
        plans.append(Plan(OPENVINO_INT8, ((OPENVINO, {"device_type": "CPU"}), (CPU, {})),
                          "AVX512-VNNI CPU without AMX, OpenVINO installed: the static int8 (QDQ) file on OpenVINO"))
    key, why, poor = _cpu_variant(variants, features)
    plans.append(Plan(key, ((CPU, {}),), why, last_resort=poor))
    return plans


def with_openvino_cache(plan: Plan, cache_dir: str | Path) -> Plan:
    """The plan with OpenVINO's compiled-model cache in ``cache_dir`` (other providers unchanged)."""
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    providers = tuple((name, {**opts, "cache_dir": str(cache_dir)}) if name == OPENVINO else (name, opts) for name, opts in plan.providers)
    return replace(plan, providers=providers)


def resolve_variant(name: str, variants: Mapping[str, Variant], features: CpuFeatures) -> str:
    """An explicit variant name -> a manifest key. ``int8`` means this CPU's int8 file.

    Raises:
        ManifestError: the folder has no such variant (the message names the ones present).
    """
    if name == "int8":
        preset = features.int8_preset
        found = int8_variants_for_cpu(variants, features)
        if found:
            return found[0]
        raise ManifestError(
            f"variant 'int8': no int8 file for this CPU ({preset or 'no AVX2/AVX512-VNNI/arm64'}; wants "
            f"{list(INT8_BY_PRESET.get(preset or '', ())) or 'none'}); present: {sorted(variants)}"
        )
    if name not in variants:
        raise ManifestError(
            f"unknown variant {name!r}; present in this folder: {sorted(variants)} "
            "(or 'auto', or 'int8' for this CPU's int8 file)"
        )
    return name


def explicit_plan(
    variant: str,
    providers: Sequence[tuple[str, dict[str, Any]]] | None,
    variants: Mapping[str, Variant],
    features: CpuFeatures,
) -> Plan:
    """The one plan for an explicit variant and/or explicit providers (no silent fallback allowed).

    ``variant="auto"`` with explicit providers picks the file for the first provider. An explicit
    variant without providers runs on CUDA if it is a CUDA file, else on the CPU provider.

    Raises:
        ManifestError: unknown variant.
        ValueError: an fp16 file on the CPU provider, or an int8 file on a GPU provider.
    """
    if variant == "auto":
        if providers is None:
            raise ValueError("explicit_plan needs a variant or providers; use auto_plans for full auto")
        first = providers[0][0]
        if first in GPU_PROVIDERS:
            key = _gpu_variant(variants)
            if key is None:
                raise ManifestError(f"no variant for {first}: present {sorted(variants)}; rebuild with --variants fp32,O4")
        elif first != CPU and "fp32" in variants:
            key = "fp32"  # OpenVINO, CoreML, DirectML...: the plain file, the provider fuses it itself
        else:
            key = _cpu_variant(variants, features)[0]
        return Plan(key, tuple(providers), f"auto variant for {first}")
    key = resolve_variant(variant, variants, features)
    v = variants[key]
    if providers is None:
        providers = [(CUDA, {}), (CPU, {})] if v.device == "cuda" else [(CPU, {})]
    first = providers[0][0]
    if v.precision == "fp16" and first in (CPU, OPENVINO):
        raise ValueError(f"variant {key!r} is fp16 and runs only on a GPU provider, not {first}; use 'auto', 'O2' or 'int8'")
    if v.precision == "int8" and first in GPU_PROVIDERS:
        raise ValueError(f"variant {key!r} is int8 for the CPU; on {first} use 'O4' or 'fp32'")
    return Plan(key, tuple(providers), "explicit")


def default_max_tokens(providers_in_use: Sequence[str]) -> int:
    """The token budget for a session running on ``providers_in_use`` (its first provider decides).

    >>> default_max_tokens(["CPUExecutionProvider"]), default_max_tokens(["CUDAExecutionProvider", "CPUExecutionProvider"])
    (1024, 8192)
    """
    first = providers_in_use[0] if providers_in_use else CPU
    if first in GPU_PROVIDERS:
        return MAX_TOKENS_BY_PROVIDER[CUDA]
    return MAX_TOKENS_BY_PROVIDER.get(first, MAX_TOKENS_BY_PROVIDER[CPU])
