"""The corpus job (onnxembed.corpus): exact, resumable, refuses to mix, clear about bad inputs.

Real STS sentences in each input format; the tiny model where weights do not matter, the embedded
real model where they do (Ray, and the killed-driver rerun, which needs work slow enough to kill).
Ray runs in local mode, started once per test session.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from onnxembed import Embedder
from onnxembed.corpus import CorpusInputError, CorpusMismatchError, embed_corpus

from conftest import DATA, run_cli

N = 2000  # texts per input format


def sts_sentences(n: int, skip: int = 0) -> list[str]:
    """``n`` distinct real sentences from the STS files (score<TAB>s1<TAB>s2, no quoting)."""
    seen: dict[str, None] = {}
    for f in sorted((DATA / "sts").glob("*.tsv")):
        for line in f.read_text(encoding="utf-8").splitlines()[1:]:
            for s in line.split("\t")[1:3]:
                if s.strip():
                    seen.setdefault(s, None)
    out = list(seen)[skip : skip + n]
    assert len(out) == n, f"only {len(out)} distinct STS sentences"
    return out


@pytest.fixture(scope="session")
def corpus_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The same kind of text in the three formats: {"txt", "jsonl", "parquet": path, "texts": {id: text}}."""
    root = tmp_path_factory.mktemp("corpus-inputs")
    sents = sts_sentences(3 * N)
    txt, js, pqt = sents[:N], sents[N : 2 * N], sents[2 * N :]
    (root / "a.txt").write_text("\n".join(txt[:700]) + "\n\n  \n" + "\n".join(txt[700:]) + "\n", encoding="utf-8")  # blank lines are skipped
    with open(root / "b.jsonl", "w", encoding="utf-8") as f:
        for i, s in enumerate(js):
            f.write(json.dumps({"id": f"j{i}", "text": s, "score": i}) + "\n")
    pq.write_table(pa.table({"doc": [f"p{i}" for i in range(N)], "text": pqt}), root / "c.parquet", row_group_size=300)
    texts = {}
    for i, s in enumerate(txt):
        texts[f"{root / 'a.txt'}:{i + 1 + (2 if i >= 700 else 0)}"] = s  # lines 701-702 are blank
    texts.update({f"j{i}": s for i, s in enumerate(js)})
    texts.update({f"p{i}": s for i, s in enumerate(pqt)})
    return {"root": root, "txt": root / "a.txt", "jsonl": root / "b.jsonl", "parquet": root / "c.parquet", "texts": texts}


