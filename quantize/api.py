"""``quantize_model``: the fp32 export -> an accuracy-gated static int8 file.

The recipe, chosen by measurement on all-MiniLM-L6-v2 (see ``benchmarks/quant_recipes.py``):

1. Calibrate on STS-B *dev* sentences, or the user's own texts (:mod:`onnxembed.quantize.data` says
   where texts come from; none is ever a held-out text): per-channel min/max of every weight MatMul's input over the
   real tokens (padding excluded).
2. Static QDQ on the plain graph: uint8 per-tensor activations with fixed scales (so an embedding does
   not depend on its batch neighbours), int8 per-channel weights, SmoothQuant scaling; the
   word-embedding table as int8 per row (a quarter of its fp32 size). The MatMul inputs whose static
   scale loses most (measured on the calibration tokens; on MiniLM the FFN-output inputs, whose [CLS]
   row is 5-7x the others), and those whose range grows by more than 10 % on the dev sentences (a static
   scale would clip them; all-mpnet-base-v2's last GELU output), get one scale per token row instead,
   computed in the graph from that row alone. The strength ``alpha`` is picked among a few values by cosine to fp32 on 512 other dev
   sentences (best min, then mean).
3. If the dev figures are still under the gates, keep the most sensitive MatMuls in fp32, one at a time,
   ranked by each MatMul's own quantization error on the calibration activations (bounded).
4. Check the gates on held-out data (all unique STS-B test and STS12-16 sentences, STS-B test pairs)
   and record everything, including which texts calibrated and which judged the gates.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence


from ..errors import ValidationError
from .onnx_files import model_digest, save_model
from .calibrate import collect_stats
from .reference import ReferenceEncoder, make_session
from .data import QuantData, resolve_data, texts_sha256
from .gates import Reference, check_gates, cosines, failed_gates, gate_figures, measure, reference_for
from . import progress as judging
from .presets import get_preset, merge_gates
from .graph import quantize_graph
from .qdq import ActStats, QuantScheme, node_sensitivity, quantizable_matmuls

__all__ = ["quantize_model", "QuantizeResult", "SMOOTH_ALPHAS", "MAX_FP32_NODES"]

logger = logging.getLogger(__name__)

SMOOTH_ALPHAS = (0.75, 0.6, 0.5)  # each is tried; the best on the dev selection set wins (0.0 was worse on MiniLM)
MAX_FP32_NODES = 6
CALIBRATION_SENTENCES = 256
SELECTION_SENTENCES = 512
# Dev must clear the gates by this much: the 512 dev sentences have a shorter tail than the 21,166
# held-out ones (all-MiniLM-L6-v2, avx512_vnni: dev min 0.9976 where held-out gives 0.9897; means
# 0.9988 and 0.9987), so the min needs a wide margin and the mean a small one.
DEV_MARGIN = {"mean_cosine": 0.0005, "min_cosine": 0.01}
RERANK_DEV_MARGIN = 0.002  # a cross-encoder's selection pairs must clear the score Spearman gate by this much


@dataclass
class QuantizeResult:
    """What :func:`quantize_model` wrote and measured."""

    path: Path
    preset: str
    variant: str
    recipe: dict[str, Any]
    accuracy: dict[str, float]
    failures: list[str] = field(default_factory=list)
    # the failing gates as figures: {gate: {"figure", "threshold", "rule"}} (empty when every gate holds)
    failed_gates: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class _Context:
    """Everything that does not depend on the preset: computed once per fp32 file and reused."""

    model: Any
    enc: ReferenceEncoder
    stats: dict[str, ActStats]
    calib_info: dict[str, Any]
    calib_texts: list[str]
    selection: list[str]
    selection_ref: Any
    data: QuantData
    fp32_session: Any
    reference: Any = None  # gates.Reference (an encoder) or rerank.RerankReference (a cross-encoder)
    task: str = "embed"
    data_dir: str | Path | None = None
    # (scheme, gates, alphas, max_fp32_nodes) -> (model, search, accuracy): presets with the same
    # arithmetic (avx512_vnni and arm64) are searched and measured once.
    done: dict[tuple[Any, ...], tuple[Any, dict[str, Any], dict[str, Any]]] = field(default_factory=dict)


_CONTEXTS: dict[str, _Context] = {}


def _context(fp32_path: Path, model_dir: Path, manifest: dict[str, Any], data: QuantData, data_dir: str | Path | None = None) -> _Context:
    import onnx

    held = texts_sha256(data.heldout.texts) if data.heldout is not None else "-"
    task = manifest.get("task", "embed")
    key = hashlib.sha256(f"{model_digest(fp32_path)}|{data.key}|{held}|{json.dumps(manifest.get('input_names'))}|{task}|{data_dir}".encode()).hexdigest()
    if key in _CONTEXTS:
        return _CONTEXTS[key]
    model = onnx.load(str(fp32_path))
    enc: Any = ReferenceEncoder(model_dir, manifest)
    dev: list[Any] = list(data.calibration.texts)
    if task == "rerank":  # a cross-encoder's graph reads pairs: calibrate, select and judge on pairs
        from .rerank import PairEncoder, calibration_pairs

        enc, dev = PairEncoder(enc), calibration_pairs(data.calibration)
    step = max(1, len(dev) // (2 * CALIBRATION_SENTENCES))
    calib = dev[::step][0::2][:CALIBRATION_SENTENCES]
    taken = set(calib)
    rest = [t for t in dev if t not in taken]  # the selection set never overlaps the calibration set
    selection = rest[:: max(1, len(rest) // SELECTION_SENTENCES)][:SELECTION_SENTENCES]
    acts = sorted({n.input[0] for n in quantizable_matmuls(model)})
    # growth: how far each activation's range grows on the dev texts, which the calibration did not see (row-scale rule)
    stats = collect_stats(model, acts, enc, calib, growth_texts=selection)
    fp32_session = make_session(fp32_path)
    ctx = _Context(
        model=model,
        enc=enc,
        stats=stats,
        calib_info={**data.calibration.describe(), "overlap_removed": data.overlap_removed,
                    **({"pairs_used": len(calib), "selection_pairs": len(selection), "pairs_from": _pairs_from(data)} if task == "rerank"
                       else {"sentences": len(calib), "selection_sentences": len(selection)}),
                    "statistic": "per-channel min/max over non-padding tokens"},
        calib_texts=calib,
        selection=selection,
        selection_ref=enc.embed(fp32_session, selection),
        data=data,
        fp32_session=fp32_session,
        task=task,
        data_dir=data_dir,
    )
    if len(_CONTEXTS) >= 2:
        _CONTEXTS.clear()
    _CONTEXTS[key] = ctx
    return ctx


def _pairs_from(data: QuantData) -> str:
    from .rerank import LONG_DOC_EVERY, LONG_DOC_TEXTS

    base = "the source's scored pairs" if data.calibration.pairs else "consecutive calibration texts paired"
    return f"{base}; every {LONG_DOC_EVERY}th pair's document replaced by {LONG_DOC_TEXTS} calibration texts joined (long documents)"


def _foreign_arithmetic(preset: str) -> bool:
    """True when this CPU is not the preset's target, so its int8 kernels would not compute what the target does."""
    from ..providers import detect_cpu_features

    return detect_cpu_features().int8_preset != preset


