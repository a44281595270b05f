"""The batcher: one queue per model, length-sorted batches under a padded-token budget.

Three stages on two threads, as text-embeddings-inference and infinity split them:

- the **tokenizer** thread takes requests in arrival order and tokenizes them
  (:meth:`Embedder.tokenize`), so the texts of the next batch are ready while the current one runs;
- the **runner** threads (the Embedder's ``parallel`` of them, each running its batches on its share
  of the cores) each take the tokenized texts waiting when it is free (oldest first, at most
  ``round_texts``; when several runners are free, each takes its share, so a lone 32-text request
  runs as two halves side by side, as ``encode`` runs it), drop those whose client went away, sort
  their texts by length, cut them into batches with :meth:`Embedder.plan_batches` (``rows x longest
  <= max_tokens``, at most ``max_batch_size`` rows, cut where ``sum(run_cost + rows x longest)`` is
  least), run them (:meth:`Embedder.embed_batch`;
  onnxruntime releases the GIL) and scatter the rows back to their requests;
- a request whose rows are all done is handed back to its event loop (one wake-up per batch).

The runners do not wait for each other: while one runs, the other's answers go back to their
clients, whose next requests are tokenized and wait for the first runner that is free. (One runner
taking rounds and running their batches side by side kept every client in step: the model idle while
the event loop answered a whole round and read the next one, then the loop idle while the model ran.
With the runners apart and the batches cut by the run cost, 64 single-text clients got 1.90x the
texts/s of the round-based runner on 2 cores, same run: ``benchmarks/serve_load.py``.) ``window``
adds a short wait for more texts only while the runner's previous take held more than one request: a lone client never waits.

This module knows nothing about HTTP. The model layer (:class:`~.model.Models`) submits a request's
texts with :meth:`Batcher.submit`, awaits the future of the work it returns, and calls
:meth:`Batcher.cancel` on it when the client leaves.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from onnxembed import Embedder, Reranker, Tokens

__all__ = ["Batcher", "BatcherClosed", "Embedded", "Observer", "RerankStages", "TextTooLong"]

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]


class BatcherClosed(RuntimeError):
    """The batcher is shutting down and takes no new work."""


class TextTooLong(ValueError):
    """A text is longer than the model's max length and the request asked not to truncate."""

    def __init__(self, index: int, length: int, max_length: int) -> None:
        super().__init__(f"text {index} has {length} tokens, more than the model's max length of {max_length}")
        self.index = index
        self.length = length
        self.max_length = max_length


class Observer(Protocol):
    """What the batcher reports (the metrics layer implements it). Called from the batcher's threads."""

    def tokenized(self, seconds: float, texts: int, truncated: int) -> None: ...

    def batch(self, rows: int, real_tokens: int, padded_tokens: int, seconds: float) -> None: ...

    def queued(self, seconds: float) -> None: ...

    def dropped(self, texts: int) -> None: ...


class _NoObserver:
    def tokenized(self, seconds: float, texts: int, truncated: int) -> None:
        pass

    def batch(self, rows: int, real_tokens: int, padded_tokens: int, seconds: float) -> None:
        pass

    def queued(self, seconds: float) -> None:
        pass

    def dropped(self, texts: int) -> None:
        pass


@dataclass(frozen=True)
class Embedded:
    """One request's answer: its vectors in input order and its token usage."""

    vectors: F32
    n_tokens: int
    n_truncated: int


@dataclass(eq=False)
class _Work:
    texts: list[str]
    kind: str | None
    normalize: bool | None
    truncate: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Embedded]
    submitted: float = field(default_factory=time.perf_counter)
    cancelled: bool = False
    tokens: Any = None  # onnxembed.Tokens once tokenized
    out: F32 | None = None
    remaining: int = 0  # rows not yet answered
    taken: int = 0  # texts handed to a runner (the next one to take)
    error: BaseException | None = None


