"""``quantize_graph``: the graph rewrite that turns weight MatMuls into int8, in small steps.

One activation tensor at a time (every MatMul reading it shares its quantization):

1. :func:`_activation_chain`: optional SmoothQuant ``Mul``, optional per-row scale, ``QuantizeLinear``
   (and ``DequantizeLinear`` in the QDQ form);
2. per MatMul, :func:`_to_qdq` (portable QDQ: the weight's ``DequantizeLinear`` feeds the MatMul) or
   :func:`_to_integer_op` (onnxruntime's ``MatMulIntegerToFloat`` / ``QAttention``, CPU provider only);
3. :func:`_splice`: the new nodes go in before their first consumer (topological order kept), replaced
   initializers are dropped.

The arithmetic (smoothing factors, activation and weight scales) lives in :mod:`.qdq`; this module only
edits the graph. The same inputs give byte-identical files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .qdq import (
    ActStats,
    QuantScheme,
    _act_qparams,
    _quantize_weight,
    _row_floor,
    quantizable_matmuls,
    quantize_embeddings,
    row_scaled_activations,
    smoothing_factors,
)

__all__ = ["quantize_graph"]


@dataclass
class _Edits:
    """What the rewrite adds and removes; applied at the end by :func:`_splice`."""

    before: dict[int, list[Any]] = field(default_factory=dict)  # graph position -> nodes inserted before it
    after: dict[int, list[Any]] = field(default_factory=dict)  # graph position -> nodes inserted right after it
    drop_nodes: set[int] = field(default_factory=set)  # id() of nodes removed (bias Adds fused away)
    drop_inits: set[str] = field(default_factory=set)
    add_inits: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class _Activation:
    """How one activation tensor is quantized: its tag, the tensor MatMuls read, its scale and zero point."""

    tag: str
    src: str  # the tensor the weight MatMuls read (quantized and dequantized, or quantized for integer ops)
    scale: np.float32
    zero_point: np.uint8
    row: bool
    smooth: Any  # the SmoothQuant factors (numpy array), applied to the weights


def quantize_graph(
    model: Any,
    stats: dict[str, ActStats],
    scheme: QuantScheme,
    *,
    exclude: set[str] | frozenset[str] = frozenset(),
    integer_ops: bool = False,
    embeddings: bool = True,
    row_scaled: set[str] | frozenset[str] | None = None,
    fold_smoothing: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """Return a quantized copy of ``model`` with every weight MatMul not in ``exclude`` quantized.

    Args:
        model: the fp32 ``onnx.ModelProto`` (not modified).
        stats: calibration statistics keyed by activation tensor name (MatMul input 0).
        scheme: storage and smoothing settings.
        exclude: MatMul node names to keep in fp32.
        integer_ops: instead of QDQ pairs, write onnxruntime's integer operators with the same static
            scales: ``MatMulIntegerToFloat`` (the following bias Add fused into it, except after a
            row-scaled input) and, for a fused graph, ``QAttention`` (CPU provider only; the QDQ form is
            the portable one).
        embeddings: also store the word-embedding table as int8 per row (:func:`quantize_embeddings`).
        row_scaled: activation tensors quantized with one scale per token row instead of a static one;
            default: chosen by ``scheme.row_scale_ratio`` (:func:`row_scaled_activations`).
        fold_smoothing: write the SmoothQuant factors into a per-channel QuantizeLinear scale instead of
            a Mul (measured: onnxruntime's per-axis QuantizeLinear is several times slower; not used).

    Returns:
        (quantized model, {"quantized": [...], "fp32": [...], "row_scaled": [...], "embeddings": {...}})
        with node names sorted by graph order.

    >>> qmodel, info = quantize_graph(onnx.load("onnx/model.onnx"), stats, QuantScheme())  # doctest: +SKIP
    """
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    candidates = [n.name for n in quantizable_matmuls(model, attention=integer_ops)]
    targets = [n for n in quantizable_matmuls(model, attention=integer_ops) if n.name not in exclude]
    by_act: dict[str, list[Any]] = {}
    for node in targets:
        by_act.setdefault(node.input[0], []).append(node)
    row_set = set(row_scaled_activations(model, stats, scheme) if row_scaled is None else row_scaled)
    order = {id(n): i for i, n in enumerate(graph.node)}
    bias_add = _bias_adds(graph, inits)
    edits = _Edits()
    for k, (act_name, nodes) in enumerate(by_act.items()):
        weights = [_array(inits[n.input[1]]) for n in nodes]
        chain, act = _activation_chain(f"oe_q{k}", act_name, stats[act_name], weights, scheme, edits,
                                       row=act_name in row_set, fold=fold_smoothing, integer_ops=integer_ops)
        for node, w in zip(nodes, weights):
            wname = _add_quantized_weight(node, w, act, scheme, edits)
            if integer_ops:
                _to_integer_op(node, wname, act, bias_add, order, edits)
            else:
                chain.append(_to_qdq(node, wname, act, order, edits))
        edits.before[min(order[id(n)] for n in nodes)] = chain
    _splice(graph, edits)
    _set_opsets(model, integer_ops)
    emb_info: dict[str, Any] = {"tables": [], "max_abs_error": 0.0}
    if embeddings:
        model, emb_info = quantize_embeddings(model)
    by_order = candidates.index
    return model, {
        "quantized": sorted({n.name for n in targets}, key=by_order),
        "fp32": sorted(set(exclude) & set(candidates), key=by_order),
        "row_scaled": sorted({n.name for a, nodes in by_act.items() if a in row_set for n in nodes}, key=by_order),
        "embeddings": emb_info,
    }


def _array(init: Any) -> Any:
    from onnx import numpy_helper

    return numpy_helper.to_array(init).astype(np.float32)


def _bias_adds(graph: Any, inits: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    """MatMul output -> (the Add that is its only reader, that Add's 1-D initializer: the bias)."""
    readers: dict[str, list[Any]] = {}
    for n in graph.node:
        for x in n.input:
            readers.setdefault(x, []).append(n)
    out = {}
    for n in graph.node:
        r = readers.get(n.output[0], []) if n.output else []
        if n.op_type == "MatMul" and len(r) == 1 and r[0].op_type == "Add":
            other = r[0].input[1] if r[0].input[0] == n.output[0] else r[0].input[0]
            if other in inits and len(inits[other].dims) == 1:
                out[n.output[0]] = (r[0], other)
    return out


def _activation_chain(
    tag: str, act: str, st: ActStats, weights: list[Any], scheme: QuantScheme, edits: _Edits, *, row: bool, fold: bool, integer_ops: bool
) -> tuple[list[Any], _Activation]:
    """The nodes that quantize one activation tensor (smoothing, row scale, Q, and DQ unless integer ops)."""
    from onnx import helper, numpy_helper

    alpha = 0.0 if row else scheme.smooth_alpha  # a row scale absorbs token outliers; smoothing there measured no better
    s = smoothing_factors(np.maximum(np.abs(st.cmin), np.abs(st.cmax)), weights, alpha)
    lo, hi = float((st.cmin / s).min()), float((st.cmax / s).max())
    a_scale, a_zp = _act_qparams(lo, hi)
    chain: list[Any] = []
    src = act
    fold = fold and not row and alpha > 0
    if alpha > 0 and not fold:
        edits.add_inits.append(numpy_helper.from_array((1.0 / s).astype(np.float32), f"{tag}_inv_s"))
        chain.append(helper.make_node("Mul", [src, f"{tag}_inv_s"], [f"{tag}_smoothed"], name=f"{tag}_Smooth"))
        src = f"{tag}_smoothed"
    if row:  # one symmetric scale per token row, computed in the graph: independent of the batch
        a_scale, a_zp = np.float32(1.0), np.uint8(128)
        src = _row_scale_nodes(tag, src, st, chain, edits)
    edits.add_inits += [numpy_helper.from_array(np.array(a_scale, np.float32), f"{tag}_x_scale"),
                        numpy_helper.from_array(np.array(a_zp, np.uint8), f"{tag}_x_zp")]
    if fold:  # smoothing folded into a per-channel quantization scale: x / (a_scale * s_c), one pass
        edits.add_inits += [numpy_helper.from_array((np.float64(a_scale) * s).astype(np.float32), f"{tag}_x_scale_pc"),
                            numpy_helper.from_array(np.full(s.shape, a_zp, np.uint8), f"{tag}_x_zp_pc")]
        chain.append(helper.make_node("QuantizeLinear", [src, f"{tag}_x_scale_pc", f"{tag}_x_zp_pc"], [f"{tag}_xq"],
                                      name=f"{tag}_QuantizeLinear", axis=-1))
    else:
        chain.append(helper.make_node("QuantizeLinear", [src, f"{tag}_x_scale", f"{tag}_x_zp"], [f"{tag}_xq"], name=f"{tag}_QuantizeLinear"))
    read = f"{tag}_xq"
    if not integer_ops:
        chain.append(helper.make_node("DequantizeLinear", [f"{tag}_xq", f"{tag}_x_scale", f"{tag}_x_zp"], [f"{tag}_xdq"], name=f"{tag}_DequantizeLinear"))
        read = f"{tag}_xdq"
    return chain, _Activation(tag, read, a_scale, a_zp, row, s)


def _row_scale_nodes(tag: str, src: str, st: ActStats, chain: list[Any], edits: _Edits) -> str:
    """``r = max(rowmax(|x|), floor) / 127`` and ``x * (1 / r)``; returns the normalized tensor's name.

    The reciprocal is taken on the small ``(batch, seq, 1)`` tensor, so the full-size pass is a ``Mul``
    (measured faster than a full-size ``Div`` on onnxruntime's CPU provider).
    """
    from onnx import helper, numpy_helper

    floor, one_sided = _row_floor(st)
    edits.add_inits += [numpy_helper.from_array(np.array([-1], np.int64), f"{tag}_last_axis"),
                        numpy_helper.from_array(np.array(floor, np.float32), f"{tag}_floor"),
                        numpy_helper.from_array(np.array(1.0 / 127.0, np.float32), f"{tag}_inv_qmax"),
                        numpy_helper.from_array(np.array(127.0, np.float32), f"{tag}_qmax")]
    if one_sided:  # no Abs pass: the negative side never exceeds the floor
        chain.append(helper.make_node("ReduceMax", [src, f"{tag}_last_axis"], [f"{tag}_amax"], name=f"{tag}_RowMax", keepdims=1))
    else:
        chain += [helper.make_node("Abs", [src], [f"{tag}_abs"], name=f"{tag}_Abs"),
                  helper.make_node("ReduceMax", [f"{tag}_abs", f"{tag}_last_axis"], [f"{tag}_amax"], name=f"{tag}_RowMax", keepdims=1)]
    chain += [
        helper.make_node("Max", [f"{tag}_amax", f"{tag}_floor"], [f"{tag}_amax_floor"], name=f"{tag}_RowMaxFloor"),
        helper.make_node("Mul", [f"{tag}_amax_floor", f"{tag}_inv_qmax"], [f"{tag}_row_scale"], name=f"{tag}_RowScale"),
        helper.make_node("Div", [f"{tag}_qmax", f"{tag}_amax_floor"], [f"{tag}_row_inv"], name=f"{tag}_RowInverse"),
        helper.make_node("Mul", [src, f"{tag}_row_inv"], [f"{tag}_row_normalized"], name=f"{tag}_RowNormalize"),
    ]
    return f"{tag}_row_normalized"


def _add_quantized_weight(node: Any, w: Any, act: _Activation, scheme: QuantScheme, edits: _Edits) -> str:
    """The smoothed weight as int8 per output channel, with its scale and zero point; returns its name."""
    from onnx import numpy_helper

    wq, w_scale, w_zp = _quantize_weight(w.astype(np.float64) * act.smooth[:, None], scheme)
    wname = node.input[1]
    edits.add_inits += [numpy_helper.from_array(wq, f"{wname}_quantized"),
                        numpy_helper.from_array(w_scale, f"{wname}_scale"),
                        numpy_helper.from_array(w_zp, f"{wname}_zero_point")]
    edits.drop_inits.add(wname)
    return wname


def _rescale_rows(node: Any, act: _Activation, order: dict[int, int], edits: _Edits) -> None:
    """After a row-scaled input, multiply each output row back by its input row's scale."""
    from onnx import helper

    out = node.output[0]
    node.output[0] = f"{out}_rowq"
    edits.after.setdefault(order[id(node)], []).append(
        helper.make_node("Mul", [f"{out}_rowq", f"{act.tag}_row_scale"], [out], name=f"{node.name}_RowRescale"))


def _to_qdq(node: Any, wname: str, act: _Activation, order: dict[int, int], edits: _Edits) -> Any:
    """The portable form: the MatMul reads the dequantized activation and weight. Returns the weight's DQ node."""
    from onnx import helper

    dq = helper.make_node("DequantizeLinear", [f"{wname}_quantized", f"{wname}_scale", f"{wname}_zero_point"],
                          [f"{wname}_dequantized"], name=f"{node.name}_weight_DequantizeLinear", axis=1)
    node.input[0] = act.src
    node.input[1] = f"{wname}_dequantized"
    if act.row:
        _rescale_rows(node, act, order, edits)
    return dq


def _to_integer_op(node: Any, wname: str, act: _Activation, bias_add: dict[str, tuple[Any, str]], order: dict[int, int], edits: _Edits) -> None:
    """onnxruntime's integer form: ``QAttention`` or ``MatMulIntegerToFloat`` (its bias Add fused in)."""
    tag = act.tag
    q_in = [f"{tag}_xq", f"{wname}_quantized"]
    if node.op_type == "Attention":  # (input, weight, bias, in_scale, w_scale, mask, in_zp, w_zp)
        mask = node.input[3] if len(node.input) > 3 else ""
        new_in = q_in + [node.input[2], f"{tag}_x_scale", f"{wname}_scale", mask, f"{tag}_x_zp", f"{wname}_zero_point"]
        node.op_type = "QAttention"
    else:
        new_in = q_in + [f"{tag}_x_scale", f"{wname}_scale", f"{tag}_x_zp", f"{wname}_zero_point"]
        node.op_type = "MatMulIntegerToFloat"
        add = bias_add.get(node.output[0])
        if add is not None and not act.row:  # the bias Add fused into the integer MatMul
            new_in.append(add[1])
            node.output[0] = add[0].output[0]
            edits.drop_nodes.add(id(add[0]))
        elif act.row:
            _rescale_rows(node, act, order, edits)
    node.domain = "com.microsoft"
    del node.input[:]
    node.input.extend(new_in)


def _splice(graph: Any, edits: _Edits) -> None:
    """Apply the edits: new nodes around their positions, dropped nodes and unused initializers removed."""
    nodes_out = []
    for i, node in enumerate(graph.node):
        nodes_out.extend(edits.before.get(i, []))
        if id(node) not in edits.drop_nodes:
            nodes_out.append(node)
        nodes_out.extend(edits.after.get(i, []))
    still_used = {x for n in nodes_out for x in n.input}
    kept = [i for i in graph.initializer if i.name not in edits.drop_inits or i.name in still_used]
    del graph.node[:]
    graph.node.extend(nodes_out)
    del graph.initializer[:]
    graph.initializer.extend(kept + edits.add_inits)


def _set_opsets(model: Any, integer_ops: bool) -> None:
    from onnx import helper

    opset = next((o for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and opset.version < 13:
        opset.version = 13  # per-axis DequantizeLinear
    if integer_ops and not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