def _dev_score(ctx: _Context, model: Any, exact: bool = False) -> dict[str, float]:
    if ctx.task == "rerank":
        from .rerank import dev_score

        return dev_score(ctx.enc.embed(make_session(model, exact_int8=exact), ctx.selection), ctx.selection_ref)
    cos = cosines(ctx.enc.embed(make_session(model, exact_int8=exact), ctx.selection), ctx.selection_ref)
    return {"mean_cosine": round(float(cos.mean()), 6), "min_cosine": round(float(cos.min()), 6)}


def _dev_ok(score: dict[str, float], gates: dict[str, float]) -> bool:
    if "score_spearman" in score:  # a cross-encoder
        return score["score_spearman"] >= gates["score_spearman"] + RERANK_DEV_MARGIN
    return all(score[k] >= gates[k] + DEV_MARGIN[k] for k in DEV_MARGIN)


def _rank(score: dict[str, float]) -> tuple[float, float]:
    if "score_spearman" in score:
        return (score["score_spearman"], -score["max_abs_logit_diff"])
    return (score["min_cosine"], score["mean_cosine"])


def _search(ctx: _Context, scheme: QuantScheme, gates: dict[str, float], alphas: Sequence[float], max_fp32_nodes: int,
            exact: bool = False, step: Callable[[dict[str, Any]], None] | None = None) -> tuple[Any, dict[str, Any]]:
    """Pick alpha (best dev min, then mean cosine), then keep the most sensitive MatMuls fp32 until the dev figures clear the gates.
    ``step(row)`` after each candidate is scored (progress)."""
    tried: list[dict[str, Any]] = []
    step = step or (lambda row: None)
    best = None
    for a in alphas:
        sch = replace(scheme, smooth_alpha=float(a))
        qmodel, _ = quantize_graph(ctx.model, ctx.stats, sch)
        score = _dev_score(ctx, qmodel, exact)
        tried.append({"smooth_alpha": float(a), "fp32_nodes": 0, **score})
        step(tried[-1])
        if best is None or _rank(score) > _rank(best[2]):
            best = (sch, qmodel, score)
    if best is None:
        raise ValueError("smooth_alphas is empty")
    sch, qmodel, score = best
    sens = node_sensitivity(ctx.model, ctx.stats, sch)
    ranked = sorted(sens, key=lambda n: (-sens[n], n))
    excluded: list[str] = []
    best_k, best_score = 0, score
    while not _dev_ok(score, gates) and len(excluded) < max_fp32_nodes:
        excluded.append(ranked[len(excluded)])
        qmodel, _ = quantize_graph(ctx.model, ctx.stats, sch, exclude=set(excluded))
        score = _dev_score(ctx, qmodel, exact)
        tried.append({"smooth_alpha": sch.smooth_alpha, "fp32_nodes": len(excluded), **score})
        step(tried[-1])
        logger.info("kept %d MatMuls fp32 (%s): dev %s", len(excluded), excluded[-1], score)
        if _rank(score) > _rank(best_score):
            best_k, best_score = len(excluded), score
    if not _dev_ok(score, gates):  # budget spent without clearing the margin: the best step seen
        excluded, score = excluded[:best_k], best_score
    qmodel, info = quantize_graph(ctx.model, ctx.stats, sch, exclude=set(excluded))
    search = {
        "smooth_alpha": sch.smooth_alpha,
        "dev": score,
        "tried": tried,
        "sensitivity_top": [{"node": n, "relative_error": round(sens[n], 5)} for n in ranked[:8]],
        "range_growth_top": [{"activation": a, "growth": round(st.growth, 4)}
                             for a, st in sorted(ctx.stats.items(), key=lambda kv: (-kv[1].growth, kv[0]))[:5]],
        **info,
    }
    return qmodel, search


