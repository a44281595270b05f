"""``onnxembed bench``: compare the variants of an artifact folder on this machine.

The pipeline, one module per stage: choose and load the variants (:mod:`.selection`), build the
workloads (:mod:`.workloads`), time them interleaved (:mod:`.timing`), compare embeddings to fp32
(:mod:`.accuracy`), measure peak memory in fresh interpreters (:mod:`.memory`), and describe the
machine (:mod:`.machine`). :func:`bench` composes them; :class:`BenchResult` prints the table.

Needs only the standard library, numpy and onnxruntime.

>>> r = bench("artifacts/all-minilm-l6-v2", quick=True)     # doctest: +SKIP
>>> print(r.format_table())                                  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..embedder import Embedder
from ..manifest import Manifest, load_manifest
from ..providers import detect_cpu_features, int8_variants_for_cpu
from .accuracy import ACCURACY_SENTENCES, accuracy_label, cosine_to_reference, scores_to_reference
from .machine import cpu_load, flops_per_token, load_warning, machine_info, peak_for, peak_gflops
from .memory import measure_peak_memory
from .result import BenchResult, Measurement, VariantReport
from .selection import REFERENCE, choose_variants, load_variants
from .timing import add_speedups, summarize, time_interleaved
from .workloads import RERANK_SHAPES, Workload, pair_workloads, shape_workloads, text_workloads

__all__ = ["ACCURACY_SENTENCES", "BenchResult", "Measurement", "VariantReport", "bench", "flops_per_token",
           "machine_info", "peak_gflops", "plot_result"]

logger = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]
DEFAULT_BATCH_SIZES, DEFAULT_SEQ_LENS = (1, 8, 32), (16, 128, 512)
QUICK_BATCH_SIZES, QUICK_SEQ_LENS = (1, 32), (128,)


@dataclass(frozen=True)
class Settings:
    """``bench``'s keyword arguments with the quick/default values filled in and checked."""

    batch_sizes: tuple[int, ...]
    seq_lens: tuple[int, ...]
    rounds: int
    min_seconds: float
    warmup: int
    memory: bool

    @classmethod
    def resolve(cls, batch_sizes: Sequence[int], seq_lens: Sequence[int], rounds: int | None, min_seconds: float | None,
                warmup: int, memory: bool | None, quick: bool) -> Settings:
        """Raises ValueError for sizes < 1, seq lens < 2, rounds < 1 or min_seconds < 0."""
        if quick and (tuple(batch_sizes), tuple(seq_lens)) == (DEFAULT_BATCH_SIZES, DEFAULT_SEQ_LENS):
            batch_sizes, seq_lens = QUICK_BATCH_SIZES, QUICK_SEQ_LENS
        s = cls(tuple(batch_sizes), tuple(seq_lens), rounds or (3 if quick else 5),
                min_seconds if min_seconds is not None else (0.3 if quick else 1.0), warmup, (not quick) if memory is None else memory)
        if not s.batch_sizes or any(b < 1 for b in s.batch_sizes) or any(n < 2 for n in s.seq_lens):
            raise ValueError(f"batch sizes must be >= 1 and seq lens >= 2, got {list(s.batch_sizes)} and {list(s.seq_lens)}")
        if s.rounds < 1 or s.min_seconds < 0:
            raise ValueError(f"rounds must be >= 1 and min_seconds >= 0, got {s.rounds} and {s.min_seconds}")
        return s

    def to_dict(self, texts: Sequence[str] | None) -> dict[str, Any]:
        """The settings as recorded in ``BenchResult.settings``."""
        return {"batch_sizes": list(self.batch_sizes), "seq_lens": None if texts is not None else list(self.seq_lens),
                "texts": None if texts is None else len(texts), "rounds": self.rounds, "min_seconds": self.min_seconds,
                "warmup": self.warmup, "latency": "per onnxruntime run (fixed shapes) or per encode() of all texts (texts)"}


