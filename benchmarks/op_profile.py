"""Where the time goes: onnxruntime's per-operator profile of the fp32 and int8 files at one shape.

Explains the int8/fp32 ratio on the CPU provider (Amdahl): the share of time in the quantized
MatMuls against everything that stays fp32 (LayerNorm, GELU, softmax, attention matmuls, quantize /
dequantize). Usage:

    python benchmarks/op_profile.py artifacts/all-minilm-l6-v2 [--batch 32 --seq 128 --runs 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quant_recipes import _feeds  # noqa: E402  (the same synthetic ids the recipe table times)


def profile(path: Path, batch: int, seq: int, runs: int) -> dict[str, float]:
    """Total microseconds per operator type over ``runs`` runs (after one warm-up run)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "p")
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        feed = _feeds(sess, batch, seq)
        sess.run(None, feed)
        for _ in range(runs):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    per_op: dict[str, float] = defaultdict(float)
    runs_seen = 0
    for e in events:
        if e.get("cat") == "Session" and e.get("name") == "model_run":
            runs_seen += 1
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"]
    # per-run average over every recorded run (the warm-up run included)
    return {k: v / max(runs_seen, 1) for k, v in sorted(per_op.items(), key=lambda kv: -kv[1])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--variants", default="fp32,qint8_avx512_vnni")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    from onnxembed import load_manifest

    m = load_manifest(args.folder)
    totals = {}
    for v in args.variants.split(","):
        ops = profile(m.path_of(v), args.batch, args.seq, args.runs)
        total = sum(ops.values())
        totals[v] = total
        print(f"\n{v} at {args.batch}x{args.seq}: {total / 1e3:.1f} ms of kernel time per run")
        for op, us in list(ops.items())[:12]:
            print(f"  {op:<28} {us / 1e3:8.1f} ms  {100 * us / total:5.1f} %")
    if len(totals) == 2:
        a, b = totals.values()
        print(f"\nkernel-time ratio {list(totals)[0]} / {list(totals)[1]}: {a / b:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