@pytest.fixture(scope="session")
def ray_local():
    """Ray on this machine with 2 CPUs, once per session. Not installed is a failure, not a skip:
    the dev extra includes ray[data]."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def read_out(out: Path) -> tuple[list[str], np.ndarray, pa.Table]:
    parts = sorted(out.glob("part-*.parquet"))
    table = pa.concat_tables([pq.read_table(p) for p in parts])
    vecs = np.asarray(table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False))
    return table.column("id").to_pylist(), vecs.reshape(len(table), -1), table


def assert_exact(out: Path, texts: dict[str, str], emb: Embedder) -> None:
    """Every id once, none missing, and each vector equal to ``Embedder.encode`` of its text."""
    ids, vecs, _ = read_out(out)
    assert len(ids) == len(set(ids)), "duplicate ids"
    assert set(ids) == set(texts), f"missing {len(set(texts) - set(ids))}, unexpected {len(set(ids) - set(texts))}"
    ref = emb.encode([texts[i] for i in ids])
    assert vecs.dtype == np.float32 and vecs.shape == ref.shape
    diff = float(np.abs(vecs - ref).max())
    assert diff <= 1e-6, diff


def test_local_executor_every_format_is_exact(tiny_bert_artifacts: Path, corpus_inputs: dict, tmp_path: Path) -> None:
    ins = [corpus_inputs[k] for k in ("txt", "jsonl", "parquet")]
    out = tmp_path / "out"
    # one id column name per job: jsonl's is "id", parquet's "doc"
    s = embed_corpus(tiny_bert_artifacts, ins[:2], out, id_column="id", shard_rows=450, workers=2)
    s2 = embed_corpus(tiny_bert_artifacts, ins[2:], tmp_path / "out2", id_column="doc", shard_rows=450, workers=2)
    emb = Embedder.load(tiny_bert_artifacts, variant=s.variant)
    texts = corpus_inputs["texts"]
    assert_exact(out, {k: v for k, v in texts.items() if not k.startswith("p")}, emb)
    assert_exact(tmp_path / "out2", {k: v for k, v in texts.items() if k.startswith("p")}, emb)
    assert (s.texts, s2.texts, s.shards, s2.shards) == (2 * N, N, 2 * -(-N // 450), -(-N // 450))
    assert s.shards_skipped == 0 and s.texts_embedded == s.texts and s.workers == 2
    tokens = emb.tokenize([texts[k] for k in texts if not k.startswith("p")])
    assert (s.tokens, s.truncated) == (tokens.n_tokens, tokens.n_truncated)
    # the job manifest records the model file and each input's size and hash; _SUCCESS the summary
    job = json.loads((out / "_manifest.json").read_text())
    assert job["model"]["sha256"] == emb.manifest.variants[s.variant].sha256 and job["model"]["variant"] == s.variant
    import hashlib

    for entry, path in zip(job["inputs"], ins[:2]):
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() and entry["size"] == path.stat().st_size
    assert json.loads((out / "_SUCCESS").read_text())["texts"] == 2 * N
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"
    # a rerun finds everything done and embeds nothing
    again = embed_corpus(tiny_bert_artifacts, ins[:2], out, id_column="id", shard_rows=450, workers=2)
    assert again.shards_skipped == again.shards and again.texts_embedded == 0 and again.texts == 2 * N


def test_ray_executor_is_exact(ray_local, tiny_e5_artifacts: Path, corpus_inputs: dict, tmp_path: Path) -> None:
    """Ray actors, jsonl and text files, with e5's passage prefix (tiny e5; the killed-driver test runs real weights)."""
    model = tiny_e5_artifacts
    out = tmp_path / "out"
    ins = [corpus_inputs["txt"], corpus_inputs["jsonl"]]
    s = embed_corpus(model, ins, out, id_column="id", kind="passage", executor="ray", workers=2, shard_rows=500)
    assert s.executor == "ray" and s.workers == 2 and s.shards == 8 and s.texts == 2 * N
    emb = Embedder.load(model, variant=s.variant)
    assert emb.manifest.prefixes["passage"] == json.loads((out / "_manifest.json").read_text())["prefix"] == "passage: "
    texts = {k: v for k, v in corpus_inputs["texts"].items() if not k.startswith("p")}
    ids, vecs, _ = read_out(out)
    ref = emb.encode_passages([texts[i] for i in ids])
    assert len(ids) == len(set(ids)) and sorted(ids) == sorted(texts)
    assert float(np.abs(vecs - ref).max()) <= 1e-6
    assert float(np.abs(vecs - emb.encode([texts[i] for i in ids])).max()) > 1e-3  # the prefix was applied
    assert (out / "_SUCCESS").is_file()


def test_storage_float16_and_int8(tiny_bert_artifacts: Path, corpus_inputs: dict, tmp_path: Path) -> None:
    emb = Embedder.load(tiny_bert_artifacts)
    texts = {k: v for k, v in corpus_inputs["texts"].items() if k.startswith("p")}
    for storage, typ, tol in (("float16", pa.float16(), 1e-3), ("int8", pa.int8(), None)):
        out = tmp_path / storage
        embed_corpus(tiny_bert_artifacts, corpus_inputs["parquet"], out, id_column="doc", storage=storage, shard_rows=1000, workers=1)
        ids, vecs, table = read_out(out)
        assert table.schema.field("embedding").type == pa.list_(typ, emb.dim)
        ref = emb.encode([texts[i] for i in ids])
        if storage == "int8":
            scale = table.column("scale").to_numpy()
            got = vecs.astype(np.float32) * scale[:, None]
            assert np.all(np.abs(got - ref) <= scale[:, None] / 2 + 1e-7)
        else:
            assert float(np.abs(vecs.astype(np.float32) - ref).max()) <= tol


