"""Run the app under uvicorn with a graceful shutdown.

SIGTERM or SIGINT: ``/ready`` and new requests answer 503 at once, the requests already accepted
(in flight or queued) complete, then uvicorn closes the connections and the process exits 0. A
second SIGINT stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any, Sequence

import uvicorn

from .app import create_app
from .model import Models

__all__ = ["serve"]

logger = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn's server with a drain before its shutdown, and no re-raised signal at the end
    (uvicorn re-raises the signal it caught, which would turn a clean drain into exit 143)."""

    def __init__(self, config: uvicorn.Config, state: Models) -> None:
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
    workers: int = 1,
    shutdown_timeout: float = 60.0,
    **app_options: Any,
) -> int:
    """Serve artifact folders over HTTP until SIGTERM/SIGINT; returns the exit status.

    0 after a clean drain; 1 when a model failed to load. ``workers`` > 1 starts that many
    processes on the same port (``SO_REUSEPORT``: the kernel spreads connections over them), each
    with its own copy of the models and its own queue; give each ``threads`` = cores / workers.
    ``app_options`` are :func:`create_app`'s keyword arguments (``onnxembed serve``'s flags); an unknown
    one fails at once, before any model loads or worker starts.

    >>> serve(["artifacts/all-minilm-l6-v2"], port=8080)  # doctest: +SKIP
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, found {workers!r}")
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("serve() must run in the main thread (it handles SIGTERM and SIGINT)")
    if workers > 1:
        create_app(dirs, **app_options)  # a wrong folder or option fails here, once, not in every worker
        return _serve_workers(workers, list(dirs), host, port, app_options, shutdown_timeout)
    return _serve_one(list(dirs), host, port, app_options, shutdown_timeout, reuse_port=False)


def _serve_one(dirs: list[Any], host: str, port: int, app_kwargs: dict[str, Any], shutdown_timeout: float, *, reuse_port: bool) -> int:
    app = create_app(dirs, **app_kwargs)
    state: Models = app.state.onnxembed
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
    sockets = [_reuse_port_socket(host, port)] if reuse_port else None
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=sockets)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if state.failed is not None or not server.started:
        return 1
    return 0


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


PARENT_POLL_S = 0.5  # how often a worker checks that the process that started it is still there


def _worker(dirs: list[Any], host: str, port: int, app_kwargs: dict[str, Any], shutdown_timeout: float, level: int) -> None:
    logging.basicConfig(level=level, format="%(levelname)s %(name)s[%(process)d]: %(message)s")
    _drain_when_orphaned(os.getppid())
    sys.exit(_serve_one(dirs, host, port, app_kwargs, shutdown_timeout, reuse_port=True))


def _drain_when_orphaned(parent: int) -> None:
    """A worker whose parent died without forwarding a signal (SIGKILL, OOM killer) drains and exits as on
    SIGTERM, instead of serving on the shared port forever beside a restarted server."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        logger.warning("the parent process %d is gone: draining this worker", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="onnxembed-parent-watch", daemon=True).start()


def _serve_workers(n: int, dirs: list[Any], host: str, port: int, app_kwargs: dict[str, Any], shutdown_timeout: float) -> int:
    """Start ``n`` worker processes on one port; forward SIGTERM/SIGINT to them as SIGTERM; wait."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise RuntimeError("workers > 1 needs SO_REUSEPORT (Linux, macOS); run one process per port instead")
    ctx = multiprocessing.get_context("spawn")
    level = logging.getLogger().getEffectiveLevel()
    procs = [ctx.Process(target=_worker, args=(dirs, host, port, app_kwargs, shutdown_timeout, level), name=f"onnxembed-serve-{i}") for i in range(n)]

    def forward(signum: int, frame: FrameType | None) -> None:
        logger.info("%s: draining %d workers", signal.Signals(signum).name, n)
        for p in procs:
            if p.pid is not None and p.is_alive():
                os.kill(p.pid, signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for p in procs:
            p.start()
        logger.info("%d workers on %s:%d: pids %s", n, host, port, [p.pid for p in procs])
        for p in procs:
            p.join()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    codes = [p.exitcode for p in procs]
    bad = [c for c in codes if c != 0]
    if bad:
        logger.error("workers exited with %s", codes)
        return 1
    return 0


def _pick(fast: str, fallback: str) -> str:
    try:
        __import__(fast)
    except ImportError:
        return fallback
    return fast
