"""Batches side by side (``Embedder.load(parallel=)``) against one batch at a time, on one session.

Configurations, each an Embedder on the same artifact file, timed in interleaved rounds in one run:

- ``sequential``: ``parallel=1``, one thread per core, batches filled up to the budget (``run_cost = 0``) -
  the runtime before (onnxruntime's default);
- ``auto``: ``Embedder.load``'s default now (on the CPU provider 2 batches of ``cores // 2`` threads, batches
  cut by the measured run cost);
- ``auto fill-up``: the same split with batches filled up to the budget (``run_cost = 0``, the planner before);
- ``2 x all threads``: 2 batches side by side, each with one thread per core (oversubscribed: for the record);
- ``2 x all threads nospin``: the same with the intra-op threads not spinning between runs.

Workloads: ``encode`` of N real STS sentences (short texts, many small batches under the 1,024-token
budget); ``encode`` of 256 texts of exactly 128 tokens (8 batches of 32 x 128); one 32 x 128 batch and
one short text (latency: nothing to run side by side). Prints medians and ratios to ``sequential``.

    python benchmarks/parallel_batches.py ARTIFACT_DIR [--variant int8] [--texts 10000] [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_runtime import sts_sentences, texts_of_exactly  # noqa: E402

import onnxruntime as ort  # noqa: E402

from onnxembed import Embedder  # noqa: E402


def _load(folder: str, variant: str, threads: int | None, parallel: int | str, spin: bool) -> Embedder:
    so = ort.SessionOptions()
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return Embedder.load(folder, variant=variant, threads=threads, parallel=parallel, session_options=so, verify=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--variant", default="int8")
    ap.add_argument("--texts", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    cores = os.cpu_count() or 1
    configs = {
        "sequential": _load(a.folder, a.variant, cores, 1, True),
        "auto": _load(a.folder, a.variant, None, "auto", True),
        "auto fill-up": _load(a.folder, a.variant, None, "auto", True),
        "2 x all threads": _load(a.folder, a.variant, cores, 2, True),
        "2 x all threads nospin": _load(a.folder, a.variant, cores, 2, False),
    }
    configs["sequential"].run_cost = configs["auto fill-up"].run_cost = 0.0  # the planner before
    auto = configs["auto"]
    print(f"auto: parallel={auto.parallel}, intra-op threads={auto.session.get_session_options().intra_op_num_threads}, {cores} CPUs")
    ref = configs["sequential"]
    sts = sts_sentences(a.texts)
    long = texts_of_exactly(ref, 128, 256)
    workloads: dict[str, tuple[Callable[[Embedder], Any], int]] = {
        f"{len(sts)} STS sentences": (lambda e: e.encode(sts), a.rounds),
        "256 x 128 tokens (8 batches)": (lambda e: e.encode(long), a.rounds),
        "one 32 x 128 batch": (lambda e: e.encode(long[:32]), 10 * a.rounds),
        "one short text": (lambda e: e.encode(sts[:1]), 100 * a.rounds),
    }
    load0 = os.getloadavg()[0]
    results: dict[str, dict[str, float]] = {}
    for label, (call, rounds) in workloads.items():
        for e in configs.values():
            call(e)  # warm-up
        times: dict[str, list[float]] = {k: [] for k in configs}
        order = list(configs)
        for r in range(rounds):
            for k in (order if r % 2 == 0 else order[::-1]):
                t0 = time.perf_counter()
                call(configs[k])
                times[k].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        results[label] = med
        cells = "  ".join(f"{k}: {med[k] * 1000:.1f} ms ({med['sequential'] / med[k]:.2f}x)" for k in configs)
        print(f"{label:<30} {cells}", flush=True)
    print(f"(medians of interleaved rounds; ratio = sequential / config; load average {load0:.2f} at start, {os.getloadavg()[0]:.2f} at end;"
          f" {os.cpu_count()} CPUs; variant {ref.variant}; onnxruntime {ort.__version__})")
    if a.json:
        a.json.write_text(json.dumps({"variant": ref.variant, "cpus": os.cpu_count(), "medians_s": results}, indent=2))


if __name__ == "__main__":
    main()
