"""Where int8 calibration and gate texts come from: files, data_dir, $ONNXEMBED_DATA, shared/data, the hub cache,
the set shipped in the package."""

from __future__ import annotations

import csv
import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from onnxembed.quantize import data as qdata
from onnxembed.quantize.data import GateDataMissing, read_texts, resolve_data, text_key, texts_sha256

HELDOUT_FILES = ("stsb-test.tsv", "sts12.tsv", "sts13.tsv", "sts14.tsv", "sts15.tsv", "sts16.tsv")
NO_GATES = {"mean_cosine": -1.0, "min_cosine": -1.0, "stsb_spearman_drop": 100.0, "batch_stability": -1.0}


def tsv_rows(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]


def unique_sentences(*paths: Path, rows: int | None = None) -> list[str]:
    pairs = [r for p in paths for r in tsv_rows(p)][:rows]
    return list(dict.fromkeys(t for r in pairs for t in (r[1], r[2]) if t.strip()))


def expected_calibration(dev: list[str], sick: list[str], held: list[str]) -> tuple[set[str], int]:
    """The default pool, computed independently: dev sentences not held out + as many SICK ones, none held out."""
    keys = {text_key(t) for t in held}
    dev_kept = [t for t in dev if text_key(t) not in keys]
    sick_kept = [t for t in sick[: len(dev_kept)] if text_key(t) not in keys]
    pool = set(dev_kept) | set(sick_kept)
    return pool, len(dev) - len(dev_kept) + len(sick[: len(dev_kept)]) - len(sick_kept)


@pytest.fixture()
def installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """As an installed package sees it: no $ONNXEMBED_DATA, no shared/data beside the code."""
    monkeypatch.delenv("ONNXEMBED_DATA", raising=False)
    monkeypatch.setattr(qdata, "_repo_data", lambda: None)


def no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(repo: str, filename: str) -> Path:
        raise LocalEntryNotFoundError(f"{repo}/{filename} is not in the cache and HF_HUB_OFFLINE=1")

    monkeypatch.setattr(qdata, "_hub_file", offline)


# --- reading files -------------------------------------------------------------------------------


def test_read_texts_every_format(tmp_path: Path) -> None:
    want = ["A man plays a guitar.", 'She said "no" twice.', "  leading spaces kept"]
    (tmp_path / "a.txt").write_bytes(("\r\n".join([want[0], "", want[1], want[2]]) + "\n").encode())
    lines = "".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(want))
    (tmp_path / "a.jsonl").write_text(lines, encoding="utf-8")
    with gzip.open(tmp_path / "a.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(lines)
    for name in ("a.txt", "a.jsonl", "a.jsonl.gz"):
        texts, pairs = read_texts(tmp_path / name)
        assert [t for t in texts if t.strip()] == want and pairs == [], name
    (tmp_path / "p.tsv").write_text("score\tsentence1\tsentence2\n4.5\tA dog runs.\tA dog is running.\n0\tx\ty\n", encoding="utf-8")
    texts, pairs = read_texts(tmp_path / "p.tsv")
    assert pairs == [(4.5, "A dog runs.", "A dog is running."), (0.0, "x", "y")] and texts == ["A dog runs.", "A dog is running.", "x", "y"]
    mteb = "".join(json.dumps({"split": "test", "sentence1": a, "sentence2": b, "score": s}) + "\n" for s, a, b in pairs)
    (tmp_path / "m.jsonl").write_text(mteb, encoding="utf-8")
    assert read_texts(tmp_path / "m.jsonl") == (texts, pairs)


def test_read_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["one text", "another"], "n": [1, 2]}), tmp_path / "t.parquet")
    assert read_texts(tmp_path / "t.parquet") == (["one text", "another"], [])
    pq.write_table(pa.table({"sentence1": ["a b"], "sentence2": ["c d"], "score": [0.8]}), tmp_path / "p.parquet")
    assert read_texts(tmp_path / "p.parquet") == (["a b", "c d"], [(0.8, "a b", "c d")])
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match=r"parquet columns \['body'\]; expected a 'text' column"):
        read_texts(tmp_path / "bad.parquet")


