"""The local executor: worker processes on this machine, each with its own onnxruntime session.

fastembed's ``parallel=`` shape: ``workers`` processes (spawned, so no onnxruntime thread pool is
forked), each loading the model once and running ``threads = cores // workers`` intra-op threads. A
worker whose driver dies (even by SIGKILL) exits within a second: a shard it was writing stays a
hidden temporary file, which the next run removes.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable

from onnxembed import Embedder

from .inputs import Shard
from .shards import WorkSpec, embed_shard, load_embedder

__all__ = ["run_local", "usable_cores"]

_state: dict[str, Any] = {}


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (macOS, Windows)
        return os.cpu_count() or 1


def run_local(spec: WorkSpec, shards: list[Shard], workers: int, threads: int, on_done: Callable[[dict[str, Any]], None]) -> None:
    """Embed ``shards`` on ``workers`` processes; ``on_done(stats)`` in the driver after each shard.

    The first failing shard stops the job: shards not started are cancelled, running ones finish
    (each is written whole or not at all), and the error is raised here with its own type. A
    KeyboardInterrupt or SystemExit (Ctrl-C, or a SIGTERM handler) stops at once instead: the workers
    are terminated, a shard they were writing stays a hidden temporary file (removed by the next
    run), and the exception propagates.
    """
    ctx = multiprocessing.get_context("spawn")
    others = set(multiprocessing.active_children())
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init, initargs=(os.getpid(),)) as pool:
        pending = {pool.submit(_run, spec, threads, s) for s in shards}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    on_done(fut.result())
        except (KeyboardInterrupt, SystemExit):
            pool.shutdown(wait=False, cancel_futures=True)
            ours = [p for p in multiprocessing.active_children() if p not in others]
            for p in ours:
                p.terminate()
            for p in ours:
                p.join(timeout=5)
            raise
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _init(parent: int) -> None:
    """In each worker: leave Ctrl-C to the driver (a terminal sends SIGINT to the whole process
    group; the driver stops the workers), and exit when the driver is gone (its pid is no longer
    our parent)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="onnxembed-corpus-parent-watch").start()


def _run(spec: WorkSpec, threads: int, shard: Shard) -> dict[str, Any]:
    emb: Embedder | None = _state.get("embedder")
    if emb is None:
        emb = _state["embedder"] = load_embedder(spec, threads)
    return embed_shard(emb, spec, shard)
