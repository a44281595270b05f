"""Experiment (measured, not shipped): the attention matmuls (Q K^T and softmax V) in int8 too.

Takes the shipped static int8 file, adds QuantizeLinear/DequantizeLinear pairs on both inputs of each
attention MatMul (uint8 asymmetric for Q and the softmax output, int8 symmetric for K^T and V; per-tensor
ranges from 256 STS-B dev sentences run through that file), then measures the int8 gates and the speed
against the plain fp32 file and the shipped int8 file. onnxruntime's CPU provider turns the pairs into
MatMulIntegerToFloat. Usage:

    python benchmarks/int8_attention.py artifacts/all-minilm-l6-v2 [--out /tmp/int8_attn.onnx]
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quant_recipes import speed_ratio  # noqa: E402
from onnxembed.quantize.calibrate import data_dir, read_sts, unique_sentences
from onnxembed.quantize.reference import ReferenceEncoder, make_session
from onnxembed.quantize.gates import reference_for, measure, check_gates
from onnxembed.quantize.presets import merge_gates

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("folder", type=Path)
ap.add_argument("--out", type=Path, default=Path("/tmp/int8_attn.onnx"))
args = ap.parse_args()
art = args.folder
man = json.loads((art / "manifest.json").read_text())
m = onnx.load(str(art / "onnx/model_qint8_avx512_vnni.onnx"))
inits = {i.name for i in m.graph.initializer}
producer = {o: n for n in m.graph.node for o in n.output}
att = [n for n in m.graph.node if n.op_type == "MatMul" and n.input[1] not in inits
       and producer.get(n.input[1]) is not None and producer[n.input[1]].op_type != "DequantizeLinear"
       and producer.get(n.input[0]) is not None and producer[n.input[0]].op_type != "DequantizeLinear"]
print("attention matmuls:", len(att), [producer[n.input[0]].op_type + "/" + producer[n.input[1]].op_type for n in att[:2]])
enc = ReferenceEncoder(art, man)
data = data_dir()
dev = unique_sentences(read_sts(data / "sts" / "stsb-dev.tsv"))[::5][:256]
names = sorted({x for n in att for x in n.input[:2]})
probe = onnx.ModelProto.FromString(m.SerializeToString())
for x in names: probe.graph.output.append(onnx.ValueInfoProto(name=x))
sess = make_session(probe)
lo = {x: np.inf for x in names}; hi = {x: -np.inf for x in names}
for idx in enc.batches(dev):
    f = enc.feeds([dev[i] for i in idx])
    for x, v in zip(names, sess.run(names, f)):
        lo[x] = min(lo[x], float(v.min())); hi[x] = max(hi[x], float(v.max()))
new_nodes = {}
add = []
for k, n in enumerate(att):
    chain = []
    for j, signed in ((0, False), (1, True)):
        x = n.input[j]; tag = f"oe_att{k}_{j}"
        if signed:
            amax = max(abs(lo[x]), abs(hi[x]))
            scale, zp = np.float32(amax / 127), np.array(0, np.int8)
        else:
            l, h = min(lo[x], 0.0), max(hi[x], 0.0)
            scale = np.float32((h - l) / 255 or 1.0); zp = np.array(np.clip(np.rint(-l / scale), 0, 255), np.uint8)
        add += [numpy_helper.from_array(np.array(scale, np.float32), f"{tag}_s"), numpy_helper.from_array(zp, f"{tag}_z")]
        chain += [helper.make_node("QuantizeLinear", [x, f"{tag}_s", f"{tag}_z"], [f"{tag}_q"], name=f"{tag}_Q"),
                  helper.make_node("DequantizeLinear", [f"{tag}_q", f"{tag}_s", f"{tag}_z"], [f"{tag}_dq"], name=f"{tag}_DQ")]
        n.input[j] = f"{tag}_dq"
    new_nodes[id(n)] = chain
out = []
for n in m.graph.node:
    out.extend(new_nodes.get(id(n), [])); out.append(n)
del m.graph.node[:]; m.graph.node.extend(out); m.graph.initializer.extend(add)
dst = args.out
onnx.save(m, str(dst))
ref = reference_for(make_session(art / "onnx/model.onnx"), enc, data)
acc = measure(make_session(dst), enc, ref)
print("accuracy vs fp32:", acc, "gate failures:", check_gates(acc, merge_gates(None)) or "none")
print("vs fp32:", speed_ratio(art / "onnx/model.onnx", dst, 0, {32: 7, 1: 40}))
print("vs int8:", speed_ratio(art / "onnx/model_qint8_avx512_vnni.onnx", dst, 0, {32: 7, 1: 40}))
