"""The CPU provider's token budget: one big run against batches that stay in cache, fp32 and int8, interleaved.

Backs ``providers.MAX_TOKENS_BY_PROVIDER`` (1,024 padded tokens on the CPU provider). Rows: the fp32 and
the int8 file through ``Embedder.encode``, each with no budget (32 texts = one onnxruntime run, what a
plain ``session.run`` on the batch does: the issue's "fp32 at 32x128" baseline), with 8,192 (the old
default) and with 1,024 / 2,048 tokens. Workloads: 32 texts of exactly 128 tokens, 1,000 STS-B test
sentences (real variable length), 256 texts of exactly 256 tokens. Ratio = baseline time / row time,
baseline = fp32 with no budget. Usage:

    python benchmarks/batch_budget.py artifacts/all-minilm-l6-v2 [--rounds 7] [--json out.json]
    python benchmarks/batch_budget.py /tmp/gte-base --no-sts      # random-weight 768-wide build
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_runtime import sts_sentences, texts_of_exactly  # noqa: E402
from engine_choice import report_rows, time_interleaved  # noqa: E402

BUDGETS = {"none": None, "8192": 8192, "2048": 2048, "1024": 1024}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--int8", default="int8", help="the int8 variant (default: this CPU's int8 file)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-sts", action="store_true", help="skip the STS workload and cosine (random-weight builds)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import onnxruntime as ort

    from onnxembed import Embedder

    embs = {}
    for variant in ("fp32", args.int8):
        for label, budget in BUDGETS.items():
            e = Embedder.load(args.folder, variant=variant, providers=["CPUExecutionProvider"], threads=args.threads,
                              verify=False, max_tokens=budget)
            embs[f"{'fp32' if variant == 'fp32' else 'int8'} budget {label}"] = e
    probe = embs["fp32 budget none"]
    work = {"32x128": (texts_of_exactly(probe, 128, 32), 32)}
    sts = sts_sentences(1000, ("stsb-test.tsv",))
    if not args.no_sts:
        work["sts1000"] = (sts, 32)
    work["64x256"] = (texts_of_exactly(probe, 256, 64), 32)
    times = time_interleaved(embs, work, args.rounds, reps={})
    print(f"{probe.manifest.name}: onnxruntime {ort.__version__}, CPU provider, threads {args.threads or os.cpu_count()}, "
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
    if args.json:
        args.json.write_text(json.dumps({"model": probe.manifest.name, "onnxruntime": ort.__version__, "rounds": args.rounds,
                                         "rows": rows, "times_ms": spread}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
