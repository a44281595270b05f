"""``onnxembed bench``: compare the variants of an artifact folder on this machine.

Every variant runs the same workloads (fixed ``batch x seq_len`` shapes of synthetic token ids, or
real texts tokenized, length-sorted and batched as the embedder does), round-robin: each round runs
every variant in turn, in a rotated order, so drift of a shared or throttling machine hits all of
them alike and the speedups (ratio to the plain fp32 file) are measured in one run. Accuracy is the
cosine of each variant's pooled embedding to the fp32 file's on a fixed set of real sentences. Peak
memory is measured in a fresh interpreter per variant (``VmHWM`` minus the RSS after importing
onnxruntime), so variants do not inherit each other's arenas.

Needs only the standard library, numpy and onnxruntime.

>>> r = bench("artifacts/all-minilm-l6-v2", quick=True)     # doctest: +SKIP
>>> print(r.format_table())                                  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import numpy.typing as npt

from .machine import flops_per_token, machine_info, peak_gflops
from ..manifest import Manifest, load_manifest

__all__ = ["ACCURACY_SENTENCES", "BenchResult", "Measurement", "VariantReport", "bench", "flops_per_token",
           "machine_info", "peak_gflops", "plot_result"]

logger = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]

# Varied real sentences for the accuracy check: short and long, questions, numbers, code, accents,
# other scripts. Fixed so numbers from different runs and machines compare.
ACCURACY_SENTENCES: tuple[str, ...] = (
    "A man is playing a guitar.",
    "A woman is slicing an onion in the kitchen.",
    "The cat sat on the mat and watched the birds outside the window.",
    "How do I reset my password if I no longer have access to my email?",
    "What is the capital of Australia?",
    "Canberra is the capital city of Australia, not Sydney as many people assume.",
    "Stock markets fell sharply on Tuesday after the central bank raised interest rates by 0.75 points.",
    "The quarterly report shows revenue of $4.2 billion, up 12% year over year.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "def add(a, b): return a + b  # a tiny Python function",
    "SELECT name, COUNT(*) FROM users GROUP BY name HAVING COUNT(*) > 1;",
    "Ünïcödé text with accents: café, naïve, façade, jalapeño.",
    "東京は日本の首都です。",
    "Das Wetter ist heute schön, aber morgen soll es regnen.",
    "¿Dónde está la biblioteca más cercana?",
    "lol ok 👍",
    "ok",
    "The committee postponed the vote until next week because several members were absent.",
    "Researchers found that regular exercise improves sleep quality in older adults.",
    "Two dogs are running through a field of tall grass.",
    "A child is riding a red bicycle down a quiet street.",
    "The new smartphone features a larger battery, a faster processor and an improved camera.",
    "Please remember to bring your passport and a printed copy of your ticket to the airport.",
    "Error: connection refused while trying to reach the database on port 5432.",
    "In 1969, Apollo 11 landed on the Moon and Neil Armstrong became the first person to walk on it.",
    "The recipe calls for two cups of flour, one egg, a pinch of salt and a cup of milk.",
    "Is it safe to take ibuprofen and paracetamol together?",
    "Machine learning models can inherit biases present in their training data.",
    "The river flooded the village after three days of heavy rain.",
    "He didn't say anything; he just smiled and walked away.",
    (
        "The history of the city goes back more than two thousand years: it was founded as a small trading"
        " post on the river, grew into a fortified market town in the middle ages, was largely destroyed by"
        " fire in the seventeenth century, and was rebuilt in stone with the wide streets and squares that"
        " visitors still admire today, while its port, railway station and university made it one of the"
        " most important centres of commerce, industry and learning in the region during the nineteenth"
        " and twentieth centuries."
    ),
    (
        "To install the package, create a virtual environment, activate it, upgrade pip, and then run the"
        " install command with the extras you need; if the build fails because a compiler is missing,"
        " install the system build tools first, or use a prebuilt wheel for your platform, and check that"
        " the Python version matches one of the versions listed on the project's download page."
    ),
)



# ---------------------------------------------------------------------------------------------- data
@dataclass
class Measurement:
    """Latency and throughput of one variant on one workload."""

    variant: str
    workload: str
    batch_size: int
    seq_len: int | None
    calls: int
    texts_per_call: float
    tokens_per_call: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    texts_per_s: float
    tokens_per_s: float
    speedup: float | None = None
    gflops: float | None = None
    pct_of_peak: float | None = None


@dataclass
class VariantReport:
    """What is known about one variant apart from its timings."""

    name: str
    file: str
    size_mb: float
    precision: str
    device: str
    status: str = "ok"  # ok | skipped | failed
    reason: str = ""
    providers: list[str] = field(default_factory=list)
    load_s: float | None = None
    mean_cosine: float | None = None
    min_cosine: float | None = None
    peak_rss_mb: float | None = None
    load_rss_mb: float | None = None


@dataclass
class BenchResult:
    """Everything ``bench`` measured; ``to_json`` for machines, ``format_table`` for people."""

    folder: str
    model: str
    machine: dict[str, Any]
    settings: dict[str, Any]
    variants: list[VariantReport]
    measurements: list[Measurement]
    peak: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def measurement(self, variant: str, workload: str) -> Measurement | None:
        return next((m for m in self.measurements if m.variant == variant and m.workload == workload), None)

    def format_table(self) -> str:
        """The machine header, the per-variant table and one row per variant and workload."""
        mc = self.machine
        lines = [
            f"model {self.model} ({self.folder})",
            f"cpu: {mc['cpu']}, {mc['cores']} cores @ {mc['mhz'] or '?'} MHz, features: {' '.join(mc['features']) or 'none'}",
            f"threads: {mc['threads']}; onnxruntime {mc['onnxruntime']}; python {mc['python']}"
            + (f"; load average at start {mc['load_average'][0]:.2f}" if mc.get("load_average") else ""),
        ]
        if self.peak:
            lines.append(f"peak (cores x GHz x FLOP/cycle): fp32 {self.peak['fp32']:.0f} GFLOP/s, int8 {self.peak['int8']:.0f} GOP/s")
        lines.append("")
        lines.append(f"{'variant':<20} {'precision':<9} {'size MB':>8} {'mean cos':>9} {'min cos':>9} {'peak RSS MB':>11} {'load s':>7}  status")
        for v in self.variants:
            f = lambda x, spec: "-" if x is None else format(x, spec)  # noqa: E731
            status = v.status if not v.reason else f"{v.status}: {v.reason}"
            lines.append(f"{v.name:<20} {v.precision:<9} {v.size_mb:>8.1f} {f(v.mean_cosine, '.5f'):>9} {f(v.min_cosine, '.5f'):>9}"
                         f" {f(v.peak_rss_mb, '.0f'):>11} {f(v.load_s, '.2f'):>7}  {status}")
        lines.append("")
        lines.append(f"{'workload':<22} {'variant':<20} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'texts/s':>9} {'tokens/s':>10}"
                     f" {'vs fp32':>8} {'% peak':>7}")
        for m in self.measurements:
            sp = "-" if m.speedup is None else f"{m.speedup:.2f}x"
            pk = "-" if m.pct_of_peak is None else f"{m.pct_of_peak:.0f}%"
            lines.append(f"{m.workload:<22} {m.variant:<20} {m.p50_ms:>9.2f} {m.p90_ms:>9.2f} {m.p99_ms:>9.2f}"
                         f" {m.texts_per_s:>9.1f} {m.tokens_per_s:>10.0f} {sp:>8} {pk:>7}")
        lines.append(f"({self.settings['rounds']} interleaved rounds per workload; speedup = fp32 p50 / variant p50 in this run;"
                     " % peak against the fp32 or int8 peak by precision)")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------ sessions
def _load(folder: Path, variant: str, threads: int | None, providers: Sequence[Any] | None) -> Any:
    from ..embedder import Embedder

    return Embedder.load(folder, variant=variant, providers=list(providers) if providers else None, threads=threads, verify=False)


Feed = dict[str, npt.NDArray[Any]]


def _synthetic_feed(session: Any, vocab_size: int, batch: int, seq: int, seed: int = 0) -> Feed:
    """Random token ids (no padding) shaped ``batch x seq`` for exactly the inputs the graph declares."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, max(1001, vocab_size - 1), size=(batch, seq), dtype=np.int64)
    full = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    return {i.name: full[i.name].astype(np.int32 if i.type == "tensor(int32)" else np.int64) for i in session.get_inputs()}