def test_parquet_without_pyarrow_says_the_pip_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    with pytest.raises(ImportError, match=r"^pip install .*\[parquet\]"):
        read_texts(tmp_path / "t.parquet")


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("missing.txt", None, r"no such file; expected a \.txt"),
        ("empty.txt", "\n  \n", "no texts found; expected at least one non-blank text"),
        ("bad.jsonl", '{"text": "ok"}\nnot json\n', r"bad\.jsonl:2: not valid JSON"),
        ("list.jsonl", '["a"]\n', r"list\.jsonl:1: expected a JSON object with a 'text' field"),
        ("field.jsonl", '{"body": "a"}\n', r"row 1 has fields \['body'\]; expected a 'text' field"),
        ("num.jsonl", '{"text": 3}\n', "field 'text' is int; expected a string"),
        ("head.tsv", "a\tb\tc\n1\tx\ty\n", "expected 'score<TAB>sentence1<TAB>sentence2'"),
        ("cols.tsv", "score\tsentence1\tsentence2\n1\tonly two\n", "line 2 has 2 TAB-separated fields; expected 3"),
        ("score.tsv", "score\tsentence1\tsentence2\nhigh\tx\ty\n", "line 2: score 'high' is not a number"),
    ],
)
def test_bad_text_files_say_what_was_expected(tmp_path: Path, name: str, content: str | None, match: str) -> None:
    if content is not None:
        (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        read_texts(tmp_path / name)


# --- precedence and the local folders ------------------------------------------------------------


def test_default_heldout_is_every_unique_sts_test_sentence(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONNXEMBED_DATA", raising=False)
    d = resolve_data()
    want = unique_sentences(*(data_dir / "sts" / f for f in HELDOUT_FILES))
    assert d.heldout is not None and list(d.heldout.texts) == want and len(want) >= 5000
    assert d.sts is not None and len(d.sts.pairs) == len(tsv_rows(data_dir / "sts" / "stsb-test.tsv"))
    # calibration: STS-B dev without any held-out sentence (STS-B reuses STS12-16 sentences), plus as many SICK ones
    dev = unique_sentences(data_dir / "sts" / "stsb-dev.tsv")
    sick = unique_sentences(data_dir / "sts" / "sick-r-train-trial.tsv", data_dir / "sts" / "sick-r.tsv")
    pool, removed = expected_calibration(dev, sick, want)
    assert not {text_key(t) for t in d.calibration.texts} & {text_key(t) for t in d.heldout.texts}
    assert set(d.calibration.texts) == pool and len(d.calibration.texts) == len(pool) and d.overlap_removed == removed
    assert d.overlap_removed >= len(set(dev) & set(want)) > 0
    assert d.calibration.source == f"shared/data:{data_dir.resolve()}" and d.calibration.split == "validation+train+trial+test"
    assert list(d.calibration.files) == ["sts/stsb-dev.tsv", "sts/sick-r-train-trial.tsv", "sts/sick-r.tsv"]
    assert d.calibration.describe()["sha256"] == texts_sha256(d.calibration.texts)
    # the same mix as scored pairs, for a cross-encoder: dev pairs with no held-out side, as many SICK pairs (less any with one)
    held = {text_key(t) for t in d.heldout.texts}
    dev_pairs = [r for r in tsv_rows(data_dir / "sts" / "stsb-dev.tsv") if text_key(r[1]) not in held and text_key(r[2]) not in held]
    assert 0 < len(dev_pairs) < len(d.calibration.pairs) <= 2 * len(dev_pairs) and d.calibration.describe()["pairs"] == len(d.calibration.pairs)
    assert all(text_key(a) not in held and text_key(b) not in held for _, a, b in d.calibration.pairs)


def test_precedence_option_then_data_dir_then_env_then_shared(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_copy = tmp_path / "env-data"
    shutil.copytree(data_dir / "sts", env_copy / "sts")
    monkeypatch.setenv("ONNXEMBED_DATA", str(env_copy))
    d = resolve_data()
    assert d.calibration.source.startswith("$ONNXEMBED_DATA:") and d.heldout is not None and d.heldout.source.startswith("$ONNXEMBED_DATA:")
    d = resolve_data(data_dir=data_dir)
    assert d.calibration.source.startswith("data_dir:") and d.heldout is not None and d.heldout.source.startswith("data_dir:")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"Text number {i} about int8 kernels." for i in range(40)), encoding="utf-8")
    d = resolve_data(calibration=corpus)
    assert d.calibration.source == f"file:{corpus.resolve()}" and d.calibration.split == "user" and len(d.calibration.texts) == 40
    assert d.heldout is not None and d.heldout.source.startswith("$ONNXEMBED_DATA:")  # gates still from the env folder
    monkeypatch.delenv("ONNXEMBED_DATA")
    assert resolve_data().calibration.source.startswith("shared/data:")


def test_env_set_but_wrong_is_an_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"line {i}" for i in range(20)), encoding="utf-8")
    monkeypatch.setenv("ONNXEMBED_DATA", str(tmp_path / "nope"))
    with pytest.raises(ValueError, match=r"\$ONNXEMBED_DATA is '.*nope', which is not a folder; expected a folder holding sts/stsb-dev.tsv"):
        resolve_data(calibration=corpus, skip_gates=True)  # an explicit file does not hide a wrong variable
    (tmp_path / "half" / "sts").mkdir(parents=True)
    (tmp_path / "half" / "sts" / "stsb-dev.tsv").write_text("score\tsentence1\tsentence2\n", encoding="utf-8")
    monkeypatch.setenv("ONNXEMBED_DATA", str(tmp_path / "half"))
    with pytest.raises(ValueError, match=r"\$ONNXEMBED_DATA is .*half', which lacks sts/sick-r-train-trial.tsv, sts/sick-r.tsv, sts/stsb-test.tsv"):
        resolve_data()
    monkeypatch.delenv("ONNXEMBED_DATA")
    with pytest.raises(ValueError, match="data_dir is .*half', which lacks"):
        resolve_data(data_dir=tmp_path / "half")