def _parts(out: Path) -> list[Path]:
    return sorted(out.glob("part-*.parquet"))


def test_killed_driver_then_rerun_equals_an_uninterrupted_run(default_artifacts: Path, corpus_inputs: dict, tmp_path: Path) -> None:
    """SIGKILL the CLI's driver mid-run; the rerun finishes the missing shards only, and every shard
    equals the one of an uninterrupted run: no text lost, none twice."""
    src = corpus_inputs["txt"]
    args = [str(default_artifacts), str(src), "--shard-rows", "50", "--workers", "1", "--threads", "1"]
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "onnxembed.cli", "corpus", *args, "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while len(_parts(out)) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the worker it spawned (it also exits by itself)
        except ProcessLookupError:
            pass
    written = len(_parts(out))
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    assert 3 <= written < N // 50 and not (out / "_SUCCESS").exists(), f"{written} shards at the kill"

    rerun = run_cli("corpus", *args, "--out", str(out), "--json", timeout=600)
    summary = json.loads(rerun.stdout)
    assert summary["shards_skipped"] >= written and summary["texts"] == N  # the orphaned worker may add one more
    assert summary["texts_embedded"] == N - 50 * summary["shards_skipped"]
    assert "texts/s" in rerun.stderr and "ETA" in rerun.stderr and "truncated" in rerun.stderr

    whole = tmp_path / "whole"
    embed_corpus(default_artifacts, src, whole, shard_rows=50, workers=1, threads=1)
    assert [p.name for p in _parts(out)] == [p.name for p in _parts(whole)]
    for a, b in zip(_parts(out), _parts(whole)):
        assert pq.read_table(a).equals(pq.read_table(b)), a.name
    ids, _, _ = read_out(out)
    assert len(ids) == len(set(ids)) == N and not [p for p in out.iterdir() if p.name.startswith(".")]


