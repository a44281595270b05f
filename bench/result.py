"""What ``bench`` returns: per-variant reports, per-workload measurements, and the table people read."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["BenchResult", "Measurement", "VariantReport"]


@dataclass
class Measurement:
    """Latency and throughput of one variant on one workload.

    ``pct_of_peak`` is the achieved rate against the peak of the variant's own precision
    (``BenchResult.peak["int8"]`` for int8 files, ``["fp32"]`` otherwise); see
    :func:`onnxembed.bench.peak_gflops`.
    """

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
    """What is known about one variant apart from its timings.

    ``mean_cosine`` / ``min_cosine`` are to the fp32 file on the bench's sentences
    (``BenchResult.settings["accuracy"]`` says which), not the build's held-out figures. For a
    reranker, ``score_spearman`` / ``score_max_diff`` compare its scores with the fp32 file's instead.
    """

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
    score_spearman: float | None = None
    score_max_diff: float | None = None
    peak_rss_mb: float | None = None
    load_rss_mb: float | None = None


@dataclass
class BenchResult:
    """Everything ``bench`` measured; ``to_json`` for machines, ``format_table`` for people.

    ``warnings`` holds what makes the figures less trustworthy (a busy machine, no int8 file for
    this CPU); the table prints them first.
    """

    folder: str
    model: str
    machine: dict[str, Any]
    settings: dict[str, Any]
    variants: list[VariantReport]
    measurements: list[Measurement]
    peak: dict[str, float] | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def measurement(self, variant: str, workload: str) -> Measurement | None:
        return next((m for m in self.measurements if m.variant == variant and m.workload == workload), None)

    def format_table(self) -> str:
        """Warnings, the machine header, the per-variant table and one row per variant and workload."""
        lines = [f"WARNING: {w}" for w in self.warnings]
        lines += _machine_lines(self.model, self.folder, self.machine, self.peak)
        lines += ["", *_variant_lines(self.variants, self.settings), "", *_measurement_lines(self.measurements, self.settings, self.peak)]
        return "\n".join(lines)


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _machine_lines(model: str, folder: str, mc: dict[str, Any], peak: dict[str, float] | None) -> list[str]:
    load = f"; load average at start {mc['load_average'][0]:.2f}" if mc.get("load_average") else ""
    lines = [
        f"model {model} ({folder})",
        f"cpu: {mc['cpu']}, {mc['cores']} cores @ {mc['mhz'] or '?'} MHz, features: {' '.join(mc['features']) or 'none'}",
        f"threads: {mc['threads']}; onnxruntime {mc['onnxruntime']}; python {mc['python']}{load}",
    ]
    if peak:
        lines.append(f"peak per precision (cores x GHz x ops/cycle): {peak_summary(peak)}")
    return lines


def peak_summary(peak: dict[str, float]) -> str:
    """``fp32 282 GFLOP/s, int8 1126 GOP/s (4x fp32), bf16 563 GFLOP/s (2x fp32)``."""
    parts = [f"fp32 {peak['fp32']:.0f} GFLOP/s", f"int8 {peak['int8']:.0f} GOP/s ({peak['int8'] / peak['fp32']:.0f}x fp32)"]
    if peak.get("bf16"):
        parts.append(f"bf16 {peak['bf16']:.0f} GFLOP/s ({peak['bf16'] / peak['fp32']:.0f}x fp32)")
    return ", ".join(parts)


def _variant_lines(variants: list[VariantReport], settings: dict[str, Any]) -> list[str]:
    rerank = settings.get("task") == "rerank"
    held_out = "held-out pairs (Spearman, nDCG@10)" if rerank else "held-out STS sentences"
    cols = f"{'score rho':>9} {'max|diff|':>9}" if rerank else f"{'mean cos':>9} {'min cos':>9}"
    lines = [f"accuracy: {settings.get('accuracy', 'cosine to fp32')} (the build's int8 figures are on {held_out})",
             f"{'variant':<20} {'precision':<9} {'size MB':>8} {cols} {'peak RSS MB':>11} {'load s':>7}  status"]
    for v in variants:
        status = v.status if not v.reason else f"{v.status}: {v.reason}"
        a, b = (v.score_spearman, v.score_max_diff) if rerank else (v.mean_cosine, v.min_cosine)
        lines.append(f"{v.name:<20} {v.precision:<9} {v.size_mb:>8.1f} {_fmt(a, '.5f'):>9} {_fmt(b, '.5f' if not rerank else '.2e'):>9}"
                     f" {_fmt(v.peak_rss_mb, '.0f'):>11} {_fmt(v.load_s, '.2f'):>7}  {status}")
    return lines


def _measurement_lines(measurements: list[Measurement], settings: dict[str, Any], peak: dict[str, float] | None) -> list[str]:
    unit = "pairs/s" if settings.get("task") == "rerank" else "texts/s"
    lines = [f"{'workload':<22} {'variant':<20} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {unit:>9} {'tokens/s':>10}"
             f" {'vs fp32':>8} {'% own peak':>10}"]
    for m in measurements:
        sp = "-" if m.speedup is None else f"{m.speedup:.2f}x"
        pk = "-" if m.pct_of_peak is None else f"{m.pct_of_peak:.0f}%"
        lines.append(f"{m.workload:<22} {m.variant:<20} {m.p50_ms:>9.2f} {m.p90_ms:>9.2f} {m.p99_ms:>9.2f}"
                     f" {m.texts_per_s:>9.1f} {m.tokens_per_s:>10.0f} {sp:>8} {pk:>10}")
    lines.append(f"({settings['rounds']} interleaved rounds per workload; speedup = fp32 p50 / variant p50 in this run)")
    if peak:
        lines.append(f"(% own peak = model FLOPs per second against the peak of the variant's own precision: int8 files against the"
                     f" int8 peak, {peak['int8'] / peak['fp32']:.0f}x the fp32 one, so a faster int8 file can show a smaller share)")
    return lines
