"""What one long text costs on the CPU provider: latency and peak memory of a fresh process that loads an
artifact folder and embeds one text of 8,192 tokens (and, for comparison, one of 512).

Architecture-exact random checkpoints at full size (speed and memory do not depend on the weights' values),
built through the offline hub path with ``onnxembed build --variants fp32`` (validated against PyTorch as
any build; bge-m3 and Qwen3 are over 2 GB, so their fp32 file is ``model.onnx`` + ``model.onnx_data``).
Each measurement is a fresh ``python`` process that loads the folder with :class:`onnxembed.Embedder` and
embeds the text ``--runs`` times (the first run included: it is what a cold server pays); it reports the
median and each run, its RSS after the load, and its peak RSS (``ru_maxrss``). The parent polls the
child's RSS and kills it past ``--max-rss-gb`` (the machine is shared), recording that instead of a figure.
Two thread layouts: the Embedder's default on the CPU provider (``parallel`` 2 batches x cores/2 threads,
so a lone one-row batch gets half the cores) and ``parallel=1`` (all cores on the one batch). Usage:

    python benchmarks/long_inputs.py [--models gte-modernbert-base,bge-m3,qwen3-embedding-0.6b] [--tokens 512,8192] [--runs 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
MODELS = ("gte-modernbert-base", "bge-m3", "qwen3-embedding-0.6b")
LAYOUTS = {"default": {}, "parallel=1": {"parallel": 1}}

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from onnxembed import Embedder
from onnxembed._session import split_threads

folder, tokens, runs, kwargs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
words = Path(sys.argv[5]).read_text(encoding="utf-8").split()

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

t0 = time.perf_counter()
emb = Embedder.load(folder, variant="fp32", providers=["CPUExecutionProvider"], **kwargs)
load_s = time.perf_counter() - t0
after_load = rss_mb()
count = lambda n: emb.tokenize([" ".join(words[:n])]).counts[0]
lo, hi = 1, len(words)  # the longest prefix of the word list that tokenizes to at most `tokens` tokens
while lo < hi:
    mid = (lo + hi + 1) // 2
    lo, hi = (mid, hi) if count(mid) <= tokens else (lo, mid - 1)
text = " ".join(words[:lo])
n = count(lo)
times = []
for _ in range(runs):
    t = time.perf_counter()
    v = emb.encode([text])
    times.append(time.perf_counter() - t)
assert v.shape[0] == 1
batches = emb.plan_batches(emb.tokenize([text, "short one", "another short text"]), 32)
print(json.dumps({"tokens": n, "load_s": load_s, "rss_after_load_mb": after_load, "times_s": times,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "threads": split_threads(["CPUExecutionProvider"], kwargs.get("threads"), kwargs.get("parallel", "auto"))[0],
                  "parallel": emb.parallel,
                  "long_text_batch_rows": [len(b) for b in batches]}))
"""