def test_mismatched_rerun_is_refused_and_overwrite_restarts(tiny_bert_artifacts: Path, tiny_distilbert_artifacts: Path, corpus_inputs: dict, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("\n".join(sts_sentences(300)) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    embed_corpus(tiny_bert_artifacts, src, out, shard_rows=100, workers=1)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    cases = [
        (dict(model_dir=tiny_distilbert_artifacts), "model name"),
        (dict(variant="fp32"), "model variant"),
        (dict(storage="float16"), "option storage"),
        (dict(kind="query"), "kind"),
        (dict(shard_rows=50), "option shard_rows"),
        (dict(max_length=12), "model max_length"),
    ]
    for change, reason in cases:
        kw = dict(model_dir=tiny_bert_artifacts, inputs=src, out=out, shard_rows=100, workers=1) | change
        with pytest.raises(CorpusMismatchError, match=reason) as e:
            embed_corpus(**kw)
        assert "overwrite" in str(e.value)
    with open(src, "a", encoding="utf-8") as f:
        f.write("one more line\n")
    proc = run_cli("corpus", str(tiny_bert_artifacts), str(src), "--out", str(out), "--shard-rows", "100", check=False)
    assert proc.returncode == 2 and f"input {src}: changed" in proc.stderr and "--overwrite" in proc.stderr, proc.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before, "a refused run touched the folder"
    s = embed_corpus(tiny_bert_artifacts, src, out, shard_rows=100, workers=1, overwrite=True)
    assert s.texts == 301 and s.shards_skipped == 0


def test_max_length_caps_every_text_and_the_job_records_it(tiny_bert_artifacts: Path, tmp_path: Path) -> None:
    """--max-length: each text cut to N tokens (counted in the summary), the vectors those of
    Embedder.load(max_length=N); a cap above the model's window is refused before any work."""
    long = "a man is playing a large guitar on the stage while the crowd sings along loudly tonight"
    src = _write(tmp_path / "in.txt", f"{long}\ntwo dogs\n{long} again\n")
    out = tmp_path / "out"
    s = embed_corpus(tiny_bert_artifacts, src, out, workers=1, max_length=12)
    assert s.texts == 3 and s.truncated == 2
    capped = Embedder.load(tiny_bert_artifacts, max_length=12)
    assert json.loads((out / "_manifest.json").read_text())["model"]["max_length"] == 12
    assert_exact(out, {f"{src}:1": long, f"{src}:2": "two dogs", f"{src}:3": f"{long} again"}, capped)
    with pytest.raises(ValueError, match="max_length must be an int from 2 to"):
        embed_corpus(tiny_bert_artifacts, src, tmp_path / "out2", workers=1, max_length=capped.manifest.max_length + 1)
    assert not (tmp_path / "out2").exists() or not any((tmp_path / "out2").iterdir())


def _bad_parquet(path: Path, table: pa.Table) -> Path:
    pq.write_table(table, path)
    return path


BAD = {
    "missing parquet column": (lambda d: _bad_parquet(d / "x.parquet", pa.table({"body": ["a", "b"]})), {}, r"x\.parquet: no column 'text' .*--text-column"),
    "missing jsonl field": (lambda d: _write(d / "x.jsonl", '{"text": "ok"}\n{"body": "no"}\n'), {}, r"x\.jsonl:2: no field 'text'"),
    "non-string parquet column": (lambda d: _bad_parquet(d / "x.parquet", pa.table({"text": [1, 2]})), {}, r"x\.parquet: column 'text' holds int64, expected strings"),
    "null in parquet": (lambda d: _bad_parquet(d / "x.parquet", pa.table({"text": ["a", "b", None]})), {}, r"x\.parquet: row 2: column 'text' is null"),
    "non-string jsonl value": (lambda d: _write(d / "x.jsonl", '{"text": "ok"}\n\n{"text": 3}\n'), {}, r"x\.jsonl:3: field 'text' is a number 3, expected a string"),
    "bad id value": (lambda d: _write(d / "x.jsonl", '{"text": "ok", "id": [1]}\n'), {"id_column": "id"}, r"x\.jsonl:1: field 'id' is an array"),
    "empty file": (lambda d: _write(d / "x.txt", ""), {}, r"x\.txt: no texts \(the file is empty\)"),
    "blank file": (lambda d: _write(d / "x.txt", "\n \n"), {}, r"x\.txt: no texts \(the file has only blank lines\)"),
    "not utf-8": (lambda d: _write(d / "x.txt", "ok\n", extra=b"caf\xe9\n"), {}, r"x\.txt:2: not UTF-8 \(byte 0xe9"),
    "missing file": (lambda d: d / "nope.txt", {}, r"nope\.txt: no such file or folder"),
    "not parquet": (lambda d: _write(d / "x.parquet", "just text\n"), {}, r"x\.parquet: not a readable parquet file"),
    "invalid json": (lambda d: _write(d / "x.jsonl", '{"text": "ok"}\n{"text": \n'), {}, r"x\.jsonl:2: not valid JSON"),
}


def _write(path: Path, text: str, extra: bytes = b"") -> Path:
    path.write_bytes(text.encode() + extra)
    return path


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_names_file_and_row_and_writes_nothing(tiny_bert_artifacts: Path, tmp_path: Path, case: str) -> None:
    make, kw, pattern = BAD[case]
    good = _write(tmp_path / "good.txt", "a first text\n")
    bad = make(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(CorpusInputError, match=pattern):
        embed_corpus(tiny_bert_artifacts, [good, bad], out, workers=1, **kw)
    assert not out.exists(), "a refused job created its output folder"


def test_folder_with_another_jobs_shards_is_refused(tiny_bert_artifacts: Path, tmp_path: Path) -> None:
    src = _write(tmp_path / "in.txt", "a text\nanother\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "part-00000.parquet").write_bytes(b"not ours")
    proc = run_cli("corpus", str(tiny_bert_artifacts), str(src), "--out", str(out), check=False)
    assert proc.returncode == 2 and f"{out} is not empty and holds shard files without _manifest.json" in proc.stderr, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["part-00000.parquet"]


def test_a_file_changed_after_planning_is_refused_by_the_worker(tiny_bert_artifacts: Path, tmp_path: Path) -> None:
    """The worker checks the file against the plan: its size, then the texts in the shard's rows."""
    from onnxembed.corpus.inputs import Columns, plan_inputs, read_shard

    src = _write(tmp_path / "in.txt", "one\ntwo\nthree\n")
    _, shards = plan_inputs([str(src)], Columns(), shard_rows=2)
    _write(src, "one\n\nthree\n")
    with pytest.raises(CorpusInputError, match=r"in\.txt: the file changed while the job ran \(14 bytes when planned, 11 now\)"):
        read_shard(shards[0], Columns())
    _write(src, "\n\n\n\nfive\nsixx\n")  # same size, one text where the plan has two
    with pytest.raises(CorpusInputError, match=r"in\.txt: rows 1\.\.2 hold 1 texts, the job's plan counted 2"):
        read_shard(shards[0], Columns())


def test_missing_ray_extra_is_the_pip_command(monkeypatch: pytest.MonkeyPatch, tiny_bert_artifacts: Path, tmp_path: Path, capsys) -> None:
    from onnxembed.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` does where it is not installed
    src = _write(tmp_path / "in.txt", "a text\n")
    assert main(["corpus", str(tiny_bert_artifacts), str(src), "--out", str(tmp_path / "o"), "--executor", "ray"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    from onnxembed.extras import install_hint

    assert err == [f"onnxembed corpus: error: the Ray executor needs the ray extra (missing: ray); install it with: {install_hint('ray')}"]
    assert not (tmp_path / "o").exists()


def test_kind_names_a_prompt_and_dimensions_truncate(matryoshka: Path, corpus_inputs: dict, tmp_path: Path) -> None:
    """``--kind`` takes the manifest's named prompts, ``--dimensions`` a Matryoshka size; the vectors are
    ``encode(kind=, dimensions=)``, the job records both, and a rerun with another size is refused."""
    out = tmp_path / "out"
    proc = run_cli("corpus", str(matryoshka), str(corpus_inputs["txt"]), "--out", str(out), "--kind", "web", "--dimensions", "8",
                   "--workers", "1", "--json")
    assert json.loads(proc.stdout)["dim"] == 8
    emb = Embedder.load(matryoshka, variant=json.loads((out / "_manifest.json").read_text())["model"]["variant"])
    ids, vecs, _ = read_out(out)
    texts = corpus_inputs["texts"]
    want = emb.encode([texts[i] for i in ids], kind="web", dimensions=8)
    assert vecs.shape == want.shape == (N, 8) and float(np.abs(vecs - want).max()) <= 1e-6
    job = json.loads((out / "_manifest.json").read_text())
    assert job["kind"] == "web" and job["prefix"] == emb.prompts["web"] and job["options"]["dimensions"] == 8
    with pytest.raises(CorpusMismatchError, match="option dimensions: the folder has 8, this run 16"):
        embed_corpus(matryoshka, corpus_inputs["txt"], out, kind="web", dimensions=16, workers=1)
    with pytest.raises(ValueError, match=r"kind must be None or one of \['passage', 'query', 'web'\]"):
        embed_corpus(matryoshka, corpus_inputs["txt"], tmp_path / "o2", kind="search")
    with pytest.raises(ValueError, match=r"dimensions=12 is not supported"):
        embed_corpus(matryoshka, corpus_inputs["txt"], tmp_path / "o3", dimensions=12)
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()
