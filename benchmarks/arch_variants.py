"""Fused-operator counts and variant speed ratios for the five registry architectures at real size.

Random weights (architecture-exact configs: weights do not change the graph or its speed), built
through the offline hub path with every variant, then timed with ``onnxembed bench`` at 1x128 and
32x128 against the plain fp32 file in the same run. e5-small/gte-small and e5-base/gte-base share an
architecture, so three builds cover the five models. Usage:

    python benchmarks/arch_variants.py                 # ~25 min on 2 cores; writes benchmarks/ARCH-VARIANTS.md
    python benchmarks/arch_variants.py --models gte-small --rounds 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run_all import ARCHITECTURES, ART, OUT, log, prepare_random_registry, run  # noqa: E402

FUSED_KEYS = ("Attention", "EmbedLayerNormalization", "SkipLayerNormalization", "LayerNormalization", "BiasGelu", "FastGelu", "Gelu")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(ARCHITECTURES), help="architectures to build (registry names)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-seconds", type=float, default=0.6)
    ap.add_argument("--out", type=Path, default=HERE / "ARCH-VARIANTS.md")
    args = ap.parse_args()

    from onnxembed import load_manifest
    from onnxembed.bench import machine_info

    registry, env = prepare_random_registry()
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    rows = []
    for name in names:
        folder = ART / f"{name}-all"
        t = time.perf_counter()
        run([sys.executable, "-m", "onnxembed.cli", "build", name, "--out", str(folder), "--registry", str(registry), "--variants", "all"], env=env)
        build_s = time.perf_counter() - t
        bench_json = OUT / f"arch-bench-{name}.json"
        run([sys.executable, "-m", "onnxembed.cli", "bench", str(folder), "--batch-sizes", "1,32", "--seq-lens", "128", "--rounds", str(args.rounds),
             "--min-seconds", str(args.min_seconds), "--no-memory", "--no-progress", "--json", str(bench_json)])
        m = load_manifest(folder)
        bench = json.loads(bench_json.read_text())
        speed = {(r["variant"], r["workload"]): r["speedup"] for r in bench["measurements"]}
        rows.append({"name": name, "shares": ARCHITECTURES.get(name, [name]), "layers": m.raw["num_layers"], "hidden": m.raw["hidden_size"],
                     "build_s": round(build_s, 1), "load_average": bench["machine"].get("load_average"),
                     "variants": {v.name: {"size_mb": round(v.size / 1e6, 1), "fused_ops": v.info.get("fused_ops", {}),
                                           "speedup": {w: speed.get((v.name, w)) for w in ("1x128", "32x128")},
                                           "fp32_nodes": len((v.info.get("recipe") or {}).get("fp32_nodes", []))} for v in m.variants.values()}})
        log(f"{name}: done")
    (OUT / "arch-variants.json").write_text(json.dumps(rows, indent=2))
    args.out.write_text(render(rows, machine_info()), encoding="utf-8")
    print(args.out.read_text(encoding="utf-8"))
    return 0


def render(rows: list[dict], machine: dict) -> str:
    lines = [
        "# Variants of the five registry architectures (random weights, real size)",
        "",
        f"Written by `python benchmarks/arch_variants.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. CPU: {machine['cpu']},"
        f" {machine['cores']} cores, features {' '.join(machine['features'])}; onnxruntime {machine['onnxruntime']}; threads: onnxruntime default.",
        "Speed: `onnxembed bench` p50 of the plain fp32 file / p50 of the variant, interleaved rounds in one run (synthetic 128-token texts).",
        "Fused-op counts: from each variant's manifest entry (`fused_ops`). Accuracy figures of random models mean nothing and are left out.",
        "",
    ]
    for r in rows:
        la = r.get("load_average")
        lines += [f"## {r['name']} ({', '.join(r['shares'])}): {r['layers']} layers, hidden {r['hidden']}",
                  "", f"Full build (all variants) {r['build_s']} s" + (f"; load average at bench start {la[0]:.2f}" if la else "") + ".", "",
                  "| variant | size MB | " + " | ".join(FUSED_KEYS) + " | fp32 MatMuls kept | speedup 1x128 | speedup 32x128 |",
                  "|---|---:|" + "---:|" * len(FUSED_KEYS) + "---:|---:|---:|"]
        for v, d in r["variants"].items():
            ops = d["fused_ops"]
            sp = lambda x: "-" if x is None else f"{x:.2f}x"  # noqa: E731
            lines.append(f"| {v} | {d['size_mb']} | " + " | ".join(str(ops.get(k, 0)) for k in FUSED_KEYS)
                         + f" | {d['fp32_nodes'] if v.startswith(('qint8', 'quint8')) else '-'} | {sp(d['speedup']['1x128'])} | {sp(d['speedup']['32x128'])} |")
        lines.append("")
    lines.append("O4 is an fp16 (CUDA) file: `onnxembed bench` skips it on the CPU, so it has no speed figure here (no GPU on this machine).")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
