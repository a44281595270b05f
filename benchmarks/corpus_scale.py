"""Corpus job overhead (issue 11): 100,000 texts through the local executor and through Ray, against
one in-process ``encode_iter`` on the same cores; then the 1-billion-passage estimate from the rates.

    .venv/bin/python benchmarks/corpus_scale.py ARTIFACT_DIR [--texts 100000] [--rounds 2] [--out benchmarks/out/corpus_scale.json]

Each run is a fresh interpreter (so peak memory is its own), and the three runs are interleaved in
rotating order over ``--rounds`` rounds, because the machine is shared: ratios come from the median
wall time of each mode. The load average is recorded before and after every run.

- ``inproc``: ``Embedder.load(threads=cores)`` and ``encode_iter`` over the file's lines (reading
  included, writing not): the ceiling the job is measured against.
- ``local``: ``embed_corpus(executor="local")`` with its defaults (one worker per core, one thread
  each), reading, embedding and writing float32 parquet shards.
- ``ray``: ``embed_corpus(executor="ray")`` on a local Ray with ``num_cpus=cores`` (its start-up time
  is reported apart, and the ratio is given with and without it).

Texts: the ~28,000 distinct STS sentences, repeated with their words rotated (same lengths, different
token sequences) up to ``--texts``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sts"


def corpus_texts(n: int) -> list[str]:
    seen: dict[str, None] = {}
    for f in sorted(DATA.glob("*.tsv")):
        for line in f.read_text(encoding="utf-8").splitlines()[1:]:
            for s in line.split("\t")[1:3]:
                if s.strip():
                    seen.setdefault(s.strip(), None)
    base = list(seen)
    out = []
    for i in range(n):
        words = base[i % len(base)].split()
        r = (i // len(base)) % max(len(words), 1)
        out.append(" ".join(words[r:] + words[:r]))
    return out


def cores() -> int:
    return len(os.sched_getaffinity(0))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_s() -> float:
    """CPU seconds of this process and its reaped children (the local executor's workers; not Ray's
    actors, which are the raylet's children): much less sensitive to a busy machine than wall time."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_mode(mode: str, model: str, src: str, out: str) -> dict[str, Any]:
    """One measured run, in this (fresh) interpreter."""
    n = cores()
    if mode == "inproc":
        from onnxembed import Embedder

        t0 = time.perf_counter()
        emb = Embedder.load(model, threads=n)
        load = time.perf_counter() - t0
        count = 0
        tokens = 0
        with open(src, encoding="utf-8") as f:
            lines = (line.rstrip("\n") for line in f)
            for block in emb.encode_iter(lines, batch_size=32):
                count += len(block)
        wall = time.perf_counter() - t0
        cpu = _cpu_s()
        # tokenizer share: the same texts tokenized on one core
        with open(src, encoding="utf-8") as f:
            texts = [line.rstrip("\n") for line in f]
        t1 = time.perf_counter()
        toks = emb.tokenize(texts)
        tok_s = time.perf_counter() - t1
        tokens = toks.n_tokens
        return {"mode": mode, "texts": count, "tokens": tokens, "wall_s": wall, "load_s": load, "variant": emb.variant,
                "peak_rss_mb": _peak_mb(), "tokenize_1core_s": tok_s, "cpu_s": cpu}
    from onnxembed.corpus import embed_corpus

    ray_init = 0.0
    if mode == "ray":
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=n, include_dashboard=False, log_to_driver=False)
        ray_init = time.perf_counter() - t0
    t0 = time.perf_counter()
    s = embed_corpus(model, src, out, executor="local" if mode == "local" else "ray", overwrite=True)
    wall = time.perf_counter() - t0
    return {"mode": mode, "texts": s.texts, "tokens": s.tokens, "wall_s": wall, "ray_init_s": ray_init, "workers": s.workers,
            "cpu_s": _cpu_s() if mode == "local" else None,
            "variant": s.variant, "peak_rss_mb": s.worker_peak_rss_mb, "driver_peak_rss_mb": _peak_mb(), "shards": s.shards}