class _Ticker:
    """Counts steps and reports ``progress(done, total, message)``."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.done, self.total, self.progress = 0, total, progress

    def __call__(self, msg: str) -> None:
        self.done += 1
        if self.progress:
            self.progress(self.done, self.total, msg)


def bench(
    folder: str | Path,
    variants: Sequence[str] | None = None,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    seq_lens: Sequence[int] = DEFAULT_SEQ_LENS,
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
    pair_shapes: Sequence[tuple[int, int]] = RERANK_SHAPES,
) -> BenchResult:
    """Time every variant of an artifact folder on the same workloads, interleaved, and compare to fp32.

    Args:
        folder: an artifact folder built by ``onnxembed build``.
        variants: variant keys to compare (default: all in the manifest, except int8 files for another
            CPU, which are reported as skipped; ``fp32`` is always added as the reference when the
            folder has it). A variant named here is timed even if it is for another CPU.
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
        quick: batch 1 and 32 at 128 tokens, fp32 against the int8 file for this CPU (the one
            ``Embedder.load(variant="int8")`` picks), short rounds.
        progress: called as ``progress(done, total, message)`` after every round.
        pair_shapes: for a reranker folder (``task: rerank``), the ``(queries, documents per query)``
            workloads, each scored in one ``Reranker.score`` call with the largest of ``batch_sizes``
            (pairs drawn from ``texts`` or the bench sentences); fixed shapes are timed only when
            ``seq_lens`` is given. Accuracy is then the Spearman and max |diff| of the scores against
            fp32 over the largest workload's pairs.

    Returns:
        A :class:`BenchResult`; its ``warnings`` say when the machine was busy or this CPU has no int8 file.

    >>> bench("artifacts/all-minilm-l6-v2", quick=True).measurement("fp32", "32x128").speedup  # doctest: +SKIP
    1.0
    """
    m = load_manifest(folder)
    rerank = m.task == "rerank"
    shapes_asked = tuple(seq_lens) != DEFAULT_SEQ_LENS
    if rerank and tuple(batch_sizes) == DEFAULT_BATCH_SIZES:
        batch_sizes = (32,)  # the pairs per onnxruntime run of Reranker.score's default
    cfg = Settings.resolve(batch_sizes, seq_lens, rounds, min_seconds, warmup, memory, quick)
    if texts is not None and not list(texts):
        raise ValueError("texts is empty; give at least one text")
    machine = {**machine_info(threads), "load": cpu_load()}
    features = detect_cpu_features()
    names = choose_variants(m, variants, quick, features)
    reports, embedders = load_variants(m, names, threads=threads, providers=providers, include_gpu_formats=include_gpu_formats,
                                       features=features, explicit=bool(variants))
    if embedders:  # what the loaded sessions really use (threads=None: the runtime splits the cores, see Embedder.load)
        first = next(iter(embedders.values()))
        intra = first.session.get_session_options().intra_op_num_threads
        machine["threads"] = f"{intra} intra-op per run, up to {first.parallel} runs side by side" + ("" if threads else " (the runtime's split)")
    config = _model_config(m)
    max_positions = int(config.get("max_position_embeddings", 10**9))
    sentences = list(accuracy_texts or ACCURACY_SENTENCES)
    if rerank:
        workloads = _rerank_workloads(cfg, list(texts or sentences), pair_shapes, embedders, max_positions, shapes_asked)
    else:
        workloads = _workloads(cfg, texts, embedders, max_positions)
    tick = _Ticker(len(workloads) * cfg.rounds + (1 if embedders else 0) + (len(embedders) if cfg.memory else 0), progress)
    peak = peak_gflops(machine)
    precisions = {n: m.variants[n].precision for n in names}
    measurements = _time_workloads(workloads, embedders, cfg, tick, _Rates(config, peak, precisions))
    largest = max((w for w in workloads if w.pairs), key=lambda w: w.texts_per_call, default=None)
    if rerank:
        _add_score_accuracy(reports, embedders, list(largest.pairs) if largest and largest.pairs else [], tick)
    else:
        _add_accuracy(reports, embedders, sentences, tick)
    live = list(embedders)
    embedders.clear()
    # a reranker's pairs fill its window (documents are truncated to it); an embedder's fixed shapes their longest
    mem_seq = min(m.max_length, max_positions) if rerank else min(max(cfg.seq_lens), max_positions) if texts is None else m.max_length
    mem_shape = [max(cfg.batch_sizes), mem_seq]
    if cfg.memory:
        _add_memory(m, reports, live, mem_shape, threads, providers, None if rerank else texts, tick)
    settings = {
        "task": m.task, "variants": names, **cfg.to_dict(texts), "memory_workload": mem_shape if cfg.memory else None,
        "providers": list(providers or []), "threads": threads, "quick": quick, "accuracy_sentences": len(sentences),
        "accuracy": (_rerank_label(largest, live) if rerank else
                     accuracy_label(len(sentences), live[0] if live and REFERENCE not in live else REFERENCE,
                                    custom=accuracy_texts is not None)),
        "pair_shapes": [list(x) for x in pair_shapes] if rerank else None,
        "cpu_int8_preset": features.int8_preset, "int8_for_this_cpu": int8_variants_for_cpu(m.variants, features),
    }
    warnings = _warnings(machine["load"], m, features, quick and not variants)
    logger.info("bench of %s done; %d warning(s) in the result", m.root, len(warnings))
    return BenchResult(str(m.root), m.name, machine, settings, [reports[n] for n in names], measurements, peak, warnings)


def _model_config(m: Manifest) -> dict[str, Any]:
    path = m.root / "config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _workloads(cfg: Settings, texts: Sequence[str] | None, embedders: dict[str, Embedder], max_positions: int) -> list[Workload]:
    if texts is None:
        return shape_workloads(cfg.batch_sizes, cfg.seq_lens, max_positions)
    n_tokens = next(iter(embedders.values())).tokenize(list(texts)).n_tokens if embedders else 0
    return text_workloads(list(texts), cfg.batch_sizes, n_tokens)


def _rerank_workloads(cfg: Settings, texts: list[str], pair_shapes: Sequence[tuple[int, int]], models: dict[str, Any],
                      max_positions: int, shapes_asked: bool) -> list[Workload]:
    """The pair workloads, then the fixed shapes when ``seq_lens`` was given."""
    first = next(iter(models.values()), None)
    count = (lambda pairs: first.tokenize(pairs).n_tokens) if first is not None else (lambda pairs: 0)
    out = pair_workloads(texts, pair_shapes, max(cfg.batch_sizes), count)
    return out + (shape_workloads(cfg.batch_sizes, cfg.seq_lens, max_positions) if shapes_asked else [])


def _rerank_label(largest: Workload | None, live: list[str]) -> str:
    ref = live[0] if live and REFERENCE not in live else REFERENCE
    n = largest.texts_per_call if largest else 0
    return f"scores against {ref} on the {n} pairs of the largest pair workload (Spearman, max |diff|)"


@dataclass(frozen=True)
class _Rates:
    """What turns tokens/s into GFLOP/s and a share of the variant's own peak."""

    config: dict[str, Any]
    peak: dict[str, float] | None
    precisions: dict[str, str]

    def apply(self, row: Measurement) -> None:
        if row.seq_len is None or not self.config:
            return
        row.gflops = flops_per_token(self.config, row.seq_len) * row.tokens_per_s / 1e9
        own = peak_for(self.peak, self.precisions[row.variant])
        if own:
            row.pct_of_peak = 100.0 * row.gflops / own


