"""The machine a benchmark runs on: CPU model and features, frequency, peak FLOP/s, model FLOPs per token.

Standard library only (onnxruntime for its version), so ``onnxembed bench`` and the scripts in
``benchmarks/`` print the same machine header.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

__all__ = ["flops_per_token", "machine_info", "peak_gflops"]


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if ":" in line:
                k, v = (s.strip() for s in line.split(":", 1))
                info.setdefault(k, v)
    except OSError:
        pass
    return info


def _max_mhz() -> float | None:
    """The highest frequency the OS reports: cpufreq's max, else /proc/cpuinfo's ``cpu MHz``."""
    p = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    try:
        return int(p.read_text()) / 1000.0
    except (OSError, ValueError):
        pass
    mhz = _cpuinfo().get("cpu MHz")
    try:
        return float(mhz) if mhz else None
    except ValueError:
        return None


def machine_info(threads: int | None = None) -> dict[str, Any]:
    """CPU model, int8/bf16 features, cores, frequency, thread setting and onnxruntime version."""
    import onnxruntime as ort

    ci = _cpuinfo()
    flags = set((ci.get("flags") or ci.get("Features") or "").split())
    features = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8",
                            "amx_bf16", "asimddp", "i8mm") if f in flags]
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return {
        "cpu": ci.get("model name") or platform.processor() or platform.machine(),
        "vendor": ci.get("vendor_id", ""),
        "cpu_family": ci.get("cpu family", ""),
        "arch": platform.machine(),
        "features": features,
        "cores": usable,
        "mhz": _max_mhz(),
        "threads": threads if threads else f"onnxruntime default ({usable})",
        "onnxruntime": ort.__version__,
        "providers_available": ort.get_available_providers(),
        "python": platform.python_version(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def peak_gflops(machine: dict[str, Any]) -> dict[str, float] | None:
    """Peak fp32 and int8 GFLOP/s of the usable cores: cores x GHz x operations per cycle.

    fp32: 2 FMA units x SIMD lanes x 2 FLOP. AVX-512 gives 16 lanes on Intel; AMD Zen 4 (family 25 with
    AVX-512) executes 512-bit instructions on 256-bit units, so 8. int8 with VNNI (``vpdpbusd``: 4
    multiply-adds per 32-bit lane) is 4x the fp32 rate; without VNNI, 2x (``vpmaddubsw`` + ``vpmaddwd``).
    """
    mhz, feats = machine.get("mhz"), set(machine.get("features", []))
    if not mhz:
        return None
    zen4 = machine.get("vendor") == "AuthenticAMD" and str(machine.get("cpu_family")) == "25"
    if "avx512f" in feats and not zen4:
        lanes = 16
    elif "avx2" in feats or "avx512f" in feats:
        lanes = 8
    else:
        lanes = 4
    fp32_per_cycle = 2 * lanes * 2
    int8_mult = 4 if feats & {"avx512_vnni", "avx_vnni", "asimddp"} else 2
    ghz = mhz / 1000.0
    cores = int(machine["cores"])
    return {"fp32": cores * ghz * fp32_per_cycle, "int8": cores * ghz * fp32_per_cycle * int8_mult,
            "ghz": ghz, "fp32_flop_per_cycle_core": fp32_per_cycle}


def flops_per_token(config: dict[str, Any], seq_len: int) -> float:
    """Forward FLOPs per token of a BERT/DistilBERT encoder at a sequence length.

    2 x (parameters in matmuls) per token: Q, K, V, output (4 h^2) and the feed-forward (2 h i) per layer,
    plus attention: scores Q K^T and the weighted sum of V, 2 x 2 x seq_len x h per token per layer.
    Embedding lookups, layer norms, softmax and GELU are a few percent and left out.
    """
    h = int(config.get("hidden_size") or config["dim"])
    layers = int(config.get("num_hidden_layers") or config["n_layers"])
    inter = int(config.get("intermediate_size") or config.get("hidden_dim") or 4 * h)
    return float(layers * (2 * (4 * h * h + 2 * h * inter) + 4 * seq_len * h))
