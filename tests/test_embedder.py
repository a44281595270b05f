"""The Embedder end to end: numbers against sentence-transformers, batching, bad input, integrity, threads, CLI."""

from __future__ import annotations

import itertools

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from onnxembed import IntegrityError, ManifestError
from onnxembed.batching import chunked, plan_batches
from onnxembed.embedder import Embedder
from onnxembed.manifest import load_manifest
from onnxembed.pooling import cosine_similarity

from reference import onnxruntime_embeddings  # tests/ is on sys.path (pytest rootdir mode)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TRICKY = [
    "",
    "A man is playing a guitar.",
    "Ünïcödé, accents and 中文 are tokenized with the same vocabulary 🙂",
    "word " * 400,  # longer than max_length: truncated
    "\u00a0\u3000 tabs\tand\nnewlines \x00 NUL \ufffd",
    "x",
]


def sts_sentences(n: int, files: tuple[str, ...] = ("stsb-test.tsv",)) -> list[str]:
    out: list[str] = []
    for name in files:
        with open(DATA / "sts" / name, encoding="utf-8") as f:
            next(f)
            for line in f:
                parts = line.rstrip("\n").split("\t")
                out.extend(parts[1:3])
    return list(dict.fromkeys(out))[:n]


@pytest.fixture(scope="module")
def real(default_artifacts: Path) -> Embedder:
    return Embedder.load(default_artifacts, variant="fp32")


@pytest.fixture(scope="module")
def tiny(tiny_bert_artifacts: Path) -> Embedder:
    return Embedder.load(tiny_bert_artifacts, variant="fp32")


@pytest.fixture
def tiny_copy(tiny_bert_artifacts: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "folder"
    shutil.copytree(tiny_bert_artifacts, dst)
    return dst


def _rewrite_manifest(folder: Path, **changes: Any) -> None:
    path = folder / "manifest.json"
    raw = json.loads(path.read_text())
    raw.update(changes)
    path.write_text(json.dumps(raw))


# ------------------------------------------------------------------------------------------ numbers


def test_fp32_matches_sentence_transformers_torch(real: Embedder, real_checkpoint: Path) -> None:
    st = pytest.importorskip("sentence_transformers")
    texts = sts_sentences(200) + TRICKY
    ref = st.SentenceTransformer(str(real_checkpoint), device="cpu").encode(texts, batch_size=32, convert_to_numpy=True)
    got = real.encode(texts)
    cos = (got.astype(np.float64) * ref).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    assert got.dtype == np.float32 and got.shape == (len(texts), 384)
    assert cos.min() >= 0.99999, (cos.min(), texts[int(cos.argmin())])
    assert np.abs(got - ref).max() < 1e-4
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)


def test_every_cpu_variant_stays_close_to_fp32(default_artifacts: Path, real: Embedder) -> None:
    texts = sts_sentences(200)
    ref = real.encode(texts)
    m = load_manifest(default_artifacts)
    checked = []
    for name, v in m.variants.items():
        if v.device == "cuda" or name == "fp32":
            continue
        got = Embedder.load(default_artifacts, variant=name, verify=False).encode(texts)
        cos = (got * ref).sum(1)
        floor = 0.9999 if v.precision == "fp32" else 0.95
        assert cos.min() > floor, (name, cos.min())
        if v.precision == "int8":
            assert cos.mean() > 0.99, (name, cos.mean())
        checked.append(name)
    assert checked, f"no CPU variant besides fp32 in {sorted(m.variants)}"


def test_order_and_values_do_not_depend_on_batching(tiny: Embedder) -> None:
    texts = [("word " * n).strip() for n in (1, 40, 3, 17, 0, 90, 2, 5, 60, 8)] * 3
    one_by_one = np.vstack([tiny.encode([t]) for t in texts])
    for bs, budget in ((1, None), (4, None), (32, None), (32, 64), (7, 300)):
        got = tiny.encode(texts, batch_size=bs, max_tokens=budget)
        assert np.abs(got - one_by_one).max() < 1e-5, (bs, budget)