def quantize_model(
    model_dir: str | Path,
    preset: str = "avx512_vnni",
    *,
    out: str | Path | None = None,
    manifest: dict[str, Any] | None = None,
    gates: dict[str, float] | None = None,
    data_dir: str | Path | None = None,
    calibration: str | Path | None = None,
    gate_data: str | Path | None = None,
    skip_gates: bool = False,
    smooth_alphas: Sequence[float] = SMOOTH_ALPHAS,
    max_fp32_nodes: int = MAX_FP32_NODES,
    check: bool = True,
    evaluate: bool = True,
    progress: Callable[[str], None] | None = None,
    external_threshold: int | None = None,
) -> QuantizeResult:
    """Quantize an artifact folder's ``onnx/model.onnx`` to static int8 and check the accuracy gates.

    Args:
        model_dir: the artifact folder (tokenizer files and ``onnx/model.onnx``).
        preset: ``avx512_vnni``, ``avx2`` or ``arm64`` (or the variant key, e.g. ``qint8_avx512_vnni``).
        out: the file to write; default ``model_dir/onnx/model_<variant>.onnx``.
        manifest: the manifest dict (pooling, normalize, input_names, max_length); default read from
            ``model_dir/manifest.json``.
        gates: overrides of :data:`~onnxembed.quantize.DEFAULT_GATES`.
        data_dir: a folder holding ``sts/*.tsv`` (takes precedence over ``$ONNXEMBED_DATA``; see
            :mod:`onnxembed.quantize.data` for the order in which texts are looked for).
        calibration: a file of calibration texts (``--calibration``): ``.txt`` one per line, ``.jsonl``
            with a ``text`` field, ``.parquet`` with a ``text`` column. The corpus you will embed is the
            best calibration there is.
        gate_data: a file of held-out texts for the gates (``--gate-data``): a ``.tsv`` of labelled
            pairs (``score/sentence1/sentence2``: cosine and Spearman gates) or plain texts (cosine gates).
        skip_gates: write the int8 file without gate texts (``--skip-gates``); ``accuracy`` then says
            ``gates_run: False``. Without it, no gate texts anywhere is an error before anything is written.
        smooth_alphas: SmoothQuant strengths to try, in order.
        max_fp32_nodes: at most this many MatMuls are kept in fp32.
        check: raise :class:`~onnxembed.errors.ValidationError` when a gate fails (the file is still written).
        evaluate: measure the gates on held-out data (False: write the file only, e.g. to check that a
            rebuild is byte-identical; ``accuracy`` is then empty).
        progress: called with a line at most every 30 s while the gates are judged (default: the log),
            e.g. ``quint8_avx2: judged 4,096 / 21,166 sentences, 3 min 10 s, ~12 min left``.
        external_threshold: weights over this many bytes are written to ``<file>_data`` beside the file
            (default :data:`~onnxembed.quantize.onnx_files.EXTERNAL_DATA_THRESHOLD`, under protobuf's 2 GB).

    Returns:
        A :class:`QuantizeResult` with the recipe and accuracy figures for the manifest.

    >>> r = quantize_model("artifacts/all-minilm-l6-v2", preset="avx512_vnni")  # doctest: +SKIP
    >>> r.accuracy["mean_cosine"] >= 0.995
    True
    """
    model_dir = Path(model_dir)
    p = get_preset(preset)
    if not smooth_alphas:
        raise ValueError("smooth_alphas must name at least one SmoothQuant strength, e.g. (0.75,)")
    if manifest is None:
        manifest = json.loads((model_dir / "manifest.json").read_text(encoding="utf-8"))
    task = manifest.get("task", "embed")
    if task == "rerank" and int(manifest.get("num_labels", 1)) != 1:
        raise ValueError(f"{manifest.get('name', model_dir)} is a cross-encoder with {manifest.get('num_labels')} labels; int8 files are "
                         "built for one-label (relevance score) cross-encoders only, whose gates judge one score per pair; "
                         "build fp32 and O1..O4, e.g. --variants fp32,O2")
    g = merge_gates(gates, task)
    fp32_path = model_dir / "onnx" / "model.onnx"
    if not fp32_path.is_file():
        raise FileNotFoundError(f"{fp32_path} not found; int8 variants are made from the fp32 export (onnxembed build)")
    data = resolve_data(calibration=calibration, gate_data=gate_data, data_dir=data_dir, skip_gates=skip_gates)
    ctx = _context(fp32_path, model_dir, manifest, data, data_dir)
    exact = _foreign_arithmetic(p.name)  # judge the target CPU's arithmetic, not this CPU's kernels
    say = progress or (lambda msg: logger.info("%s", msg))
    key = (p.scheme, tuple(sorted(g.items())), tuple(smooth_alphas), max_fp32_nodes, exact)
    if key in ctx.done:
        qmodel, search, cached_acc = ctx.done[key]
        logger.info("%s: same arithmetic as an earlier preset; reusing its search and figures", p.variant)
    else:
        steps = _search_steps(p.variant, len(smooth_alphas) + max_fp32_nodes, len(ctx.selection), say) if exact else None
        qmodel, search = _search(ctx, p.scheme, g, smooth_alphas, max_fp32_nodes, exact, steps)
        cached_acc = {}

    dst = Path(out) if out else model_dir / p.file
    save_model(qmodel, dst, external_threshold=external_threshold)
    acc, failures = _judge(ctx, key, dst, qmodel, search, cached_acc, g, skip_gates=skip_gates, evaluate=evaluate, variant=p.variant,
                           exact=exact, say=say)
    recipe = _recipe(replace(p.scheme, smooth_alpha=search["smooth_alpha"]), search, ctx.calib_info, g)
    logger.info("%s: %s %s", p.variant, acc, "ok" if not failures else failures)
    result = QuantizeResult(path=dst, preset=p.name, variant=p.variant, recipe=recipe, accuracy=acc, failures=failures,
                            failed_gates=_failed(ctx, acc, g) if failures else {})
    if failures and check:
        raise ValidationError(f"{dst.name} ({p.variant}) fails the int8 accuracy gates:", failures)
    return result


