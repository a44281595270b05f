"""Experiment (measured, not shipped): onnxruntime's fused CPU operators on the shipped int8 (QDQ) file.

Rewrites the int8 file and times each rewrite against the fp32 file and the shipped file, interleaved in
one run, at 32x128 (one run) and as 4 runs of 8x128 (the CPU provider's default budget, 1,024 tokens);
checks each output against the shipped file on a padded batch (max |diff| of pooled, normalized vectors):

- ``skipln``: bias Add + residual Add + LayerNormalization -> com.microsoft ``SkipLayerNormalization``;
- ``mha``: the attention core (Reshape, Transpose, scale, QK^T, mask, Softmax, AV) -> com.microsoft
  ``MultiHeadAttention`` with the Q/K/V biases and a key padding mask;
- ``integer``: each QDQ MatMul -> com.microsoft ``MatMulIntegerToFloat`` with its bias Add fused in
  (onnxruntime turns the QDQ file into MatMulIntegerToFloat itself, but keeps the bias Add);
- ``integer+skipln+mha``: all of them.

Every rewrite is a CPU-provider-only file (the OpenVINO provider ran the integer form 1.9x slower than the
QDQ file, which it runs whole). Usage:

    python benchmarks/contrib_fusions.py artifacts/all-minilm-l6-v2 [--rounds 7] [--heads 12]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _maps(g: Any) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    prod = {o: n for n in g.node for o in n.output}
    cons: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)
    return prod, cons


def _bias_of(add: Any, inits: dict[str, Any]) -> tuple[str, str] | None:
    """(bias initializer, other input) of an ``Add(bias, x)``, else None."""
    k = [i for i in (0, 1) if add.input[i] in inits and len(inits[add.input[i]].dims) == 1]
    return (add.input[k[0]], add.input[1 - k[0]]) if k else None


def _finish(model: Any) -> None:
    """Drop dead nodes and unused initializers; declare the com.microsoft domain."""
    from onnx import helper

    g = model.graph
    live, keep = {o.name for o in g.output}, []
    for n in reversed(list(g.node)):
        if any(o in live for o in n.output):
            keep.append(n)
            live.update(i for i in n.input if i)
    del g.node[:]
    g.node.extend(reversed(keep))
    kept = [i for i in g.initializer if i.name in live]
    del g.initializer[:]
    g.initializer.extend(kept)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))


def _replace(g: Any, drop: set[int], new: dict[int, list[Any]], head: list[Any]) -> None:
    nodes = list(head)
    for n in g.node:
        if id(n) in new:
            nodes.extend(new[id(n)])
        elif id(n) not in drop:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)


def skip_layer_norm(model: Any) -> int:
    from onnx import helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    prod, cons = _maps(g)
    drop: set[int] = set()
    new: dict[int, list[Any]] = {}
    for ln in g.node:
        add = prod.get(ln.input[0]) if ln.op_type == "LayerNormalization" else None
        if add is None or add.op_type != "Add" or len(cons[add.output[0]]) != 1:
            continue
        for side in (0, 1):
            inner = prod.get(add.input[side])
            found = _bias_of(inner, inits) if inner is not None and inner.op_type == "Add" and len(cons[inner.output[0]]) == 1 else None
            if found:
                eps = next((a.f for a in ln.attribute if a.name == "epsilon"), 1e-5)
                new[id(ln)] = [helper.make_node("SkipLayerNormalization", [found[1], add.input[1 - side], ln.input[1], ln.input[2], found[0]],
                                                [ln.output[0]], name=f"{ln.name}_Skip", domain="com.microsoft", epsilon=eps)]
                drop |= {id(add), id(inner)}
                break
    _replace(g, drop, new, [])
    return len(new)


def multi_head_attention(model: Any, num_heads: int) -> int:
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    prod, cons = _maps(g)
    drop: set[int] = set()
    new: dict[int, list[Any]] = {}
    for sm in g.node:
        if sm.op_type != "Softmax":
            continue
        try:  # HF BERT export: Softmax(Add(MatMul(Mul(Transpose(Reshape(q))), Mul(Transpose(Reshape(k)))), mask)) @ Transpose(Reshape(v))
            add = prod[sm.input[0]]
            qk = prod[add.input[0]]
            chains = [(prod[t], prod[prod[t].input[0]], prod[prod[prod[t].input[0]].input[0]]) for t in qk.input]
            (av,) = cons[sm.output[0]]
            trv = prod[av.input[1]]
            rsv = prod[trv.input[0]]
            (tr_out,) = cons[av.output[0]]
            (rs_out,) = cons[tr_out.output[0]]
            ops = [add.op_type, qk.op_type, av.op_type, trv.op_type, rsv.op_type, tr_out.op_type, rs_out.op_type]
            if ops != ["Add", "MatMul", "MatMul", "Transpose", "Reshape", "Transpose", "Reshape"] or \
                    any([m.op_type, t.op_type, r.op_type] != ["Mul", "Transpose", "Reshape"] for m, t, r in chains):
                continue
        except (KeyError, ValueError):
            continue
        qkv = [chains[0][2].input[0], chains[1][2].input[0], rsv.input[0]]
        biased = [_bias_of(prod[t], inits) if t in prod and prod[t].op_type == "Add" and len(cons[t]) == 1 else None for t in qkv]
        inputs = qkv + [""]
        if all(biased):
            name = f"{sm.name}_qkv_bias"
            g.initializer.append(numpy_helper.from_array(np.concatenate([numpy_helper.to_array(inits[b[0]]) for b in biased]).astype(np.float32), name))
            inputs = [b[1] for b in biased] + [name]
            drop |= {id(prod[t]) for t in qkv}
        new[id(rs_out)] = [helper.make_node("MultiHeadAttention", inputs + ["oe_key_padding_mask"], [rs_out.output[0]],
                                            name=f"{sm.name}_MHA", domain="com.microsoft", num_heads=num_heads)]
        drop |= {id(n) for n in (add, qk, sm, av, trv, rsv, tr_out)} | {id(n) for c in chains for n in c}
    head = [helper.make_node("Cast", ["attention_mask"], ["oe_key_padding_mask"], name="oe_mask_cast", to=TensorProto.INT32)] if new else []
    _replace(g, drop, new, head)
    return len(new)


def integer_matmuls(model: Any) -> int:
    from onnx import helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    prod, cons = _maps(g)
    drop: set[int] = set()
    count = 0
    for mm in list(g.node):
        a, b = (prod.get(mm.input[0]), prod.get(mm.input[1])) if mm.op_type == "MatMul" else (None, None)
        if not (a and b and a.op_type == b.op_type == "DequantizeLinear" and b.input[0] in inits):
            continue
        ins, out = [a.input[0], b.input[0], a.input[1], b.input[1], a.input[2], b.input[2]], mm.output[0]
        nxt = cons.get(out, [])
        found = _bias_of(nxt[0], inits) if len(nxt) == 1 and nxt[0].op_type == "Add" else None
        if found:
            ins.append(found[0])
            out = nxt[0].output[0]
            drop.add(id(nxt[0]))
        mm.CopyFrom(helper.make_node("MatMulIntegerToFloat", ins, [out], name=f"{mm.name}_int", domain="com.microsoft"))
        count += 1
    _replace(g, drop, {}, [])
    return count


def _pooled(sess: Any, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    out = sess.run(None, {i.name: feed[i.name] for i in sess.get_inputs()})[0]
    m = mask[..., None].astype(np.float32)
    v = (out * m).sum(1) / m.sum(1)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import onnx
    import onnxruntime as ort

    from onnxembed import load_manifest

    m = load_manifest(args.folder)
    src = onnx.load(str(m.path_of("qint8_avx512_vnni")))
    rewrites = {"skipln": (skip_layer_norm,), "mha": (multi_head_attention,), "integer": (integer_matmuls,),
                "integer+skipln+mha": (integer_matmuls, skip_layer_norm, multi_head_attention)}
    files = {"fp32": m.path_of("fp32"), "int8 (shipped QDQ)": m.path_of("qint8_avx512_vnni")}
    tmp = Path(tempfile.mkdtemp(prefix="contrib-"))
    for name, passes in rewrites.items():
        model = onnx.ModelProto.FromString(src.SerializeToString())
        counts = [p(model, args.heads) if p is multi_head_attention else p(model) for p in passes]
        _finish(model)
        files[name] = tmp / f"{name.replace('+', '_')}.onnx"
        onnx.save(model, str(files[name]))
        print(f"{name}: {dict(zip((p.__name__ for p in passes), counts))} nodes rewritten")
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    sessions = {k: ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"]) for k, p in files.items()}
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 30000, (16, 64))
    lens = rng.integers(3, 65, 16)
    lens[0] = 64
    mask = (np.arange(64)[None] < lens[:, None]).astype(np.int64)
    ids = ids * mask
    ids[:, 0] = 101
    ref = _pooled(sessions["int8 (shipped QDQ)"], ids, mask)
    for k, s in sessions.items():
        print(f"  {k:<22} max|diff| vs shipped int8 on a padded batch: {np.abs(_pooled(s, ids, mask) - ref).max():.2e}")
    big = rng.integers(1000, 30000, (32, 128))
    ones = np.ones_like(big)
    shapes = {"32x128 (1 run)": 32, "32x128 as 4 runs of 8": 8}
    times: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds + 1):
        order = list(sessions) if r % 2 == 0 else list(sessions)[::-1]
        for label, rows in shapes.items():
            for k in order:
                t = time.perf_counter()
                for i in range(0, 32, rows):
                    _pooled(sessions[k], big[i:i + rows], ones[i:i + rows])
                if r:  # round 0 warms up
                    times.setdefault((k, label), []).append(time.perf_counter() - t)
    print(f"\nonnxruntime {ort.__version__}, CPU provider, {args.threads} threads, {args.rounds} interleaved rounds; "
          "x = fp32 (1 run) / row, per round, median (range)")
    for k in sessions:
        cells = []
        for label in shapes:
            r = [a / b for a, b in zip(times[("fp32", "32x128 (1 run)")], times[(k, label)])]
            cells.append(f"{label}: {1e3 * statistics.median(times[(k, label)]):6.1f} ms x{statistics.median(r):.2f} ({min(r):.2f}-{max(r):.2f})")
        print(f"  {k:<22} " + "   ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
