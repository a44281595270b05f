"""The model layer: what a served model does between the HTTP handlers and the batcher.

One :class:`Models` per process owns the served models and everything a request needs besides
parsing: loading and warm-up (in a background thread, so ``/health`` answers at once), admission
(at most ``max_concurrent_requests`` in flight, none while draining), the split of large client
batches into parts that interleave with other clients' requests, cancellation of a request whose
client left, and the queue (one :class:`~.batcher.Batcher` per model). It knows nothing about HTTP:
refusals are :class:`Refused` exceptions with a ``reason`` the HTTP layer turns into a status, as
text-embeddings-inference's ``Infer`` returns ``ErrorType``s its router maps.

Arrows: ``app`` (handlers) -> ``model`` -> ``batcher``/``loading`` -> the runtime's public API.

>>> models = Models([("minilm", Path("artifacts/all-minilm-l6-v2"), manifest)], Limits())  # doctest: +SKIP
>>> models.load()                                                                            # doctest: +SKIP
>>> with models.admitted():                                                                  # doctest: +SKIP
...     out = await models.embed(models.pick("minilm", task="embed"), ["hello"])
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, Sequence

import numpy as np

from onnxembed import Embedder, Manifest
from onnxembed.pooling import truncate_dimensions

from .batcher import Batcher, BatcherClosed, Embedded, Observer, RerankStages, TextTooLong
from .loading import load_warm

__all__ = ["Limits", "Models", "Refused", "ServedModel"]

logger = logging.getLogger(__name__)


class Refused(Exception):
    """A request the model layer does not run. ``reason``: ``invalid`` (the request does not fit the
    model), ``not_found`` (no such model), ``overloaded`` (too many in flight), ``unavailable``
    (loading or draining), ``gone`` (the client left); ``code`` is a stable machine-readable name."""

    def __init__(self, reason: str, message: str, code: str) -> None:
        super().__init__(message)
        self.reason, self.message, self.code = reason, message, code


@dataclass(frozen=True)
class Limits:
    """The model layer's settings, one per concern (``onnxembed serve``'s flags).

    Attributes:
        variant: ``auto`` (the runtime's choice) or a manifest variant.
        threads: onnxruntime intra-op threads per model (None: one per core).
        max_tokens: padded-token budget per batch (None: the runtime's default for the provider).
        max_batch_size: most texts per onnxruntime run.
        batch_window: seconds the batcher waits for more texts, only under concurrent load.
        max_client_batch: a request with more texts is split into parts of this size, two queued at
            a time, so other clients' requests interleave with it.
        max_concurrent_requests: requests admitted at once (more are refused as ``overloaded``).
        parallel: batches run side by side per model (``Embedder.load``'s ``parallel``; ``"auto"`` splits
            the cores between batches and threads).
        max_length: tokens per input at most (None: each model's own window; a model whose window is
            shorter keeps its window). Bounds one long text's memory on a CPU worker.
    """

    variant: str = "auto"
    threads: int | None = None
    max_tokens: int | None = None
    max_batch_size: int = 32
    batch_window: float = 0.002
    max_client_batch: int = 256
    max_concurrent_requests: int = 512
    parallel: int | str = "auto"
    max_length: int | None = None

    def length_for(self, window: int) -> int:
        """Tokens per input for a model whose window is ``window``."""
        return window if self.max_length is None else min(self.max_length, window)


@dataclass(eq=False)
class ServedModel:
    """One served folder: its manifest from the start, its runtime object and batcher once loaded."""

    name: str
    folder: Path
    manifest: Manifest
    runner: Embedder | RerankStages | None = None
    batcher: Batcher | None = None
    ready: bool = False

    @property
    def task(self) -> str:
        return self.manifest.task

    @property
    def max_batch_tokens(self) -> int | None:
        """The padded-token budget per batch in use (None until loaded)."""
        return self.batcher.max_tokens if self.batcher else None


class Models:
    """The served models, the admission count and the drain flag (see the module docstring).

    Args:
        folders: ``(name, folder, manifest)`` per model, in the order the TEI routes default to.
        limits: the settings.
        observer: ``observer(name, queue_depth)`` gives each model's batcher its metrics observer.
        on_ready: called with a model's name once it is loaded and warm.
    """

    def __init__(self, folders: Sequence[tuple[str, Path, Manifest]], limits: Limits,
                 observer: Callable[[str, Callable[[], int]], Observer] | None = None,
                 on_ready: Callable[[str], None] | None = None) -> None:
        self.models = {name: ServedModel(name, folder, manifest) for name, folder, manifest in folders}
        self.limits = limits
        self._observer = observer
        self._on_ready = on_ready
        self.inflight = 0
        self.draining = False
        self.failed: BaseException | None = None
        self.on_failure: Callable[[BaseException], None] | None = None
        self._idle: asyncio.Event | None = None

    # ---------------------------------------------------------------------------- lifecycle

    @property
    def ready(self) -> bool:
        return not self.draining and all(m.ready for m in self.models.values())

    def load(self) -> None:
        """Load every model (variant and provider as ``limits`` say), warm it up at its longest batch,
        start its batcher, mark it ready. A failure is kept in :attr:`failed` and passed to
        :attr:`on_failure` (the server then stops)."""
        lim = self.limits
        try:
            for m in self.models.values():
                runner = load_warm(m.folder, m.task, variant=lim.variant, threads=lim.threads, max_tokens=lim.max_tokens,
                                   max_length=lim.length_for(m.manifest.max_length),
                                   max_batch_size=lim.max_batch_size, parallel=lim.parallel)
                observer = self._observer(m.name, lambda b=m: b.batcher.queue_depth if b.batcher else 0) if self._observer else None
                m.runner = runner
                m.batcher = Batcher(runner, max_tokens=lim.max_tokens, max_batch_size=lim.max_batch_size, window=lim.batch_window,
                                    observer=observer)
                m.batcher.start()
                m.ready = True
                if self._on_ready is not None:
                    self._on_ready(m.name)
                logger.info("%s ready: %s on %s, dim %d, max_length %d, budget %d tokens, %d batches side by side, a run costs "
                            "%.0f padded tokens", m.name, runner.variant, runner.providers, runner.dim, runner.max_length,
                            m.batcher.max_tokens, m.batcher.runners, m.batcher.run_cost)
        except Exception as e:  # noqa: BLE001 - reported, then the server stops
            logger.error("loading the models failed: %s", e)
            self.failed = e
            if self.on_failure is not None:
                self.on_failure(e)

    def begin_drain(self) -> None:
        """Admit no more requests; what was admitted completes."""
        if not self.draining:
            logger.info("draining: %d requests in flight", self.inflight)
        self.draining = True
        if self.inflight == 0 and self._idle is not None:
            self._idle.set()

    async def drained(self) -> None:
        """Wait until no admitted request is in flight (after :meth:`begin_drain`)."""
        if self._idle is None:
            self._idle = asyncio.Event()
        while self.inflight:
            self._idle.clear()
            await self._idle.wait()

    def close(self) -> None:
        """Stop every batcher after it finished its queue (at most 30 s each)."""
        for m in self.models.values():
            if m.batcher is not None:
                m.batcher.close(timeout=30)

    # ---------------------------------------------------------------------------- admission

    @contextmanager
    def admitted(self) -> Iterator[None]:
        """Count a request in flight for the ``with`` block; refuse it while draining or full."""
        if self.draining:
            raise Refused("unavailable", "the server is shutting down; retry on another instance", "shutting_down")
        if self.inflight >= self.limits.max_concurrent_requests:
            raise Refused("overloaded", f"{self.inflight} requests in flight, the limit is {self.limits.max_concurrent_requests}; "
                          "retry later", "too_many_requests")
        if self._idle is None:
            self._idle = asyncio.Event()
        self.inflight += 1
        try:
            yield
        finally:
            self.inflight -= 1
            if self.inflight == 0:
                self._idle.set()

    def pick(self, name: str | None, *, default_first: bool = False, task: str | None = None) -> ServedModel:
        """The model named ``name``. Without a name: the only model served, or, with ``default_first``
        (TEI serves one model per process), the first one (the first of ``task``). With ``task``, a
        model of the other task is refused naming the routes it answers."""
        if name is None:
            pool = [m for m in self.models.values() if task is None or m.task == task] or list(self.models.values())
            if len(pool) != 1 and not default_first:
                raise Refused("invalid", f"'model' is required: this server serves {[p.name for p in pool]}", "model_required")
            m = pool[0]
        else:
            found = self.models.get(name)
            if found is None:
                raise Refused("not_found", f"model {name!r} is not served here; served: {list(self.models)} (GET /v1/models)", "model_not_found")
            m = found
        if task is not None and m.task != task:
            routes = "POST /rerank or /v1/rerank" if m.task == "rerank" else "POST /v1/embeddings or /embed"
            what = "a cross-encoder (reranker)" if m.task == "rerank" else "an embedding model"
            raise Refused("invalid", f"model {m.name!r} is {what}: send its requests to {routes}", "wrong_model_type")
        return m

    # ------------------------------------------------------------------------------- work

    async def embed(self, m: ServedModel, texts: list[str], *, kind: str | None = None, normalize: bool | None = None,
                    truncate: bool = True, dimensions: int | None = None, field: str = "input",
                    gone: Awaitable[Any] | None = None) -> Embedded:
        """The texts' vectors in input order, with their token usage.

        ``kind`` names one of the model's prompts; ``dimensions`` (Matryoshka) keeps the first values
        of each vector; ``field`` is the request's name for the texts (for messages); ``gone``
        completes when the client leaves: the parts of the request not yet run are then dropped."""
        why = None if dimensions is None else m.manifest.dimensions_refusal(dimensions)
        if why is not None:
            raise Refused("invalid", f"'dimensions' is {dimensions} but {why}; omit it or send one of those", "invalid_dimensions")
        runner = self._runner(m)
        if kind is not None and kind not in (prompts := runner.prompts):  # type: ignore[union-attr]
            raise Refused("invalid", f"'input_type' is {kind!r} but {m.name} has the prompts {sorted(prompts)}; send one of them or omit it",
                          "invalid_input_type")
        out = await self._run(m, texts, kind, normalize, truncate, field, gone)
        if dimensions is not None and dimensions != m.manifest.dim:
            out = Embedded(truncate_dimensions(out.vectors, dimensions, m.manifest.normalize), out.n_tokens, out.n_truncated)
        return out

    async def rerank(self, m: ServedModel, query: str, documents: list[str], *, raw: bool = False, truncate: bool = True,
                     field: str = "documents", gone: Awaitable[Any] | None = None) -> Embedded:
        """Each document's score for ``query`` (``vectors[:, 0]``), as :meth:`embed` runs texts; ``raw``: the logits."""
        if m.manifest.dim != 1:
            raise Refused("invalid", f"model {m.name!r} has {m.manifest.dim} labels; ranking needs a one-label cross-encoder", "wrong_model_type")
        self._runner(m)
        pairs: Any = [(query, d) for d in documents]
        return await self._run(m, pairs, None, raw, truncate, field, gone)

    def _runner(self, m: ServedModel) -> Embedder | RerankStages:
        if not m.ready or m.runner is None:
            raise Refused("unavailable", f"model {m.name!r} is still loading; retry when GET /ready answers 200", "model_loading")
        return m.runner

    async def _run(self, m: ServedModel, texts: list[Any], kind: str | None, normalize: bool | None, truncate: bool, field: str,
                   gone: Awaitable[Any] | None) -> Embedded:
        """Through the model's batcher; a client batch above ``max_client_batch`` is split into parts,
        two in the queue at a time, so other clients' requests interleave."""
        batcher = m.batcher
        assert batcher is not None
        size = self.limits.max_client_batch
        starts = deque(range(0, len(texts), size))
        pending: deque[tuple[int, Any]] = deque()
        left = False

        def submit_next() -> None:
            if starts and not left:
                s = starts.popleft()
                pending.append((s, batcher.submit(texts[s: s + size], kind, normalize=normalize, truncate=truncate)))

        def client_left(_: Any) -> None:
            nonlocal left
            logger.debug("%s: client went away; dropping %d queued parts of its request", m.name, len(pending))
            left = True
            for _s, w in pending:
                batcher.cancel(w)

        watcher = None
        if gone is not None:
            watcher = asyncio.ensure_future(gone)
            watcher.add_done_callback(lambda t: None if t.cancelled() or t.exception() is not None else client_left(t))
        parts: list[Embedded] = []
        try:
            submit_next()
            submit_next()
            while pending:
                start, w = pending[0]
                try:
                    parts.append(await w.future)
                except TextTooLong as e:
                    raise Refused("invalid", f"{field}[{start + e.index}] has {e.length} tokens, more than {m.name}'s max length of "
                                  f"{e.max_length}; shorten it or send truncate=true", "input_too_long") from None
                pending.popleft()
                submit_next()
        except BatcherClosed:
            raise Refused("unavailable", "the server is shutting down; retry on another instance", "shutting_down") from None
        except ConnectionAbortedError:
            raise Refused("gone", "client went away", "client_gone") from None
        finally:
            if watcher is not None:
                watcher.cancel()
            for _s, w in pending:
                batcher.cancel(w)
        if len(parts) == 1:
            return parts[0]
        return Embedded(np.concatenate([p.vectors for p in parts]), sum(p.n_tokens for p in parts), sum(p.n_truncated for p in parts))