# --------------------------------------------------------------------------------------------- memory
def _rss_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise OSError(f"{key} not in /proc/self/status")


def _memory_probe(folder: str, variant: str, batch: int, seq: int, threads: int, providers: list[Any], texts: list[str] | None, out: str) -> None:
    """Run in a fresh interpreter: RSS growth from loading the variant and running its largest workload."""
    import onnxruntime  # noqa: F401  (imported before the baseline so its own pages are not counted)

    from .. import embedder  # noqa: F401

    base = _rss_kb("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        pass
    emb = _load(Path(folder), variant, threads or None, providers or None)
    loaded = _rss_kb("VmRSS")
    for _ in range(2):
        if texts:
            emb.encode(texts, batch_size=batch)
        else:
            emb.session.run(None, _synthetic_feed(emb.session, emb.manifest.vocab_size, batch, seq))
    Path(out).write_text(json.dumps({"load_kb": loaded - base, "peak_kb": _rss_kb("VmHWM") - base}))


def _measure_memory(m: Manifest, variant: str, batch: int, seq: int, threads: int | None, providers: Sequence[Any] | None,
                    texts: Sequence[str] | None) -> tuple[float, float]:
    if not Path("/proc/self/status").exists():
        raise OSError("peak memory needs Linux /proc")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "mem.json"
        args = [str(m.root), variant, batch, seq, threads or 0, list(providers or []), list(texts) if texts else None, str(out)]
        code = "import json,sys; from onnxembed.bench.engine import _memory_probe; _memory_probe(*json.loads(sys.stdin.read()))"
        proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(args), capture_output=True, text=True, timeout=900)
        if proc.returncode:
            raise RuntimeError(f"memory probe for {variant} failed: {proc.stderr.strip().splitlines()[-1:]}")
        res = json.loads(out.read_text())
    return res["load_kb"] / 1024, res["peak_kb"] / 1024


