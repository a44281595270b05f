"""int8 quantization: QDQ structure, presets, determinism, gates; accuracy gates on the real embedded model."""

from __future__ import annotations

from dataclasses import replace

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxembed.errors import ValidationError
from onnxembed.quantize import DEFAULT_GATES, PRESETS, QuantScheme, get_preset, quantize_model
from onnxembed.quantize.gates import spearman
from onnxembed.quantize.presets import merge_gates
from onnxembed.quantize.graph import quantize_graph
from onnxembed.quantize.qdq import quantizable_matmuls

from test_fusion import TINY_LAYERS, make_workdir  # tests/ is on sys.path (pytest rootdir mode)

NO_GATES = {"mean_cosine": -1.0, "min_cosine": -1.0, "stsb_spearman_drop": 100.0, "batch_stability": -1.0}
MATMULS_PER_LAYER = 6  # query, key, value, attention output, FFN in, FFN out
ACTIVATIONS_PER_LAYER = 4  # q/k/v share their input
INTEGER_OPS_MIN_COSINE = 0.999  # the integer form of the tiny model measures 0.99999 on its calibration texts


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def op_counts(path: Path) -> dict[str, int]:
    m = onnx.load(str(path))
    out: dict[str, int] = {}
    for n in m.graph.node:
        out[n.op_type] = out.get(n.op_type, 0) + 1
    return out


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory, real_checkpoint: Path) -> tuple[Path, dict]:
    return make_workdir(tmp_path_factory.mktemp("quant-bert"), "gte-small", real_checkpoint, seed=3)


@pytest.fixture(scope="module")
def tiny_quantized(tiny_bert: tuple[Path, dict], data_dir: Path):  # type: ignore[no-untyped-def]
    work, manifest = tiny_bert
    return quantize_model(work, "avx512_vnni", manifest=manifest, gates=NO_GATES, data_dir=data_dir)


def test_qdq_structure(tiny_bert: tuple[Path, dict], tiny_quantized) -> None:  # type: ignore[no-untyped-def]
    ops = op_counts(tiny_quantized.path)
    assert ops["QuantizeLinear"] == ACTIVATIONS_PER_LAYER * TINY_LAYERS
    assert ops["DequantizeLinear"] == (ACTIVATIONS_PER_LAYER + MATMULS_PER_LAYER) * TINY_LAYERS
    assert tiny_quantized.recipe["quantized_nodes"] == MATMULS_PER_LAYER * TINY_LAYERS
    assert tiny_quantized.recipe["fp32_nodes"] == []
    # every row-scaled input has one row maximum, and each MatMul reading it one rescale of its output
    rows = tiny_quantized.recipe["row_scaled_nodes"]
    fp32 = onnx.load(str(tiny_bert[0] / "onnx" / "model.onnx"))
    assert ops.get("ReduceMax", 0) == len({n.input[0] for n in fp32.graph.node if n.name in rows})
    m = onnx.load(str(tiny_quantized.path))
    assert sorted(n.name for n in m.graph.node if n.name.endswith("_RowRescale")) == sorted(f"{r}_RowRescale" for r in rows)
    m = onnx.load(str(tiny_quantized.path))
    weights = [i for i in m.graph.initializer if i.name.endswith("_quantized")]
    assert len(weights) == MATMULS_PER_LAYER * TINY_LAYERS and all(w.data_type == onnx.TensorProto.INT8 for w in weights)
    assert not quantizable_matmuls(m)  # no fp32 weight MatMul left


def test_word_embedding_table_is_int8_per_row(tiny_bert: tuple[Path, dict], tiny_quantized) -> None:  # type: ignore[no-untyped-def]
    work, _ = tiny_bert
    fp32 = onnx.load(str(work / "onnx" / "model.onnx"))
    table = next(i for i in fp32.graph.initializer if i.name == "embeddings.word_embeddings.weight")
    w = numpy_helper.to_array(table)
    m = onnx.load(str(tiny_quantized.path))
    inits = {i.name: i for i in m.graph.initializer}
    assert table.name not in inits  # the fp32 table is gone ...
    q = numpy_helper.to_array(inits[f"{table.name}_int8"])
    scale = numpy_helper.to_array(inits[f"{table.name}_int8_scale"])
    assert q.dtype == np.int8 and q.shape == w.shape and scale.shape == (w.shape[0], 1)  # ... stored as int8, one scale per row
    assert np.abs(q.astype(np.float32) * scale - w).max() <= scale.max() / 2 + 1e-7  # round to nearest
    nonzero = np.abs(w).max(axis=1) > 0  # (the padding row is all zeros)
    assert (np.abs(q).max(axis=1)[nonzero] == 127).all()  # each row uses the full int8 range
    emb = tiny_quantized.recipe["embeddings"]
    assert emb["tables"] == [table.name] and 0 < emb["max_abs_error"] <= float(scale.max()) / 2 + 1e-7
    # Position and token-type tables are small and stay fp32.
    assert inits["embeddings.position_embeddings.weight"].data_type == onnx.TensorProto.FLOAT


