"""Every rough edge a new user hit (issue 9, point 5; issue 16, point 5) stays fixed: each message names the problem and the fix."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
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


def test_identical_int8_files_are_stored_once(default_artifacts: Path, tmp_path: Path) -> None:
    """Byte-identical model files are stored once, the later name a relative symlink sentence-transformers
    still opens. Whether the real build has such a pair depends on the CPU (on AVX2 without VNNI the
    avx512_vnni and arm64 files are both judged in exact int8 arithmetic and come out identical; on a VNNI
    CPU the VNNI file is judged on its native kernels and its search may settle elsewhere), so the storing
    step runs here on a copy of the real folder with one duplicate made, and the real build's own
    manifest is checked for the same invariant."""
    import onnxruntime as ort

    from onnxembed.export.variants import _store_identical_once
    from onnxembed.manifest import sha256_file

    m = load_manifest(default_artifacts)
    stored = [p for p in (default_artifacts / "onnx").iterdir() if not p.is_symlink()]
    owners = {n: v for n, v in m.variants.items() if not v.info.get("same_as")}
    assert len(stored) == len(owners) == len({v.sha256 for v in owners.values()})  # the real build: no two copies
    for name, v in m.variants.items():
        if v.info.get("same_as"):
            link = default_artifacts / "onnx" / f"model_{name}.onnx"
            assert link.is_symlink() and v.sha256 == m.variants[v.info["same_as"]].sha256

    work = tmp_path / "folder"
    (work / "onnx").mkdir(parents=True)
    vnni = m.variants["qint8_avx512_vnni"]
    entries = {}
    for name in ("fp32", "qint8_avx512_vnni", "qint8_arm64"):
        src = default_artifacts / m.variants["qint8_avx512_vnni" if name == "qint8_arm64" else name].file
        dst = work / "onnx" / ("model.onnx" if name == "fp32" else f"model_{name}.onnx")
        shutil.copyfile(src, dst)
        entries[name] = {"file": f"onnx/{dst.name}", "sha256": sha256_file(dst)}
    _store_identical_once(work, entries)
    link = work / "onnx" / "model_qint8_arm64.onnx"
    assert entries["qint8_arm64"] == {"file": "onnx/model_qint8_avx512_vnni.onnx", "sha256": vnni.sha256, "same_as": "qint8_avx512_vnni"}
    assert "same_as" not in entries["fp32"] and "same_as" not in entries["qint8_avx512_vnni"]
    assert link.is_symlink() and not Path(os.readlink(link)).is_absolute()
    assert link.resolve() == (work / "onnx" / "model_qint8_avx512_vnni.onnx").resolve()
    assert sorted(p.name for p in (work / "onnx").iterdir() if not p.is_symlink()) == ["model.onnx", "model_qint8_avx512_vnni.onnx"]
    assert ort.InferenceSession(str(link), providers=["CPUExecutionProvider"]).get_inputs()  # sentence-transformers' file name opens


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


# --- issue 16, point 5: the corpus job, the install hints, Ray -----------------------------------


def _chattr(flag: str, path: Path) -> bool:
    return shutil.which("chattr") is not None and subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


@pytest.mark.parametrize("case", ["a file", "under a file", "immutable folder", "inside an immutable folder"])
def test_corpus_out_that_cannot_be_written_is_one_line_and_exit_2(tiny_bert_artifacts: Path, tmp_path: Path, case: str) -> None:
    """Tests run as root, whom permission bits do not stop: an immutable folder (``chattr +i``) refuses
    writes to root too. Before: a traceback and exit 1, or pyarrow's ``[Errno 17] ... Detail: [errno 17]``."""
    src = tmp_path / "in.txt"
    src.write_text("a text\n", encoding="utf-8")
    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    locked = tmp_path / "locked"
    locked.mkdir()
    out, cause = {
        "a file": (afile, f"{afile}: cannot write the output folder: it is a file, not a folder"),
        "under a file": (afile / "out", f"{afile / 'out'}: cannot write the output folder: {afile} is a file, not a folder"),
        "immutable folder": (locked, f"{locked}: cannot write the output folder: Operation not permitted; choose a folder you can write"),
        "inside an immutable folder": (locked / "out", f"{locked / 'out'}: cannot write the output folder: Operation not permitted (in {locked}, where it would be created)"),
    }[case]
    if "immutable" in case and not _chattr("+i", locked):
        pytest.skip("chattr +i is not available here")
    try:
        proc = _cli("corpus", str(tiny_bert_artifacts), str(src), "--out", str(out))
    finally:
        _chattr("-i", locked)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"onnxembed corpus: error: {cause}"), proc.stderr
    assert afile.read_text() == "not a folder\n" and list(locked.iterdir()) == []


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_corpus_stopped_says_what_is_done_and_how_to_resume(default_artifacts: Path, tmp_path: Path, how: str) -> None:
    """Before: ~20 s to stop (running shards finished first), nothing printed. Now it stops within
    seconds, names the shards done and the command that resumes, and that command finishes the job."""
    src = tmp_path / "in.txt"
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    src.write_text("\n".join(" ".join(words[(i + k) % 12] for k in range(30)) + f" {i}" for i in range(240)) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    argv = ["corpus", str(default_artifacts), str(src), "--out", str(out), "--shard-rows", "10", "--workers", "1", "--threads", "1", "--overwrite"]
    # SIGINT as a terminal's Ctrl-C finds it: not ignored (a shell's background job would inherit SIG_IGN,
    # which Python then keeps, as every Unix tool started with nohup or & does)
    proc = subprocess.Popen([sys.executable, "-m", "onnxembed.cli", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240
        while not list(out.glob("part-*.parquet")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the job ended before it could be stopped"
        t0 = time.monotonic()
        if how == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends: the driver and its workers
        err = proc.communicate(timeout=30)[1].decode()
        took = time.monotonic() - t0
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == (143 if how == "SIGTERM" else 130), err
    assert took < 10, f"took {took:.1f}s to stop"
    done = len(list(out.glob("part-*.parquet")))
    last = err.strip().splitlines()[-1]
    resume = "onnxembed " + " ".join(a for a in argv if a != "--overwrite")
    assert last == f"onnxembed corpus: stopped ({how}): {done} of 24 shards done in {out}; resume with: {resume}", err
    assert "Traceback" not in err and 1 <= done < 24
    rerun = subprocess.run([sys.executable, "-m", "onnxembed.cli", *resume.split()[1:], "--json"], capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["shards_skipped"] == done and summary["texts"] == 240 and summary["texts_embedded"] == 240 - 10 * done
    import pyarrow.parquet as pq

    ids = [i for p in sorted(out.glob("part-*.parquet")) for i in pq.read_table(p).column("id").to_pylist()]
    assert len(ids) == len(set(ids)) == 240 and not [p for p in out.iterdir() if p.name.startswith(".")]


def test_corpus_counts_empty_texts_and_repeated_ids_and_strict_refuses_them(tiny_bert_artifacts: Path, tmp_path: Path) -> None:
    """The server refuses "" (400); the corpus job embeds it, never silently: counted in the summary
    and ``_manifest.json``; ``--strict`` refuses it before anything is written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from onnxembed.corpus import CorpusInputError, embed_corpus

    js = tmp_path / "a.jsonl"
    js.write_text("\n".join(json.dumps(r) for r in [{"id": "a", "text": "one"}, {"id": "b", "text": ""}, {"id": "a", "text": "again"}, {"id": "c", "text": "  "}]) + "\n")
    pqt = tmp_path / "b.parquet"
    pq.write_table(pa.table({"id": ["c", "d"], "text": ["", "two"]}), pqt)
    out = tmp_path / "out"
    s = embed_corpus(tiny_bert_artifacts, [js, pqt], out, id_column="id", workers=1)
    assert (s.texts, s.empty_texts, s.duplicate_ids) == (6, 3, 2)
    job = json.loads((out / "_manifest.json").read_text())
    assert job["checks"] == {"empty_texts": 3, "duplicate_ids": 2, "strict": False}
    assert [(f["empty_texts"], f["duplicate_ids"]) for f in job["inputs"]] == [(2, 1), (1, 1)]
    assert json.loads((out / "_SUCCESS").read_text())["empty_texts"] == 3
    proc = _cli("corpus", str(tiny_bert_artifacts), str(js), str(pqt), "--out", str(tmp_path / "cli"), "--id-column", "id")
    assert proc.returncode == 0 and "3 empty, 2 repeated ids" in proc.stderr.splitlines()[-1], proc.stderr
    for files, where in (([js], f"{js}:2: the text is empty"), ([pqt], f"{pqt}: row 0: the text is empty"), ([js, pqt], f"{js}:2: the text is empty")):
        with pytest.raises(CorpusInputError, match=re.escape(where)):
            embed_corpus(tiny_bert_artifacts, files, tmp_path / "strict", id_column="id", strict=True, workers=1)
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"id": 1, "text": "x"}\n{"id": 1, "text": "y"}\n')
    proc = _cli("corpus", str(tiny_bert_artifacts), str(dup), "--out", str(tmp_path / "strict"), "--id-column", "id", "--strict")
    assert proc.returncode == 2 and f"{dup}:2: id '1' appears again" in proc.stderr, proc.stderr
    assert not (tmp_path / "strict").exists()


class _FakeDist:
    def __init__(self, direct_url: dict | None) -> None:
        self.direct_url = direct_url
        self.requires = ['starlette>=0.40; extra == "serve"', "uvloop>=0.19; (sys_platform != 'win32' and platform_python_implementation == 'CPython') and extra == 'serve'",
                         "uvloop-on-windows; sys_platform == 'win32' and extra == \"serve\"", 'numpy>=1.24']

    def read_text(self, name: str) -> str | None:
        if name == "INSTALLER":
            return "pip\n"
        return json.dumps(self.direct_url) if name == "direct_url.json" and self.direct_url is not None else None


def test_install_hints_follow_how_onnxembed_was_installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Before: every hint said ``pip install "onnxembed[serve]"``, which fails: onnxembed is on no index."""
    import importlib.metadata as md

    from onnxembed import extras

    wheel = tmp_path / "onnxembed-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    cases = [
        ({"url": "file:///src/onnxembed", "dir_info": {"editable": True}}, 'pip install -e "/src/onnxembed[serve]"'),
        ({"url": "file:///src/onnxembed", "dir_info": {}}, 'pip install "/src/onnxembed[serve]"'),
        ({"url": wheel.as_uri(), "archive_info": {}}, f'pip install "{wheel}[serve]"'),
        ({"url": "file:///gone/onnxembed-0.1.0-py3-none-any.whl", "archive_info": {}},
         'pip install "/gone/onnxembed-0.1.0-py3-none-any.whl[serve]" (the wheel onnxembed was installed from; it is no longer there: use that wheel, or the clone, with [serve])'),
        ({"url": "https://github.com/o/onnxembed", "vcs_info": {"vcs": "git", "commit_id": "abc", "requested_revision": "v1"}},
         'pip install "onnxembed[serve] @ git+https://github.com/o/onnxembed@v1"'),
        (None, 'pip install "onnxembed[serve]"'),
    ]
    for direct_url, hint in cases:
        monkeypatch.setattr(md, "distributions", lambda name=None, d=_FakeDist(direct_url): [d])
        assert extras.install_hint("serve") == hint
    assert extras.install_hint("export").startswith("pip install torch==2.13.0 && pip install ")
    # the extra's packages come from the metadata, with the platform markers applied
    assert extras.extra_requirements("serve") == ["starlette", "uvloop"]
    monkeypatch.setattr(md, "distributions", lambda name=None: [_FakeDist(None)])
    monkeypatch.setattr(md, "distribution", lambda name: (_ for _ in ()).throw(md.PackageNotFoundError(name)) if name == "uvloop" else None)
    with pytest.raises(ImportError, match=re.escape('onnxembed.serve needs the serve extra (missing: uvloop); install it with: pip install "onnxembed[serve]"')):
        extras.require_extra("serve", "onnxembed.serve")


def test_extras_are_read_from_the_installed_metadata_as_pyproject_declares_them() -> None:
    import tomllib

    from onnxembed import extras

    declared = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in ("serve", "corpus", "ray", "export", "parquet"):
        names = [re.split(r"[ ;<>=!~\[]", r, maxsplit=1)[0] for r in declared[extra] if "win32" not in r or sys.platform != "win32"]
        assert extras.extra_requirements(extra) == names, extra
        assert extras.missing_for(extra) == []  # the dev extra installs every stage


def test_ray_run_prints_only_the_jobs_progress_and_summary(tiny_bert_artifacts: Path, tmp_path: Path) -> None:
    """Before: a token-auth WARNING, an ``E ... core_worker.cc ... max_restarts`` line and "Progress bars
    disabled" on a run that went well; and Ray's usage statistics on unless the user turned them off."""
    src = tmp_path / "in.txt"
    src.write_text("".join(f"text number {i}\n" for i in range(40)), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    proc = subprocess.run(
        [sys.executable, "-m", "onnxembed.cli", "corpus", str(tiny_bert_artifacts), str(src), "--out", str(tmp_path / "out"),
         "--executor", "ray", "--workers", "1", "--shard-rows", "20"],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert all(line.startswith("[onnxembed corpus] ") for line in lines[:-1]), proc.stderr
    assert lines[-1].startswith("40 texts (40 embedded now") and "ray x1" in lines[-1], proc.stderr
    from onnxembed.corpus import ray_executor

    os.environ.pop("RAY_USAGE_STATS_ENABLED", None)
    try:
        ray_executor._quiet_ray_env()
        assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"
        os.environ["RAY_USAGE_STATS_ENABLED"] = "1"  # the user's choice stays
        ray_executor._quiet_ray_env()
        assert os.environ["RAY_USAGE_STATS_ENABLED"] == "1"
    finally:
        os.environ.pop("RAY_USAGE_STATS_ENABLED", None)
