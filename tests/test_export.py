"""The export stage: fp32 ONNX validated against PyTorch, hub loading offline, atomic builds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
import onnxruntime as ort  # noqa: E402

from conftest import run_cli  # noqa: E402
from onnxembed import ValidationError, load_manifest  # noqa: E402
from onnxembed.manifest import sha256_file  # noqa: E402

HUB_MODELS = ["e5-small-unsupervised", "e5-base-unsupervised", "multi-qa-distilbert-cos-v1", "gte-base", "gte-small"]


def _sts_sentences(data_dir: Path, n: int) -> list[str]:
    rows = (data_dir / "sts" / "stsb-test.tsv").read_text(encoding="utf-8").splitlines()[1:]
    out: list[str] = []
    for row in rows:
        out.extend(row.split("\t")[1:3])
    return out[:n]


def test_embedded_model_manifest_and_validation(default_artifacts: Path) -> None:
    m = load_manifest(default_artifacts)
    assert (m.name, m.dim, m.max_length, m.pooling, m.normalize) == ("all-minilm-l6-v2", 384, 256, "mean", True)
    assert m.input_names == ("input_ids", "attention_mask", "token_type_ids")
    assert m.vocab_size == 30522
    assert m.raw["source"]["weights_sha256"].startswith("53aa5117")  # == HF's all-MiniLM-L6-v2 safetensors
    fp32 = m.variant("fp32")
    assert fp32.file == "onnx/model.onnx"
    assert fp32.sha256 == sha256_file(default_artifacts / fp32.file)
    assert fp32.size == (default_artifacts / fp32.file).stat().st_size
    val = fp32.info["validation"]
    assert val["max_abs_diff"] <= 1e-4 and val["min_cosine"] >= 0.99999
    assert set(m.raw["tools"]) >= {"torch", "transformers", "onnx", "onnxruntime", "optimum-onnx"}
    for f in ("tokenizer.json", "vocab.txt", "config.json", "modules.json", "sentence_bert_config.json", "1_Pooling/config.json"):
        assert (default_artifacts / f).is_file(), f


def test_graph_has_dynamic_batch_and_sequence_axes(default_artifacts: Path) -> None:
    sess = ort.InferenceSession(str(default_artifacts / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]
    for batch, seq in ((1, 5), (3, 17), (2, 300)):
        feeds = {
            "input_ids": np.full((batch, seq), 1000, dtype=np.int64),
            "attention_mask": np.ones((batch, seq), dtype=np.int64),
            "token_type_ids": np.zeros((batch, seq), dtype=np.int64),
        }
        (out,) = sess.run(["last_hidden_state"], feeds)
        assert out.shape == (batch, seq, 384)


def test_sentence_transformers_loads_the_folder_with_onnx_backend(default_artifacts: Path, real_checkpoint: Path, data_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    texts = _sts_sentences(data_dir, 200)
    onnx_model = SentenceTransformer(str(default_artifacts), backend="onnx", device="cpu")
    torch_model = SentenceTransformer(str(real_checkpoint), device="cpu")
    a = onnx_model.encode(texts, batch_size=32)
    b = torch_model.encode(texts, batch_size=32)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.min() >= 0.99999, cos.min()
    assert np.abs(a - b).max() < 1e-4


@pytest.mark.parametrize("name", HUB_MODELS)
def test_hub_models_build_offline_from_the_cache(name: str, tiny_registry: dict, hub_built_all: Path) -> None:
    """Each of the five hub entries was built by `build --all` through the HF cache with HF_HUB_OFFLINE=1."""
    out = hub_built_all / name
    m = load_manifest(out)
    spec = tiny_registry["specs"][name]
    assert m.raw["source"]["kind"] == "hub" and m.raw["source"]["revision"] == "main"
    assert m.raw["source"]["id"] == spec.id
    assert m.input_names == spec.input_names
    assert m.prefixes == spec.prefixes and m.normalize == spec.normalize
    sess = ort.InferenceSession(str(out / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert tuple(i.name for i in sess.get_inputs()) == spec.input_names
    val = m.variant("fp32").info["validation"]
    assert val["max_abs_diff"] <= 1e-4 and val["min_cosine"] >= 0.99999


def test_unknown_hub_id_offline_says_how_to_fix(tiny_registry: dict, tmp_path: Path) -> None:
    proc = run_cli("build", "acme/not-cached", "--out", str(tmp_path / "x"), env=tiny_registry["env"], check=False)
    assert proc.returncode == 2
    assert "acme/not-cached@main is not in the Hugging Face cache" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_hub_id_outside_the_registry_reads_its_sentence_transformers_files(tiny_registry: dict, tmp_path: Path) -> None:
    from onnxembed.export.synthetic import put_in_hf_cache

    cache = Path(tiny_registry["env"]["HF_HUB_CACHE"])
    put_in_hf_cache(tiny_registry["checkpoints"]["e5-small-unsupervised"], "acme/tiny-e5", cache)
    out = tmp_path / "acme"
    run_cli("build", "acme/tiny-e5", "--out", str(out), "--variants", "fp32", env=tiny_registry["env"])
    m = load_manifest(out)
    assert (m.name, m.pooling, m.normalize, m.max_length, m.raw["source"]["id"]) == ("tiny-e5", "mean", True, 512, "acme/tiny-e5")


def test_local_folder_build(tiny_registry: dict, tmp_path: Path) -> None:
    ck = tiny_registry["checkpoints"]["multi-qa-distilbert-cos-v1"]
    out = tmp_path / "local"
    run_cli("build", str(ck), "--out", str(out), "--variants", "fp32")
    m = load_manifest(out)
    assert m.raw["source"]["kind"] == "local"
    assert m.input_names == ("input_ids", "attention_mask")
    assert m.raw["architecture"] == "distilbert"


def test_existing_folder_is_not_overwritten_without_force(tiny_registry: dict, tmp_path: Path) -> None:
    out = tmp_path / "keep"
    out.mkdir()
    (out / "precious.txt").write_text("mine")
    args = ["build", "gte-small", "--out", str(out), "--variants", "fp32", "--registry", str(tiny_registry["registry"])]
    proc = run_cli(*args, env=tiny_registry["env"], check=False)
    assert proc.returncode == 2 and "already exists and is not an onnxembed artifact folder; pass force=True (--force)" in proc.stderr
    assert (out / "precious.txt").read_text() == "mine"
    run_cli(*args, "--force", env=tiny_registry["env"])
    assert not (out / "precious.txt").exists() and load_manifest(out).name == "gte-small"
    assert [p.name for p in tmp_path.iterdir()] == ["keep"]  # no temp or backup folder left


def _start_build_and_wait_for_temp(out: Path, tiny_registry: dict) -> subprocess.Popen[bytes]:
    env = {**os.environ, **tiny_registry["env"]}
    cmd = [sys.executable, "-m", "onnxembed.cli", "build", "gte-base", "--out", str(out), "--variants", "fp32", "--registry", str(tiny_registry["registry"])]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        temps = list(out.parent.glob(f".{out.name}.onnxembed-tmp-*"))
        if temps and (temps[0] / "tokenizer.json").exists():
            return proc
        if proc.poll() is not None:
            raise AssertionError(f"build ended (rc {proc.returncode}) before it could be interrupted")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the build never created its temporary folder")


def test_sigterm_mid_build_leaves_nothing_behind(tiny_registry: dict, tmp_path: Path) -> None:
    out = tmp_path / "interrupted"
    proc = _start_build_and_wait_for_temp(out, tiny_registry)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) != 0
    assert list(tmp_path.iterdir()) == []


def test_sigkill_mid_build_leaves_no_complete_looking_folder_and_is_swept(tiny_registry: dict, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    proc = _start_build_and_wait_for_temp(out, tiny_registry)
    proc.kill()
    proc.wait(timeout=60)
    assert not out.exists()
    leftovers = list(tmp_path.iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".killed.onnxembed-tmp-")
    assert not (leftovers[0] / "manifest.json").exists()
    run_cli("build", "gte-small", "--out", str(out), "--variants", "fp32", "--registry", str(tiny_registry["registry"]), env=tiny_registry["env"])
    assert [p.name for p in tmp_path.iterdir()] == ["killed"]


def test_validation_failure_names_each_failing_output(tiny_registry: dict, tmp_path: Path) -> None:
    """An ONNX file from other weights must not pass as the export of this checkpoint."""
    from onnxembed.export.onnx_export import export_onnx
    from onnxembed.export.validate import validate_against_torch

    ck = tiny_registry["checkpoints"]
    wrong = export_onnx(ck["gte-small"], tmp_path / "wrong.onnx", expected_inputs=tiny_registry["specs"]["gte-small"].input_names)
    with pytest.raises(ValidationError) as e:
        validate_against_torch(wrong, ck["gte-base"], tiny_registry["specs"]["gte-base"])
    lines = str(e.value).splitlines()
    assert any(line.startswith("last_hidden_state: max |diff| vs PyTorch") for line in lines)
    assert any(line.startswith("pooled embedding: min cosine vs sentence-transformers") for line in lines)
    assert e.value.failures and len(e.value.failures) == 2