def test_calibration_that_is_all_gate_text_is_an_error(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONNXEMBED_DATA", raising=False)
    f = tmp_path / "test-sentences.txt"
    f.write_text("\n".join(unique_sentences(data_dir / "sts" / "stsb-test.tsv")[:300]), encoding="utf-8")
    with pytest.raises(ValueError, match=r"calibration: 0 texts left after removing the 300 that are also held-out gate texts"):
        resolve_data(calibration=f)
    assert len(resolve_data(calibration=f, skip_gates=True).calibration.texts) == 300  # no gate texts: nothing to avoid


def test_no_gate_data_refuses_unless_skipped(installed: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_hub(monkeypatch)
    monkeypatch.setattr(qdata, "SHIPPED_DIR", tmp_path / "not-installed")  # an install that lost its shipped set
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"Sentence {i} of my own corpus." for i in range(30)), encoding="utf-8")
    with pytest.raises(GateDataMissing, match="none were found") as e:
        resolve_data(calibration=corpus)
    msg = str(e.value)
    assert all(s in msg for s in ("--gate-data FILE", "ONNXEMBED_DATA", "--skip-gates", "mteb/sts12-sts", "not in the cache"))
    d = resolve_data(calibration=corpus, skip_gates=True)
    assert d.heldout is None and d.sts is None and len(d.calibration.texts) == 30
    with pytest.raises(FileNotFoundError, match="int8 calibration needs texts, and none were found.*--calibration FILE"):
        resolve_data(skip_gates=True)
    with pytest.raises(ValueError, match="contradict each other"):
        resolve_data(calibration=corpus, gate_data=corpus, skip_gates=True)


