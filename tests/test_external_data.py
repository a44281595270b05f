"""Models over protobuf's 2 GB limit: ``model.onnx`` + ``model.onnx_data``. A tiny random Qwen3 (the family whose
full size, 2.4 GB of fp32 weights, needs it) is built with ``--external-threshold 0`` so every weight over 1 KB
goes to the data file; export, validation against PyTorch, fusion, static int8, weight-only int8, the manifest,
the Embedder and ``verify`` must all handle the pair, and verify must notice a damaged or missing data file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli

NAME = "qwen3-embedding-0.6b"
VARIANTS = ("fp32", "O2", "qint8_avx512_vnni")
TEXTS = ["A man is playing a guitar.", "Zwei Männer spielen Fußball.", "敏捷的棕色狐狸跳过了懒狗。", "ok"]


@pytest.fixture(scope="module")
def external(tmp_path_factory: pytest.TempPathFactory, tiny_registry: dict, tiny_build_data: list[str]) -> Path:
    out = tmp_path_factory.mktemp("external") / NAME
    run_cli("build", NAME, "--out", str(out), "--registry", str(tiny_registry["registry"]), "--variants", ",".join(VARIANTS),
            "--external-threshold", "0", *tiny_build_data, env=tiny_registry["env"], timeout=1800)
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def test_every_variant_keeps_its_weights_in_a_recorded_data_file(external: Path) -> None:
    from onnxembed import load_manifest
    from onnxembed.manifest import sha256_file
    from onnxembed.quantize.onnx_files import data_files

    m = load_manifest(external)
    assert sorted(m.variants) == sorted(VARIANTS)
    for name in VARIANTS:
        v = m.variant(name)
        recorded = m.data_files(name)
        assert [d["file"] for d in recorded] == [v.file + "_data"]
        assert data_files(external / v.file) == [Path(v.file).name + "_data"]  # what the graph itself names
        for d in recorded:
            p = external / d["file"]
            assert p.stat().st_size == d["size"] and sha256_file(p) == d["sha256"]
            assert p.stat().st_size > 10 * v.size  # the weights are in the data file, the graph in the .onnx
            assert p.stat().st_mode & 0o777 == (external / v.file).stat().st_mode & 0o777  # readable by whoever reads the model
    # validated against PyTorch on the external-data file itself
    fp32 = m.raw["variants"]["fp32"]["validation"]
    assert fp32["max_abs_diff"] <= 1e-4 and fp32["min_cosine"] >= 0.99999
    assert m.raw["variants"]["O2"]["fused_ops"]["SimplifiedLayerNormalization"] > 0
    assert m.raw["variants"]["qint8_avx512_vnni"]["accuracy"]["gates_passed"] is True
    # atomic publish: only the finished folder, no temporary file or folder left beside or inside it
    assert not [p for p in external.parent.iterdir() if p.name != NAME]
    assert sorted(p.name for p in (external / "onnx").iterdir()) == sorted(
        [Path(m.variant(n).file).name for n in VARIANTS] + [Path(m.variant(n).file).name + "_data" for n in VARIANTS])


def test_embedder_and_verify_load_the_pair(external: Path) -> None:
    from onnxembed import Embedder
    from onnxembed.verify import verify_artifacts

    report = verify_artifacts(external)
    assert report.ok, report.problems
    fp32 = Embedder.load(external, variant="fp32").encode(TEXTS)
    int8 = Embedder.load(external, variant="qint8_avx512_vnni").encode(TEXTS)
    assert fp32.shape == (len(TEXTS), 32) and np.isfinite(fp32).all()
    assert float(((fp32 * int8).sum(1)).min()) > 0.9  # normalized: the same model, quantized


@pytest.mark.parametrize("damage", ["flip", "truncate", "missing"])
def test_verify_and_load_detect_a_damaged_data_file(external: Path, tmp_path: Path, damage: str) -> None:
    from onnxembed import Embedder, IntegrityError
    from onnxembed.verify import verify_artifacts

    folder = _copy(external, tmp_path / NAME)
    data = folder / "onnx" / "model.onnx_data"
    if damage == "missing":
        data.unlink()
    elif damage == "truncate":
        with open(data, "r+b") as f:
            f.truncate(data.stat().st_size - 4)
    else:
        raw = bytearray(data.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        data.write_bytes(bytes(raw))
    report = verify_artifacts(folder, run=False)
    assert not report.ok
    assert len(report.problems) == 1 and "model.onnx_data" in report.problems[0]
    assert ("missing" in report.problems[0]) == (damage == "missing")
    with pytest.raises(IntegrityError, match="external data file"):
        Embedder.load(folder, variant="fp32")
    assert Embedder.load(folder, variant="O2").encode(TEXTS[:1]).shape == (1, 32)  # the other variants are intact


def test_weight_only_int8_and_single_file_layouts(external: Path, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    from onnxembed.quantize.onnx_files import data_files, save_model, session_source
    from onnxembed.quantize.weight_only import weight_only_int8

    src = external / "onnx" / "model.onnx"
    dst = tmp_path / "model_wint8.onnx"
    counts = weight_only_int8(src, dst, external_threshold=0)
    assert counts["MatMulNBits"] > 0 and data_files(dst) == ["model_wint8.onnx_data"]
    # the same model under the default threshold: one file, and the stale data file is removed
    model = onnx.load(str(dst))
    assert save_model(model, dst) == [] and data_files(dst) == [] and not (tmp_path / "model_wint8.onnx_data").exists()
    # an in-memory model past the limit reaches onnxruntime through a temporary external-data file
    keep: list = []
    big = session_source(model, keep, limit=0)
    assert isinstance(big, str) and keep
    feeds = {"input_ids": np.array([[9, 8, 151643]], np.int64), "attention_mask": np.ones((1, 3), np.int64),
             "position_ids": np.arange(3, dtype=np.int64)[None]}
    a = ort.InferenceSession(big, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    b = ort.InferenceSession(session_source(model, []), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_array_equal(a, b)


def test_the_threshold_is_a_build_input(tmp_path: Path, tiny_registry: dict) -> None:
    """The same build with another --external-threshold lays the files out differently, so it is not 'up to date'."""
    out = tmp_path / NAME
    args = ("build", NAME, "--out", str(out), "--registry", str(tiny_registry["registry"]), "--variants", "fp32")
    run_cli(*args, "--external-threshold", "0", env=tiny_registry["env"])
    assert (out / "onnx" / "model.onnx_data").is_file()
    again = run_cli(*args, "--external-threshold", "0", env=tiny_registry["env"])
    assert "up to date" in again.stdout + again.stderr
    single = run_cli(*args, env=tiny_registry["env"])
    assert "up to date" not in single.stdout + single.stderr
    assert not (out / "onnx" / "model.onnx_data").exists()  # the default threshold keeps a tiny model in one file
    from onnxembed import load_manifest

    assert load_manifest(out).data_files("fp32") == []
