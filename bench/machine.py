"""The machine a benchmark runs on: CPU model and features, frequency, peak FLOP/s, model FLOPs per token.

Standard library only (onnxruntime for its version), so ``onnxembed bench`` and the scripts in
``benchmarks/`` print the same machine header.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

__all__ = ["cpu_load", "flops_per_token", "load_warning", "machine_info", "peak_for", "peak_gflops"]


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
    """Peak rate of the usable cores per precision: cores x GHz x operations per cycle and core.

    Each variant's "% own peak" divides its model FLOP/s by the peak of its own precision, so an int8
    file that runs faster than fp32 can still show a smaller share: its peak is several times higher.

    Per core and cycle (Intel's and AMD's optimization manuals):

    - fp32: 2 FMA units x SIMD lanes x 2 FLOP (multiply + add). AVX-512: 16 lanes (64 FLOP/cycle);
      AMD Zen 4 (family 25 with AVX-512) runs 512-bit instructions on 256-bit units, so 8 lanes;
      AVX2: 8 lanes (32); otherwise 4.
    - int8: VNNI (``vpdpbusd``, AVX512-VNNI / AVX-VNNI; ``sdot`` on arm64 ``asimddp``) does 4 u8 x s8
      multiply-adds per 32-bit lane where an FMA does 1, on the same units: 4x fp32. Without VNNI,
      ``vpmaddubsw`` + ``vpmaddwd`` + ``vpaddd``: 2x. With AMX (``amx_tile`` + ``amx_int8``), which
      ``tdpbusd`` does 16x16x64 multiply-adds per 16 cycles,
      2048 ops/cycle, 32x the AVX-512 fp32 peak.
    - bf16 (reported for reference; no variant is bf16 on the CPU provider): AVX512_BF16
      (``vdpbf16ps``, 2 bf16 products per 32-bit lane): 2x fp32; AMX (``amx_bf16``): ``tdpbf16ps``,
      1024 FLOP/cycle, 16x. Absent without either.

    onnxruntime's int8 GEMM has AMX kernels (MLAS ``qgemm_kernel_amx.cpp``, VNNI for small products).
    Peaks assume every core at the highest frequency the OS reports; AVX-512 clocks and memory
    bandwidth keep real ceilings lower, so read a share as rough utilization of the units a
    precision uses, comparable between variants of the same precision.

    >>> peak_gflops({"mhz": 2000.0, "cores": 2, "features": ["avx2", "avx512f", "avx512_vnni"]})["int8"]
    1024.0
    """
    mhz, feats = machine.get("mhz"), set(machine.get("features", []))
    if not mhz:
        return None
    fp32_per_cycle = 2 * _fp32_lanes(machine, feats) * 2
    per_core_ghz = int(machine["cores"]) * mhz / 1000.0
    out = {"fp32": per_core_ghz * fp32_per_cycle, "int8": per_core_ghz * fp32_per_cycle * _int8_multiple(feats),
           "ghz": mhz / 1000.0, "fp32_flop_per_cycle_core": fp32_per_cycle}
    bf16 = _bf16_multiple(feats)
    if bf16:
        out["bf16"] = per_core_ghz * fp32_per_cycle * bf16
    return out


def _fp32_lanes(machine: dict[str, Any], feats: set[str]) -> int:
    zen4 = machine.get("vendor") == "AuthenticAMD" and str(machine.get("cpu_family")) == "25"
    if "avx512f" in feats and not zen4:
        return 16
    if "avx2" in feats or "avx512f" in feats:
        return 8
    return 4


def _int8_multiple(feats: set[str]) -> int:
    """int8 ops per fp32 FLOP at the same width and frequency (see :func:`peak_gflops`)."""
    if {"amx_tile", "amx_int8"} <= feats and "avx512f" in feats:
        return 32
    return 4 if feats & {"avx512_vnni", "avx_vnni", "asimddp"} else 2


def _bf16_multiple(feats: set[str]) -> int | None:
    if {"amx_tile", "amx_bf16"} <= feats and "avx512f" in feats:
        return 16
    return 2 if "avx512_bf16" in feats else None


def peak_for(peak: dict[str, float] | None, precision: str) -> float | None:
    """The peak a variant of this precision is measured against: int8 -> int8, anything else -> fp32.

    fp16 files timed on the CPU are counted against fp32: the CPU provider computes them in fp32.
    """
    if not peak:
        return None
    return peak["int8"] if precision == "int8" else peak["fp32"]


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


# A quarter of the CPUs busy with other work (at least half a CPU) makes timings unreliable: the
# bench's threads share cores with it, and onnxruntime waits for its slowest thread.
BUSY_FRACTION = 0.25


def cpu_load(window: float = 0.5) -> dict[str, Any]:
    """How busy the CPUs are right now, before the bench starts.

    ``load_average``: ``os.getloadavg()`` (1, 5, 15 minutes). ``busy_cpus``: CPUs kept busy by any
    process over the last ``window`` seconds, from ``/proc/stat`` (Linux; None elsewhere). The
    load average also counts what this process just did (the demo builds, then benches); the
    short window, taken while this process waits, does not.
    """
    return {
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "busy_cpus": _busy_cpus(window),
        "cpus": os.cpu_count() or 1,
    }


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies summed over all CPUs, from the first line of /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def _busy_cpus(window: float) -> float | None:
    before = _cpu_ticks()
    if before is None:
        return None
    time.sleep(window)
    after = _cpu_ticks()
    if after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1]) * (os.cpu_count() or 1)


def load_warning(load: dict[str, Any]) -> str | None:
    """A warning when other work keeps at least :data:`BUSY_FRACTION` of the CPUs busy, else None.

    Judged on ``busy_cpus`` when measured (it excludes this process's past work), else on the
    1-minute load average.

    >>> load_warning({"load_average": [3.9, 3.0, 2.0], "busy_cpus": None, "cpus": 2})[:28]
    'load average 3.90 on 2 CPUs:'
    """
    cpus = int(load.get("cpus") or 1)
    limit = max(0.5, BUSY_FRACTION * cpus)
    busy, avg = load.get("busy_cpus"), (load.get("load_average") or [None])[0]
    if busy is not None:
        if busy < limit:
            return None
        what = f"{busy:.1f} of {cpus} CPUs busy with other work at start (load average {avg:.2f})" if avg is not None else \
            f"{busy:.1f} of {cpus} CPUs busy with other work at start"
    elif avg is not None and avg >= limit:
        what = f"load average {avg:.2f} on {cpus} CPUs"
    else:
        return None
    return f"{what}: the timings and speedups are unreliable; rerun on an idle machine"