def test_recipe_and_accuracy_recorded(tiny_quantized) -> None:  # type: ignore[no-untyped-def]
    r = tiny_quantized
    assert r.path.name == "model_qint8_avx512_vnni.onnx" and r.variant == "qint8_avx512_vnni"
    calib = r.recipe["calibration"]
    assert calib["source"].startswith("data_dir:") and calib["split"] == "validation+train+trial+test" and calib["sentences"] > 100
    assert list(calib["files"]) == ["sts/stsb-dev.tsv", "sts/sick-r-train-trial.tsv", "sts/sick-r.tsv"] and len(calib["sha256"]) == 64 and calib["overlap_removed"] > 0
    assert set(r.accuracy) >= {"mean_cosine", "min_cosine", "q001_cosine", "stsb_spearman", "stsb_spearman_fp32", "batch_stability_min_cosine"}
    assert r.accuracy["min_cosine"] <= r.accuracy["q001_cosine"] <= r.accuracy["mean_cosine"]
    held = r.accuracy["data"]["heldout"]
    assert held["texts"] == r.accuracy["heldout_sentences"] >= 5000 and held["split"] == "test"
    assert sorted(held["files"]) == ["sts/sts12.tsv", "sts/sts13.tsv", "sts/sts14.tsv", "sts/sts15.tsv", "sts/sts16.tsv", "sts/stsb-test.tsv"]
    assert r.accuracy["data"]["sts_pairs"]["pairs"] == 1379  # STS-B test
    # static activation scales: a text's embedding does not depend on its batch neighbours
    assert r.accuracy["batch_stability_min_cosine"] >= 0.9999


