"""Static int8 QDQ rewriting of a plain fp32 graph, with SmoothQuant-style scaling.

Each quantized MatMul ``Y = X @ W`` (W an initializer) becomes

    X -> Mul(1/s) -> QuantizeLinear(scale_x, zp_x) -> DequantizeLinear ->  MatMul -> Y
                     W*s[:, None] as int8/uint8, per output channel -> DequantizeLinear -^

``s`` (one factor per input channel, SmoothQuant) moves activation outliers into the weights, where
per-channel scales absorb them. The activation scale is fixed at build time (static calibration), so a
text's embedding never depends on the other texts of its batch.

Where a static scale loses most (a token-wise outlier such as the [CLS] row of a GELU output, which no
per-channel factor can absorb; :func:`row_scaled_activations`), the activation instead gets one scale per
token row, computed in the graph from that row alone, so it is still independent of the batch:

    X -> ReduceMax(last axis) -> Max(floor) -> /127 = r      (Abs first unless X is almost non-negative)
    X / r -> QuantizeLinear(1, 128) -> DequantizeLinear -> MatMul -> Mul(r) -> Y onnxruntime's CPU provider fuses each
``DQ -> MatMul`` pair into an integer MatMul; the OpenVINO provider reads the same QDQ file.

The word-embedding table (the largest tensor of a small model) is stored as int8 with one scale per
row and dequantized after the lookup (:func:`quantize_embeddings`).

All arithmetic is numpy with fixed rounding: the same inputs always give byte-identical files. The
graph rewrite itself is :func:`onnxembed.quantize.graph.quantize_graph`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["ActStats", "QuantScheme", "embedding_tables", "quantize_embeddings", "quantizable_matmuls", "smoothing_factors",
           "fake_quant_error", "node_sensitivity", "row_scaled_activations", "token_errors"]


@dataclass(frozen=True)
class QuantScheme:
    """How numbers are stored: the part of a preset that shapes the arithmetic.

    Attributes:
        weight_dtype: ``int8`` (symmetric, zero point 0) or ``uint8`` (symmetric around 128).
        reduce_range: 7-bit weights (for AVX2 without VNNI, where u8 x s8 pairs saturate int16).
        smooth_alpha: SmoothQuant migration strength (0 turns smoothing off).
        row_scale_ratio: give an activation one scale per token row (computed in the graph, see
            :func:`row_scaled_activations`) when its median per-token error with a static scale is at
            least this many times the median over the model's activations; 0 keeps every scale static.
        row_range_growth: also give one scale per token row to an activation whose range over the search's
            dev texts is more than this many times its range over the calibration texts (a static scale
            would clip what the calibration did not see); 0 turns the check off.
    """

    weight_dtype: str = "int8"
    reduce_range: bool = False
    smooth_alpha: float = 0.5
    row_scale_ratio: float = 0.0
    row_range_growth: float = 0.0


@dataclass
class ActStats:
    """Per-input-channel statistics of one activation tensor over the calibration tokens (padding excluded)."""

    cmin: npt.NDArray[np.float64]
    cmax: npt.NDArray[np.float64]
    sample: npt.NDArray[np.float32]  # a fixed subsample of token rows, for the sensitivity measure
    # largest |value| over other texts (the search's dev texts) / largest |value| over the calibration texts
    growth: float = 1.0


def quantizable_matmuls(model: Any, *, attention: bool = False) -> list[Any]:
    """MatMul nodes whose second input is a 2-D float initializer (the weight MatMuls), in graph order.

    With ``attention``, fused ``Attention`` nodes (packed QKV weight) count too.
    """
    inits = {i.name: i for i in model.graph.initializer}
    ops = ("MatMul", "Attention") if attention else ("MatMul",)
    out = []
    for node in model.graph.node:
        if node.op_type in ops and node.input[1] in inits and len(inits[node.input[1]].dims) == 2:
            if inits[node.input[1]].data_type == 1:  # FLOAT
                out.append(node)
    return out


def smoothing_factors(act_absmax: npt.NDArray[np.float64], weights: list[npt.NDArray[np.float32]], alpha: float) -> npt.NDArray[np.float64]:
    """SmoothQuant factors ``s_j = max|X_j|^a / max|W_j|^(1-a)`` for one activation shared by ``weights``."""
    if alpha <= 0:
        return np.ones_like(act_absmax)
    w_absmax = np.max([np.abs(w).max(axis=1) for w in weights], axis=0).astype(np.float64)
    s = np.power(np.maximum(act_absmax, 1e-5), alpha) / np.power(np.maximum(w_absmax, 1e-5), 1.0 - alpha)
    return np.clip(s, 1e-2, 1e2)


def _act_qparams(lo: float, hi: float) -> tuple[np.float32, np.uint8]:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = np.float32(max(hi - lo, 1e-8) / 255.0)
    zp = np.uint8(np.clip(np.round(-lo / float(scale)), 0, 255))
    return scale, zp


def _quantize_weight(w: npt.NDArray[np.float64], scheme: QuantScheme) -> tuple[npt.NDArray[Any], npt.NDArray[np.float32], npt.NDArray[Any]]:
    qmax = 63 if scheme.reduce_range else 127
    absmax = np.abs(w).max(axis=0)
    scale = (np.maximum(absmax, 1e-12) / qmax).astype(np.float32)
    q = np.clip(np.round(w / scale.astype(np.float64)), -qmax, qmax)
    if scheme.weight_dtype == "uint8":
        return (q + 128).astype(np.uint8), scale, np.full(scale.shape, 128, np.uint8)
    return q.astype(np.int8), scale, np.zeros(scale.shape, np.int8)


def fake_quant_error(stats: ActStats, w: npt.NDArray[np.float32], s: npt.NDArray[np.float64], scheme: QuantScheme, *, row: bool = False) -> float:
    """Relative Frobenius error of the quantized MatMul on the calibration sample (the sensitivity measure).

    With ``row``, the activation has one scale per token row (``s`` should then be ones).
    """
    x = stats.sample.astype(np.float64)
    if row:
        rs = np.maximum(np.abs(x / s).max(axis=1, keepdims=True), 1e-8) / 127.0
        xq = np.clip(np.round(x / s / rs), -127, 127) * rs
    else:
        lo, hi = float((stats.cmin / s).min()), float((stats.cmax / s).max())
        a_scale, a_zp = _act_qparams(lo, hi)
        xq = (np.clip(np.round(x / s / float(a_scale)) + int(a_zp), 0, 255) - int(a_zp)) * float(a_scale)
    wq, w_scale, w_zp = _quantize_weight(w.astype(np.float64) * s[:, None], scheme)
    wd = (wq.astype(np.float64) - w_zp.astype(np.float64)) * w_scale.astype(np.float64)
    ref = x @ w.astype(np.float64)
    return float(np.linalg.norm(xq @ wd - ref) / max(np.linalg.norm(ref), 1e-12))


EMBEDDING_MIN_ROWS = 1000  # word-embedding tables (30,522 rows); position (512) and type (2) tables stay fp32
EMBEDDING_CHUNK_ROWS = 16384  # rows converted at a time (the float64 temporaries of a whole 250k-row table are GBs)


def embedding_tables(model: Any) -> list[Any]:
    """Gather nodes reading a large 2-D float initializer (the word-embedding table), in graph order."""
    import onnx

    inits = {i.name: i for i in model.graph.initializer}
    out = []
    readers: dict[str, int] = {}
    for node in model.graph.node:
        for x in node.input:
            readers[x] = readers.get(x, 0) + 1
    for node in model.graph.node:
        init = inits.get(node.input[0]) if node.op_type == "Gather" else None
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        if (init is not None and init.data_type == onnx.TensorProto.FLOAT and len(init.dims) == 2 and init.dims[0] >= EMBEDDING_MIN_ROWS
                and axis == 0 and readers[node.input[0]] == 1):  # a table shared with another node (tied weights) stays fp32
            out.append(node)
    return out


def quantize_embeddings(model: Any) -> tuple[Any, dict[str, Any]]:
    """Store each word-embedding table as int8 with one scale per row (symmetric), in place.

    ``Gather(W, ids)`` becomes ``Cast(Gather(W_int8, ids), float) * Gather(scale, ids)``: a looked-up
    row is exactly its own dequantized int8 row, so the table takes a quarter of the space (the largest
    tensor of a small model: 30,522 x 384 floats = 46.9 MB) at a relative error of at most 1/254 per value
    before the embedding LayerNorm.

    Returns:
        (model, {"tables": [names], "max_abs_error": float}).
    """
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    tables = []
    max_err = 0.0
    for node in embedding_tables(model):
        name, out = node.input[0], node.output[0]
        w32 = numpy_helper.to_array(inits[name])
        wq = np.empty(w32.shape, np.int8)
        scale = np.empty((w32.shape[0], 1), np.float64)
        for a in range(0, len(w32), EMBEDDING_CHUNK_ROWS):  # in row blocks: XLM-R's 250,002 x 1,024 table is 1 GB of fp32
            w = w32[a: a + EMBEDDING_CHUNK_ROWS].astype(np.float64)
            sc = np.maximum(np.abs(w).max(axis=1, keepdims=True), 1e-12) / 127.0
            wq[a: a + len(w)] = np.clip(np.rint(w / sc), -127, 127).astype(np.int8)
            scale[a: a + len(w)] = sc
            max_err = max(max_err, float(np.abs(wq[a: a + len(w)] * sc - w).max()))
        del w32
        tag = f"{name}_int8"
        graph.initializer.remove(inits[name])
        graph.initializer.extend([numpy_helper.from_array(wq, tag), numpy_helper.from_array(scale.astype(np.float32), f"{tag}_scale")])
        idx = list(graph.node).index(node)
        ids = node.input[1]
        new = [
            helper.make_node("Gather", [tag, ids], [f"{tag}_rows"], name=f"{node.name}_int8", axis=0),
            helper.make_node("Cast", [f"{tag}_rows"], [f"{tag}_rows_f"], name=f"{node.name}_cast", to=onnx.TensorProto.FLOAT),
            helper.make_node("Gather", [f"{tag}_scale", ids], [f"{tag}_row_scale"], name=f"{node.name}_scale", axis=0),
            helper.make_node("Mul", [f"{tag}_rows_f", f"{tag}_row_scale"], [out], name=f"{node.name}_dequantize"),
        ]
        graph.node.remove(node)
        for k, n in enumerate(new):
            graph.node.insert(idx + k, n)
        tables.append(name)
    return model, {"tables": tables, "max_abs_error": max_err}


ROW_FLOOR_FACTOR = 2.0  # the floor of a one-sided row scale: this many times the most negative calibrated value


def _row_floor(st: ActStats) -> tuple[float, bool]:
    """(floor of the row maximum, one-sided?) for a row-scaled activation.

    An activation whose calibrated values are (almost) non-negative, such as a GELU output (never below
    -0.17), needs only the row maximum: its negative side stays inside ``[-floor, floor]``, covered by
    the floor. Otherwise the row's absolute maximum is taken (an Abs pass more).
    """
    lo, hi = float(st.cmin.min()), float(st.cmax.max())
    if lo >= -0.05 * hi:
        return max(ROW_FLOOR_FACTOR * -lo, 1e-8), True
    return 1e-8, False


def token_errors(stats: ActStats, s: npt.NDArray[np.float64]) -> tuple[float, float]:
    """Median relative error per token of one activation quantized (static scale, row scale), on the calibration sample."""
    x = stats.sample.astype(np.float64) / s
    norm = np.maximum(np.linalg.norm(x, axis=1), 1e-12)
    a_scale, a_zp = _act_qparams(float((stats.cmin / s).min()), float((stats.cmax / s).max()))
    xs = (np.clip(np.round(x / float(a_scale)) + int(a_zp), 0, 255) - int(a_zp)) * float(a_scale)
    x0 = stats.sample.astype(np.float64)  # row-scaled activations are not smoothed
    rs = np.maximum(np.abs(x0).max(axis=1, keepdims=True), 1e-8) / 127.0
    xr = np.clip(np.round(x0 / rs), -127, 127) * rs
    static = np.linalg.norm(xs - x, axis=1) / norm
    row = np.linalg.norm(xr - x0, axis=1) / np.maximum(np.linalg.norm(x0, axis=1), 1e-12)
    return float(np.median(static)), float(np.median(row))


def row_scaled_activations(model: Any, stats: dict[str, ActStats], scheme: QuantScheme) -> list[str]:
    """The activations that get one scale per token row: where a static scale loses the most.

    A static per-tensor scale is set by the largest value over all calibration tokens; a token-wise
    outlier (all-MiniLM-L6-v2: the [CLS] row of the FFN's GELU output, 5-7x the other tokens) leaves the
    ordinary tokens a few dozen levels. Chosen: each activation whose median per-token error with its
    static scale is at least ``scheme.row_scale_ratio`` times the median of that error over the model's
    activations. A median cannot see a tail, so also each activation whose range grew by more than
    ``scheme.row_range_growth`` on texts the calibration did not see (``ActStats.growth``): on
    all-mpnet-base-v2 the last layer's GELU output reached 1.38x its calibrated range on the dev texts,
    and the held-out sentences it clipped ended at cosine 0.960 to fp32. Sorted by name; empty when both are 0.
    """
    from onnx import numpy_helper

    grown = {a for a, st in stats.items() if scheme.row_range_growth > 0 and st.growth > scheme.row_range_growth}
    if scheme.row_scale_ratio <= 0:
        return sorted(grown & {n.input[0] for n in quantizable_matmuls(model)})
    inits = {i.name: i for i in model.graph.initializer}
    groups: dict[str, list[Any]] = {}
    for node in quantizable_matmuls(model):
        groups.setdefault(node.input[0], []).append(node)
    errors = {}
    for act, nodes in groups.items():
        weights = [numpy_helper.to_array(inits[n.input[1]]).astype(np.float32) for n in nodes]
        st = stats[act]
        s = smoothing_factors(np.maximum(np.abs(st.cmin), np.abs(st.cmax)), weights, scheme.smooth_alpha)
        errors[act] = token_errors(st, s)[0]
    limit = scheme.row_scale_ratio * float(np.median(list(errors.values())))
    return sorted(a for a, e in errors.items() if e >= limit or a in grown)


def node_sensitivity(model: Any, stats: dict[str, ActStats], scheme: QuantScheme, *, attention: bool = False) -> dict[str, float]:
    """Per weight MatMul: relative error of that MatMul alone when quantized (see :func:`fake_quant_error`).

    Uses the same smoothing factors and row scales :func:`quantize_graph` uses (shared by MatMuls reading
    the same tensor).
    """
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    groups: dict[str, list[Any]] = {}
    for node in quantizable_matmuls(model, attention=attention):
        groups.setdefault(node.input[0], []).append(node)
    rows = set(row_scaled_activations(model, stats, scheme)) if not attention else set()
    out = {}
    for act, nodes in groups.items():
        st = stats[act]
        weights = [numpy_helper.to_array(inits[n.input[1]]).astype(np.float32) for n in nodes]
        alpha = 0.0 if act in rows else scheme.smooth_alpha
        s = smoothing_factors(np.maximum(np.abs(st.cmin), np.abs(st.cmax)), weights, alpha)
        for node, w in zip(nodes, weights):
            out[node.name] = fake_quant_error(st, w, s, scheme, row=act in rows)
    return out