# --- through quantize_model (a tiny random BERT) --------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, real_checkpoint: Path) -> tuple[Path, dict]:
    from test_fusion import make_workdir  # tests/ is on sys.path (pytest rootdir mode)

    return make_workdir(tmp_path_factory.mktemp("data-bert"), "gte-small", real_checkpoint, seed=5)


def test_user_calibration_and_labelled_gate_pairs(tiny: tuple[Path, dict], data_dir: Path, tmp_path: Path, installed: None,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from onnxembed.quantize import quantize_model

    no_hub(monkeypatch)
    work, manifest = tiny
    corpus = tmp_path / "corpus.jsonl"
    texts = [r[1] for r in tsv_rows(data_dir / "sts" / "sick-r.tsv")[:200]]
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    pairs = tmp_path / "pairs.tsv"
    rows = tsv_rows(data_dir / "sts" / "stsb-test.tsv")[:120]
    pairs.write_text("score\tsentence1\tsentence2\n" + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    r = quantize_model(work, "avx512_vnni", out=tmp_path / "a.onnx", manifest=manifest, gates=NO_GATES, calibration=corpus, gate_data=pairs)
    calib = r.recipe["calibration"]
    unique = list(dict.fromkeys(texts))
    assert calib["source"] == f"file:{corpus.resolve()}" and calib["split"] == "user" and calib["texts"] == len(unique)
    assert calib["sha256"] == texts_sha256(unique) and calib["overlap_removed"] == 0
    assert calib["sentences"] + calib["selection_sentences"] <= len(unique)
    held = r.accuracy["data"]["heldout"]
    assert held["source"] == f"file:{pairs.resolve()}" and held["pairs"] == 120
    assert held["texts"] == r.accuracy["heldout_sentences"] == len(unique_sentences(pairs))
    assert r.accuracy["stsb_spearman"] is not None and r.accuracy["data"]["sts_pairs"]["pairs"] == 120

    plain = tmp_path / "plain.txt"
    plain.write_text("\n".join(r[2] for r in rows), encoding="utf-8")
    strict = {**NO_GATES, "stsb_spearman_drop": -1.0}  # would fail if the Spearman gate ran
    r2 = quantize_model(work, "avx512_vnni", out=tmp_path / "b.onnx", manifest=manifest, gates=strict, calibration=corpus, gate_data=plain)
    assert r2.accuracy["stsb_spearman"] is None and r2.accuracy["data"]["sts_pairs"] is None and r2.failures == []
    assert r2.accuracy["min_cosine"] <= r2.accuracy["q001_cosine"] <= r2.accuracy["mean_cosine"] <= 1.0


def test_skip_gates_writes_the_file_and_says_so(tiny: tuple[Path, dict], tmp_path: Path, installed: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from onnxembed.quantize import quantize_model

    no_hub(monkeypatch)
    work, manifest = tiny
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"A sentence about topic {i} for calibration." for i in range(64)), encoding="utf-8")
    monkeypatch.setattr(qdata, "SHIPPED_DIR", tmp_path / "not-installed")  # no data anywhere, not even the shipped set
    with pytest.raises(GateDataMissing):
        quantize_model(work, "avx512_vnni", out=tmp_path / "x.onnx", manifest=manifest, calibration=corpus)
    assert not (tmp_path / "x.onnx").exists()  # refused before writing
    r = quantize_model(work, "avx512_vnni", out=tmp_path / "x.onnx", manifest=manifest, calibration=corpus, skip_gates=True)
    assert r.path.is_file() and r.failures == []
    assert r.accuracy["gates_run"] is False and "skip_gates" in r.accuracy["reason"] and "mean_cosine" not in r.accuracy
    assert r.recipe["calibration"]["texts"] == 64


# --- end to end: `onnxembed build` with no local data (as an installed package) ---------------------


def run_installed(*args: str, env: dict[str, str], check: bool = True, setup: str = "") -> subprocess.CompletedProcess[str]:
    """``onnxembed ARGS`` in a fresh interpreter that, like an installed package, has no shared/data beside it
    (``setup``: more statements on the data module ``d`` first)."""
    code = (f"import sys, onnxembed.quantize.data as d; from pathlib import Path; d._repo_data = lambda: None; {setup + '; ' if setup else ''}"
            "from onnxembed.cli import main; sys.exit(main(sys.argv[1:]))")
    full = {k: v for k, v in os.environ.items() if k != "ONNXEMBED_DATA"} | env
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=full, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"onnxembed {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture()
def model_only_hub(tiny_registry: dict, tmp_path: Path) -> dict[str, str]:
    """A hub cache holding only tiny gte-small (no datasets), offline."""
    src = Path(tiny_registry["env"]["HF_HUB_CACHE"]) / "models--thenlper--gte-small"
    shutil.copytree(src, tmp_path / "hub" / src.name, symlinks=True)
    return {**tiny_registry["env"], "HF_HUB_CACHE": str(tmp_path / "hub")}


def test_build_from_the_fake_hub_cache(model_only_hub: dict[str, str], tiny_registry: dict, data_dir: Path, tmp_path: Path) -> None:
    from onnxembed.quantize.synthetic_data import offline_data_hub

    rows = 60
    offline_data_hub(data_dir, model_only_hub["HF_HUB_CACHE"], rows=rows)
    out = tmp_path / "gte-small"
    run_installed("build", "gte-small", "--out", str(out), "--registry", str(tiny_registry["registry"]),
                  "--variants", "fp32,qint8_avx512_vnni", env=model_only_hub)
    e = json.loads((out / "manifest.json").read_text())["variants"]["qint8_avx512_vnni"]
    calib, acc = e["recipe"]["calibration"], e["accuracy"]
    sources = [s.split("@")[0] for s in calib["source"].split("+")]
    assert sources == ["hf://datasets/mteb/stsbenchmark-sts", "hf://datasets/mteb/sickr-sts"] and calib["split"] == "validation+train+trial+test"
    first = [tsv_rows(data_dir / "sts" / f)[:rows] for f in HELDOUT_FILES]
    held = list(dict.fromkeys(t for rs in first for r in rs for t in r[1:] if t.strip()))
    dev = unique_sentences(data_dir / "sts" / "stsb-dev.tsv", rows=rows)
    sick = unique_sentences(data_dir / "sts" / "sick-r-train-trial.tsv", data_dir / "sts" / "sick-r.tsv", rows=rows)
    pool, removed = expected_calibration(dev, sick, held)
    assert calib["texts"] == len(pool) and calib["overlap_removed"] == removed
    assert acc["gates_run"] is True and acc["heldout_sentences"] == len(held) == acc["data"]["heldout"]["texts"]
    assert [s.split("@")[0] for s in acc["data"]["heldout"]["source"].split("+")] == [
        "hf://datasets/mteb/stsbenchmark-sts", *(f"hf://datasets/mteb/sts1{i}-sts" for i in range(2, 7))]
    assert acc["data"]["sts_pairs"]["pairs"] == rows and acc["stsb_spearman"] is not None
    assert acc["min_cosine"] <= acc["q001_cosine"] <= acc["mean_cosine"]


def test_build_from_a_calibration_file_without_gate_data(model_only_hub: dict[str, str], tiny_registry: dict, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"My corpus line {i}: int8 calibration on the texts I embed." for i in range(80)), encoding="utf-8")
    out = tmp_path / "gte-small"
    args = ["build", "gte-small", "--out", str(out), "--registry", str(tiny_registry["registry"]), "--variants", "fp32,qint8_avx512_vnni",
            "--calibration", str(corpus)]
    # With neither local data nor a hub cache, the shipped set judges the gates and the build says so in one line.
    built = run_installed(*args, env=model_only_hub)
    lines = [ln for ln in built.stderr.splitlines() if "gates judged on" in ln]
    assert len(lines) == 1, built.stderr[-2000:]
    assert f"calibration on file:{corpus.resolve()} (80 texts)" in lines[0]
    assert "gates judged on shipped set (STS Benchmark images + SNLI, CC BY-SA 4.0) (2097 sentences, 1250 scored pairs)" in lines[0]
    acc = json.loads((out / "manifest.json").read_text())["variants"]["qint8_avx512_vnni"]["accuracy"]
    assert acc["gates_run"] is True and acc["data"]["heldout"]["source"].startswith("shipped set")
    # An install that lost its shipped set (and has no other data) refuses before the export.
    refused = run_installed(*args, "--out", str(tmp_path / "refused"), env=model_only_hub, check=False,
                            setup="d.SHIPPED_DIR = Path('/nonexistent')")
    assert refused.returncode == 2 and "--skip-gates" in refused.stderr and "none were found" in refused.stderr
    assert "exporting" not in refused.stderr and not (tmp_path / "refused").exists()  # refused before the export
    shutil.rmtree(out, ignore_errors=True)
    run_installed(*args, "--skip-gates", env=model_only_hub)
    m = json.loads((out / "manifest.json").read_text())
    e = m["variants"]["qint8_avx512_vnni"]
    assert e["accuracy"]["gates_run"] is False and e["recipe"]["calibration"]["source"] == f"file:{corpus.resolve()}"
    assert m["build"]["int8_data"]["skip_gates"] is True and m["build"]["int8_data"]["calibration"]["path"] == str(corpus)
    v = run_installed("verify", str(out), env=model_only_hub)
    assert "NOTE    onnx/model_qint8_avx512_vnni.onnx: the int8 accuracy gates were NOT run" in v.stdout and "OK" in v.stdout


