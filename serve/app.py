"""The HTTP layer: handlers that parse, call one method of the model layer (:mod:`.model`) and answer.

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
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

import orjson
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from onnxembed import Manifest, load_manifest
from onnxembed._session import check_parallel

from .batcher import Embedded
from .metrics import CONTENT_TYPE_LATEST, Metrics
from .model import Limits, Models, Refused
from .schema import (
    ApiError,
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


# The status of each kind of refusal from the model layer.
STATUS = {"invalid": 400, "not_found": 404, "overloaded": 429, "unavailable": 503, "gone": CLIENT_GONE}


@dataclass(eq=False)
class ServerState:
    """What only the HTTP layer holds: the API key, the body limit and the request counters; the
    model layer (:class:`~.model.Models`) holds the rest."""

    models: Models
    api_key: str | None
    max_payload: int
    metrics: Metrics = field(default_factory=Metrics)

    async def guarded(self, request: Request, endpoint: str, fn: Callable[[Request], Awaitable[Response]], *, work: bool) -> Response:
        """Auth, admission (work routes), errors as JSON, and the request counter."""
        try:
            if self.api_key is not None:
                _check_key(request, self.api_key)
            if work:
                with self.models.admitted():
                    resp = await fn(request)
            else:
                resp = await fn(request)
        except ApiError as e:
            resp = Response(e.body(), status_code=e.status, media_type=JSON)
        except Refused as e:
            resp = Response(ApiError(STATUS[e.reason], e.message, e.code).body(), status_code=STATUS[e.reason], media_type=JSON)
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
            raise Refused("gone", "client went away", "client_gone") from None
        return parse_json(b"".join(chunks))


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
    parallel: int | str = "auto",
    max_length: int | None = None,
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
        threads: onnxruntime intra-op threads per batch (None: split with ``parallel``).
        parallel: batches run side by side per model (``"auto"``: on the CPU provider 2 batches of
            ``cores // 2`` threads, or ``cores // threads`` batches when ``threads`` is given).
        variant: ``auto`` (the runtime's choice for this machine) or a manifest variant.
        max_length: tokens per input at most (None: each model's window; a shorter window is kept):
            bounds one long text's memory on a CPU worker.

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
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2):
        raise ValueError(f"max_length must be an integer >= 2 or None, found {max_length!r}")
    if batch_window_ms < 0:
        raise ValueError(f"batch_window_ms must be >= 0, found {batch_window_ms}")
    served: dict[str, tuple[str, Path, Manifest]] = {}
    for i, folder in enumerate(folders):
        manifest = load_manifest(folder)
        name = names[i] if names is not None else manifest.name
        if name in served:
            raise ValueError(f"two folders are named {name!r} ({served[name][1]} and {folder}); give each a --name")
        served[name] = (name, folder, manifest)
    check_parallel(parallel)  # here, not in the background load: a bad option fails at once
    limits = Limits(variant, threads, max_tokens, max_batch_size, batch_window_ms / 1000.0, max_client_batch, max_concurrent_requests, parallel,
                    max_length)
    metrics = Metrics()
    layer = Models(list(served.values()), limits, observer=metrics.observer, on_ready=lambda name: metrics.ready.labels(name).set(1))
    return _starlette(ServerState(layer, api_key, max_payload, metrics))


def _starlette(st: ServerState) -> Starlette:
    layer = st.models

    async def openai(request: Request) -> Response:
        async def run(request: Request) -> Response:
            req = parse_openai(await st.body(request))
            m = layer.pick(req.model, task="embed")
            out = await layer.embed(m, req.texts, kind=req.kind, normalize=req.normalize, truncate=req.truncate, dimensions=req.dimensions,
                                    field=req.field, gone=_disconnected(request))
            return Response(openai_response(out.vectors, m.name, out.n_tokens, out.n_truncated, req.encoding), media_type=JSON)

        return await st.guarded(request, "embeddings", run, work=True)

    async def tei_embed(request: Request) -> Response:
        async def run(request: Request) -> Response:
            req = parse_tei(await st.body(request))
            m = layer.pick(req.model, default_first=True, task="embed")
            out = await layer.embed(m, req.texts, kind=req.kind, normalize=req.normalize, truncate=req.truncate, field=req.field,
                                    gone=_disconnected(request))
            return Response(tei_response(out.vectors), media_type=JSON, headers={"x-prompt-tokens": str(out.n_tokens), "x-truncated-inputs": str(out.n_truncated)})

        return await st.guarded(request, "embed", run, work=True)

    async def rerank(request: Request, req: RerankRequest, default_first: bool) -> tuple[str, Embedded]:
        m = layer.pick(req.model, default_first=default_first, task="rerank")
        return m.name, await layer.rerank(m, req.query, req.documents, raw=req.raw_scores, truncate=req.truncate, field=req.field,
                                          gone=_disconnected(request))

    async def tei_rerank(request: Request) -> Response:
        async def run(request: Request) -> Response:
            req = parse_tei_rerank(await st.body(request))
            _, out = await rerank(request, req, True)
            return Response(tei_rerank_response(req, out.vectors[:, 0]), media_type=JSON,
                            headers={"x-prompt-tokens": str(out.n_tokens), "x-truncated-inputs": str(out.n_truncated)})

        return await st.guarded(request, "rerank", run, work=True)

    async def cohere_rerank(request: Request) -> Response:
        async def run(request: Request) -> Response:
            req = parse_cohere_rerank(await st.body(request))
            name, out = await rerank(request, req, False)
            return Response(cohere_rerank_response(req, out.vectors[:, 0], name, out.n_tokens, out.n_truncated), media_type=JSON)

        return await st.guarded(request, "rerank", run, work=True)

    async def info(request: Request) -> Response:
        async def run(request: Request) -> Response:
            m = layer.pick(request.query_params.get("model"), default_first=True)
            run_ = m.runner
            lim = layer.limits
            source = m.manifest.raw.get("source")
            body = {
                "model_id": m.name,
                "model_sha": source.get("weights_sha256") if isinstance(source, dict) else None,  # the checkpoint's weights hash
                "model_dtype": run_.variant if run_ else None,
                "model_type": ({"reranker": {"num_labels": m.manifest.dim, "activation": m.manifest.activation}}
                               if m.task == "rerank" else {"embedding": {"pooling": m.manifest.pooling}}),
                "dim": m.manifest.dim,
                "normalize": m.manifest.normalize,
                "prefixes": m.manifest.prefixes,
                "providers": run_.providers if run_ else None,
                "max_concurrent_requests": lim.max_concurrent_requests,
                "max_input_length": lim.length_for(m.manifest.max_length),
                "max_batch_tokens": m.max_batch_tokens or lim.max_tokens,
                "max_batch_requests": lim.max_batch_size,
                "max_client_batch_size": lim.max_client_batch,
                "auto_truncate": False,
                "tokenization_workers": 1,
                "ready": m.ready,
                "version": _version(),
            }
            return Response(orjson.dumps(body), media_type=JSON)

        return await st.guarded(request, "info", run, work=False)

    async def models(request: Request) -> Response:
        async def run(request: Request) -> Response:
            data = [{"id": n, "object": "model", "created": 0, "owned_by": "onnxembed"} for n in layer.models]
            return Response(orjson.dumps({"object": "list", "data": data}), media_type=JSON)

        return await st.guarded(request, "models", run, work=False)

    async def health(request: Request) -> Response:
        if layer.failed is not None:
            return Response(ApiError(503, f"loading failed: {layer.failed}", "load_failed").body(), status_code=503, media_type=JSON)
        return Response(b'{"status":"ok"}', media_type=JSON)

    async def ready(request: Request) -> Response:
        if layer.ready:
            return Response(b'{"status":"ready"}', media_type=JSON)
        why = "draining" if layer.draining else "loading"
        return Response(orjson.dumps({"status": why, "models": {m.name: m.ready for m in layer.models.values()}}), status_code=503, media_type=JSON)

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
        threading.Thread(target=layer.load, name="onnxembed-load", daemon=True).start()
        yield
        await asyncio.get_running_loop().run_in_executor(None, layer.close)

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
    st.metrics.in_flight.set_function(lambda: layer.inflight)
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_found, 405: not_allowed})
    app.state.onnxembed = layer
    return app


def _version() -> str:
    import onnxembed

    return f"onnxembed {onnxembed.__version__}"