def test_embed_batch_normalize_follows_the_manifest_or_the_caller(tiny: Embedder) -> None:
    toks = tiny.tokenize(["a short text", "a somewhat longer text than the first one"])
    default = tiny.embed_batch(toks.ids)
    raw = tiny.embed_batch(toks.ids, normalize=False)
    unit = tiny.embed_batch(toks.ids, normalize=True)
    assert np.array_equal(default, unit if tiny.manifest.normalize else raw)
    assert np.allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-6)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)  # the tiny model's pooled norms are not 1
    assert np.allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-6)


def test_token_budget_caps_every_batch(tiny: Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    shapes: list[tuple[int, int]] = []
    assert tiny.run_cost >= 0  # measured now, so its probe runs are not among the shapes below
    real_run = tiny.session.run

    def spy(names: Any, feed: dict[str, np.ndarray], *a: Any) -> Any:
        shapes.append(feed["input_ids"].shape)
        return real_run(names, feed, *a)

    monkeypatch.setattr(tiny.session, "run", spy)
    texts = [("word " * n).strip() for n in range(1, 200, 3)]
    tiny.encode(texts, batch_size=32, max_tokens=256)
    assert sum(s[0] for s in shapes) == len(texts)
    assert all(r * w <= 256 or r == 1 for r, w in shapes), shapes
    side_by_side = sorted(shapes)
    # one batch at a time, they start longest first; side by side (the default), the same batches run
    shapes.clear()
    monkeypatch.setattr(tiny, "parallel", 1)
    tiny.encode(texts, batch_size=32, max_tokens=256)
    assert [w for _, w in shapes] == sorted((w for _, w in shapes), reverse=True)
    assert sorted(shapes) == side_by_side


def test_embed_tokens_matches_an_independent_computation(tiny: Embedder, tiny_bert_artifacts: Path) -> None:
    """embed_tokens (batched, padded, budgeted) against the Rust tokenizer + a raw session + numpy pooling."""
    texts = [("word " * n).strip() for n in (1, 40, 3, 17, 0, 90)] + TRICKY
    ref = onnxruntime_embeddings(tiny_bert_artifacts, "onnx/model.onnx", texts, normalize=False)
    toks = tiny.tokenize(texts)
    for kw in ({"batch_size": 4, "max_tokens": 64}, {"batch_size": 32, "max_tokens": None}, {"batch_size": 1}):
        got = tiny.embed_tokens(toks, normalize=False, **kw)
        assert got.shape == ref.shape and got.dtype == np.float32
        assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max(), (kw, np.abs(got - ref).max())
    unit = tiny.embed_tokens(toks, normalize=True)
    np.testing.assert_allclose(unit, ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-5)
    raw = tiny.embed_tokens(toks, normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)
    assert tiny.embed_tokens(tiny.tokenize([])).shape == (0, tiny.dim)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        tiny.embed_tokens(toks, batch_size=0)


def test_default_budget_follows_the_provider_that_runs(tiny_bert_artifacts: Path, tiny: Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    from onnxembed.providers import MAX_TOKENS_BY_PROVIDER, default_max_tokens

    assert tiny.providers[0] == "CPUExecutionProvider" and tiny.max_tokens == MAX_TOKENS_BY_PROVIDER["CPUExecutionProvider"] == 1024
    assert default_max_tokens(["CUDAExecutionProvider", "CPUExecutionProvider"]) == 8192
    assert default_max_tokens(["OpenVINOExecutionProvider", "CPUExecutionProvider"]) == 8192
    assert default_max_tokens(["SomeOtherExecutionProvider"]) == 1024
    # a session that runs on CUDA (faked: no GPU here) gets the GPU budget; an explicit one is kept
    monkeypatch.setattr(tiny.session, "get_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert Embedder(tiny.manifest, tiny.session, tiny.tokenizer, "fp32").max_tokens == 8192
    assert Embedder(tiny.manifest, tiny.session, tiny.tokenizer, "fp32", max_tokens=300).max_tokens == 300
    assert Embedder(tiny.manifest, tiny.session, tiny.tokenizer, "fp32", max_tokens=None).max_tokens is None
    assert default_max_tokens(["TensorrtExecutionProvider", "CUDAExecutionProvider"]) == 8192
    for bad in ("default", 0, 2.5, True):
        with pytest.raises(ValueError, match="max_tokens must be 'auto', None or an int >= 1"):
            Embedder(tiny.manifest, tiny.session, tiny.tokenizer, "fp32", max_tokens=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="max_tokens must be 'auto', None or an int >= 1"):
            Embedder.load(tiny_bert_artifacts, variant="fp32", max_tokens=bad)  # type: ignore[arg-type]
    # 40 texts of ~100 tokens under the CPU default: batches of at most 1024 padded tokens
    shapes: list[tuple[int, int]] = []
    emb = Embedder.load(tiny_bert_artifacts, variant="fp32")
    assert emb.run_cost >= 0  # measured now, so its probe runs are not among the shapes below
    real_run = emb.session.run
    monkeypatch.setattr(emb.session, "run", lambda names, feed, *a: (shapes.append(feed["input_ids"].shape), real_run(names, feed, *a))[1])
    emb.encode([("word " * 98).strip()] * 40, batch_size=32)
    assert max(r * w for r, w in shapes) <= 1024 and sum(r for r, _ in shapes) == 40, shapes


def test_feeds_exactly_the_graph_inputs(tiny_distilbert_artifacts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emb = Embedder.load(tiny_distilbert_artifacts, variant="fp32")
    graph = sorted(i.name for i in emb.session.get_inputs())
    assert graph == ["attention_mask", "input_ids"]  # DistilBERT: no token_type_ids
    seen: list[list[str]] = []
    real_run = emb.session.run
    monkeypatch.setattr(emb.session, "run", lambda names, feed, *a: (seen.append(sorted(feed)), real_run(names, feed, *a))[1])
    out = emb.encode(["a distilbert text", "another one"])
    # every run (two texts may run as two side-by-side halves) feeds exactly the graph's inputs
    assert seen and all(x == graph for x in seen) and out.shape == (2, emb.dim)


# ------------------------------------------------------------------------------------- API surface


def test_shapes_are_always_2d(tiny: Embedder) -> None:
    assert tiny.encode("one string").shape == (1, tiny.dim)
    empty = tiny.encode([])
    assert empty.shape == (0, tiny.dim) and empty.dtype == np.float32
    assert tiny.encode(t for t in ["a", "b", "c"]).shape == (3, tiny.dim)
    assert tiny.encode(("a",)).dtype == np.float32
    assert tiny.encode_queries("q").shape == tiny.encode_passages(["p"]).shape == (1, tiny.dim)


def test_non_string_item_is_a_type_error_naming_its_index(tiny: Embedder) -> None:
    with pytest.raises(TypeError, match=r"texts\[2\] is int"):
        tiny.encode(["a", "b", 3])
    with pytest.raises(TypeError, match=r"texts\[5\] is NoneType"):
        list(tiny.encode_iter(["a", "b", "c", "d", "e", None], chunk_size=2))
    with pytest.raises(TypeError, match=r"texts\[0\] is bytes"):
        tiny.encode([b"bytes"])


def test_kind_adds_the_manifest_prefix(tiny_e5_artifacts: Path) -> None:
    folder = tiny_e5_artifacts
    m = load_manifest(folder)
    assert m.prefixes == {"query": "query: ", "passage": "passage: "}
    emb = Embedder.load(folder, variant="fp32")
    text = "how many people live in London?"
    np.testing.assert_array_equal(emb.encode([text], kind="query"), emb.encode(["query: " + text]))
    np.testing.assert_array_equal(emb.encode_passages([text]), emb.encode(["passage: " + text]))
    np.testing.assert_array_equal(emb.encode_queries(text), emb.encode([text], kind="query"))
    assert not np.array_equal(emb.encode([text]), emb.encode([text], kind="query"))
    with pytest.raises(ValueError, match=r"kind must be None or one of \['passage', 'query'\], found 'doc'"):
        emb.encode([text], kind="doc")


def test_truncation_is_counted_and_logged_once(tiny_bert_artifacts: Path, caplog: pytest.LogCaptureFixture) -> None:
    emb = Embedder.load(tiny_bert_artifacts, variant="fp32", verify=False)
    long = "word " * (emb.max_length + 10)
    with caplog.at_level(logging.WARNING, logger="onnxembed.embedder"):
        emb.encode([long, "short", long])
        emb.encode([long])
        emb.encode(["short"])
    assert emb.truncated == 3
    warnings = [r for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warnings) == 1 and "2 of 3 texts" in warnings[0].getMessage()


def test_max_length_below_the_window_truncates_like_a_shorter_model(tiny_bert_artifacts: Path) -> None:
    """load(max_length=N) bounds one text's tokens (and so its attention memory): the text is cut to N tokens,
    counted, and embedded as the full-window model embeds those same N tokens."""
    full = Embedder.load(tiny_bert_artifacts, variant="fp32", verify=False)
    capped = Embedder.load(tiny_bert_artifacts, variant="fp32", verify=False, max_length=12)
    assert capped.max_length == 12 and full.max_length > 12
    text = "a man is playing a large guitar on the stage while the crowd sings along loudly tonight"
    ids = capped.tokenize([text]).ids[0]
    assert len(ids) == 12 and full.tokenize([text]).ids[0][:11] == ids[:11]  # the same pieces, then [SEP]
    assert capped.truncated == 1 and full.truncated == 0
    np.testing.assert_allclose(capped.encode([text]), full.embed_batch([ids]), atol=1e-6)
    assert capped.truncated == 2
    short = ["two dogs"]
    np.testing.assert_allclose(capped.encode(short), full.encode(short), atol=1e-6)  # shorter texts: unchanged
    for bad in (0, 1, full.max_length + 1, 12.5, True):
        with pytest.raises(ValueError, match=f"max_length must be an int from 2 to {full.max_length}"):
            Embedder.load(tiny_bert_artifacts, variant="fp32", verify=False, max_length=bad)


def test_encode_iter_streams_in_order_with_bounded_read_ahead(tiny: Embedder) -> None:
    texts = [f"sentence number {i} " + "pad " * (i % 37) for i in range(500)]
    pulled = 0

    def source() -> Any:
        nonlocal pulled
        for t in texts:
            pulled += 1
            yield t

    blocks = tiny.encode_iter(source(), batch_size=8, chunk_size=64)
    first = next(blocks)
    assert first.shape == (64, tiny.dim) and pulled <= 64
    rest = list(blocks)
    assert pulled == 500 and all(b.shape[0] <= 64 for b in rest)
    got = np.vstack([first, *rest])
    assert np.abs(got - tiny.encode(texts, batch_size=8)).max() < 1e-5


def test_encode_is_thread_safe(tiny_bert_artifacts: Path) -> None:
    emb = Embedder.load(tiny_bert_artifacts, variant="fp32", verify=False)
    long = "word " * (emb.max_length + 1)
    texts = [f"thread text {i} " + "x " * (i % 50) for i in range(400)] + [long] * 8
    expected = emb.encode(texts)
    before = emb.truncated
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for _ in range(3):
                results[k] = emb.encode(texts[k::8], batch_size=16)
        except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for k in range(8):
        assert np.abs(results[k] - expected[k::8]).max() < 1e-5
    assert emb.truncated - before == 8 * 3


def test_similarity_helpers(tiny: Embedder) -> None:
    import onnxembed

    a = tiny.encode(["a cat", "a dog"])
    b = tiny.encode(["a cat"])
    sim = tiny.similarity(a, b)
    assert sim.shape == (2, 1) and abs(sim[0, 0] - 1.0) < 1e-5
    np.testing.assert_array_equal(sim, onnxembed.cosine_similarity(a, b))
    np.testing.assert_array_equal(sim, cosine_similarity(a, b))


def test_properties_threads_and_arena(tiny_bert_artifacts: Path) -> None:
    emb = Embedder.load(tiny_bert_artifacts, variant="fp32", threads=1, cpu_mem_arena=False)
    m = load_manifest(tiny_bert_artifacts)
    assert (emb.dim, emb.max_length, emb.variant, emb.providers) == (m.dim, m.max_length, "fp32", ["CPUExecutionProvider"])
    assert emb.manifest.name == m.name and emb.truncated == 0
    opts = emb.session.get_session_options()
    assert opts.intra_op_num_threads == 1 and opts.enable_cpu_mem_arena is False
    assert "variant='fp32'" in repr(emb)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        Embedder.load(tiny_bert_artifacts, threads=0)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        emb.encode(["a"], batch_size=0)


def test_progress_callable_reaches_the_total(tiny: Embedder) -> None:
    seen: list[tuple[int, int]] = []
    tiny.encode([f"t{i}" for i in range(50)], batch_size=8, show_progress=lambda d, n: seen.append((d, n)))
    assert seen[-1] == (50, 50) and len(seen) == 7


def test_auto_and_int8_alias_pick_files_of_the_manifest(tiny_bert_artifacts: Path) -> None:
    """CPU features faked, so every branch runs on any machine: the int8 alias and the automatic choice
    open exactly the file meant for that CPU (the folder has every variant)."""
    from onnxembed.providers import CpuFeatures, detect_cpu_features

    cpus = {
        "zen4": CpuFeatures("x86_64", frozenset({"avx2", "avx512f", "avx512_vnni"})),
        "haswell": CpuFeatures("x86_64", frozenset({"avx", "avx2", "fma"})),
        "graviton": CpuFeatures("aarch64", frozenset({"asimd", "asimddp"})),
        "old": CpuFeatures("x86_64", frozenset({"sse4_2", "avx"})),
    }
    int8 = {"zen4": "qint8_avx512_vnni", "haswell": "quint8_avx2", "graviton": "qint8_arm64", "old": None}
    auto = {"zen4": "qint8_avx512_vnni", "haswell": "quint8_avx2", "graviton": "qint8_arm64", "old": "O2"}
    m = load_manifest(tiny_bert_artifacts)
    assert {"fp32", "O2", "qint8_avx512_vnni", "quint8_avx2", "qint8_arm64"} <= set(m.variants)
    ref = Embedder.load(tiny_bert_artifacts, variant="fp32").encode(TRICKY[1:3])
    for cpu, feats in cpus.items():
        a = Embedder.load(tiny_bert_artifacts, cpu_features=feats)
        assert a.variant == auto[cpu] and a.providers == ["CPUExecutionProvider"], (cpu, a.variant)
        assert float((a.encode(TRICKY[1:3]) * ref).sum(1).min()) > 0.9  # the file opened is that model
        if int8[cpu] is None:
            with pytest.raises(ManifestError, match="no int8 file for this CPU"):
                Embedder.load(tiny_bert_artifacts, variant="int8", cpu_features=feats)
        else:
            assert Embedder.load(tiny_bert_artifacts, variant="int8", cpu_features=feats).variant == int8[cpu], cpu
    # with nothing faked, this machine's features decide by the same table
    preset = detect_cpu_features().int8_preset
    if preset is not None:
        mine = {"avx512_vnni": "qint8_avx512_vnni", "avx2": "quint8_avx2", "arm64": "qint8_arm64"}[preset]
        assert Embedder.load(tiny_bert_artifacts, variant="int8").variant == Embedder.load(tiny_bert_artifacts).variant == mine


# ------------------------------------------------------------------------------ integrity and errors


def test_corrupt_or_missing_model_file_fails_at_load(tiny_copy: Path) -> None:
    model = tiny_copy / "onnx" / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256 of .* manifest says .*verify=False"):
        Embedder.load(tiny_copy, variant="fp32")
    model.unlink()
    with pytest.raises(IntegrityError, match="is missing"):
        Embedder.load(tiny_copy, variant="fp32")
    with pytest.raises(ManifestError, match="is missing"):
        Embedder.load(tiny_copy, variant="fp32", verify=False)


def test_verify_false_skips_the_hash(tiny_copy: Path) -> None:
    m = load_manifest(tiny_copy)
    raw = json.loads((tiny_copy / "manifest.json").read_text())
    raw["variants"]["fp32"]["sha256"] = "0" * 64
    (tiny_copy / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(IntegrityError):
        Embedder.load(tiny_copy, variant="fp32")
    assert Embedder.load(tiny_copy, variant="fp32", verify=False).encode("ok").shape == (1, m.dim)


def test_unknown_variant_names_the_present_ones(tiny_bert_artifacts: Path) -> None:
    present = sorted(load_manifest(tiny_bert_artifacts).variants)
    with pytest.raises(ManifestError, match=rf"unknown variant 'O9'; present in this folder: {present!r}".replace("[", r"\[").replace("]", r"\]")):
        Embedder.load(tiny_bert_artifacts, variant="O9")


def test_tokenizer_vocab_mismatch_is_a_clear_error(tiny_copy: Path) -> None:
    _rewrite_manifest(tiny_copy, vocab_size=250002)
    with pytest.raises(ManifestError, match="vocabulary of 30522 tokens but the model expects vocab_size=250002"):
        Embedder.load(tiny_copy, variant="fp32", verify=False)


def test_manifest_inputs_that_disagree_with_the_graph(tiny_distilbert_artifacts: Path, tmp_path: Path) -> None:
    folder = tmp_path / "d"
    shutil.copytree(tiny_distilbert_artifacts, folder)
    _rewrite_manifest(folder, input_names=["input_ids", "attention_mask", "token_type_ids"])
    with pytest.raises(ManifestError, match=r"graph declares inputs .* the manifest says"):
        Embedder.load(folder, variant="fp32", verify=False)


def test_missing_folder_or_tokenizer(tmp_path: Path, tiny_copy: Path) -> None:
    with pytest.raises(ManifestError, match="does not exist; build it with"):
        Embedder.load(tmp_path / "nope")
    (tiny_copy / "tokenizer.json").unlink()
    with pytest.raises(ManifestError, match="tokenizer file .*tokenizer.json named by the manifest is missing"):
        Embedder.load(tiny_copy, variant="fp32", verify=False)


# ------------------------------------------------------------------------------------------ batching


def test_plan_batches_covers_every_index_once_within_limits() -> None:
    rng = np.random.default_rng(1)
    lengths = rng.integers(2, 300, size=1000)
    for bs, budget in ((32, None), (32, 2048), (5, 100), (64, 8192)):
        batches = plan_batches(lengths, bs, budget)
        flat = np.concatenate(batches)
        assert sorted(flat.tolist()) == list(range(1000))
        for b in batches:
            assert len(b) <= bs
            assert budget is None or len(b) == 1 or len(b) * lengths[b].max() <= budget
    unsorted = plan_batches(lengths, 10, None, sort=False)
    assert np.concatenate(unsorted).tolist() == list(range(1000))
    assert all(len(b) <= 2 for b in plan_batches(lengths, 10, 600, sort=False) if lengths[b].max() > 300)
    assert plan_batches([], 4) == []
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        plan_batches([1], 0)
    assert [len(c) for c in chunked(iter(range(10)), 4)] == [4, 4, 2]



def _cost(batches: list[np.ndarray], lengths: np.ndarray, run_cost: float) -> float:
    return sum(run_cost + len(b) * int(lengths[b].max()) for b in batches)


def test_cost_cut_batches_are_the_cheapest_within_the_limits() -> None:
    """With a run cost the sorted texts are cut where sum(run_cost + rows x longest) is least: never
    dearer than the fill-up cut, the limits kept, every index once; checked against brute force."""
    rng = np.random.default_rng(3)
    for trial in range(40):
        lengths = rng.integers(2, 60, size=int(rng.integers(1, 80)))
        bs, budget, rc = int(rng.integers(1, 33)), [None, 256, 1024][trial % 3], float(rng.uniform(0.5, 40))
        cut, fill = plan_batches(lengths, bs, budget, run_cost=rc), plan_batches(lengths, bs, budget)
        assert sorted(np.concatenate(cut).tolist()) == list(range(len(lengths)))
        for b in cut:
            assert len(b) <= bs and (budget is None or len(b) == 1 or len(b) * lengths[b].max() <= budget)
        assert _cost(cut, lengths, rc) <= _cost(fill, lengths, rc) + 1e-9
    # brute force over every cut of 7 sorted texts: the planner finds the least cost
    lengths = np.array([50, 3, 4, 40, 5, 3, 38])
    desc = np.sort(lengths)[::-1]
    best = min(sum(5 + (b - a) * desc[a] for a, b in zip((0, *cuts), (*cuts, 7)))
               for k in range(7) for cuts in itertools.combinations(range(1, 7), k))
    assert _cost(plan_batches(lengths, 32, None, run_cost=5), lengths, 5) == best
    # the long texts get batches of their own instead of padding the short ones to 50
    assert all(lengths[b].max() <= 5 or lengths[b].min() >= 38 for b in plan_batches(lengths, 32, None, run_cost=5))
    assert len(plan_batches(lengths, 32, None)) == 1  # the fill-up cut: one batch padded to 50
    with pytest.raises(ValueError, match="run_cost must be >= 0"):
        plan_batches(lengths, 32, None, run_cost=-1)


def test_run_cost_is_measured_once_and_the_cut_keeps_the_vectors(tiny_bert_artifacts: Path) -> None:
    emb = Embedder.load(tiny_bert_artifacts, variant="fp32")
    cost = emb.run_cost
    assert cost > 0 and emb.run_cost == cost  # measured at first use, then kept
    texts = [("word " * n).strip() for n in (60, 2, 3, 55, 4, 2, 3, 5, 58, 2)]
    cut = emb.encode(texts)
    emb.run_cost = 0.0
    fill = emb.encode(texts)
    assert len(emb.plan_batches(emb.tokenize(texts), 32, run_cost=cost)) > len(emb.plan_batches(emb.tokenize(texts), 32))
    assert float(np.abs(cut - fill).max()) < 1e-5
    with pytest.raises(ValueError, match="run_cost must be a number of padded tokens >= 0"):
        emb.run_cost = -3


# ----------------------------------------------------------------------------------------------- CLI


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "onnxembed.cli", *args], capture_output=True, text=True, timeout=300)


def test_cli_embed_texts_files_and_outputs(tiny_bert_artifacts: Path, tmp_path: Path, tiny: Embedder) -> None:
    proc = _cli("embed", str(tiny_bert_artifacts), "a cat", "a dog", "--variant", "fp32")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["a cat", "a dog"]
    assert np.abs(np.array([r["embedding"] for r in rows]) - tiny.encode(["a cat", "a dog"])).max() < 1e-6
    assert "embedded 2 texts" in proc.stderr
    # Texts after the options, as users type them, give the same rows; a stray option still fails.
    proc = _cli("embed", str(tiny_bert_artifacts), "--variant", "fp32", "--kind", "query", "a cat", "a dog")
    assert proc.returncode == 0, proc.stderr
    after = np.array([json.loads(line)["embedding"] for line in proc.stdout.splitlines()])
    assert np.abs(after - tiny.encode(["a cat", "a dog"], kind="query")).max() < 1e-6
    proc = _cli("embed", str(tiny_bert_artifacts), "a cat", "--no-such-option")
    assert proc.returncode == 2 and "unrecognized arguments: --no-such-option" in proc.stderr

    texts = ["first line", "", "third line with ünïcode"]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts)), encoding="utf-8")
    for src in ("in.txt", "in.jsonl"):
        out = tmp_path / f"{src}.npy"
        proc = _cli("embed", str(tiny_bert_artifacts), "--input", str(tmp_path / src), "--output", str(out), "--kind", "query", "--batch-size", "2",
                    "--variant", "fp32")
        assert proc.returncode == 0, proc.stderr
        arr = np.load(out)
        assert arr.dtype == np.float32 and np.abs(arr - tiny.encode(texts, kind="query")).max() < 1e-6
    out = tmp_path / "out.jsonl"
    proc = _cli("embed", str(tiny_bert_artifacts), "--input", str(tmp_path / "in.txt"), "--output", str(out), "--variant", "fp32", "--providers", "CPUExecutionProvider")
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["text"] for line in out.read_text(encoding="utf-8").splitlines()] == texts
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporary file left behind


def test_cli_embed_errors(tiny_bert_artifacts: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"txt": "no"}\n', encoding="utf-8")
    proc = _cli("embed", str(tiny_bert_artifacts), "--input", str(bad))
    assert proc.returncode == 2 and 'bad.jsonl:2: expected a JSON string or an object with a string "text" field' in proc.stderr
    proc = _cli("embed", str(tiny_bert_artifacts), "x", "--variant", "O9")
    assert proc.returncode == 2 and "unknown variant 'O9'" in proc.stderr
    proc = _cli("embed", str(tiny_bert_artifacts), "x", "--output", str(tmp_path / "o.csv"))
    assert proc.returncode == 2 and "expected a .npy or .jsonl" in proc.stderr
    proc = _cli("embed", str(tiny_bert_artifacts), "x", "--providers", "CUDAExecutionProvider")
    assert proc.returncode == 2 and "pip install onnxruntime-gpu" in proc.stderr
    proc = _cli("embed", str(tiny_bert_artifacts))
    assert proc.returncode != 0 and "no texts" in proc.stderr
