"""Every rough edge a new user hit (issue 9, point 5) stays fixed: each message names the problem and the fix."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from onnxembed import Embedder, ManifestError, load_manifest
from onnxembed.progress import progress_reporter


def _cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "onnxembed.cli", *args], input=stdin, capture_output=True, timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())


@pytest.fixture()
def folder_copy(tiny_bert_artifacts: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "gte-small"
    shutil.copytree(tiny_bert_artifacts, dst, symlinks=True)
    return dst


def test_manifest_with_invalid_utf8_is_a_manifest_error_naming_the_file(folder_copy: Path) -> None:
    path = folder_copy / "manifest.json"
    path.write_bytes(path.read_bytes().replace(b'"name"', b'"n\xe0me"', 1))
    with pytest.raises(ManifestError, match=r"manifest\.json is not UTF-8 text \(byte 0xe0"):
        load_manifest(folder_copy)
    for argv in (["embed", str(folder_copy), "x"], ["verify", str(folder_copy)]):
        proc = _cli(*argv)
        assert proc.returncode in (1, 2) and "manifest.json is not UTF-8" in (proc.stderr + proc.stdout), proc.stderr
        assert "Traceback" not in proc.stderr


def test_load_accepts_the_manifest_path(tiny_bert_artifacts: Path) -> None:
    emb = Embedder.load(tiny_bert_artifacts / "manifest.json", variant="fp32")
    ref = Embedder.load(tiny_bert_artifacts, variant="fp32")
    assert np.array_equal(emb.encode(["same folder"]), ref.encode(["same folder"]))


def test_bytes_and_float_batch_size_are_clear_type_errors(tiny_bert_artifacts: Path) -> None:
    emb = Embedder.load(tiny_bert_artifacts, variant="fp32")
    with pytest.raises(TypeError, match=r"found bytes; decode it first"):
        emb.encode(b"bytes")
    with pytest.raises(TypeError, match=r"batch_size must be an int, found float 1\.5"):
        emb.encode(["a"], batch_size=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        emb.tokenize(["a", 3])  # type: ignore[list-item]


def test_embed_input_invalid_utf8_names_file_and_line(tiny_bert_artifacts: Path, tmp_path: Path) -> None:
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("first\nsecond\ncaf\xe9\n".encode("latin-1"))
    proc = _cli("embed", str(tiny_bert_artifacts), "--input", str(bad))
    assert proc.returncode == 2
    assert f"{bad}:3: not UTF-8 (byte 0xe9 at column 4)" in proc.stderr and "iconv" in proc.stderr


def test_embed_reads_stdin_and_an_empty_input_is_not_an_error(tiny_bert_artifacts: Path, tmp_path: Path) -> None:
    proc = _cli("embed", str(tiny_bert_artifacts), "--input", "-", "--variant", "fp32", stdin="one\ntwo\n".encode())
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["one", "two"]
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    proc = _cli("embed", str(tiny_bert_artifacts), "--input", str(empty))
    assert proc.returncode == 0 and proc.stdout == "" and "embedded 0 texts" in proc.stderr
    out = tmp_path / "e.npy"
    proc = _cli("embed", str(tiny_bert_artifacts), "--input", str(empty), "--output", str(out))
    assert proc.returncode == 0 and np.load(out).shape == (0, load_manifest(tiny_bert_artifacts).dim)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--batch-size", "0"], "argument --batch-size: expected a whole number >= 1, found 0"),
        (["--threads", "0"], "argument --threads: expected a whole number >= 1, found 0"),
        (["--batch-size", "1.5"], "argument --batch-size: expected a whole number >= 1, found '1.5'"),
    ],
)
def test_cli_messages_use_cli_words(tiny_bert_artifacts: Path, argv: list[str], expected: str) -> None:
    proc = _cli("embed", str(tiny_bert_artifacts), "x", *argv)
    assert proc.returncode == 2 and expected in proc.stderr, proc.stderr


def test_corrupt_file_message_names_the_cli_flag(folder_copy: Path) -> None:
    f = folder_copy / "onnx" / "model.onnx"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    proc = _cli("embed", str(folder_copy), "x", "--variant", "fp32")
    assert proc.returncode == 2 and "--no-verify" in proc.stderr and "verify=False" in proc.stderr


def test_verify_says_which_fingerprints_were_not_checked(tiny_bert_artifacts: Path) -> None:
    proc = _cli("verify", str(tiny_bert_artifacts))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    listed = [line for line in lines[1:] if line.startswith("  ok")]
    assert f"({len(listed)} files checked, " in lines[0]
    o4 = [line for line in listed if "model_O4.onnx" in line]
    assert o4 and "fingerprint not checked: needs the CUDA provider" in o4[0]
    data = json.loads(_cli("verify", str(tiny_bert_artifacts), "--json").stdout)
    assert data["fingerprint_not_checked"]["onnx/model_O4.onnx"] == "needs the CUDA provider"
    assert len(data["checked"]) == len(listed)


def test_identical_int8_files_are_stored_once(default_artifacts: Path) -> None:
    m = load_manifest(default_artifacts)
    arm, vnni = m.variants["qint8_arm64"], m.variants["qint8_avx512_vnni"]
    assert arm.sha256 == vnni.sha256 and arm.file == vnni.file and arm.info["same_as"] == "qint8_avx512_vnni"
    link = default_artifacts / "onnx" / "model_qint8_arm64.onnx"
    assert link.is_symlink() and link.resolve() == (default_artifacts / vnni.file).resolve()
    real_onnx = [p for p in (default_artifacts / "onnx").iterdir() if not p.is_symlink()]
    shas = [m.variants[v].sha256 for v in m.variants if not m.variants[v].info.get("same_as")]
    assert len(real_onnx) == len(shas) == len(set(shas))
    # sentence-transformers' file name still opens
    import onnxruntime as ort

    assert ort.InferenceSession(str(link), providers=["CPUExecutionProvider"]).get_inputs()


def test_tokenizer_json_uses_the_models_length(default_artifacts: Path) -> None:
    from tokenizers import Tokenizer as RustTokenizer

    m = load_manifest(default_artifacts)
    assert m.max_length == 256
    tok = RustTokenizer.from_file(str(default_artifacts / "tokenizer.json"))
    long_text = "word " * 1000
    assert len(tok.encode(long_text).ids) == m.max_length
    assert len(tok.encode_batch(["short", "a little longer text"])[0].ids) == len(tok.encode("a little longer text").ids)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_show_progress_draws_a_bar_on_a_terminal() -> None:
    tty = _Tty()
    report = progress_reporter(True, 10, stream=tty)
    report(10)
    report(-1)
    assert "[" + "#" * 30 + "] 10/10 texts" in tty.getvalue() and tty.getvalue().endswith("\n")
    plain = io.StringIO()
    report = progress_reporter(True, 10, stream=plain)
    report(10)
    report(-1)
    assert plain.getvalue() == ""  # not a terminal: INFO logs instead of a bar
