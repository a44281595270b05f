"""One shard, start to finish: read its texts, embed them with the runtime's public stages, write one
parquet file that appears only when complete. What every executor's worker runs."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from onnxembed import Embedder

from .errors import CorpusMismatchError
from .inputs import Columns, Shard, read_shard
from .storage import Location, locate

__all__ = ["STORAGES", "WorkSpec", "embed_shard", "load_embedder", "peak_rss_mb", "read_shard_stats", "to_table"]

logger = logging.getLogger(__name__)

STORAGES = ("float32", "float16", "int8")
META_KEY = b"onnxembed.corpus"


@dataclass(frozen=True)
class WorkSpec:
    """Everything a worker needs besides the shard (picklable, sent once per worker)."""

    model_dir: str
    variant: str
    sha256: str
    out: str
    columns: Columns
    kind: str | None
    storage: str
    batch_size: int
    max_tokens: int | None | str
    dimensions: int | None = None
    max_length: int | None = None  # tokens per text (None: the model's window)


def load_embedder(spec: WorkSpec, threads: int | None) -> Embedder:
    """The job's model file on this worker; refuses a folder whose file differs from the driver's.

    Batches run one at a time (``parallel=1``): the job's parallelism is its worker processes, one per
    core by default, and a second batch in flight per worker would only oversubscribe the cores."""
    emb = Embedder.load(spec.model_dir, variant=spec.variant, threads=threads, parallel=1, max_length=spec.max_length)
    found = emb.manifest.variants[emb.variant].sha256
    if found != spec.sha256:
        raise CorpusMismatchError(
            f"{spec.model_dir} on this worker holds {spec.variant} with sha256 {found[:12]}.., the job uses "
            f"{spec.sha256[:12]}..; every worker must see the same artifact folder (shared storage or the same image)"
        )
    return emb


def embed_shard(emb: Embedder, spec: WorkSpec, shard: Shard) -> dict[str, Any]:
    """Read, embed and write one shard; returns its stats (``index``, ``texts``, ``tokens``,
    ``truncated``, ``seconds``, and the worker's ``peak_rss_mb`` so far)."""
    t0 = time.perf_counter()
    ids, texts = read_shard(shard, spec.columns)
    tokens = emb.tokenize(texts, kind=spec.kind)
    vecs = emb.embed_tokens(tokens, spec.batch_size, max_tokens=spec.max_tokens, dimensions=spec.dimensions)
    stats = {"index": shard.index, "texts": len(texts), "tokens": tokens.n_tokens, "truncated": tokens.n_truncated}
    table = to_table(ids, vecs, spec.storage).replace_schema_metadata({META_KEY: json.dumps(stats).encode()})
    _write_atomic(locate(spec.out).child(shard.name), table)
    return {**stats, "seconds": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB (0.0 where ``resource`` is missing)."""
    try:
        import resource
    except ImportError:  # pragma: no cover (Windows)
        return 0.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def to_table(ids: list[str], vecs: npt.NDArray[np.float32], storage: str) -> pa.Table:
    """``id`` (string) and ``embedding`` (fixed-size list of the model's dim). ``int8`` storage adds
    ``scale`` (float32 per row): ``embedding * scale`` approximates the vector (max |error| scale/2)."""
    n, dim = vecs.shape
    cols: dict[str, pa.Array] = {"id": pa.array(ids, pa.string())}
    if storage == "float32":
        flat = vecs.reshape(-1)
    elif storage == "float16":
        flat = vecs.astype(np.float16).reshape(-1)
    elif storage == "int8":
        scale = np.abs(vecs).max(axis=1) / 127.0
        scale[scale == 0] = 1.0
        flat = np.clip(np.rint(vecs / scale[:, None]), -127, 127).astype(np.int8).reshape(-1)
        cols["scale"] = pa.array(scale.astype(np.float32))
    else:
        raise ValueError(f"storage must be one of {STORAGES}, found {storage!r}")
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(flat), dim)
    return pa.table({"id": cols["id"], "embedding": embedding, **({"scale": cols["scale"]} if "scale" in cols else {})})


def _write_atomic(target: Location, table: pa.Table) -> None:
    # No dictionary: ids are unique and a dictionary over floats is pure cost (measured on
    # MiniLM shards: 40 % larger and 30x slower to write than plain zstd).
    target.write_atomic(lambda tmp: pq.write_table(table, tmp.path, filesystem=tmp.fs, use_dictionary=False, compression="zstd"))


def read_shard_stats(loc: Location) -> dict[str, Any] | None:
    """The stats a finished shard file carries in its footer, or None if the file is unreadable."""
    try:
        meta = pq.read_metadata(loc.path, filesystem=loc.fs)
        stats = json.loads(meta.metadata[META_KEY])
    except (OSError, pa.ArrowInvalid, KeyError, TypeError, ValueError) as e:
        logger.warning("%s: unreadable shard file (%s); it will be embedded again", loc, e)
        return None
    stats["rows"] = meta.num_rows
    return stats
