"""Run the app under uvicorn with a graceful shutdown.

SIGTERM or SIGINT: ``/ready`` and new requests answer 503 at once, the requests already accepted
(in flight or queued) complete, then uvicorn closes the connections and the process exits 0. A
second SIGINT stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any, Sequence

import uvicorn

from .app import ServerState, create_app

__all__ = ["serve"]

logger = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn's server with a drain before its shutdown, and no re-raised signal at the end
    (uvicorn re-raises the signal it caught, which would turn a clean drain into exit 143)."""

    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.state = state
        self.loop: asyncio.AbstractEventLoop | None = None
        self.draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.draining:
            if sig == signal.SIGINT:
                logger.warning("second interrupt: stopping without waiting")
                self.force_exit = True
                self.should_exit = True
            return
        self.draining = True
        logger.info("%s: draining before exit", signal.Signals(sig).name)
        if self.loop is None or not self.started:
            self.should_exit = True
            return
        self.loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self.state.begin_drain()
        asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        await self.state.drained()
        logger.info("drained: no request in flight")
        self.should_exit = True

    async def startup(self, sockets: Any = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)


def serve(
    dirs: Sequence[str | Path],
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
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
    shutdown_timeout: float = 60.0,
) -> int:
    """Serve artifact folders over HTTP until SIGTERM/SIGINT; returns the exit status.

    0 after a clean drain; 1 when a model failed to load. The other keyword arguments are
    :func:`create_app`'s (``onnxembed serve``'s flags).

    >>> serve(["artifacts/all-minilm-l6-v2"], port=8080)  # doctest: +SKIP
    """
    app = create_app(
        dirs,
        names=names,
        api_key=api_key,
        max_payload=max_payload,
        max_concurrent_requests=max_concurrent_requests,
        max_client_batch=max_client_batch,
        max_tokens=max_tokens,
        max_batch_size=max_batch_size,
        batch_window_ms=batch_window_ms,
        threads=threads,
        variant=variant,
    )
    state: ServerState = app.state.onnxembed
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop=_pick("uvloop", "asyncio"),
        http=_pick("httptools", "h11"),
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=shutdown_timeout,
    )
    server = _Server(config, state)

    def failed(e: BaseException) -> None:
        server.should_exit = True

    state.on_failure = failed
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("serve() must run in the main thread (it handles SIGTERM and SIGINT)")
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if state.failed is not None:
        return 1
    return 0


def _pick(fast: str, fallback: str) -> str:
    try:
        __import__(fast)
    except ImportError:
        return fallback
    return fast