def test_spearman_reuses_heldout_embeddings_and_embeds_the_rest() -> None:
    import numpy as np

    from onnxembed.quantize.gates import _sts_spearman, cosines, spearman

    class Enc:  # embeds a text as a fixed pseudo-random vector of its content; counts what it embeds
        seen: list[str] = []

        def embed(self, session: object, texts: list[str]) -> np.ndarray:
            self.seen += texts
            return np.stack([np.random.default_rng(sum(map(ord, t))).normal(size=8) for t in texts]).astype(np.float32)

    enc = Enc()
    rows = [(float(i % 5), f"left {i}", f"right {i}") for i in range(30)]
    held = [t for _, a, b in rows[:20] for t in (a, b)]  # the last 10 pairs are not held-out texts
    got = _sts_spearman(None, enc, rows, held, enc.embed(None, held))
    assert enc.seen[len(held):] == [t for _, a, b in rows[20:] for t in (a, b)]  # only the missing ones embedded again
    a, b = enc.embed(None, [r[1] for r in rows]), enc.embed(None, [r[2] for r in rows])
    assert got == spearman(np.array([r[0] for r in rows]), cosines(a, b))


def test_the_package_ships_only_the_cc_by_sa_sts_set_with_its_licence() -> None:
    import tomllib

    repo = Path(__file__).resolve().parents[1]
    conf = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    data_like = (".tsv", ".jsonl", ".gz", ".parquet", ".csv", ".txt")
    shipped = qdata.SHIPPED_DIR.relative_to(repo).as_posix()
    for folder in conf["package-dir"].values():
        found = [p.relative_to(repo).as_posix() for p in (repo / folder).rglob("*") if p.name.endswith(data_like)]
        assert all(f.startswith(shipped + "/") for f in found), (folder, found)
    allowed = {"sts_data/gates.tsv", "sts_data/calibration.tsv", "sts_data/LICENSE.txt"}
    for pats in conf["package-data"].values():
        assert all(not pat.endswith(data_like) or pat in ("sts_data/*.tsv", "sts_data/LICENSE.txt") for pat in pats), pats
    assert {p.relative_to(qdata.SHIPPED_DIR.parent).as_posix() for p in qdata.SHIPPED_DIR.glob("*") if p.name.endswith(data_like)} == allowed
    licence = (qdata.SHIPPED_DIR / "LICENSE.txt").read_text(encoding="utf-8")
    assert "CC BY-SA 4.0" in licence and "PASCAL VOC-2008" in licence and "SNLI" in licence
