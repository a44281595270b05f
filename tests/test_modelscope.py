"""ModelScope as a checkpoint source: ``onnxembed build modelscope:ORG/NAME``.

Random BERT checkpoints in ModelScope's layout (``configuration.json``, ``pytorch_model.bin`` with the
``bert.`` prefix, ``vocab.txt``) are placed in a fake ModelScope cache (``$MODELSCOPE_CACHE``), with the
hub endpoint pointed at a closed local port, so the build runs modelscope's own ``snapshot_download``
offline exactly as a user with a warm cache would. The reference is modelscope's
``pipeline(Tasks.sentence_embedding, ...)`` itself, run on the cached folder in a fresh interpreter.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli

pytest.importorskip("modelscope")

GTE_MS = "iic/nlp_gte_sentence-embedding_english-base"  # gte-base's alt source in models.yaml
PLAIN_MS = "test-org/nlp_tiny_sentence-embedding_english"  # in no registry entry: the spec comes from configuration.json
CLOSED_PORT = "http://127.0.0.1:9"  # the discard port: connection refused at once, as with no network
TEXTS = [
    "A man is playing a guitar.",
    "how long does it take to get a master's degree?",
    "Ünïcödé accents, 中文字符 and emoji 🙂",
    "ok",
    "x",
    " ".join(["ModelScope's pipeline truncates every text at its sequence length, and so must the artifact."] * 12),
]


def _configuration(model: dict, preprocessor: dict | None = None) -> dict:
    cfg = {"framework": "pytorch", "task": "sentence-embedding", "model": {"type": "bert", **model},
           "pipeline": {"type": "sentence-embedding"}}
    if preprocessor is not None:
        cfg["preprocessor"] = preprocessor
    return cfg


@pytest.fixture(scope="session")
def ms_cache(tmp_path_factory: pytest.TempPathFactory, real_checkpoint: Path) -> dict:
    """Two tiny ModelScope checkpoints in a fake ModelScope cache and a registry with a tiny gte-base.

    gte-base's sets ``emb_pooler_type: avg`` (mean pooling, as the registry says); the other states no
    pooler (modelscope's default, CLS), ``normalize: true`` and no length (the pipeline's 128).
    """
    from onnxembed.export.registry import dump_registry, load_registry
    from onnxembed.export.synthetic import RANDOM_WEIGHT_GATES, make_modelscope_checkpoint, put_in_modelscope_cache, tiny_spec

    root = tmp_path_factory.mktemp("modelscope")
    gte = dataclasses.replace(tiny_spec(load_registry()["gte-base"]), gates=dict(RANDOM_WEIGHT_GATES))
    snaps = {}
    for i, (ms_id, cfg) in enumerate(((GTE_MS, _configuration({"emb_pooler_type": "avg"}, {"type": "sentence-embedding"})),
                                      (PLAIN_MS, _configuration({"normalize": True})))):
        folder = make_modelscope_checkpoint(gte, root / "checkpoints" / str(i), vocab_from=real_checkpoint, configuration=cfg, seed=10 + i)
        snaps[ms_id] = put_in_modelscope_cache(folder, ms_id, root / "ms")
    env = {"MODELSCOPE_CACHE": str(root / "ms"), "MODELSCOPE_ENDPOINT": CLOSED_PORT, "HF_HUB_OFFLINE": "1"}
    return {"registry": dump_registry({"gte-base": gte}, root / "models.yaml"), "env": env, "snapshots": snaps, "root": root}


def _build(ms_cache: dict, ms_id: str) -> Path:
    out = ms_cache["root"] / "artifacts" / ms_id.replace("/", "--")
    if not (out / "manifest.json").is_file():
        run_cli("build", f"modelscope:{ms_id}", "--out", str(out), "--registry", str(ms_cache["registry"]), "--variants", "fp32",
                env=ms_cache["env"])
    return out


def _pipeline_embeddings(folder: Path, sequence_length: int | None, env: dict) -> np.ndarray:
    """modelscope's ``pipeline(Tasks.sentence_embedding, model=folder[, sequence_length=N])`` on TEXTS, in a fresh interpreter."""
    args = "" if sequence_length is None else f", sequence_length={sequence_length}"
    code = (
        "import json, sys, numpy as np\n"
        "from modelscope.pipelines import pipeline\n"
        "from modelscope.utils.constant import Tasks\n"
        f"p = pipeline(Tasks.sentence_embedding, model={str(folder)!r}, device='cpu'{args})\n"
        "texts = json.loads(sys.stdin.read())\n"
        "emb = p({'source_sentence': texts})['text_embedding']\n"
        "sys.stdout.write(json.dumps(np.asarray(emb, dtype=np.float64).tolist()))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(TEXTS), capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=600)
    if proc.returncode != 0:
        raise AssertionError(f"modelscope's pipeline failed:\n{proc.stderr[-4000:]}")
    return np.array(json.loads(proc.stdout.strip().splitlines()[-1]))


def _parity(out: Path, reference: np.ndarray) -> tuple[float, float]:
    from onnxembed import Embedder

    ours = Embedder.load(out, "fp32").encode(TEXTS).astype(np.float64)
    assert ours.shape == reference.shape
    cos = (ours * reference).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(reference, axis=1)
    return float(cos.min()), float(np.abs(ours - reference).max())


def test_gte_base_from_modelscope_matches_the_pipeline(ms_cache: dict) -> None:
    """``modelscope:iic/...`` is gte-base's alt source: the registry entry (mean, 512) cross-checked against
    configuration.json, built offline from the ModelScope cache; the Embedder equals the pipeline called
    with ``sequence_length=512``, the length the model card uses."""
    out = _build(ms_cache, GTE_MS)
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["name"], manifest["pooling"], manifest["normalize"], manifest["max_length"]) == ("gte-base", "mean", False, 512)
    assert manifest["source"]["kind"] == "modelscope" and manifest["source"]["id"] == GTE_MS and manifest["source"]["revision"] == "master"
    min_cos, max_diff = _parity(out, _pipeline_embeddings(ms_cache["snapshots"][GTE_MS], 512, ms_cache["env"]))
    print(f"gte-base (modelscope, avg, 512) vs modelscope pipeline: min cosine {min_cos:.8f}, max |diff| {max_diff:.2e}")
    assert min_cos >= 0.99999 and max_diff < 1e-4