def _judge(ctx: _Context, key: Any, dst: Path, qmodel: Any, search: dict[str, Any], cached_acc: dict[str, Any],
           gates: dict[str, float], *, skip_gates: bool, evaluate: bool, variant: str, exact: bool = False,
           say: Callable[[str], None] = logger.info) -> tuple[dict[str, Any], list[str]]:
    """The accuracy figures of the written file and the gates it fails (reused for presets of the same arithmetic)."""
    if skip_gates:
        logger.warning("%s: written WITHOUT accuracy gates (skip_gates)", variant)
        return {"gates_run": False, "reason": "skipped on request (skip_gates=True, --skip-gates): no held-out texts judged this file"}, []
    if not evaluate:
        return {}, []
    if cached_acc:
        acc = dict(cached_acc)
        return acc, _check(ctx, acc, gates)
    if ctx.task == "rerank":
        from .rerank import measure_rerank, rerank_reference

        if ctx.reference is None:
            ctx.reference = rerank_reference(ctx.fp32_session, ctx.enc, ctx.data, ctx.data_dir)
        tick = _ticker(ctx.reference.judged, "pairs", variant, exact, say)
        acc = measure_rerank(make_session(dst, exact_int8=exact), ctx.enc, ctx.reference, tick)
    else:
        if ctx.reference is None:
            ctx.reference = reference_for(ctx.fp32_session, ctx.enc, ctx.data)
        tick = _ticker(ctx.reference.judged, "sentences", variant, exact, say)
        acc = measure(make_session(dst, exact_int8=exact), ctx.enc, ctx.reference, tick)
    acc["arithmetic"] = ("exact int8 (unfused QDQ): this CPU is not the file's target" if exact else "this CPU's int8 kernels")
    failures = _check(ctx, acc, gates)
    acc["gates_passed"] = not failures
    ctx.done[key] = (qmodel, search, acc)
    return acc, failures


