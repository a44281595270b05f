"""The HTTP layer: handlers that parse, check and answer; the batcher does the rest.

Endpoints: ``POST /v1/embeddings`` and ``/embeddings`` (OpenAI), ``POST /embed``, ``POST /rerank`` and
``GET /info`` (text-embeddings-inference), ``POST /v1/rerank`` (Cohere, Jina), ``GET /v1/models``,
``GET /health``, ``GET /ready``, ``GET /metrics``. A cross-encoder folder answers the rerank routes, a
sentence embedder the embedding ones; one process may serve both kinds.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from onnxembed import Embedder, Manifest, load_manifest
from onnxembed.pooling import truncate_dimensions

from .batcher import Batcher, BatcherClosed, Embedded, RerankStages, TextTooLong
from .loading import load_warm
from .metrics import CONTENT_TYPE_LATEST, Metrics
from .schema import (
    ApiError,
    EmbedRequest,
    RerankRequest,
    cohere_rerank_response,
    openai_response,
    parse_cohere_rerank,
    parse_json,
    parse_openai,
    parse_tei,
    parse_tei_rerank,
    tei_rerank_response,
    tei_response,
)

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

JSON = "application/json"
# Status counted for a request whose client left before its answer (nginx's convention).
CLIENT_GONE = 499


@dataclass(eq=False)
class _Model:
    name: str
    folder: Path
    manifest: Manifest
    embedder: Embedder | RerankStages | None = None
    batcher: Batcher | None = None
    ready: bool = False


@dataclass(eq=False)
class ServerState:
    """What the handlers share: models, limits, metrics, the in-flight count and the drain flag."""

    models: dict[str, _Model]
    api_key: str | None
    max_payload: int
    max_concurrent_requests: int
    max_client_batch: int
    max_tokens: int | None
    max_batch_size: int
    batch_window: float
    threads: int | None
    variant: str
    metrics: Metrics = field(default_factory=Metrics)
    inflight: int = 0
    draining: bool = False
    failed: BaseException | None = None
    on_failure: Callable[[BaseException], None] | None = None
    _idle: asyncio.Event | None = None

    @property
    def ready(self) -> bool:
        return not self.draining and all(m.ready for m in self.models.values())

    @property
    def default(self) -> _Model:
        return next(iter(self.models.values()))

    # ---------------------------------------------------------------------------- lifecycle

    def load(self) -> None:
        """Load every model (automatic variant and provider), warm it up at max length, mark it ready.

        Runs in a background thread so ``/health`` answers while the models load.
        """
        try:
            for m in self.models.values():
                emb = load_warm(m.folder, m.manifest.task, variant=self.variant, threads=self.threads, max_tokens=self.max_tokens,
                                max_batch_size=self.max_batch_size)
                m.embedder = emb
                m.batcher = Batcher(
                    emb,
                    max_tokens=self.max_tokens,
                    max_batch_size=self.max_batch_size,
                    round_texts=self.max_client_batch,
                    window=self.batch_window,
                    observer=self.metrics.observer(m.name, lambda b=m: b.batcher.queue_depth if b.batcher else 0),
                )
                m.batcher.start()
                m.ready = True
                self.metrics.ready.labels(m.name).set(1)
                logger.info("%s ready: %s on %s, dim %d, max_length %d, budget %d tokens", m.name, emb.variant, emb.providers, emb.dim, emb.max_length, m.batcher.max_tokens)
        except Exception as e:  # noqa: BLE001 - reported, then the server stops
            logger.error("loading the models failed: %s", e)
            self.failed = e
            if self.on_failure is not None:
                self.on_failure(e)

    def begin_drain(self) -> None:
        """Stop taking work: ``/ready`` and new requests answer 503; what was accepted completes."""
        if not self.draining:
            logger.info("draining: %d requests in flight", self.inflight)
        self.draining = True
        if self.inflight == 0 and self._idle is not None:
            self._idle.set()

    async def drained(self) -> None:
        """Wait until no request is in flight (after :meth:`begin_drain`)."""
        if self._idle is None:
            self._idle = asyncio.Event()
        while self.inflight:
            self._idle.clear()
            await self._idle.wait()

    def close(self) -> None:
        for m in self.models.values():
            if m.batcher is not None:
                m.batcher.close(timeout=30)

    # ----------------------------------------------------------------------------- requests

    async def guarded(self, request: Request, endpoint: str, fn: Callable[[Request], Awaitable[Response]], *, work: bool) -> Response:
        """Auth, drain and concurrency checks, errors as JSON, and the request counter."""
        try:
            if self.api_key is not None:
                _check_key(request, self.api_key)
            if work:
                if self.draining:
                    raise ApiError(503, "the server is shutting down; retry on another instance", "shutting_down")
                if self.inflight >= self.max_concurrent_requests:
                    raise ApiError(429, f"{self.inflight} requests in flight, the limit is {self.max_concurrent_requests}; retry later", "too_many_requests")
                self.inflight += 1
                try:
                    resp = await fn(request)
                finally:
                    self.inflight -= 1
                    if self.inflight == 0 and self._idle is not None:
                        self._idle.set()
            else:
                resp = await fn(request)
        except ApiError as e:
            resp = Response(e.body(), status_code=e.status, media_type=JSON)
        except Exception:  # noqa: BLE001 - an answer, never a dropped connection
            logger.exception("%s failed", endpoint)
            resp = Response(ApiError(500, "internal error; see the server log", "internal_error").body(), status_code=500, media_type=JSON)
        self.metrics.count(endpoint, resp.status_code)
        return resp

    async def body(self, request: Request) -> Any:
        """The JSON body, at most ``max_payload`` bytes (413 otherwise)."""
        limit = self.max_payload
        declared = request.headers.get("content-length")
        too_big = ApiError(413, f"the request body is larger than {limit} bytes (--max-payload); send fewer texts per request", "payload_too_large")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_big
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_big
                chunks.append(chunk)
        except ClientDisconnect:
            raise _ClientGone() from None
        return parse_json(b"".join(chunks))

    def model(self, name: str | None, *, default_first: bool = False, task: str | None = None) -> _Model:
        """The model named ``name``. Without a name: the only model served, or, with
        ``default_first`` (the TEI routes: TEI serves one model per process), the first one (the first
        of ``task``). With ``task``, a model of the other task is a 400 naming the routes it answers."""
        if name is None:
            pool = [m for m in self.models.values() if task is None or m.manifest.task == task] or list(self.models.values())
            if len(pool) == 1 or default_first:
                m = pool[0]
            else:
                raise ApiError(400, f"'model' is required: this server serves {[p.name for p in pool]}", "model_required")
        else:
            found = self.models.get(name)
            if found is None:
                raise ApiError(404, f"model {name!r} is not served here; served: {list(self.models)} (GET /v1/models)", "model_not_found")
            m = found
        if task is not None and m.manifest.task != task:
            routes = "POST /rerank or /v1/rerank" if m.manifest.task == "rerank" else "POST /v1/embeddings or /embed"
            what = "a cross-encoder (reranker)" if m.manifest.task == "rerank" else "an embedding model"
            raise ApiError(400, f"model {m.name!r} is {what}: send its requests to {routes}", "wrong_model_type")
        return m

    async def rerank(self, request: Request, m: _Model, req: RerankRequest) -> Embedded:
        """Score the request's (query, document) pairs through the model's batcher (as :meth:`embed`)."""
        if m.manifest.dim != 1:
            raise ApiError(400, f"model {m.name!r} has {m.manifest.dim} labels; ranking needs a one-label cross-encoder", "wrong_model_type")
        pairs: Any = [(req.query, d) for d in req.documents]
        return await self.embed(request, m, EmbedRequest(pairs, req.model, None, req.raw_scores, req.truncate, field=req.field))

    async def embed(self, request: Request, m: _Model, req: EmbedRequest) -> Embedded:
        """Run the texts through the model's batcher; a client batch above ``max_client_batch`` is
        split into chunks (two in the queue at a time, so other clients' requests interleave)."""
        if not m.ready or m.batcher is None:
            raise ApiError(503, f"model {m.name!r} is still loading; retry when GET /ready answers 200", "model_loading")
        if req.kind is not None and req.kind not in (prompts := m.embedder.prompts):
            raise ApiError(400, f"'input_type' is {req.kind!r} but {m.name} has the prompts {sorted(prompts)}; send one of them or omit it", "invalid_input_type")
        batcher = m.batcher
        size = self.max_client_batch
        starts = list(range(0, len(req.texts), size))
        pending: deque[tuple[int, Any]] = deque()
        gone = False

        def submit_next() -> None:
            if starts and not gone:
                s = starts.pop(0)
                pending.append((s, batcher.submit(req.texts[s : s + size], req.kind, normalize=req.normalize, truncate=req.truncate)))

        def client_left(_: Any) -> None:
            nonlocal gone
            logger.debug("%s: client went away; dropping %d queued parts of its request", m.name, len(pending))
            gone = True
            for _s, w in pending:
                w.cancelled = True

        watcher = asyncio.ensure_future(_disconnected(request))
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
                    raise ApiError(
                        400,
                        f"{req.field}[{start + e.index}] has {e.length} tokens, more than {m.name}'s max length of "
                        f"{e.max_length}; shorten it or send truncate=true",
                        "input_too_long",
                    ) from None
                pending.popleft()
                submit_next()
        except BatcherClosed:
            raise ApiError(503, "the server is shutting down; retry on another instance", "shutting_down") from None
        except ConnectionAbortedError:
            raise _ClientGone() from None
        finally:
            watcher.cancel()
            for _s, w in pending:
                w.cancelled = True
        if len(parts) == 1:
            return parts[0]
        return Embedded(np.concatenate([p.vectors for p in parts]), sum(p.n_tokens for p in parts), sum(p.n_truncated for p in parts))


class _ClientGone(ApiError):
    def __init__(self) -> None:
        super().__init__(CLIENT_GONE, "client went away", "client_gone")


async def _disconnected(request: Request) -> bool:
    """True once the client has gone away (uvicorn answers ``http.disconnect`` after the body)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return True


def _check_key(request: Request, key: str) -> None:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if not auth:
        raise ApiError(401, "missing API key: send the header 'Authorization: Bearer KEY'", "invalid_api_key")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
        raise ApiError(401, "wrong API key (expected 'Authorization: Bearer KEY' with the server's --api-key)", "invalid_api_key")


# ---------------------------------------------------------------------------------- the app


def create_app(
    dirs: Sequence[str | Path],
    *,
    names: Sequence[str] | None = None,
    api_key: str | None = None,
    max_payload: int = 2_000_000,
    max_concurrent_requests: int = 512,
    max_client_batch: int = 256,
    max_tokens: int | None = None,
    max_batch_size: int = 32,
    batch_window_ms: float = 2.0,
    threads: int | None = None,
    variant: str = "auto",
) -> Starlette:
    """The ASGI app serving the artifact folders ``dirs`` (one model each).

    Manifests are read here (a wrong folder fails at once); the models load and warm up in the
    background after startup, so ``/health`` answers at once and ``/ready`` turns 200 when they
    are warm. The keyword arguments are ``onnxembed serve``'s flags.

    Args:
        dirs: artifact folders built by ``onnxembed build``.
        names: a name per folder (default: each manifest's name); the ``model`` field selects it.
        api_key: when set, every endpoint except health, ready and metrics needs ``Bearer KEY``.
        max_payload: largest request body in bytes (413 above).
        max_concurrent_requests: requests in flight at once (429 above).
        max_client_batch: texts per request taken at once; larger client batches are split.
        max_tokens: padded-token budget per batch (rows x longest); None: the Embedder's default.
        max_batch_size: most texts per onnxruntime run.
        batch_window_ms: wait for more texts before a batch, only under concurrent load.
        threads: onnxruntime intra-op threads (None: one per core).
        variant: ``auto`` (the runtime's choice for this machine) or a manifest variant.

    >>> app = create_app(["artifacts/all-minilm-l6-v2"])  # doctest: +SKIP
    """
    folders = [Path(d) for d in dirs]
    if not folders:
        raise ValueError("no model folder given; pass at least one artifact folder")
    if names is not None and len(names) != len(folders):
        raise ValueError(f"{len(names)} names for {len(folders)} folders; give one --name per folder, in order")
    for label, value, low in (("max_payload", max_payload, 1), ("max_concurrent_requests", max_concurrent_requests, 1), ("max_client_batch", max_client_batch, 1), ("max_batch_size", max_batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{label} must be an integer >= {low}, found {value!r}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1 or None, found {max_tokens}")
    if batch_window_ms < 0:
        raise ValueError(f"batch_window_ms must be >= 0, found {batch_window_ms}")
    models: dict[str, _Model] = {}
    for i, folder in enumerate(folders):
        manifest = load_manifest(folder)
        name = names[i] if names is not None else manifest.name
        if name in models:
            raise ValueError(f"two folders are named {name!r} ({models[name].folder} and {folder}); give each a --name")
        models[name] = _Model(name, folder, manifest)
    state = ServerState(models, api_key, max_payload, max_concurrent_requests, max_client_batch, max_tokens, max_batch_size, batch_window_ms / 1000.0, threads, variant)
    return _starlette(state)


def _starlette(st: ServerState) -> Starlette:
    async def openai(request: Request) -> Response:
        async def run(request: Request) -> Response:
            req = parse_openai(await st.body(request))
            m = st.model(req.model, task="embed")
            dims = m.manifest.dimensions or (m.manifest.dim,)
            if req.dimensions is not None and req.dimensions != m.manifest.dim and req.dimensions not in dims:
                why = (f"is trained for {sorted({m.manifest.dim, *dims}, reverse=True)}" if m.manifest.dimensions
                       else f"gives {m.manifest.dim}-d vectors and is not trained for shorter ones")
                raise ApiError(400, f"'dimensions' is {req.dimensions} but {m.name} {why}; omit it or send one of those", "invalid_dimensions")
            out = await st.embed(request, m, req)
            vectors = out.vectors
            if req.dimensions is not None and req.dimensions != m.manifest.dim:
                vectors = truncate_dimensions(vectors, req.dimensions, m.manifest.normalize)
            return Response(openai_response(vectors, m.name, out.n_tokens, out.n_truncated, req.encoding), media_type=JSON)

        return await st.guarded(request, "embeddings", run, work=True)

    async def tei_embed(request: Request) -> Response:
        async def run(request: Request) -> Response:
            req = parse_tei(await st.body(request))
            m = st.model(req.model, default_first=True, task="embed")
            out = await st.embed(request, m, req)
            return Response(tei_response(out.vectors), media_type=JSON, headers={"x-prompt-tokens": str(out.n_tokens), "x-truncated-inputs": str(out.n_truncated)})

        return await st.guarded(request, "embed", run, work=True)

    async def tei_rerank(request: Request) -> Response:
        async def run(request: Request) -> Response:
            req = parse_tei_rerank(await st.body(request))
            m = st.model(req.model, default_first=True, task="rerank")
            out = await st.rerank(request, m, req)
            return Response(tei_rerank_response(req, out.vectors[:, 0]), media_type=JSON,
                            headers={"x-prompt-tokens": str(out.n_tokens), "x-truncated-inputs": str(out.n_truncated)})

        return await st.guarded(request, "rerank", run, work=True)

    async def cohere_rerank(request: Request) -> Response:
        async def run(request: Request) -> Response:
            req = parse_cohere_rerank(await st.body(request))
            m = st.model(req.model, task="rerank")
            out = await st.rerank(request, m, req)
            return Response(cohere_rerank_response(req, out.vectors[:, 0], m.name, out.n_tokens, out.n_truncated), media_type=JSON)

        return await st.guarded(request, "rerank", run, work=True)

    async def info(request: Request) -> Response:
        async def run(request: Request) -> Response:
            m = st.model(request.query_params.get("model"), default_first=True)
            emb = m.embedder
            source = m.manifest.raw.get("source")
            body = {
                "model_id": m.name,
                "model_sha": source.get("weights_sha256") if isinstance(source, dict) else None,  # the checkpoint's weights hash
                "model_dtype": emb.variant if emb else None,
                "model_type": ({"reranker": {"num_labels": m.manifest.dim, "activation": m.manifest.activation}}
                               if m.manifest.task == "rerank" else {"embedding": {"pooling": m.manifest.pooling}}),
                "dim": m.manifest.dim,
                "normalize": m.manifest.normalize,
                "prefixes": m.manifest.prefixes,
                "providers": emb.providers if emb else None,
                "max_concurrent_requests": st.max_concurrent_requests,
                "max_input_length": m.manifest.max_length,
                "max_batch_tokens": m.batcher.max_tokens if m.batcher else st.max_tokens,
                "max_batch_requests": st.max_batch_size,
                "max_client_batch_size": st.max_client_batch,
                "auto_truncate": False,
                "tokenization_workers": 1,
                "ready": m.ready,
                "version": _version(),
            }
            return Response(orjson.dumps(body), media_type=JSON)

        return await st.guarded(request, "info", run, work=False)

    async def models(request: Request) -> Response:
        async def run(request: Request) -> Response:
            data = [{"id": n, "object": "model", "created": 0, "owned_by": "onnxembed"} for n in st.models]
            return Response(orjson.dumps({"object": "list", "data": data}), media_type=JSON)

        return await st.guarded(request, "models", run, work=False)

    async def health(request: Request) -> Response:
        if st.failed is not None:
            return Response(ApiError(503, f"loading failed: {st.failed}", "load_failed").body(), status_code=503, media_type=JSON)
        return Response(b'{"status":"ok"}', media_type=JSON)

    async def ready(request: Request) -> Response:
        if st.ready:
            return Response(b'{"status":"ready"}', media_type=JSON)
        why = "draining" if st.draining else "loading"
        return Response(orjson.dumps({"status": why, "models": {m.name: m.ready for m in st.models.values()}}), status_code=503, media_type=JSON)

    async def metrics(request: Request) -> Response:
        return Response(st.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def not_found(request: Request, exc: Exception) -> Response:
        err = ApiError(404, f"no endpoint {request.method} {request.url.path}; see GET /v1/models, POST /v1/embeddings, POST /embed, POST /v1/rerank", "not_found")
        return Response(err.body(), status_code=404, media_type=JSON)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        err = ApiError(405, f"{request.method} is not allowed on {request.url.path}", "method_not_allowed")
        return Response(err.body(), status_code=405, media_type=JSON)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        st._idle = asyncio.Event()
        threading.Thread(target=st.load, name="onnxembed-load", daemon=True).start()
        yield
        await asyncio.get_running_loop().run_in_executor(None, st.close)

    routes = [
        Route("/v1/embeddings", openai, methods=["POST"]),
        Route("/embeddings", openai, methods=["POST"]),
        Route("/embed", tei_embed, methods=["POST"]),
        Route("/rerank", tei_rerank, methods=["POST"]),
        Route("/v1/rerank", cohere_rerank, methods=["POST"]),
        Route("/info", info, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    st.metrics.in_flight.set_function(lambda: st.inflight)
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_found, 405: not_allowed})
    app.state.onnxembed = st
    return app


def _version() -> str:
    import onnxembed

    return f"onnxembed {onnxembed.__version__}"