def test_configuration_defaults_match_the_pipeline(ms_cache: dict) -> None:
    """An id in no registry entry: CLS pooling (modelscope's default when ``emb_pooler_type`` is absent),
    ``normalize: true`` and the pipeline's default length 128, which truncates the long text."""
    out = _build(ms_cache, PLAIN_MS)
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["pooling"], manifest["normalize"], manifest["max_length"]) == ("cls", True, 128)
    from onnxembed import Embedder

    toks = Embedder.load(out, "fp32").tokenize(TEXTS)
    assert len(toks.ids[-1]) == 128 and toks.full_lengths[-1] > 128  # the long text is cut where the pipeline cuts it
    min_cos, max_diff = _parity(out, _pipeline_embeddings(ms_cache["snapshots"][PLAIN_MS], None, ms_cache["env"]))
    print(f"{PLAIN_MS} (cls, normalize, default 128) vs modelscope pipeline: min cosine {min_cos:.8f}, max |diff| {max_diff:.2e}")
    assert min_cos >= 0.99999 and max_diff < 1e-4


def _folder(tmp_path: Path, cfg: object) -> Path:
    (tmp_path / "configuration.json").write_text(json.dumps(cfg), encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(("cfg", "expected"), [
    (_configuration({}), ("cls", False, 128)),  # modelscope's defaults: CLS, no normalization, the pipeline's 128
    (_configuration({"emb_pooler_type": "avg", "normalize": True}), ("mean", True, 128)),
    (_configuration({"model_type": "bert", "emb_pooler_type": "cls"}, {"type": "sentence-embedding", "max_length": 512}), ("cls", False, 512)),
    (_configuration({}, {"val": {"type": "sentence-embedding", "max_length": 256}}), ("cls", False, 256)),  # the inference sub-preprocessor
    (_configuration({}, {"type": "sentence-embedding", "sequence_length": 512}), ("cls", False, 128)),  # the pipeline overrides it
])
def test_configuration_maps_to_pooling_normalize_and_length(tmp_path: Path, cfg: dict, expected: tuple) -> None:
    from onnxembed.export.modelscope_source import read_modelscope_config

    got = read_modelscope_config(_folder(tmp_path, cfg))
    assert (got["pooling"], got["normalize"], got["max_length"]) == expected


@pytest.mark.parametrize(("cfg", "message"), [
    (_configuration({"emb_pooler_type": "avg_top2"}), "'avg_top2' pools the mean of the last two layers' hidden states"),
    (_configuration({"emb_pooler_type": "avg_first_last"}), "cannot reproduce; onnxembed supports ['avg', 'cls']"),
    (_configuration({"emb_pooler_type": "weighted_mean"}), "'weighted_mean' is unknown"),
    ({**_configuration({}), "task": "text-ranking"}, "task 'text-ranking' is not 'sentence-embedding'"),
    (_configuration({"type": "bloom"}), "model type 'bloom' is not supported"),
    (_configuration({}, {"type": "sentence-embedding", "max_length": "long"}), "max_length should be a positive integer, found 'long'"),
])
def test_configurations_we_cannot_reproduce_are_refused(tmp_path: Path, cfg: dict, message: str) -> None:
    from onnxembed.export.modelscope_source import read_modelscope_config

    with pytest.raises(ValueError) as e:
        read_modelscope_config(_folder(tmp_path, cfg))
    assert message in str(e.value)


def test_a_malformed_id_and_a_missing_modelscope_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from onnxembed.export.modelscope_source import modelscope_folder

    for bad in ("", "gte-base", "iic/", "iic/a/b"):  # checked before anything is imported
        with pytest.raises(ValueError, match=f"ModelScope id '{bad}' should be ORG/NAME"):
            modelscope_folder(bad)
    monkeypatch.setitem(sys.modules, "modelscope", None)  # as if not installed
    with pytest.raises(ImportError, match=r"needs the modelscope package .*install it with: pip install .*\[modelscope\]"):
        modelscope_folder("iic/any")


def test_cold_cache_without_network_fails_naming_the_cache(tmp_path: Path) -> None:
    """Nothing cached and the hub unreachable: one refused connection, then modelscope's cache alone
    (``local_files_only``), then a clear error: no retries, nothing created in the cache."""
    code = "from onnxembed.export.modelscope_source import modelscope_folder; modelscope_folder('test-org/not-cached')"
    env = {**os.environ, "MODELSCOPE_CACHE": str(tmp_path / "ms"), "MODELSCOPE_ENDPOINT": CLOSED_PORT}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0
    text = proc.stderr.strip().splitlines()[-1]
    assert text.startswith("FileNotFoundError: modelscope:test-org/not-cached@master is not in the ModelScope cache")
    assert str(tmp_path / "ms") in text and f"{CLOSED_PORT} not reachable" in text and "modelscope download --model test-org/not-cached" in text
    assert not (tmp_path / "ms" / "models").exists()


def test_a_registry_entry_that_disagrees_with_configuration_is_refused(ms_cache: dict, tmp_path: Path) -> None:
    """gte-base says mean pooling; a ModelScope folder under its alt source id that pools CLS is refused, naming both."""
    from onnxembed.export.synthetic import put_in_modelscope_cache

    snap = Path(shutil.copytree(ms_cache["snapshots"][GTE_MS], tmp_path / "ck"))
    (snap / "configuration.json").write_text(json.dumps(_configuration({"emb_pooler_type": "cls"})), encoding="utf-8")
    put_in_modelscope_cache(snap, GTE_MS, tmp_path / "ms")
    proc = run_cli("build", f"modelscope:{GTE_MS}", "--out", str(tmp_path / "out"), "--registry", str(ms_cache["registry"]),
                   "--variants", "fp32", env={**ms_cache["env"], "MODELSCOPE_CACHE": str(tmp_path / "ms")}, check=False)
    assert proc.returncode != 0
    assert "models.yaml entry 'gte-base' disagrees" in proc.stderr and "pooling: registry 'mean', checkpoint 'cls'" in proc.stderr
    assert "modelscope's pipeline" in proc.stderr and not (tmp_path / "out").exists()


def test_a_registry_entry_with_source_modelscope(ms_cache: dict, tmp_path: Path) -> None:
    """``source: modelscope`` in models.yaml: the entry resolves through modelscope's cache at its revision."""
    from onnxembed.export.registry import dump_registry, load_registry

    spec = dataclasses.replace(load_registry(ms_cache["registry"])["gte-base"], source="modelscope", id=PLAIN_MS, revision="master",
                               pooling="cls", normalize=True, alt_sources=())
    reg = dump_registry({"tiny-ms": spec}, tmp_path / "models.yaml")
    code = ("from onnxembed.export import load_registry, resolve_checkpoint\n"
            f"ck = resolve_checkpoint('tiny-ms', registry=load_registry({str(reg)!r}))\n"
            "print(ck.spec.name, ck.spec.source, ck.spec.pooling, ck.spec.max_length, ck.source['kind'], ck.path)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **ms_cache["env"]}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["tiny-ms", "modelscope", "cls", "512", "modelscope", str(ms_cache["snapshots"][PLAIN_MS])]
