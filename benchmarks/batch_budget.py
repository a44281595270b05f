"""The CPU provider's token budget: one big run against batches that stay in cache, fp32 and int8, interleaved.

Backs ``providers.MAX_TOKENS_BY_PROVIDER`` (1,024 padded tokens on the CPU provider). Rows: the fp32 and
the int8 file through ``Embedder.encode``, each with no budget (32 texts = one onnxruntime run, what a
plain ``session.run`` on the batch does: the issue's "fp32 at 32x128" baseline), with 8,192 (the old
default) and with 1,024 / 2,048 tokens. Workloads: 32 texts of exactly 128 tokens, 1,000 STS-B test
sentences (real variable length), 256 texts of exactly 256 tokens. Ratio = baseline time / row time,
baseline = fp32 with no budget. Usage:

    python benchmarks/batch_budget.py artifacts/all-minilm-l6-v2 [--rounds 7] [--json out.json]
    python benchmarks/batch_budget.py /tmp/gte-base --no-sts      # random-weight 768-wide build
    /tmp/ov/bin/python benchmarks/batch_budget.py artifacts/all-minilm-l6-v2 --provider openvino --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_runtime import sts_sentences, texts_of_exactly  # noqa: E402
from engine_choice import report_rows, time_interleaved  # noqa: E402

BUDGETS = {"none": None, "8192": 8192, "2048": 2048, "1024": 1024}


def raw_runs(fp32: Any, int8: Any, rounds: int) -> dict[str, list[float]]:
    """``session.run`` alone (no tokenizer, no pooling): 32 x 128 synthetic ids in one run or in runs of 16/8/4 rows."""
    import numpy as np

    ids = np.random.default_rng(0).integers(1000, 20000, (32, 128))
    feeds = {k: {i.name: (ids if i.name == "input_ids" else np.ones_like(ids) if i.name == "attention_mask" else np.zeros_like(ids))
                 for i in s.get_inputs()} for k, s in (("fp32", fp32), ("int8", int8))}
    sessions = {"fp32": fp32, "int8": int8}
    cells = [(k, rows) for k in sessions for rows in (32, 16, 8, 4)]

    def run(k: str, rows: int) -> float:
        t = time.perf_counter()
        for i in range(0, 32, rows):
            sessions[k].run(None, {n: v[i:i + rows] for n, v in feeds[k].items()})
        return time.perf_counter() - t

    for c in cells:
        run(*c)
    times: dict[str, list[float]] = {f"{k} rows {r}": [] for k, r in cells}
    for r in range(rounds):
        for k, rows in (cells if r % 2 == 0 else cells[::-1]):
            times[f"{k} rows {rows}"].append(run(k, rows))
    print("\nsession.run only, 32 x 128 in runs of N rows; per-round ratio to fp32 rows 32, median (range):")
    for key, ts in times.items():
        ratio = [b / t for b, t in zip(times["fp32 rows 32"], ts)]
        print(f"  {key:<14} {1e3 * statistics.median(ts):7.1f} ms  x{statistics.median(ratio):.2f} ({min(ratio):.2f}-{max(ratio):.2f})")
    return {k: [round(1e3 * t, 2) for t in v] for k, v in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--int8", default="int8", help="the int8 variant (default: this CPU's int8 file)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--provider", choices=("cpu", "openvino"), default="cpu",
                    help="openvino: both files on the OpenVINO provider (fp32 with the bf16 hint), to check its budget")
    ap.add_argument("--no-sts", action="store_true", help="skip the STS workload and cosine (random-weight builds)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import onnxruntime as ort

    from onnxembed import Embedder
    from onnxembed.providers import OPENVINO_BF16_OPTIONS

    def providers(variant: str) -> list:
        if args.provider == "cpu":
            return ["CPUExecutionProvider"]
        opts = dict(OPENVINO_BF16_OPTIONS) if variant == "fp32" else {"device_type": "CPU"}
        return [("OpenVINOExecutionProvider", opts), "CPUExecutionProvider"]

    embs = {}
    for variant in ("fp32", args.int8):
        for label, budget in BUDGETS.items():
            e = Embedder.load(args.folder, variant=variant, providers=providers(variant), threads=args.threads,
                              verify=False, max_tokens=budget)
            embs[f"{'fp32' if variant == 'fp32' else 'int8'} budget {label}"] = e
    probe = embs["fp32 budget none"]
    work = {"32x128": (texts_of_exactly(probe, 128, 32), 32)}
    sts = sts_sentences(1000, ("stsb-test.tsv",))
    if not args.no_sts:
        work["sts1000"] = (sts, 32)
    work["64x256"] = (texts_of_exactly(probe, 256, 64), 32)
    times = time_interleaved(embs, work, args.rounds, reps={})
    print(f"{probe.manifest.name}: onnxruntime {ort.__version__}, {probe.providers[0]}, threads {args.threads or os.cpu_count()}, "
          f"{platform.processor() or platform.machine()}; {args.rounds} interleaved rounds; x = 'fp32 budget none' time / row time")
    rows = report_rows(embs, work, times, sts[:300] if args.no_sts else sts, base="fp32 budget none", width=18)
    spread = {f"{k}|{w}": [round(1e3 * t, 2) for t in times[(k, w)]] for k in embs for w in work}
    print("\nper-round ratios (the baseline and the row timed in the same round; cancels the machine's drift):")
    print(f"{'row':<18} " + " ".join(f"{w + ' median (range)':>26}" for w in work))
    for k in embs:
        cells = []
        for w in work:
            r = [b / t for b, t in zip(times[("fp32 budget none", w)], times[(k, w)])]
            rows[k][w]["round_ratio_median"] = statistics.median(r)
            rows[k][w]["round_ratio_range"] = [min(r), max(r)]
            cells.append(f"{statistics.median(r):>14.2f} ({min(r):.2f}-{max(r):.2f})")
        print(f"{k:<18} " + " ".join(f"{c:>26}" for c in cells))
    raw = raw_runs(embs["fp32 budget none"].session, embs["int8 budget none"].session, args.rounds)
    if args.json:
        args.json.write_text(json.dumps({"model": probe.manifest.name, "onnxruntime": ort.__version__, "rounds": args.rounds,
                                         "rows": rows, "times_ms": spread, "raw_session": raw}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