class Batcher:
    """The queue, the token budget and the threads (a tokenizer, ``parallel`` runners) for one model.

    Args:
        embedder: the model (only its public stages are used).
        max_tokens: padded-token budget per batch (rows x longest); None: the Embedder's own.
        max_batch_size: most rows per onnxruntime run (32, as :meth:`Embedder.encode`, so a lone
            request is batched exactly as ``encode`` batches it).
        round_texts: most texts a runner takes from the queue at once (oldest first).
        window: seconds to wait for more texts before a round while the previous one held several
            requests (0: never wait).
        run_cost: a run's fixed cost in padded tokens (:func:`~onnxembed.plan_batches`): the texts a
            runner takes are cut where ``sum(run_cost + rows x longest)`` is least, so a few long
            texts do not pad the short ones (a closed loop of single-text clients leaves few texts to
            sort). None: the runtime's measured :attr:`Embedder.run_cost`; 0: fill each batch.
        observer: receives timings and sizes (metrics).

    >>> batcher = Batcher(Embedder.load("artifacts/all-minilm-l6-v2"))  # doctest: +SKIP
    >>> batcher.start()  # doctest: +SKIP
    >>> (await batcher.submit(["hello"]).future).vectors.shape  # doctest: +SKIP
    (1, 384)
    """

    def __init__(
        self,
        embedder: Embedder | RerankStages,
        *,
        max_tokens: int | None = None,
        max_batch_size: int = 32,
        round_texts: int = 256,
        window: float = 0.002,
        run_cost: float | None = None,
        observer: Observer | None = None,
    ) -> None:
        if max_batch_size < 1 or round_texts < 1:
            raise ValueError(f"max_batch_size and round_texts must be >= 1, found {max_batch_size} and {round_texts}")
        if window < 0:
            raise ValueError(f"window must be >= 0 seconds, found {window}")
        self.embedder = embedder
        self.max_tokens = max_tokens if max_tokens is not None else embedder.max_tokens
        self.max_batch_size = max_batch_size
        self.round_texts = max(round_texts, max_batch_size)
        self.window = window
        self.run_cost = embedder.run_cost if run_cost is None else run_cost
        self._obs: Observer = observer or _NoObserver()
        self._incoming: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._ready: deque[_Work] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._tokenizer_done = False
        self._pending_texts = 0  # submitted, not yet run
        self._count = threading.Lock()  # guards it
        self._scatter = threading.Lock()  # guards the rows and counts of the works while batches run side by side
        self._threads: list[threading.Thread] = []
        self.runners = embedder.parallel  # batches side by side, as the Embedder's cores were split for
        self._free = 0  # runners waiting for texts (guarded by _cv)

    # ------------------------------------------------------------------------------ public calls

    @property
    def queue_depth(self) -> int:
        """Texts submitted and not yet run."""
        return self._pending_texts

    def start(self) -> None:
        """Start the tokenizer and runner threads."""
        name = self.embedder.manifest.name
        self._threads = [threading.Thread(target=self._tokenize_loop, name=f"onnxembed-tokenize-{name}", daemon=True)]
        self._threads += [threading.Thread(target=self._run_loop, name=f"onnxembed-run-{name}-{k}", daemon=True) for k in range(self.runners)]
        for t in self._threads:
            t.start()

    def submit(
        self, texts: list[str], kind: str | None = None, *, normalize: bool | None = None, truncate: bool = True
    ) -> _Work:
        """Queue texts from the running event loop; await ``work.future`` for the :class:`Embedded`.

        :meth:`cancel` the work when the client goes away: its texts not yet run are then dropped.
        Raises :class:`BatcherClosed` after :meth:`close`.
        """
        if self._closed:
            raise BatcherClosed("the server is shutting down")
        loop = asyncio.get_running_loop()
        work = _Work(list(texts), kind, normalize, truncate, loop, loop.create_future())
        with self._count:
            self._pending_texts += len(work.texts)
        self._incoming.put(work)
        return work

    def cancel(self, work: _Work) -> None:
        """Drop ``work``'s texts that have not run yet (its client left); its future then raises
        ConnectionAbortedError. Idempotent; a no-op once the work is answered."""
        work.cancelled = True

    def close(self, timeout: float | None = None) -> bool:
        """Take no new work, finish what was submitted, stop the threads. True if they stopped in time."""
        if not self._closed:
            self._closed = True
            self._incoming.put(None)
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    # ------------------------------------------------------------------------------- tokenizer

    def _tokenize_loop(self) -> None:
        emb = self.embedder
        while True:
            work = self._incoming.get()
            if work is None:
                break
            if work.cancelled:
                self._drop(work)
                continue
            t0 = time.perf_counter()
            try:
                tokens = emb.tokenize(work.texts, work.kind)
                if not work.truncate and tokens.n_truncated:
                    i = tokens.truncated.index(True)
                    raise TextTooLong(i, tokens.full_lengths[i], tokens.max_length)
            except Exception as e:  # noqa: BLE001 - any failure goes back to its request
                with self._count:
                    self._pending_texts -= len(work.texts)
                work.error = e
                self._finish([work])
                continue
            self._obs.tokenized(time.perf_counter() - t0, len(work.texts), tokens.n_truncated)
            work.tokens = tokens
            work.out = np.empty((len(work.texts), emb.dim), dtype=np.float32)
            work.remaining = len(work.texts)
            with self._cv:
                self._ready.append(work)
                self._cv.notify()
        with self._cv:
            self._tokenizer_done = True
            self._cv.notify_all()

    # ---------------------------------------------------------------------------------- runner

    def _take(self, previous: int) -> list[tuple[_Work, int, int]] | None:
        """This runner's next texts: slices ``(work, start, end)`` of the waiting requests, oldest first,
        at most ``round_texts`` texts, and only its share when other runners are free too. None: stop."""
        with self._cv:
            self._free += 1
            try:
                while not self._ready:
                    if self._tokenizer_done:
                        self._cv.notify_all()
                        return None
                    self._cv.wait()
                if previous > 1 and self.window > 0:
                    deadline = time.perf_counter() + self.window
                    while self._ready_texts() < self.max_batch_size and not self._tokenizer_done:
                        left = deadline - time.perf_counter()
                        if left <= 0:
                            break
                        self._cv.wait(left)
                    if not self._ready:  # another runner took them meanwhile
                        return []
                share = min(self.round_texts, -(-self._ready_texts() // self._free))
                taken: list[tuple[_Work, int, int]] = []
                n = 0
                while self._ready and n < share:
                    w = self._ready[0]
                    # a request whose client left goes whole (its texts are dropped, not run)
                    end = len(w.texts) if w.cancelled else min(len(w.texts), w.taken + share - n)
                    taken.append((w, w.taken, end))
                    n += 0 if w.cancelled else end - w.taken
                    w.taken = end
                    if end == len(w.texts):
                        self._ready.popleft()
                if self._ready:
                    self._cv.notify()  # the rest is for another free runner
                return taken
            finally:
                self._free -= 1

    def _ready_texts(self) -> int:
        return sum(len(w.texts) - w.taken for w in self._ready)

    def _run_loop(self) -> None:
        previous = 0
        while True:
            taken = self._take(previous)
            if taken is None:
                break
            live = []
            for w, start, end in taken:
                if w.cancelled:
                    self._drop(w, start, end)
                else:
                    live.append((w, start, end))
            previous = len(live)
            now = time.perf_counter()
            for w, start, _ in live:
                if start == 0:
                    self._obs.queued(now - w.submitted)
            for norm in {w.normalize for w, _, _ in live}:
                self._run_group([x for x in live if x[0].normalize == norm], norm)

    def _run_group(self, slices: list[tuple[_Work, int, int]], normalize: bool | None) -> None:
        """Sort the slices' texts by length, batch them under the budget, run the batches one after the
        other on this runner's share of the cores, scatter the rows back."""
        owners: list[tuple[_Work, int]] = [(w, i) for w, start, end in slices for i in range(start, end)]
        ids = [w.tokens.ids[i] for w, i in owners]
        types = [w.tokens.type_ids[i] for w, i in owners] if all(w.tokens.type_ids is not None for w, _, _ in slices) else None
        lengths = [len(x) for x in ids]
        for batch in self.embedder.plan_batches(lengths, self.max_batch_size, max_tokens=self.max_tokens, run_cost=self.run_cost):
            self._run_batch([int(j) for j in batch], owners, ids, types, lengths, normalize)

    def _run_batch(self, rows: list[int], owners: list[tuple[_Work, int]], ids: list[Any], types: list[Any] | None,
                   lengths: list[int], normalize: bool | None) -> None:
        emb = self.embedder
        with self._count:
            self._pending_texts -= len(rows)
        t0 = time.perf_counter()
        try:
            if types is None:
                vecs = emb.embed_batch([ids[j] for j in rows], normalize=normalize)
            else:  # pairs (a reranker): the token type ids go with the ids
                vecs = emb.embed_batch([ids[j] for j in rows], normalize=normalize, type_ids=[types[j] for j in rows])
        except Exception as e:  # noqa: BLE001 - onnxruntime failures go back to the requests
            logger.exception("%s: a batch of %d texts failed", emb.manifest.name, len(rows))
            with self._scatter:
                failed = [w for w in {id(owners[j][0]): owners[j][0] for j in rows}.values() if w.remaining > 0]
                for w in failed:
                    w.error = w.error or e
                    w.remaining = 0  # answered now; its rows in other batches are skipped
            self._finish(failed)
            return
        seconds = time.perf_counter() - t0
        longest = max(lengths[j] for j in rows)
        self._obs.batch(len(rows), sum(lengths[j] for j in rows), longest * len(rows), seconds)
        done: list[_Work] = []
        with self._scatter:
            for k, j in enumerate(rows):
                w, i = owners[j]
                if w.remaining <= 0:  # answered already (a failed batch)
                    continue
                if w.error is None:
                    w.out[i] = vecs[k]  # type: ignore[index]
                w.remaining -= 1
                if w.remaining == 0:
                    done.append(w)
        if done:
            self._finish(done)

    # ---------------------------------------------------------------------------------- answers

    def _drop(self, work: _Work, start: int = 0, end: int | None = None) -> None:
        """Drop ``work``'s texts ``start:end`` (its client went away); answer it once no row of it is left."""
        n = (len(work.texts) if end is None else end) - start
        logger.debug("%s: dropped %d texts of a request: its client went away", self.embedder.manifest.name, n)
        with self._count:
            self._pending_texts -= n
        self._obs.dropped(n)
        if end is None:  # never tokenized: nothing of it runs
            work.error = ConnectionAbortedError("client went away")
            self._finish([work])
            return
        with self._scatter:
            work.error = work.error or ConnectionAbortedError("client went away")
            work.remaining -= n
            last = work.remaining == 0
        if last:
            self._finish([work])

    def _finish(self, works: list[_Work]) -> None:
        by_loop: dict[int, list[_Work]] = {}
        for w in works:
            by_loop.setdefault(id(w.loop), []).append(w)
        for group in by_loop.values():
            try:
                group[0].loop.call_soon_threadsafe(_deliver, group)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass


class RerankStages:
    """A :class:`~onnxembed.Reranker` behind the batcher's Embedder-shaped seam, so rerank requests share
    the queue, the token budget and the threads: a "text" is a (query, document) pair, a row's "vector"
    its scores (``num_labels`` values), and the per-request ``normalize`` option means ``raw_scores``.
    """

    def __init__(self, reranker: Reranker) -> None:
        self.reranker = reranker
        self.manifest = reranker.manifest
        self.max_tokens = reranker.max_tokens
        self.max_length = reranker.max_length
        self.dim = reranker.num_labels
        self.variant = reranker.variant
        self.providers = reranker.providers
        self.parallel = reranker.parallel

    @property
    def run_cost(self) -> float:
        return self.reranker.run_cost

    def tokenize(self, pairs: list[tuple[str, str]], kind: str | None = None) -> Tokens:
        return self.reranker.tokenize(pairs)

    def plan_batches(self, lengths: list[int], batch_size: int, *, max_tokens: int | None, run_cost: float = 0.0) -> list[Any]:
        return self.reranker.plan_batches(lengths, batch_size, max_tokens=max_tokens, run_cost=run_cost)

    def embed_batch(self, ids: list[list[int]], *, normalize: bool | None = None, type_ids: list[list[int]] | None = None) -> F32:
        tokens = Tokens(ids, [len(r) for r in ids], self.max_length, type_ids)
        return self.reranker.score_batch(tokens, raw=bool(normalize)).reshape(len(ids), self.dim)


def _deliver(works: list[_Work]) -> None:
    """On the event loop: resolve each request's future."""
    for w in works:
        if w.future.done():
            continue
        if w.error is not None:
            w.future.set_exception(w.error)
        else:
            w.future.set_result(Embedded(w.out, w.tokens.n_tokens, w.tokens.n_truncated))  # type: ignore[arg-type]