def build(names: list[str], work: Path) -> dict[str, Path]:
    """The full-size random fp32 folders (reused when present)."""
    from tokenizer_fixtures import family_vocab_folders

    from onnxembed.export.registry import load_registry
    from onnxembed.export.synthetic import offline_hub

    reg = load_registry()
    vocab = family_vocab_folders(work / "tok")
    out = {}
    for name in names:
        hub = offline_hub({name: reg[name]}, work / "hub", vocab_from=vocab)
        folder = work / "artifacts" / name
        if not (folder / "manifest.json").is_file():
            t = time.perf_counter()
            subprocess.run(["nice", "-n", "19", sys.executable, "-m", "onnxembed.cli", "build", name, "--out", str(folder),
                            "--registry", str(hub.registry), "--variants", "fp32", "--force"],
                           env={**os.environ, **hub.env}, check=True)
            print(f"{name}: built in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        out[name] = folder
    return out


def measure(folder: Path, tokens: int, runs: int, layout: dict, words: Path, max_rss_gb: float) -> dict:
    """One fresh process; its RSS polled every 0.1 s and the process killed past ``max_rss_gb``."""
    cmd = ["nice", "-n", "19", sys.executable, "-c", CHILD, str(folder), str(tokens), str(runs), json.dumps(layout), str(words)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0.0
    while p.poll() is None:
        try:
            with open(f"/proc/{p.pid}/status") as f:  # nice is exec'd in place: p.pid is the python process
                rss = next((int(x.split()[1]) / 1024 for x in f if x.startswith("VmRSS:")), 0.0)
        except OSError:
            rss = 0.0
        peak = max(peak, rss)
        if rss > max_rss_gb * 1024:
            p.kill()
            p.wait()
            return {"killed": f"RSS passed {max_rss_gb} GB", "polled_peak_rss_mb": peak}
        time.sleep(0.1)
    out, err = p.communicate()
    if p.returncode:
        return {"failed": err.strip().splitlines()[-1] if err.strip() else f"exit {p.returncode}", "polled_peak_rss_mb": peak}
    return {**json.loads(out.strip().splitlines()[-1]), "polled_peak_rss_mb": peak}


def words_file(work: Path) -> Path:
    """Real STS sentences, repeated past 32k tokens, as one word list."""
    from bench_runtime import sts_sentences  # noqa: F401 - benchmarks' own helper

    path = work / "words.txt"
    if not path.is_file():
        sents = sts_sentences(4000)
        path.write_text(" ".join(sents * 4), encoding="utf-8")
    return path


def render(rows: list[dict], machine: dict, cmd: str) -> str:
    lines = ["| model | layers x hidden | fp32 files (MB) | tokens | threads x batches | load (s) | latency median (s) | runs (s) | RSS after load (MB) | peak RSS (MB) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["measure"]
        if "tokens" not in m:
            lines.append(f"| {r['model']} | {r['shape']} | {r['size_mb']} | {r['want_tokens']} | {r['layout']} | - | {m.get('killed') or m.get('failed')} | - | - | polled {m['polled_peak_rss_mb']:.0f} |")
            continue
        t = sorted(m["times_s"])
        med = t[len(t) // 2]
        lines.append(f"| {r['model']} | {r['shape']} | {r['size_mb']} | {m['tokens']} | {m['threads']} x {m['parallel']} | {m['load_s']:.1f} | "
                     f"{med:.2f} | {', '.join(f'{x:.2f}' for x in m['times_s'])} | {m['rss_after_load_mb']:.0f} | {m['peak_rss_mb']:.0f} |")
    head = (f"Machine: {machine['cpu']}, {machine['cores']} cores, onnxruntime {machine['onnxruntime']}, load average at the start "
            f"{', '.join(f'{x:.2f}' for x in machine['load_average'])}.\n\nCommand: `{cmd}`\n\n")
    return head + "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--tokens", default="512,8192")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--layouts", default=",".join(LAYOUTS))
    ap.add_argument("--max-rss-gb", type=float, default=12.0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/long-inputs"))
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--build-only", action="store_true")
    args = ap.parse_args()

    from onnxembed import load_manifest
    from onnxembed.bench.machine import machine_info

    args.work.mkdir(parents=True, exist_ok=True)
    folders = build([n.strip() for n in args.models.split(",") if n.strip()], args.work)
    if args.build_only:
        return 0
    words = words_file(args.work)
    machine = machine_info()
    rows = []
    for name, folder in folders.items():
        m = load_manifest(folder)
        v = m.variant("fp32")
        size = v.size + sum(d["size"] for d in m.data_files("fp32"))
        for tokens in [int(t) for t in args.tokens.split(",")]:
            for lname in args.layouts.split(","):
                r = {"model": name, "shape": f"{m.raw['num_layers']} x {m.raw['hidden_size']}", "size_mb": round(size / 1e6),
                     "want_tokens": tokens, "layout": lname,
                     "measure": measure(folder, tokens, args.runs, LAYOUTS[lname], words, args.max_rss_gb)}
                print(json.dumps(r), file=sys.stderr, flush=True)
                rows.append(r)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    print(render(rows, machine, "python benchmarks/long_inputs.py " + " ".join(sys.argv[1:])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