def _ticker(total: int, unit: str, variant: str, exact: bool, say: Callable[[str], None]) -> Callable[[int], None]:
    """The judging's progress: a line at most every :data:`~onnxembed.quantize.progress.EVERY` seconds."""
    if exact:
        say(f"{variant}: judging {total:,} {unit} in exact int8 arithmetic (this CPU is not the file's target: "
            "unfused kernels, several times slower)")
    return judging.JudgeProgress(variant, total, say, unit=unit, every=judging.EVERY).add


def _search_steps(variant: str, most: int, texts: int, say: Callable[[str], None]) -> Callable[[dict[str, Any]], None]:
    """One line per candidate of a search in exact int8 arithmetic (minutes each on a base-size model)."""
    started, done = time.monotonic(), [0]

    def step(row: dict[str, Any]) -> None:
        done[0] += 1
        dev = ", ".join(f"{k} {v:.5f}" for k, v in row.items() if k not in ("smooth_alpha", "fp32_nodes"))
        say(f"{variant}: recipe search in exact int8 arithmetic, candidate {done[0]} (at most {most}): smooth_alpha {row['smooth_alpha']}, "
            f"{row['fp32_nodes']} MatMuls fp32: {dev} on {texts:,} dev texts, {judging.format_duration(time.monotonic() - started)}")

    return step


def _failed(ctx: _Context, acc: dict[str, Any], gates: dict[str, float]) -> dict[str, dict[str, Any]]:
    """The failing gates with their figures and thresholds."""
    if ctx.task == "rerank":
        from .rerank import rerank_gate_figures

        return failed_gates(rerank_gate_figures(acc), gates)
    return failed_gates(gate_figures(acc), gates)


def _check(ctx: _Context, acc: dict[str, Any], gates: dict[str, float]) -> list[str]:
    if ctx.task == "rerank":
        from .rerank import check_rerank_gates

        return check_rerank_gates(acc, gates)
    return check_gates(acc, gates)


def _recipe(scheme: QuantScheme, search: dict[str, Any], calibration: dict[str, Any], gates: dict[str, float]) -> dict[str, Any]:
    """What the manifest records of how the file was made."""
    rows = search["row_scaled"]
    return {
        "method": ("static QDQ, SmoothQuant scaling, per-token-row scales where a static scale loses most or the range grows on "
                   "the dev texts, sensitivity-ranked fp32 fallback"),
        "source_graph": "onnx/model.onnx (plain fp32 export)",
        "activations": "uint8, per-tensor, asymmetric, static (calibrated)"
        + (f"; {len(rows)} MatMul inputs with one symmetric scale per token row, computed in the graph" if rows else ""),
        "row_scale_ratio": scheme.row_scale_ratio,
        "row_range_growth": scheme.row_range_growth,
        "row_scaled_nodes": rows,
        "weights": f"{scheme.weight_dtype}, per-channel, symmetric" + (", 7-bit (reduce_range)" if scheme.reduce_range else ""),
        "smooth_alpha": scheme.smooth_alpha,
        "quantized_nodes": len(search["quantized"]),
        "fp32_nodes": search["fp32"],
        "embeddings": {"storage": "int8, one symmetric scale per row, dequantized after the lookup",
                       "tables": search["embeddings"]["tables"], "max_abs_error": round(search["embeddings"]["max_abs_error"], 8)},
        "calibration": calibration,
        "search": {k: search[k] for k in ("dev", "tried", "sensitivity_top", "range_growth_top")},
        "gates": gates,
    }