def flops_per_token(layers: int, d: int, f: int, seq: float) -> float:
    return layers * (2 * (4 * d * d + 2 * d * f) + 4 * seq * d)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--texts", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--modes", default="inproc,local,ray")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/corpus_scale.json"))
    ap.add_argument("--run", default=None, help=argparse.SUPPRESS)  # internal: MODE,MODEL,SRC,OUT
    args = ap.parse_args()
    if args.run:
        mode, model, src, out = args.run.split(",")
        print(json.dumps(run_mode(mode, model, src, out)))
        return
    tmp = Path(tempfile.mkdtemp(prefix="corpus-scale-"))
    try:
        src = tmp / "texts.txt"
        src.write_text("\n".join(corpus_texts(args.texts)) + "\n", encoding="utf-8")
        modes = args.modes.split(",")
        runs: list[dict[str, Any]] = []
        for r in range(args.rounds):
            order = modes[r % len(modes):] + modes[: r % len(modes)]
            for mode in order:
                before = os.getloadavg()
                proc = subprocess.run([sys.executable, __file__, args.model, "--run", f"{mode},{args.model},{src},{tmp / ('out-' + mode)}"],
                                      capture_output=True, text=True, timeout=3600)
                if proc.returncode:
                    raise SystemExit(f"{mode} failed:\n{proc.stderr[-3000:]}")
                res = {**json.loads(proc.stdout.strip().splitlines()[-1]), "round": r, "load_before": before, "load_after": os.getloadavg()}
                runs.append(res)
                print(f"round {r} {mode:<6} {res['texts'] / res['wall_s']:8.0f} texts/s  wall {res['wall_s']:6.1f}s  "
                      f"peak {res['peak_rss_mb']:.0f} MB  load {before[0]:.1f}->{res['load_after'][0]:.1f}"
                      + (f"  ray init {res['ray_init_s']:.1f}s" if res.get("ray_init_s") else ""), flush=True)
                report = summarize(runs, args.texts)  # after every run: a stopped benchmark keeps its figures
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps({"runs": runs, **report}, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(report, indent=2))


def summarize(runs: list[dict[str, Any]], n: int) -> dict[str, Any]:
    med = {m: statistics.median(r["wall_s"] for r in runs if r["mode"] == m) for m in sorted({r["mode"] for r in runs})}
    out: dict[str, Any] = {"cores": cores(), "texts": n, "median_wall_s": med}
    base = med.get("inproc")
    if base:
        out["ratio_vs_inproc"] = {m: base / w for m, w in med.items() if m != "inproc"}
        if "ray" in med:
            init = statistics.median(r["ray_init_s"] for r in runs if r["mode"] == "ray")
            out["ratio_vs_inproc"]["ray_with_init"] = base / (med["ray"] + init)
            out["ray_init_s"] = init
        inproc = [r for r in runs if r["mode"] == "inproc"]
        tokens = inproc[0]["tokens"]
        per_core = tokens / base / cores()
        tok_rate = tokens / statistics.median(r["tokenize_1core_s"] for r in inproc)
        mean_len = tokens / n
        ratio = flops_per_token(12, 768, 3072, 128) / flops_per_token(6, 384, 1536, mean_len)
        e5_per_core = per_core / ratio
        total_tokens = 1e9 * 128
        core_hours = total_tokens / e5_per_core / 3600
        out["estimate_1e9_e5_base"] = {
            "minilm_mean_tokens": mean_len, "minilm_tokens_per_core_s": per_core, "flops_ratio_per_token": ratio,
            "e5_base_tokens_per_core_s": e5_per_core, "e5_base_passages_per_core_s": e5_per_core / 128,
            "core_hours": core_hours, "hours_on_1000_cores": core_hours / 1000, "hours_on_4000_cores": core_hours / 4000,
            "tokenizer_tokens_per_core_s": tok_rate, "tokenizer_share_of_core_time_e5": e5_per_core / tok_rate,
            "tokenizer_share_of_core_time_minilm": per_core / tok_rate,
            "output_tb_float32": 1e9 * 768 * 4 / 1e12, "output_tb_float16": 1e9 * 768 * 2 / 1e12,
        }
        out["peak_rss_mb"] = {m: max(r["peak_rss_mb"] for r in runs if r["mode"] == m) for m in med}
        cpu = {m: statistics.median(r["cpu_s"] for r in runs if r["mode"] == m) for m in med if all(r.get("cpu_s") for r in runs if r["mode"] == m)}
        if "inproc" in cpu:
            out["cpu_s_median"] = cpu
            out["cpu_ratio_vs_inproc"] = {m: cpu["inproc"] / c for m, c in cpu.items() if m != "inproc"}
    return out


if __name__ == "__main__":
    main()
