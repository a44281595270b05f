"""Artifact builds for CI: --all, incremental skips, reproducibility, and `onnxembed verify`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
from conftest import run_cli  # noqa: E402
from onnxembed import load_manifest  # noqa: E402
from onnxembed.verify import verify_artifacts  # noqa: E402

SEVEN = {"all-mpnet-base-v2", "all-minilm-l6-v2", "e5-small-unsupervised", "e5-base-unsupervised", "multi-qa-distilbert-cos-v1", "gte-base", "gte-small"}


def test_build_all_writes_every_model_and_a_report(all_artifacts: Path) -> None:
    report = json.loads((all_artifacts / "build-report.json").read_text())
    assert report["ok"] is True
    assert {r["model"] for r in report["models"]} == SEVEN
    for r in report["models"]:
        assert r["status"] == "built", r
        m = load_manifest(all_artifacts / r["model"])
        assert set(r["variants"]) == set(m.variants)
        assert m.raw["build"]["inputs_key"] and len(m.raw["build"]["inputs_key"]) == 64
        assert m.raw["fingerprint"]["variants"].keys() == m.variants.keys()


def test_rebuild_with_unchanged_inputs_is_skipped(all_artifacts: Path, tiny_registry: dict) -> None:
    before = {p: p.stat().st_mtime_ns for p in all_artifacts.rglob("*.onnx")}
    proc = run_cli("build", "--all", "--out", str(all_artifacts), "--registry", str(tiny_registry["registry"]), env=tiny_registry["env"])
    report = json.loads((all_artifacts / "build-report.json").read_text())
    assert {r["status"] for r in report["models"]} == {"skipped"}
    assert all(r["reason"] == "inputs unchanged" for r in report["models"])
    assert "skipped" in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in all_artifacts.rglob("*.onnx")} == before


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


def test_same_inputs_give_byte_identical_onnx_files(tiny_registry: dict, tiny_bert_artifacts: Path, tmp_path: Path) -> None:
    """Rebuild gte-small (every variant) into another folder: every .onnx file must hash the same."""
    out = tmp_path / "again"
    run_cli("build", "gte-small", "--out", str(out), "--registry", str(tiny_registry["registry"]), env=tiny_registry["env"])
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


def test_verify_catches_a_model_swapped_with_a_matching_manifest(tiny_bert_artifacts: Path, all_artifacts: Path, tmp_path: Path) -> None:
    """Hashes updated to match another model's file: only the fingerprint can tell."""
    from onnxembed.manifest import MANIFEST_NAME, sha256_file

    folder = _copy(tiny_bert_artifacts, tmp_path)
    other = all_artifacts / "gte-base" / "onnx" / "model.onnx"  # same tiny shape, other weights
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
