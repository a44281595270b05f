"""Batches side by side in the runtime: ``Embedder.encode`` / ``Reranker.score`` run the batches of one
input ``parallel`` at a time on one session, results in input order, memory bounded, failures raised."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from onnxembed import Embedder, Reranker
from onnxembed._session import split_threads, spread

TEXTS = [("word " * (1 + (i * 7) % 40)).strip() + f" {i}" for i in range(300)]


def test_cores_split_between_batches_and_threads_by_provider() -> None:
    cpu, cuda = ["CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert split_threads(cpu, None, "auto", cores=2) == (1, 2)  # 2 batches x 1 thread (measured: benchmarks/PARALLEL.md)
    assert split_threads(cpu, None, "auto", cores=16) == (8, 2)
    assert split_threads(cpu, None, "auto", cores=1) == (1, 1)
    assert split_threads(cpu, 1, "auto", cores=4) == (1, 4)  # threads given: the rest of the cores run batches
    assert split_threads(cpu, 2, "auto", cores=2) == (2, 1)
    assert split_threads(cpu, 1, "auto", cores=64) == (1, 8)  # at most 8 batches' activations in memory
    assert split_threads(cpu, None, 4, cores=16) == (4, 4)  # parallel given: cores // parallel threads each
    assert split_threads(cpu, 3, 2, cores=16) == (3, 2)  # both given: as given
    assert split_threads(cuda, None, "auto", cores=8) == (None, 1)
    assert split_threads(["OpenVINOExecutionProvider", "CPUExecutionProvider"], 4, "auto", cores=8) == (4, 1)


def test_load_applies_the_split(tiny_bert_artifacts: Path) -> None:
    import os

    emb = Embedder.load(tiny_bert_artifacts, variant="fp32")
    want_threads, want_parallel = split_threads(["CPUExecutionProvider"], None, "auto", cores=os.cpu_count())
    assert emb.parallel == want_parallel
    assert emb.session.get_session_options().intra_op_num_threads == want_threads
    assert Embedder.load(tiny_bert_artifacts, variant="fp32", threads=1, parallel=1).session.get_session_options().intra_op_num_threads == 1


def test_side_by_side_gives_the_sequential_rows_in_input_order(tiny_bert_artifacts: Path) -> None:
    one = Embedder.load(tiny_bert_artifacts, variant="fp32", parallel=1)
    three = Embedder.load(tiny_bert_artifacts, variant="fp32", parallel=3)
    assert one.parallel == 1 and three.parallel == 3
    assert len(three.plan_batches(three.tokenize(TEXTS), 8)) > 10  # many batches, of different lengths
    a, b = one.encode(TEXTS, batch_size=8), three.encode(TEXTS, batch_size=8)
    assert np.array_equal(a, b)  # the same batches, so the same bits
    # each row is its own text's (a batch of one has no padding effects to hide an order bug)
    for i in (0, 17, 150, 299):
        assert float(np.abs(b[i] - one.encode([TEXTS[i]])[0]).max()) < 1e-5


def test_in_flight_batches_are_bounded_and_really_concurrent(tiny_bert_artifacts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emb = Embedder.load(tiny_bert_artifacts, variant="fp32", parallel=3)
    emb.run_cost = 0.0  # fill-up batches (no probe runs through the patched embed_batch)
    real = emb.embed_batch
    now = peak = 0
    lock = threading.Lock()

    def slow(ids, **kw):  # type: ignore[no-untyped-def]
        nonlocal now, peak
        with lock:
            now += 1
            peak = max(peak, now)
        time.sleep(0.01)
        try:
            return real(ids, **kw)
        finally:
            with lock:
                now -= 1

    monkeypatch.setattr(emb, "embed_batch", slow)
    seen: list[tuple[int, int]] = []
    out = emb.encode(TEXTS, batch_size=8, show_progress=lambda done, total: seen.append((done, total)))
    assert peak == 3, f"{peak} batches ran at once, parallel=3"
    assert out.shape == (len(TEXTS), emb.dim)
    done = [d for d, _ in seen if d >= 0]
    assert done == sorted(done) and done[-1] == len(TEXTS)


def test_a_failing_batch_raises_and_stops_new_batches(tiny_bert_artifacts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emb = Embedder.load(tiny_bert_artifacts, variant="fp32", parallel=2)
    emb.run_cost = 0.0  # fill-up batches (no probe runs through the patched embed_batch)
    calls = 0
    lock = threading.Lock()

    def failing(ids, **kw):  # type: ignore[no-untyped-def]
        nonlocal calls
        with lock:
            calls += 1
            n = calls
        if n == 3:
            raise RuntimeError("onnxruntime failed on batch 3")
        time.sleep(0.005)
        return np.zeros((len(ids), emb.dim), np.float32)

    monkeypatch.setattr(emb, "embed_batch", failing)
    batches = len(emb.plan_batches(emb.tokenize(TEXTS), 8))
    with pytest.raises(RuntimeError, match="batch 3"):
        emb.encode(TEXTS, batch_size=8)
    assert calls <= 4 < batches  # the one in flight beside it may finish; nothing new starts


def test_bad_parallel_is_refused(tiny_bert_artifacts: Path) -> None:
    for bad in (0, -1, 1.5, True, "two"):
        with pytest.raises(ValueError, match="parallel must be 'auto' or an int >= 1"):
            Embedder.load(tiny_bert_artifacts, variant="fp32", parallel=bad)  # type: ignore[arg-type]


def test_reranker_scores_side_by_side(ce_folder: Path) -> None:
    pairs = [(f"query {i % 7}", TEXTS[i]) for i in range(120)]
    one = Reranker.load(ce_folder, variant="fp32", parallel=1).score(pairs, batch_size=8)
    two = Reranker.load(ce_folder, variant="fp32", parallel=2).score(pairs, batch_size=8)
    assert np.array_equal(one, two)


def test_a_single_batch_is_halved_to_fill_the_batches_in_flight(tiny_bert_artifacts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert [len(b) for b in spread([np.arange(32)], 2)] == [16, 16]
    assert [len(b) for b in spread([np.arange(5), np.arange(2)], 4)] == [2, 1, 2, 2]  # the largest halved first
    assert [len(b) for b in spread([np.arange(1)], 2)] == [1]  # one row cannot be split
    assert [list(b) for b in spread([np.arange(3)], 2)] == [[0, 1], [2]]  # every row once, in order
    emb = Embedder.load(tiny_bert_artifacts, variant="fp32", parallel=2)
    emb.run_cost = 0.0  # fill-up batches: the 8 texts make one batch (the cost-cut planner is tested on its own)
    rows: list[int] = []
    real = emb.embed_batch
    monkeypatch.setattr(emb, "embed_batch", lambda ids, **kw: (rows.append(len(ids)), real(ids, **kw))[1])
    texts = TEXTS[:8]
    got = emb.encode(texts, batch_size=32)
    assert sorted(rows) == [4, 4]  # one 8-row batch ran as two halves side by side
    want = Embedder.load(tiny_bert_artifacts, variant="fp32", parallel=1).encode(texts, batch_size=32)
    assert float(np.abs(got - want).max()) < 1e-5
