"""The Ray executor: Ray Data's batch-inference pattern, one Embedder per actor, loaded once.

``ray.data.from_items(shards) -> map_batches(ShardEmbedder, compute=ActorPoolStrategy(size=workers), num_cpus=...)``:
each item is one shard (a file and row range); the actor reads it from storage, embeds it and writes
its parquet file (write then move), and returns the shard's stats to the driver. Reading and writing
inside the actor, rather than ``read_parquet``/``write_parquet``, keeps the output files tied to
deterministic input ranges, which is what makes a rerun skip finished work exactly. On a cluster the
inputs, the output and the artifact folder must be visible to every node (s3://, gs://, NFS).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import warnings
from typing import Any, Callable

import numpy as np

from onnxembed._logfilter import drop_messages
from onnxembed.extras import require_extra

from .errors import CorpusInputError
from .inputs import Shard
from .shards import WorkSpec, embed_shard, load_embedder

__all__ = ["run_ray"]

logger = logging.getLogger(__name__)


def import_ray() -> Any:
    """``ray`` with ``ray.data``; ImportError whose message is the pip command if the extra is missing."""
    require_extra("ray", "the Ray executor", modules=("ray",))
    import ray
    import ray.data  # noqa: F401

    return ray


class ShardEmbedder:
    """The per-actor callable: loads the model once, then embeds one shard per call."""

    def __init__(self, spec: WorkSpec, threads: int) -> None:
        self.spec = spec
        self.embedder = load_embedder(spec, threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = []
        for raw in batch["shard"]:
            shard = Shard(**json.loads(str(raw)))
            try:
                stats = {**embed_shard(self.embedder, self.spec, shard), "error": ""}
            except CorpusInputError as e:  # a bad row: reported to the driver with its own message
                stats = {"index": shard.index, "texts": 0, "tokens": 0, "truncated": 0, "seconds": 0.0, "peak_rss_mb": 0.0, "error": str(e)}
            rows.append(stats)
        return {k: np.array([r[k] for r in rows]) for k in rows[0]}


# What Ray prints on a successful run that says nothing about the job: set only where the user has not.
_RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}  # the job reports no usage anywhere
# Ray's notices on a run that went well, matched exactly by logger and message start: token
# authentication is on (Ray's default for a Ray it starts; RAY_AUTH_MODE sets it), and progress
# bars are off (the job reports its own progress).
_KNOWN_WARNINGS = {
    "ray._private.authentication.authentication_token_setup": ("Token authentication is enabled for this Ray cluster",),
    "ray.data._internal.progress": ("Progress bars disabled",),
}


def _quiet_ray_env() -> None:
    for key, value in _RAY_ENV.items():
        os.environ.setdefault(key, value)


def _drop_known_warnings() -> None:
    for name, starts in _KNOWN_WARNINGS.items():
        drop_messages(name, starts)


def _takes_remote_args(ds: Any) -> bool:
    """Whether ``map_batches`` still takes actor options as keywords (Ray announces their removal in 2.64)."""
    return any(p.kind == p.VAR_KEYWORD for p in inspect.signature(ds.map_batches).parameters.values())


def run_ray(
    spec: WorkSpec,
    shards: list[Shard],
    *,
    workers: int | None,
    cpus_per_actor: float,
    address: str | None,
    on_done: Callable[[dict[str, Any]], None],
) -> int:
    """Embed ``shards`` on Ray actors; returns the number of actors used.

    Connects to ``address`` (``"auto"``, ``"ray://host:10001"``) or, with None, starts Ray on this
    machine; a Ray already initialized by the caller is used as it is and left running.
    """
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        _quiet_ray_env()
        _drop_known_warnings()
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    elif address:
        logger.info("Ray is already initialized; ignoring ray_address=%s", address)
    try:
        logging.getLogger("ray.data").setLevel(max(logging.getLogger("ray.data").getEffectiveLevel(), logging.WARNING))
        _drop_known_warnings()
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the job reports its own progress
        cpus = float(ray.cluster_resources().get("CPU", 1))
        if workers is None:
            workers = max(1, int(cpus // cpus_per_actor))
        workers = max(1, min(workers, len(shards)))
        if workers * cpus_per_actor > cpus:
            logger.warning(
                "%d actors x %g CPUs need %g CPUs, the Ray cluster has %g now: the job waits for the autoscaler "
                "(or forever without one); lower workers or cpus_per_actor", workers, cpus_per_actor, workers * cpus_per_actor, cpus,
            )
        threads = max(1, int(cpus_per_actor))
        items = [{"shard": json.dumps(s.as_dict())} for s in shards]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        local = started and address is None
        with warnings.catch_warnings():
            # keyword actor options are the only way to set max_restarts; Ray announces their removal (2.64)
            warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
            ds = ds.map_batches(
                ShardEmbedder,
                fn_constructor_kwargs={"spec": spec, "threads": threads},
                batch_size=1,
                compute=ray.data.ActorPoolStrategy(size=workers),
                num_cpus=cpus_per_actor,
                # On a Ray started here, a lost actor fails the job (the rerun resumes) instead of being
                # restarted: Ray Data keeps its map function in the object store, and a restartable
                # actor with such arguments makes Ray log an error line on every run. On a cluster,
                # restarts (Ray Data's default) survive lost nodes, and Ray prints that line.
                **({"max_restarts": 0} if local and _takes_remote_args(ds) else {}),
            )
        for row in ds.iter_rows():
            if row["error"]:
                raise CorpusInputError(str(row["error"]))
            on_done({k: (v.item() if hasattr(v, "item") else v) for k, v in row.items() if k != "error"})
        return workers
    finally:
        if started:
            ray.shutdown()
