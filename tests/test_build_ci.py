"""Artifact builds for CI: --all, incremental skips, reproducibility, and `onnxembed verify`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import torch  # noqa: F401 - the export extra; a missing one fails, never skips
from conftest import BUILD_ALL_VARIANTS, TINY_HUB_MODELS, run_cli  # noqa: E402
from onnxembed import load_manifest  # noqa: E402
from onnxembed.verify import verify_artifacts  # noqa: E402

SOME = BUILD_ALL_VARIANTS


@pytest.fixture(scope="module")
def built_all(hub_built_all: Path) -> Path:
    return hub_built_all


def test_build_all_writes_every_model_and_a_report(built_all: Path) -> None:
    report = json.loads((built_all / "build-report.json").read_text())
    assert report["ok"] is True
    assert sorted(r["model"] for r in report["models"]) == sorted(TINY_HUB_MODELS)
    for r in report["models"]:
        assert r["status"] == "built", r
        m = load_manifest(built_all / r["model"])
        assert set(r["variants"]) == set(m.variants) == set(SOME.split(","))
        assert m.raw["build"]["inputs_key"] and len(m.raw["build"]["inputs_key"]) == 64
        assert m.raw["fingerprint"]["variants"].keys() == m.variants.keys()


def test_rebuild_with_unchanged_inputs_is_skipped(built_all: Path, hub_registry: Path, tiny_registry: dict, tiny_build_data: list[str]) -> None:
    before = {p: p.stat().st_mtime_ns for p in built_all.rglob("*.onnx")}
    proc = run_cli("build", "--all", "--variants", SOME, "--out", str(built_all), "--registry", str(hub_registry), *tiny_build_data, env=tiny_registry["env"])
    report = json.loads((built_all / "build-report.json").read_text())
    assert {r["status"] for r in report["models"]} == {"skipped"}
    assert all(r["reason"] == "inputs unchanged" for r in report["models"])
    assert "skipped" in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in built_all.rglob("*.onnx")} == before


PATCHED_BUILD = """
import sys
from pathlib import Path
import onnxembed.quantize
from onnxembed.export import build
from onnxembed.cli import main
{patch}
sys.exit(main(sys.argv[1:]))
"""


def _status(out: Path, args: list[str], env: dict[str, str], patch: str = "") -> str:
    """``onnxembed build ARGS`` in a fresh interpreter after ``patch`` ran: "built" or "skipped" (file untouched)."""
    model = out / "onnx" / "model.onnx"
    before = model.stat().st_mtime_ns if model.exists() else None
    proc = subprocess.run([sys.executable, "-c", PATCHED_BUILD.format(patch=patch), *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return "skipped" if model.stat().st_mtime_ns == before else "built"


def test_a_tool_version_or_build_code_change_rebuilds(tiny_registry: dict, tmp_path: Path) -> None:
    """The inputs key covers the tools' versions and onnxembed's build code, not only the registry entry."""
    import onnxembed.quantize

    out = tmp_path / "gte-small"
    args = ["build", "gte-small", "--out", str(out), "--variants", "fp32", "--registry", str(tiny_registry["registry"])]
    env = tiny_registry["env"]
    assert _status(out, args, env) == "built"
    assert _status(out, args, env) == "skipped"
    # another onnxruntime version (as after a pip upgrade): rebuilt, and the manifest records it
    newer = 'real = build.tool_versions\nbuild.tool_versions = lambda: {**real(), "onnxruntime": real()["onnxruntime"] + ".post1"}'
    assert _status(out, args, env, newer) == "built"
    assert load_manifest(out).raw["tools"]["onnxruntime"].endswith(".post1")
    assert _status(out, args, env, newer) == "skipped"
    # one comment added to the quantize stage's code (a copy, loaded as the installed one): rebuilt
    code = tmp_path / "quantize-edited"
    shutil.copytree(Path(onnxembed.quantize.__file__).parent, code, ignore=shutil.ignore_patterns("__pycache__"))
    with open(code / "gates.py", "a", encoding="utf-8") as f:
        f.write("\n# an edit that changes no behaviour still changes the code\n")
    edited = f"{newer}\nonnxembed.quantize.__file__ = {str(code / '__init__.py')!r}"
    assert _status(out, args, env, edited) == "built"
    assert _status(out, args, env, edited) == "skipped"
    assert _status(out, args, env, newer) == "built"  # and back


def test_changed_registry_entry_rebuilds_only_that_model(tiny_registry: dict, tmp_path: Path) -> None:
    import dataclasses

    from onnxembed.export.registry import dump_registry, load_registry

    reg = {k: v for k, v in load_registry(tiny_registry["registry"]).items() if k in ("gte-small", "e5-small-unsupervised")}
    path = dump_registry(reg, tmp_path / "two.yaml")
    root = tmp_path / "out"
    args = ["build", "--models", "gte-small,e5-small-unsupervised", "--variants", "fp32", "--out", str(root), "--registry", str(path)]
    run_cli(*args, env=tiny_registry["env"])
    reg["gte-small"] = dataclasses.replace(reg["gte-small"], prefixes={"query": "q: ", "passage": "p: "})
    dump_registry(reg, path)
    run_cli(*args, env=tiny_registry["env"])
    status = {r["model"]: r["status"] for r in json.loads((root / "build-report.json").read_text())["models"]}
    assert status == {"gte-small": "built", "e5-small-unsupervised": "skipped"}
    assert load_manifest(root / "gte-small").prefixes == {"query": "q: ", "passage": "p: "}


def test_one_failure_does_not_stop_the_others(tiny_registry: dict, tmp_path: Path) -> None:
    root = tmp_path / "out"
    proc = run_cli("build", "--models", "gte-smal,gte-small", "--variants", "fp32", "--out", str(root), "--registry", str(tiny_registry["registry"]), env=tiny_registry["env"], check=False)
    assert proc.returncode == 1
    report = json.loads((root / "build-report.json").read_text())
    status = {r["model"]: (r["status"], r["reason"]) for r in report["models"]}
    assert status["gte-small"][0] == "built"
    assert status["gte-smal"][0] == "failed" and "unknown model 'gte-smal'" in status["gte-smal"][1]
    assert "FAILED gte-smal" in proc.stderr
    proc = run_cli("build", "--models", "gte-smal,gte-small", "--variants", "fp32", "--out", str(tmp_path / "ff"), "--fail-fast", "--registry", str(tiny_registry["registry"]), env=tiny_registry["env"], check=False)
    assert proc.returncode == 1 and not (tmp_path / "ff" / "gte-small").exists()


def test_same_inputs_give_byte_identical_onnx_files(tiny_registry: dict, tiny_bert_artifacts: Path, tiny_build_data: list[str], tmp_path: Path) -> None:
    """Rebuild gte-small (every variant, the same data) into another folder: every .onnx file must hash the same."""
    out = tmp_path / "again"
    run_cli("build", "gte-small", "--out", str(out), "--registry", str(tiny_registry["registry"]), *tiny_build_data, env=tiny_registry["env"])
    first, second = load_manifest(tiny_bert_artifacts), load_manifest(out)
    assert first.variants.keys() == second.variants.keys() and len(first.variants) >= 1
    differ = [n for n in first.variants if first.variants[n].sha256 != second.variants[n].sha256]
    assert differ == [], f"not reproducible: {[(n, first.variants[n].file) for n in differ]}"
    assert first.raw["files"] == second.raw["files"]


def test_verify_passes_on_a_fresh_build(default_artifacts: Path) -> None:
    proc = run_cli("verify", str(default_artifacts))
    assert proc.stdout.startswith(f"{default_artifacts}: OK")
    m = load_manifest(default_artifacts)
    for v in m.variants.values():
        assert f"ok      {v.file}" in proc.stdout


def _copy(folder: Path, tmp_path: Path) -> Path:
    dst = tmp_path / folder.name
    shutil.copytree(folder, dst)
    return dst


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_verify_catches_one_corrupted_byte_in_a_model_file(tiny_bert_artifacts: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_bert_artifacts, tmp_path)
    target = folder / "onnx" / "model.onnx"
    _flip_byte(target, target.stat().st_size // 2)
    proc = run_cli("verify", str(folder), check=False)
    assert proc.returncode == 1
    assert "PROBLEM onnx/model.onnx:" in proc.stdout and "sha256" in proc.stdout
    others = [v.file for v in load_manifest(folder).variants.values() if v.file != "onnx/model.onnx"]
    for f in others:
        assert f"ok      {f}" in proc.stdout


def test_verify_catches_tokenizer_changes_and_missing_files(tiny_bert_artifacts: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_bert_artifacts, tmp_path)
    _flip_byte(folder / "tokenizer.json", 100)
    (folder / "vocab.txt").unlink()
    report = verify_artifacts(folder, run=False)
    assert not report.ok
    assert "tokenizer.json: sha256/size differ from the manifest (file altered or corrupt)" in report.problems
    assert "vocab.txt: missing" in report.problems


def test_verify_catches_a_model_swapped_with_a_matching_manifest(tiny_bert_artifacts: Path, tiny_gte_base_artifacts: Path, tmp_path: Path) -> None:
    """Hashes updated to match another model's file: only the fingerprint can tell."""
    from onnxembed.manifest import MANIFEST_NAME, sha256_file

    folder = _copy(tiny_bert_artifacts, tmp_path)
    other = tiny_gte_base_artifacts / "onnx" / "model.onnx"  # same tiny shape, other weights
    shutil.copyfile(other, folder / "onnx" / "model.onnx")
    raw = json.loads((folder / MANIFEST_NAME).read_text())
    raw["variants"]["fp32"]["sha256"] = sha256_file(other)
    raw["variants"]["fp32"]["size"] = other.stat().st_size
    (folder / MANIFEST_NAME).write_text(json.dumps(raw))
    report = verify_artifacts(folder, variants=["fp32"])
    assert len(report.problems) == 1 and "onnx/model.onnx: fingerprint mismatch, min cosine" in report.problems[0]


def test_verify_reports_a_folder_without_manifest(tmp_path: Path) -> None:
    proc = run_cli("verify", str(tmp_path), check=False)
    assert proc.returncode == 1 and "is not a finished onnxembed artifact folder" in proc.stdout
