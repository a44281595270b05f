"""Figures of the CI build: a full offline `onnxembed build --all`, a no-op rebuild, reproducibility per file.

The same setup as the test suite's: the five hub models as architecture-exact tiny random checkpoints
in a temporary Hugging Face cache (HF_HUB_OFFLINE=1), the embedded model with its real weights. The
build runs twice into two folders (the second with --force); every .onnx file is compared by sha256.

    python benchmarks/ci_build.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run_all import checkpoint_path  # noqa: E402


def _build(args: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "onnxembed.cli", "build", *args], env={**os.environ, **env}, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"build failed:\n{proc.stdout}\n{proc.stderr[-3000:]}")
    print(proc.stdout, flush=True)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from onnxembed.export.registry import load_registry
    from onnxembed.export.synthetic import offline_hub
    from onnxembed.manifest import sha256_file

    with tempfile.TemporaryDirectory(prefix="onnxembed-ci-build-") as tmp:
        root = Path(tmp)
        hub = offline_hub(load_registry(), root, vocab_from=checkpoint_path(), tiny=True)
        registry, env = hub.registry, hub.env
        a, b = root / "a", root / "b"
        full = _build(["--all", "--out", str(a), "--registry", str(registry)], env)
        noop = _build(["--all", "--out", str(a), "--registry", str(registry)], env)
        statuses = {r["model"]: r["status"] for r in json.loads((a / "build-report.json").read_text())["models"]}
        again = _build(["--all", "--out", str(b), "--registry", str(registry), "--force"], env)
        files = []
        for p in sorted(a.rglob("*.onnx")):
            q = b / p.relative_to(a)
            files.append({"file": p.relative_to(a).as_posix(), "identical": q.is_file() and sha256_file(p) == sha256_file(q), "size": p.stat().st_size})
    result = {"full_build_s": round(full, 1), "noop_rebuild_s": round(noop, 1), "second_build_s": round(again, 1),
              "noop_statuses": statuses, "files": files, "identical": sum(f["identical"] for f in files), "total": len(files)}
    print(f"full offline build of {len(statuses)} models: {full:.1f} s; no-op rebuild: {noop:.1f} s ({statuses}); second build: {again:.1f} s")
    for f in files:
        print(f"  {'identical' if f['identical'] else 'DIFFERS  '}  {f['file']}")
    print(f"{result['identical']}/{result['total']} .onnx files byte-identical across two builds")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["identical"] == result["total"] else 1


if __name__ == "__main__":
    sys.exit(main())