def _time_workloads(workloads: list[Workload], embedders: dict[str, Any], cfg: Settings, tick: _Ticker,
                    rates: _Rates) -> list[Measurement]:
    out: list[Measurement] = []
    for w in workloads:
        calls = {n: w.call_for(e) for n, e in embedders.items()}
        samples = time_interleaved(calls, rounds=cfg.rounds, min_seconds=cfg.min_seconds, warmup=cfg.warmup,
                                   on_round=lambda r, w=w: tick(f"{w.label} round {r + 1}/{cfg.rounds}"))
        rows = [summarize(n, w, samples[n]) for n in calls]
        for row in rows:
            rates.apply(row)
        add_speedups(rows, REFERENCE)
        out.extend(rows)
    return out


def _add_accuracy(reports: dict[str, VariantReport], embedders: dict[str, Embedder], sentences: list[str], tick: _Ticker) -> None:
    if not embedders:
        return
    reference = REFERENCE if REFERENCE in embedders else next(iter(embedders))
    for name, (mean, low) in cosine_to_reference(embedders, reference, sentences).items():
        reports[name].mean_cosine, reports[name].min_cosine = mean, low
    tick("accuracy")


def _add_score_accuracy(reports: dict[str, VariantReport], models: dict[str, Any], pairs: list[tuple[str, str]], tick: _Ticker) -> None:
    if not models or not pairs:
        return
    reference = REFERENCE if REFERENCE in models else next(iter(models))
    for name, (rho, diff) in scores_to_reference(models, reference, pairs).items():
        reports[name].score_spearman, reports[name].score_max_diff = rho, diff
    tick("accuracy")


def _add_memory(m: Manifest, reports: dict[str, VariantReport], live: list[str], shape: list[int], threads: int | None,
                providers: Sequence[Any] | None, texts: Sequence[str] | None, tick: _Ticker) -> None:
    for name in live:
        try:
            reports[name].load_rss_mb, reports[name].peak_rss_mb = measure_peak_memory(
                m.root, name, shape[0], shape[1], threads, providers, texts)
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as e:
            logger.warning("peak memory of %s not measured: %s", name, e)
        tick(f"memory {name}")


def _warnings(load: dict[str, Any], m: Manifest, features: Any, quick_choice: bool) -> list[str]:
    out = [w for w in [load_warning(load)] if w]
    if quick_choice and not int8_variants_for_cpu(m.variants, features):
        present = sorted(k for k, v in m.variants.items() if v.precision == "int8")
        refused = int8_variants_for_cpu(list(m.refused), features)  # made, then refused by the build's int8 gates
        out.append(f"no int8 file for this CPU ({features.int8_preset or 'no AVX2/AVX512-VNNI/arm64'}) in {m.root}; int8 files"
                   f" present: {present or 'none'}" + (f" ({', '.join(refused)} refused by its accuracy gates at build time)" if refused else "")
                   + "; timed fp32 only (Embedder.load(variant='int8') would raise too)")
    return out


def plot_result(result: BenchResult, path: str | Path) -> Path:
    """A bar chart of p50 latency per workload and variant (log scale). Needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        from onnxembed.extras import install_hint

        raise ImportError(f"plotting needs the plot extra (matplotlib); install it with: {install_hint('plot')}") from e
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
