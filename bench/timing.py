"""Timing: every variant runs the same workload in interleaved, rotated rounds; medians and ratios.

Each round runs every variant in turn, in a rotated order, so drift of a shared or throttling
machine hits all of them alike and the speedups (ratio to the reference file) come from one run.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Mapping

import numpy as np

from .result import Measurement
from .workloads import Workload

__all__ = ["calls_per_round", "percentiles", "summarize", "time_interleaved", "add_speedups"]

Call = Callable[[], Any]


def calls_per_round(call: Call, warmup: int, min_seconds: float, rounds: int) -> int:
    """Run ``call`` ``warmup`` times (at least once, untimed for the results) and size a round from it."""
    n = max(1, warmup)
    t0 = time.perf_counter()
    for _ in range(n):
        call()
    per_call = (time.perf_counter() - t0) / n
    return max(1, math.ceil(min_seconds / rounds / max(per_call, 1e-6)))


def time_interleaved(calls: Mapping[str, Call], *, rounds: int, min_seconds: float, warmup: int,
                     on_round: Callable[[int], None] | None = None) -> dict[str, list[float]]:
    """Seconds per call for every variant, after warm-up, over ``rounds`` rotated rounds."""
    names = list(calls)
    per_round = {n: calls_per_round(calls[n], warmup, min_seconds, rounds) for n in names}
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        k = r % len(names) if names else 0
        for n in names[k:] + names[:k]:  # rotated: no variant always runs right after the same one
            _time_calls(calls[n], per_round[n], samples[n])
        if on_round:
            on_round(r)
    return samples


def _time_calls(call: Call, count: int, out: list[float]) -> None:
    for _ in range(count):
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)


def percentiles(samples: list[float]) -> tuple[float, float, float, float]:
    """``(p50, p90, p99, mean)`` in milliseconds."""
    a = np.asarray(samples) * 1000.0
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return float(p50), float(p90), float(p99), float(a.mean())


def summarize(variant: str, workload: Workload, samples: list[float]) -> Measurement:
    """A :class:`Measurement` from the seconds per call; throughput from the median."""
    p50, p90, p99, mean = percentiles(samples)
    w = workload
    return Measurement(variant, w.label, w.batch_size, w.seq_len, len(samples), w.texts_per_call, w.tokens_per_call,
                       p50, p90, p99, mean, w.texts_per_call / (p50 / 1000), w.tokens_per_call / (p50 / 1000))


def add_speedups(measurements: list[Measurement], reference: str = "fp32") -> None:
    """Set ``speedup`` = reference p50 / variant p50 on every row of a workload that has the reference."""
    refs = {m.workload: m.p50_ms for m in measurements if m.variant == reference}
    for m in measurements:
        if m.workload in refs:
            m.speedup = refs[m.workload] / m.p50_ms