# ---------------------------------------------------------------------------------------------- bench
def _choose_variants(m: Manifest, variants: Sequence[str] | None, quick: bool) -> list[str]:
    if variants:
        unknown = [v for v in variants if v not in m.variants]
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown} for {m.root}; present: {sorted(m.variants)}")
        names = list(dict.fromkeys(variants))
    elif quick:
        names = ["fp32", *_int8_for_cpu(m)[:1]]
    else:
        names = list(m.variants)
    if "fp32" in m.variants and "fp32" not in names:
        names.insert(0, "fp32")  # the reference for speedups and accuracy
    return names


def _int8_for_cpu(m: Manifest) -> list[str]:
    """int8 variants, the one built for this CPU first."""
    from ..providers import detect_cpu_features

    want = detect_cpu_features().int8_preset
    int8 = [n for n, v in m.variants.items() if v.precision == "int8"]
    return sorted(int8, key=lambda n: m.variants[n].info.get("cpu_feature") != want)


def _skip_reason(m: Manifest, name: str, providers: Sequence[Any] | None, include_gpu_formats: bool) -> str:
    v = m.variants[name]
    wants_cuda = any((p if isinstance(p, str) else p[0]) == "CUDAExecutionProvider" for p in providers or [])
    if (v.device == "cuda" or v.precision == "fp16") and not wants_cuda and not include_gpu_formats:
        return "fp16 CUDA format, not timed on the CPU (include_gpu_formats=True / --include-gpu-formats to time it anyway)"
    return ""


def _percentiles(samples: list[float]) -> tuple[float, float, float, float]:
    a = np.asarray(samples) * 1000.0
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return float(p50), float(p90), float(p99), float(a.mean())


