"""The serve batcher without HTTP: its runners (one per batch the Embedder runs side by side) take the
waiting texts as each becomes free, a lone request is shared between free runners, the batches are cut
by the run cost, and a request whose client left drops the texts no runner took yet."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("starlette")

from onnxembed import Embedder  # noqa: E402
from onnxembed.serve.batcher import Batcher  # noqa: E402

TEXTS = [("word " * (1 + (i * 7) % 40)).strip() + f" {i}" for i in range(200)]


class Seen:
    """An observer that keeps the batch sizes and the dropped texts."""

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.by_runner: dict[str, int] = {}
        self.dropped_texts = 0
        self.lock = threading.Lock()

    def tokenized(self, seconds: float, texts: int, truncated: int) -> None:
        pass

    def batch(self, rows: int, real_tokens: int, padded_tokens: int, seconds: float) -> None:
        with self.lock:
            self.rows.append(rows)
            name = threading.current_thread().name
            self.by_runner[name] = self.by_runner.get(name, 0) + rows

    def queued(self, seconds: float) -> None:
        pass

    def dropped(self, texts: int) -> None:
        with self.lock:
            self.dropped_texts += texts


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def emb(tiny_bert_artifacts: Path) -> Embedder:
    return Embedder.load(tiny_bert_artifacts, variant="fp32", parallel=2)


def test_one_runner_per_batch_side_by_side_and_a_lone_request_is_shared(emb: Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = Seen()
    b = Batcher(emb, run_cost=0.0, observer=seen)
    texts = TEXTS[:32]
    want = emb.encode(texts)  # before the slow batches below (it measures the run cost on first use)
    real = emb.embed_batch
    # each batch takes a while, so the first runner cannot finish its half and take part of the other
    # half before the second runner wakes (on a busy machine it did: 24 and 8 rows)
    monkeypatch.setattr(emb, "embed_batch", lambda ids, **kw: (time.sleep(0.3), real(ids, **kw))[1])
    assert b.runners == emb.parallel == 2
    b.start()
    deadline = time.monotonic() + 10
    while b._free < 2 and time.monotonic() < deadline:  # both runners waiting for texts
        time.sleep(0.01)
    try:
        got = _run(_submit(b, texts)).vectors
        assert sorted(seen.by_runner.values()) == [16, 16]  # two free runners took half each, side by side
        assert float(np.abs(got - want).max()) < 1e-5
        assert sum(t.name.startswith("onnxembed-run-") for t in b._threads) == 2
    finally:
        assert b.close(timeout=30)


async def _submit(b: Batcher, texts: list[str]) -> Any:
    return await b.submit(texts).future


def test_many_clients_mixed_sizes_get_their_own_vectors_with_cost_cut_batches(emb: Embedder) -> None:
    seen = Seen()
    b = Batcher(emb, max_batch_size=8, observer=seen)  # the runtime's measured run cost
    b.start()
    sizes = [1, 3, 1, 17, 1, 1, 5, 40, 2, 1] * 3
    starts = np.cumsum([0, *sizes])[:-1]

    async def main() -> list[Any]:
        return await asyncio.gather(*(b.submit([TEXTS[(s + k) % len(TEXTS)] for k in range(n)]).future for s, n in zip(starts, sizes)))

    try:
        outs = _run(main())
    finally:
        assert b.close(timeout=30)
    for s, n, out in zip(starts, sizes, outs):
        want = emb.encode([TEXTS[(s + k) % len(TEXTS)] for k in range(n)])
        assert out.vectors.shape == want.shape and float(np.abs(out.vectors - want).max()) < 1e-5
    assert sum(seen.rows) == sum(sizes) and max(seen.rows) <= 8


def test_a_request_whose_client_left_drops_the_texts_no_runner_took(emb: Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = Seen()
    b = Batcher(emb, max_batch_size=8, round_texts=8, run_cost=0.0, observer=seen)
    started = threading.Event()
    real = emb.embed_batch

    def slow(ids: Any, **kw: Any) -> Any:
        started.set()
        time.sleep(0.3)
        return real(ids, **kw)

    monkeypatch.setattr(emb, "embed_batch", slow)
    b.start()

    async def main() -> None:
        work = b.submit(TEXTS[:64])
        while not started.is_set():
            await asyncio.sleep(0.01)
        b.cancel(work)  # two runners hold 8 texts each; the other 48 were not taken
        with pytest.raises(ConnectionAbortedError):
            await work.future
        after = await b.submit(TEXTS[:3]).future  # the batcher goes on
        assert after.vectors.shape == (3, emb.dim)

    try:
        _run(main())
    finally:
        assert b.close(timeout=30)
    assert seen.dropped_texts == 48 and sum(seen.rows) == 16 + 3