def test_quantization_is_deterministic(tiny_bert: tuple[Path, dict], tiny_quantized, data_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from onnxembed.quantize import api

    api._CONTEXTS.clear()  # recalibrate from scratch
    work, manifest = tiny_bert
    again = quantize_model(work, "avx512_vnni", out=tmp_path / "again.onnx", manifest=manifest, data_dir=data_dir, evaluate=False)
    assert sha(again.path) == sha(tiny_quantized.path)


def test_avx2_preset_stores_7bit_uint8_weights(tiny_bert: tuple[Path, dict], data_dir: Path, tmp_path: Path) -> None:
    work, manifest = tiny_bert
    r = quantize_model(work, "quint8_avx2", out=tmp_path / "avx2.onnx", manifest=manifest, gates=NO_GATES, data_dir=data_dir)
    m = onnx.load(str(r.path))
    for init in (i for i in m.graph.initializer if i.name.endswith("_quantized")):
        w = numpy_helper.to_array(init)
        assert w.dtype == np.uint8 and w.min() >= 128 - 63 and w.max() <= 128 + 63
    assert "7-bit" in r.recipe["weights"] and r.variant == "quint8_avx2"


def test_excluded_nodes_stay_fp32(tiny_bert: tuple[Path, dict]) -> None:
    from onnxembed.quantize.calibrate import collect_stats
    from onnxembed.quantize.reference import ReferenceEncoder

    work, manifest = tiny_bert
    model = onnx.load(str(work / "onnx" / "model.onnx"))
    names = [n.name for n in quantizable_matmuls(model)]
    acts = sorted({n.input[0] for n in quantizable_matmuls(model)})
    stats = collect_stats(model, acts, ReferenceEncoder(work, manifest), ["A man plays a guitar.", "Two dogs run across a snowy field at dusk."])
    q, info = quantize_graph(model, stats, QuantScheme(), exclude={names[0], names[-1]})
    assert info["fp32"] == [names[0], names[-1]] and len(info["quantized"]) == len(names) - 2
    assert sorted(n.name for n in quantizable_matmuls(q)) == sorted([names[0], names[-1]])


def _row_stats(outlier: float, rng: np.random.Generator) -> "ActStats":
    from onnxembed.quantize.qdq import ActStats

    x = rng.normal(size=(512, 16)).astype(np.float32)
    x[::32] *= outlier  # every 32nd token row is an outlier (as [CLS] rows are), on all channels
    return ActStats(cmin=x.min(0).astype(np.float64), cmax=x.max(0).astype(np.float64), sample=x)


def test_row_scales_go_where_a_static_scale_loses_most() -> None:
    from onnxembed.quantize.qdq import row_scaled_activations, token_errors
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    nodes, inits, stats = [], [], {}
    for k in range(4):  # four activations, one with token-row outliers
        w = numpy_helper.from_array(rng.normal(size=(16, 8)).astype(np.float32), f"w{k}")
        inits.append(w)
        nodes.append(helper.make_node("MatMul", [f"x{k}", f"w{k}"], [f"y{k}"], name=f"mm{k}"))
        stats[f"x{k}"] = _row_stats(20.0 if k == 2 else 1.0, rng)
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(f"x{k}", TensorProto.FLOAT, [None, 16]) for k in range(4)],
                              [helper.make_tensor_value_info(f"y{k}", TensorProto.FLOAT, [None, 8]) for k in range(4)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    static, row = token_errors(stats["x2"], np.ones(16))
    assert static > 5 * row  # the outlier rows leave the ordinary rows few levels
    assert row_scaled_activations(model, stats, QuantScheme(smooth_alpha=0.0, row_scale_ratio=1.5)) == ["x2"]
    assert row_scaled_activations(model, stats, QuantScheme(smooth_alpha=0.0, row_scale_ratio=0.0)) == []
    # The arithmetic of this CPU's preset: int8 weights where VNNI (or arm64's dot product) runs them, 7-bit
    # weights on AVX2 without VNNI (its u8 x s8 multiply-add saturates in 16 bits; that is what reduce_range is for).
    from onnxembed.providers import detect_cpu_features, int8_variants_for_cpu

    avx2_only = int8_variants_for_cpu(["qint8_avx512_vnni", "quint8_avx2"], detect_cpu_features())[:1] == ["quint8_avx2"]
    base = QuantScheme(weight_dtype="uint8", reduce_range=True) if avx2_only else QuantScheme()
    q, info = quantize_graph(model, stats, replace(base, smooth_alpha=0.5, row_scale_ratio=1.5), embeddings=False)
    assert info["row_scaled"] == ["mm2"] and info["quantized"] == ["mm0", "mm1", "mm2", "mm3"]
    from onnxembed.quantize.reference import make_session

    sess = make_session(q)
    xs = {f"x{k}": rng.normal(size=(6, 16)).astype(np.float32) for k in range(4)}
    xs["x2"][0] *= 50.0  # far outside the calibrated range: a static scale would clip it, a row scale does not
    got = sess.run(["y2"], xs)[0]
    ref = xs["x2"] @ numpy_helper.to_array(inits[2])
    rel = np.linalg.norm(got - ref, axis=1) / np.linalg.norm(ref, axis=1)
    assert rel.max() < 0.02
    # each row is quantized on its own: the same row alone gives the same result as inside the batch
    alone = sess.run(["y2"], {k: v[3:4] for k, v in xs.items()})[0]
    np.testing.assert_array_equal(alone[0], got[3])


def test_an_activation_whose_range_outgrew_its_calibration_gets_row_scales(tiny_bert: tuple[Path, dict], data_dir: Path) -> None:
    """A median error cannot see a tail: the activation whose range grew most on other texts is row-scaled,
    and the growth is measured by the build itself (the search's dev texts against the calibration texts)."""
    from dataclasses import replace as _replace

    from onnxembed.quantize import api
    from onnxembed.quantize.data import resolve_data
    from onnxembed.quantize.qdq import row_scaled_activations

    work, manifest = tiny_bert
    model = onnx.load(str(work / "onnx" / "model.onnx"))
    ctx = api._context(work / "onnx" / "model.onnx", work, manifest, resolve_data(data_dir=data_dir), data_dir)
    growth = {a: st.growth for a, st in ctx.stats.items()}
    assert len(growth) == len({n.input[0] for n in quantizable_matmuls(model)}) and all(g > 0 for g in growth.values())
    assert len(set(growth.values())) > 1  # measured per activation, not a constant
    top = max(growth, key=growth.get)
    stats = {a: _replace(st, growth=growth[a]) for a, st in ctx.stats.items()}
    limit = sorted(growth.values())[-2]  # between the largest growth and the next one
    picked = row_scaled_activations(model, stats, QuantScheme(row_range_growth=limit))
    assert picked == [top]
    assert row_scaled_activations(model, stats, QuantScheme(row_range_growth=0.0)) == []
    _, info = quantize_graph(model, stats, QuantScheme(row_range_growth=limit), embeddings=False)
    assert info["row_scaled"] == sorted(n.name for n in quantizable_matmuls(model) if n.input[0] == top)


def test_failing_gate_raises_with_one_line_per_failure(tiny_bert: tuple[Path, dict], data_dir: Path, tmp_path: Path) -> None:
    work, manifest = tiny_bert
    gates = {**NO_GATES, "mean_cosine": 1.5, "batch_stability": 1.5}
    with pytest.raises(ValidationError) as err:
        quantize_model(work, "arm64", out=tmp_path / "a.onnx", manifest=manifest, gates=gates, data_dir=data_dir, max_fp32_nodes=1)
    assert len(err.value.failures) == 2
    assert "mean cosine" in err.value.failures[0] and "batch stability" in err.value.failures[1]
    assert (tmp_path / "a.onnx").is_file()  # written, so the failure can be inspected


def test_presets_and_gate_arguments() -> None:
    assert sorted(p.variant for p in PRESETS.values()) == ["qint8_arm64", "qint8_avx512_vnni", "quint8_avx2"]
    assert get_preset("qint8_avx512_vnni") is PRESETS["avx512_vnni"]
    assert PRESETS["avx512_vnni"].file == "onnx/model_qint8_avx512_vnni.onnx"
    with pytest.raises(ValueError, match="unknown int8 preset 'avx9'"):
        get_preset("avx9")
    with pytest.raises(ValueError, match="unknown gate"):
        merge_gates({"mean_cos": 0.9})
    assert merge_gates({"min_cosine": 0.97}) == {**DEFAULT_GATES, "min_cosine": 0.97}


def test_spearman_matches_scipy() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x = np.round(rng.normal(size=300), 1)  # ties
    y = x + rng.normal(size=300)
    assert spearman(x, y) == pytest.approx(100 * scipy_stats.spearmanr(x, y).correlation, abs=1e-9)


# --- the real embedded model: where real weights matter --------------------------------------------


@pytest.fixture(scope="module")
def real_built(default_artifacts: Path) -> tuple[Path, dict]:
    """The session's real build (every variant; int8 searched and gated on the held-out data): its folder and
    manifest. One real build serves every test that needs real weights."""
    return default_artifacts, json.loads((default_artifacts / "manifest.json").read_text(encoding="utf-8"))


def test_real_model_int8_gates(real_built: tuple[Path, dict]) -> None:
    e = real_built[1]["variants"]["qint8_avx512_vnni"]
    acc = e["accuracy"]
    assert acc["gates_passed"]
    assert acc["mean_cosine"] >= DEFAULT_GATES["mean_cosine"] and acc["min_cosine"] >= DEFAULT_GATES["min_cosine"]
    assert acc["stsb_spearman_fp32"] - acc["stsb_spearman"] <= DEFAULT_GATES["stsb_spearman_drop"]
    assert acc["stsb_spearman_fp32"] == pytest.approx(82.03, abs=0.05)  # all-MiniLM-L6-v2's published figure
    assert acc["batch_stability_min_cosine"] >= DEFAULT_GATES["batch_stability"]
    assert e["precision"] == "int8" and e["cpu_feature"] == "avx512_vnni" and e["device"] == "cpu"
    assert e["fused_ops"]["QuantizeLinear"] == 6 * ACTIVATIONS_PER_LAYER
    # issue 12's targets for the recipe (mean >= 0.997, min >= 0.98 to fp32), here on the gate set
    assert acc["mean_cosine"] >= 0.997 and acc["min_cosine"] >= 0.98
    # the recipe's structure: the FFN-output MatMuls of the first layers read a row-scaled input (the [CLS]
    # row of MiniLM's GELU output is 5-7x the others); everything else is static, nothing kept fp32
    recipe = e["recipe"]
    rows = recipe["row_scaled_nodes"]
    assert rows and all(r.endswith("/output/dense/MatMul") and "attention" not in r for r in rows)
    assert "/encoder/layer.0/output/dense/MatMul" in rows
    # the last layer's GELU output outgrows its calibrated range on the dev sentences (1.70x measured): a static
    # scale would clip unseen text there, so it is row-scaled although its median error is low
    top = recipe["search"]["range_growth_top"][0]
    assert top["activation"].startswith("/encoder/layer.5/intermediate/") and top["growth"] > 1.1
    assert "/encoder/layer.5/output/dense/MatMul" in rows and recipe["row_range_growth"] == 1.1
    ops = op_counts(real_built[0] / e["file"])
    fp32_ops = op_counts(real_built[0] / "onnx" / "model.onnx")
    assert ops["ReduceMax"] == len(rows) == ops["Div"] - fp32_ops["Div"]  # one row maximum and one (batch, seq, 1) reciprocal per row-scaled input
    assert ops["Mul"] - fp32_ops["Mul"] == 6 * ACTIVATIONS_PER_LAYER - len(rows) + 3 * len(rows) + 1
    # (a SmoothQuant Mul per static input; a scale, the full-size x * (1 / scale) and an output rescale per row-scaled
    # input; the embedding-table dequantization)
    row_div = [n for n in onnx.load(str(real_built[0] / e["file"])).graph.node if n.op_type == "Div" and n.name.endswith("_RowInverse")]
    assert len(row_div) == len(rows)  # the only Divs added act on the small per-row tensor, not the full activation
    assert recipe["fp32_nodes"] == []
    assert recipe["quantized_nodes"] == 6 * MATMULS_PER_LAYER


def test_real_model_fused_counts(real_built: tuple[Path, dict]) -> None:
    ops = real_built[1]["variants"]["O2"]["fused_ops"]
    assert ops["Attention"] == 6 and ops["SkipLayerNormalization"] == 12 and ops["EmbedLayerNormalization"] == 1
    assert real_built[1]["variants"]["O2"]["validation"]["max_abs_diff"] <= 1e-4


def test_real_model_int8_is_deterministic(real_built: tuple[Path, dict], tmp_path: Path) -> None:
    from onnxembed.quantize import api

    work, manifest = real_built
    api._CONTEXTS.clear()
    again = quantize_model(work, "avx512_vnni", out=tmp_path / "again.onnx", manifest=manifest, evaluate=False)
    assert sha(again.path) == real_built[1]["variants"]["qint8_avx512_vnni"]["sha256"]


def test_integer_ops_on_a_fused_graph(tiny_bert: tuple[Path, dict], tmp_path: Path) -> None:
    """The onnxruntime-only form: static scales feeding QAttention / MatMulIntegerToFloat."""
    from onnxembed.export.fusion import fuse_model
    from onnxembed.quantize.calibrate import collect_stats
    from onnxembed.quantize.reference import ReferenceEncoder, make_session

    work, manifest = tiny_bert
    fused = tmp_path / "fused.onnx"
    fuse_model(work / "onnx" / "model.onnx", fused, "O2", num_heads=manifest["num_heads"], hidden_size=manifest["hidden_size"],
               embed_layer_norm=False)
    model = onnx.load(str(fused))
    nodes = quantizable_matmuls(model, attention=True)
    assert sum(n.op_type == "Attention" for n in nodes) == TINY_LAYERS
    enc = ReferenceEncoder(work, manifest)
    texts = ["A man plays a guitar.", "Two dogs run across a snowy field at dusk.", "ok"]
    stats = collect_stats(model, sorted({n.input[0] for n in nodes}), enc, texts)
    q, info = quantize_graph(model, stats, QuantScheme(smooth_alpha=0.75), integer_ops=True)
    onnx.save(q, str(tmp_path / "int.onnx"))
    ops = op_counts(tmp_path / "int.onnx")
    assert ops["QAttention"] == TINY_LAYERS and ops["MatMulIntegerToFloat"] == 3 * TINY_LAYERS
    assert "DynamicQuantizeLinear" not in ops and len(info["quantized"]) == 4 * TINY_LAYERS
    ref = enc.embed(make_session(fused), texts)
    got = enc.embed(make_session(tmp_path / "int.onnx"), texts)
    assert got.shape == ref.shape and np.isfinite(got).all()
    cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= INTEGER_OPS_MIN_COSINE, cos  # the same model in integer form, not just finite numbers


def test_missing_local_data_folder_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from onnxembed.quantize import calibrate, data

    monkeypatch.delenv("ONNXEMBED_DATA", raising=False)
    monkeypatch.setattr(data, "_repo_data", lambda: None)  # as an installed package: no shared/data beside it
    with pytest.raises(FileNotFoundError, match="ONNXEMBED_DATA") as e:
        calibrate.data_dir()
    assert "sts/stsb-dev.tsv" in str(e.value)
    monkeypatch.setenv("ONNXEMBED_DATA", str(tmp_path / "empty"))
    with pytest.raises(ValueError, match=r"\$ONNXEMBED_DATA is .*empty.*not a folder"):
        calibrate.data_dir()