def bench(
    folder: str | Path,
    variants: Sequence[str] | None = None,
    batch_sizes: Sequence[int] = (1, 8, 32),
    seq_lens: Sequence[int] = (16, 128, 512),
    texts: Sequence[str] | None = None,
    *,
    threads: int | None = None,
    providers: Sequence[Any] | None = None,
    rounds: int | None = None,
    min_seconds: float | None = None,
    warmup: int = 1,
    memory: bool | None = None,
    accuracy_texts: Sequence[str] | None = None,
    include_gpu_formats: bool = False,
    quick: bool = False,
    progress: Progress | None = None,
) -> BenchResult:
    """Time every variant of an artifact folder on the same workloads, interleaved, and compare to fp32.

    Args:
        folder: an artifact folder built by ``onnxembed build``.
        variants: variant keys to compare (default: all in the manifest; ``fp32`` is always added as the
            reference when the folder has it).
        batch_sizes: batch sizes of the workloads.
        seq_lens: tokens per text of the synthetic workloads (ignored when ``texts`` is given).
        texts: real texts instead of synthetic shapes: tokenized, length-sorted, padded per batch.
        threads: onnxruntime intra-op threads (None = onnxruntime's default, one per core).
        providers: onnxruntime execution providers (default CPU).
        rounds: interleaved rounds per workload (default 5, quick 3).
        min_seconds: time each variant runs per workload, split over the rounds (default 1.0, quick 0.3).
        warmup: untimed calls per variant and workload before the rounds.
        memory: measure peak RSS per variant in a fresh interpreter (default True, quick False).
        accuracy_texts: sentences for the cosine to fp32 (default :data:`ACCURACY_SENTENCES`).
        include_gpu_formats: time fp16 (CUDA) files on the CPU too.
        quick: batch 1 and 32 at 128 tokens, fp32 against the int8 file for this CPU, short rounds.
        progress: called as ``progress(done, total, message)`` after every round.

    Returns:
        A :class:`BenchResult`.

    >>> bench("artifacts/all-minilm-l6-v2", quick=True).measurement("fp32", "32x128").speedup  # doctest: +SKIP
    1.0
    """
    m = load_manifest(folder)
    if quick and (tuple(batch_sizes), tuple(seq_lens)) == ((1, 8, 32), (16, 128, 512)):
        batch_sizes, seq_lens = (1, 32), (128,)
    rounds = rounds or (3 if quick else 5)
    min_seconds = min_seconds if min_seconds is not None else (0.3 if quick else 1.0)
    memory = (not quick) if memory is None else memory
    if not batch_sizes or any(b < 1 for b in batch_sizes) or any(s < 2 for s in seq_lens):
        raise ValueError(f"batch sizes must be >= 1 and seq lens >= 2, got {list(batch_sizes)} and {list(seq_lens)}")
    if rounds < 1 or min_seconds < 0:
        raise ValueError(f"rounds must be >= 1 and min_seconds >= 0, got {rounds} and {min_seconds}")
    machine = machine_info(threads)
    config = json.loads((m.root / "config.json").read_text()) if (m.root / "config.json").is_file() else {}
    max_pos = int(config.get("max_position_embeddings", 10**9))

    names = _choose_variants(m, variants, quick)
    reports: dict[str, VariantReport] = {}
    embedders: dict[str, Any] = {}
    for name in names:
        v = m.variants[name]
        rep = reports[name] = VariantReport(name, v.file, round(v.size / 1e6, 1), v.precision, v.device)
        rep.reason = _skip_reason(m, name, providers, include_gpu_formats)
        if rep.reason:
            rep.status = "skipped"
            continue
        feat = v.info.get("cpu_feature")
        if feat and feat not in machine["features"] and not (feat == "arm64" and machine["arch"] in ("aarch64", "arm64")):
            rep.reason = f"built for {feat}, which this CPU lacks (timed anyway)"
        t0 = time.perf_counter()
        try:
            embedders[name] = _load(m.root, name, threads, providers)
        except Exception as e:  # onnxruntime raises its own exception types for graphs it cannot run
            rep.status, rep.reason = "failed", f"could not load: {str(e).splitlines()[0][:200]}"
            logger.warning("%s: %s", name, rep.reason)
            continue
        rep.load_s = time.perf_counter() - t0
        rep.providers = list(embedders[name].providers)
    live = list(embedders)

    # Workloads: (label, batch, seq or None, call(embedder), texts per call, tokens per call).
    workloads: list[tuple[str, int, int | None, Callable[[Any], Callable[[], Any]], int, int]] = []
    if texts is not None:
        texts = list(texts)
        if not texts:
            raise ValueError("texts is empty; give at least one text")
        ntok = 0
        if live:
            first = embedders[live[0]]
            ids, _ = first.tokenizer.encode_batch(texts, max_length=first.max_length)
            ntok = sum(len(x) for x in ids)
        for b in batch_sizes:
            call = lambda e, b=b: (lambda: e.encode(texts, batch_size=b))  # noqa: E731
            workloads.append((f"text n={len(texts)} b={b}", b, None, call, len(texts), ntok))
    else:
        for s in seq_lens:
            if s > max_pos:
                logger.warning("skipping seq_len %d: the model has %d positions", s, max_pos)
                continue
            for b in batch_sizes:
                def call(e: Any, b: int = b, s: int = s) -> Callable[[], Any]:
                    feed, sess = _synthetic_feed(e.session, m.vocab_size, b, s), e.session
                    return lambda: sess.run(None, feed)
                workloads.append((f"{b}x{s}", b, s, call, b, b * s))

    total = len(workloads) * rounds + (1 if live else 0) + (len(live) if memory else 0)
    done = 0

    def tick(msg: str) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total, msg)

    peak = peak_gflops(machine)
    measurements: list[Measurement] = []
    for label, b, s, make_call, ntexts, ntok in workloads:
        calls = {n: make_call(embedders[n]) for n in live}
        samples: dict[str, list[float]] = {n: [] for n in live}
        per_round: dict[str, int] = {}
        for n in live:  # warm-up; its time sets the calls per round
            t0 = time.perf_counter()
            for _ in range(max(1, warmup)):
                calls[n]()
            est = (time.perf_counter() - t0) / max(1, warmup)
            per_round[n] = max(1, math.ceil(min_seconds / rounds / max(est, 1e-6)))
        for r in range(rounds):
            k = r % len(live) if live else 0
            for n in live[k:] + live[:k]:  # rotated order: no variant always runs right after another
                fn, out = calls[n], samples[n]
                for _ in range(per_round[n]):
                    t0 = time.perf_counter()
                    fn()
                    out.append(time.perf_counter() - t0)
            tick(f"{label} round {r + 1}/{rounds}")
        for n in live:
            p50, p90, p99, mean = _percentiles(samples[n])
            mm = Measurement(n, label, b, s, len(samples[n]), ntexts, ntok, p50, p90, p99, mean,
                             ntexts / (p50 / 1000), ntok / (p50 / 1000))
            if s is not None and config:
                mm.gflops = flops_per_token(config, s) * mm.tokens_per_s / 1e9
                if peak:
                    mm.pct_of_peak = 100.0 * mm.gflops / peak["int8" if m.variants[n].precision == "int8" else "fp32"]
            measurements.append(mm)
        if "fp32" in live:
            ref = next(x for x in measurements if x.variant == "fp32" and x.workload == label)
            for x in measurements:
                if x.workload == label:
                    x.speedup = ref.p50_ms / x.p50_ms

    if live:
        sents = list(accuracy_texts or ACCURACY_SENTENCES)
        ref_vecs = embedders["fp32" if "fp32" in live else live[0]].encode(sents, batch_size=8).astype(np.float64)
        for n in live:
            vecs = embedders[n].encode(sents, batch_size=8).astype(np.float64)
            cos = (vecs * ref_vecs).sum(1) / np.maximum(np.linalg.norm(vecs, axis=1) * np.linalg.norm(ref_vecs, axis=1), 1e-30)
            reports[n].mean_cosine, reports[n].min_cosine = float(cos.mean()), float(cos.min())
        tick("accuracy")
    embedders.clear()
    mem_shape = [max(batch_sizes), min(max(seq_lens), max_pos) if texts is None else m.max_length]
    if memory:
        for n in live:
            try:
                reports[n].load_rss_mb, reports[n].peak_rss_mb = _measure_memory(m, n, mem_shape[0], mem_shape[1], threads, providers, texts)
            except (OSError, RuntimeError, subprocess.TimeoutExpired) as e:
                logger.warning("peak memory of %s not measured: %s", n, e)
            tick(f"memory {n}")

    settings = {"variants": names, "batch_sizes": list(batch_sizes), "seq_lens": None if texts is not None else list(seq_lens),
                "texts": None if texts is None else len(texts), "rounds": rounds, "min_seconds": min_seconds, "warmup": warmup,
                "memory_workload": mem_shape if memory else None, "providers": list(providers or []),
                "threads": threads, "quick": quick, "accuracy_sentences": len(accuracy_texts or ACCURACY_SENTENCES),
                "latency": "per onnxruntime run (fixed shapes) or per encode() of all texts (texts)"}
    return BenchResult(str(m.root), m.name, machine, settings, [reports[n] for n in names], measurements, peak)


def plot_result(result: BenchResult, path: str | Path) -> Path:
    """A bar chart of p50 latency per workload and variant (log scale). Needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("plotting needs matplotlib: pip install 'onnxembed[plot]' (or pip install matplotlib)") from e
    workloads = list(dict.fromkeys(x.workload for x in result.measurements))
    variants = list(dict.fromkeys(x.variant for x in result.measurements))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(workloads) * max(1, len(variants)) / 2), 4.5))
    width = 0.8 / max(1, len(variants))
    for i, v in enumerate(variants):
        ys = [(result.measurement(v, w).p50_ms if result.measurement(v, w) else 0.0) for w in workloads]
        ax.bar([j + i * width for j in range(len(workloads))], ys, width, label=v)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(workloads))], workloads, rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("p50 latency, ms (log)")
    ax.set_title(f"{result.model}: {result.machine['cpu']}, threads {result.machine['threads']}")
    ax.legend(fontsize="small")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
