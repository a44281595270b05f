"""Graph fusion O1-O4: fused operator counts, numeric agreement with fp32, O4 structure, determinism."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import onnx
import pytest

from onnxembed.errors import ValidationError
from onnxembed.export.fusion import FUSION_LEVELS, fuse_model, fused_op_counts
from onnxembed.export.variants import add_variants

TINY_LAYERS = 2


def make_workdir(root: Path, name: str, real_checkpoint: Path, seed: int) -> tuple[Path, dict]:
    """A tiny random checkpoint of registry entry ``name``, exported to ``root/onnx/model.onnx``, and its manifest dict."""
    from onnxembed.export.onnx_export import export_onnx
    from onnxembed.export.registry import load_registry
    from onnxembed.export.synthetic import TOKENIZER_FILES, make_random_checkpoint, tiny_spec

    spec = tiny_spec(load_registry()[name], num_layers=TINY_LAYERS)
    ck = make_random_checkpoint(spec, root / "checkpoint", vocab_from=real_checkpoint, seed=seed)
    work = root / "artifact"
    (work / "onnx").mkdir(parents=True)
    for f in TOKENIZER_FILES + ("config.json",):
        if (ck / f).is_file():
            shutil.copyfile(ck / f, work / f)
    export_onnx(ck, work / "onnx" / "model.onnx", expected_inputs=spec.input_names)
    manifest = {
        "name": spec.name, "architecture": spec.architecture, "hidden_size": spec.hidden_size, "num_heads": spec.num_heads,
        "num_layers": spec.num_layers, "pooling": spec.pooling, "normalize": spec.normalize,
        "input_names": list(spec.input_names), "max_length": spec.max_length, "variants": {},
    }
    return work, manifest


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory, real_checkpoint: Path) -> tuple[Path, dict]:
    return make_workdir(tmp_path_factory.mktemp("fuse-bert"), "gte-small", real_checkpoint, seed=1)


@pytest.fixture(scope="module")
def tiny_distilbert(tmp_path_factory: pytest.TempPathFactory, real_checkpoint: Path) -> tuple[Path, dict]:
    return make_workdir(tmp_path_factory.mktemp("fuse-distilbert"), "multi-qa-distilbert-cos-v1", real_checkpoint, seed=2)


@pytest.fixture(scope="module")
def bert_variants(tiny_bert: tuple[Path, dict]) -> dict:
    work, manifest = tiny_bert
    add_variants(work, manifest, ["O1", "O2", "O3", "O4"])
    return manifest


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_bert_fused_op_counts(bert_variants: dict) -> None:
    v = bert_variants["variants"]
    assert "Attention" not in v["O1"]["fused_ops"] and "SkipLayerNormalization" not in v["O1"]["fused_ops"]
    for level in ("O2", "O3", "O4"):
        ops = v[level]["fused_ops"]
        assert ops["Attention"] == TINY_LAYERS, (level, ops)
        assert ops["SkipLayerNormalization"] == 2 * TINY_LAYERS, (level, ops)
        assert ops["EmbedLayerNormalization"] == 1, (level, ops)
        assert ops["MatMul"] == 3 * TINY_LAYERS, (level, ops)  # attention output + two FFN MatMuls per layer
    assert v["O2"]["fused_ops"]["BiasGelu"] == TINY_LAYERS and "FastGelu" not in v["O2"]["fused_ops"]
    assert v["O3"]["fused_ops"]["FastGelu"] == TINY_LAYERS and "BiasGelu" not in v["O3"]["fused_ops"]


def test_bert_fused_numbers_match_fp32(bert_variants: dict) -> None:
    v = bert_variants["variants"]
    for level in ("O1", "O2"):
        assert v[level]["validation"]["max_abs_diff"] <= 1e-4, v[level]["validation"]
    assert v["O3"]["validation"]["min_cosine"] >= 0.99999
    assert v["O4"]["validation"]["min_cosine"] >= 0.9999


def test_manifest_entries(tiny_bert: tuple[Path, dict], bert_variants: dict) -> None:
    from onnxembed.manifest import sha256_file

    work, _ = tiny_bert
    for level in ("O1", "O2", "O3", "O4"):
        e = bert_variants["variants"][level]
        assert e["file"] == f"onnx/model_{level}.onnx"
        assert e["sha256"] == sha256_file(work / e["file"]) and e["size"] == (work / e["file"]).stat().st_size
        assert e["device"] == ("cuda" if level == "O4" else "cpu")
        assert e["precision"] == ("fp16" if level == "O4" else "fp32")


def test_o4_is_fp16_with_fp32_io(tiny_bert: tuple[Path, dict], bert_variants: dict) -> None:
    m = onnx.load(str(tiny_bert[0] / "onnx" / "model_O4.onnx"))
    types = {i.data_type for i in m.graph.initializer if len(i.dims) == 2}
    assert onnx.TensorProto.FLOAT16 in types and onnx.TensorProto.FLOAT not in types
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.INT64 for i in m.graph.input)


def test_distilbert_fuses_with_the_bert_optimizer(tiny_distilbert: tuple[Path, dict]) -> None:
    work, manifest = tiny_distilbert
    add_variants(work, manifest, ["O2"])
    ops = manifest["variants"]["O2"]["fused_ops"]
    assert ops["Attention"] == TINY_LAYERS and ops["SkipLayerNormalization"] == 2 * TINY_LAYERS, ops
    assert manifest["variants"]["O2"]["validation"]["max_abs_diff"] <= 1e-4
    m = onnx.load(str(work / "onnx" / "model_O2.onnx"), load_external_data=False)
    assert [i.name for i in m.graph.input] == ["input_ids", "attention_mask"]


def test_fusion_is_deterministic(tiny_bert: tuple[Path, dict], bert_variants: dict, tmp_path: Path) -> None:
    work, manifest = tiny_bert
    for level in ("O2", "O4"):
        fuse_model(work / "onnx" / "model.onnx", tmp_path / f"{level}.onnx", level,
                   num_heads=manifest["num_heads"], hidden_size=manifest["hidden_size"])
        assert sha(tmp_path / f"{level}.onnx") == bert_variants["variants"][level]["sha256"]


def test_quantization_source_has_no_embed_layer_norm(tiny_bert: tuple[Path, dict], tmp_path: Path) -> None:
    work, manifest = tiny_bert
    counts = fuse_model(work / "onnx" / "model.onnx", tmp_path / "q.onnx", "O2", num_heads=manifest["num_heads"],
                        hidden_size=manifest["hidden_size"], embed_layer_norm=False)
    assert "EmbedLayerNormalization" not in counts and counts["Attention"] == TINY_LAYERS
    assert fused_op_counts(tmp_path / "q.onnx") == counts


def test_bad_arguments(tiny_bert: tuple[Path, dict], tmp_path: Path) -> None:
    src = tiny_bert[0] / "onnx" / "model.onnx"
    with pytest.raises(ValueError, match="unknown fusion level 'O5'"):
        fuse_model(src, tmp_path / "x.onnx", "O5", num_heads=4, hidden_size=32)
    with pytest.raises(ValueError, match="multiple of num_heads"):
        fuse_model(src, tmp_path / "x.onnx", "O2", num_heads=5, hidden_size=32)
    with pytest.raises(ValueError, match="unknown variant"):
        add_variants(tiny_bert[0], dict(tiny_bert[1]), ["O9"])
    assert sorted(FUSION_LEVELS) == ["O1", "O2", "O3", "O4"]


def test_validation_failure_is_reported(tiny_bert: tuple[Path, dict], monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxembed.export.variants as variants

    work, manifest = tiny_bert
    monkeypatch.setitem(variants.FUSED_THRESHOLDS, "O3", (0.0, 1.0 + 1e-9))  # unreachable
    with pytest.raises(ValidationError) as err:
        add_variants(work, {**manifest, "variants": {}}, ["O3"])
    assert err.value.failures and all(line.startswith("O3:") for line in err.value.failures)
    assert "max |diff|" in str(err.value)
