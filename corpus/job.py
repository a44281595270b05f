"""``embed_corpus``: plan the shards, check the output folder, run an executor, write ``_SUCCESS``.

The output folder holds ``part-NNNNN.parquet`` (one per shard, ``id`` and ``embedding``),
``_manifest.json`` (written before any shard: the model file, the inputs with sizes and sha256, the
options, the shard plan) and, once every shard is there, ``_SUCCESS`` (the summary, as JSON). A rerun
with the same model, inputs and options embeds only the shards whose file is missing; any other
rerun is refused with the differences, unless ``overwrite=True``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from os import PathLike
from typing import Any, Callable, Sequence

from onnxembed import Embedder

from .errors import CorpusMismatchError
from .inputs import Columns, InputFile, Shard, plan_inputs
from .local import run_local, usable_cores
from .shards import STORAGES, WorkSpec, read_shard_stats
from .storage import Location, locate

__all__ = ["CorpusSummary", "JobProgress", "embed_corpus", "job_status"]

logger = logging.getLogger(__name__)

FORMAT = "onnxembed-corpus/1"
MANIFEST = "_manifest.json"
SUCCESS = "_SUCCESS"
EXECUTORS = ("local", "ray")
# The sections of the job manifest that decide the output; a rerun must match them all.
_KEYED = ("model", "kind", "inputs", "options")


@dataclass(frozen=True)
class JobProgress:
    """Given to the ``progress`` callback when the job starts and after each shard."""

    shards_done: int
    shards_total: int
    texts_done: int
    texts_total: int
    elapsed: float
    texts_per_second: float
    eta_seconds: float | None


@dataclass(frozen=True)
class CorpusSummary:
    """What ``embed_corpus`` did. Totals cover every shard of the job, skipped ones included;
    ``texts_embedded`` and ``worker_peak_rss_mb`` (the largest worker's peak memory) cover this run."""

    out: str
    model: str
    variant: str
    dim: int
    storage: str
    executor: str
    workers: int
    shards: int
    shards_skipped: int
    texts: int
    texts_embedded: int
    tokens: int
    truncated: int
    wall_seconds: float
    worker_peak_rss_mb: float
    empty_texts: int = 0
    duplicate_ids: int = 0

    @property
    def texts_per_second(self) -> float:
        """Texts embedded by this run per second of wall time."""
        return self.texts_embedded / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "texts_per_second": round(self.texts_per_second, 1)}


def embed_corpus(
    model_dir: str | PathLike[str],
    inputs: str | PathLike[str] | Sequence[str | PathLike[str]],
    out: str | PathLike[str],
    *,
    text_column: str = "text",
    id_column: str | None = None,
    kind: str | None = None,
    dimensions: int | None = None,
    max_length: int | None = None,
    input_format: str = "auto",
    executor: str = "local",
    workers: int | None = None,
    threads: int | None = None,
    ray_address: str | None = None,
    cpus_per_actor: float = 1,
    storage: str = "float32",
    variant: str = "auto",
    batch_size: int = 32,
    max_tokens: int | None | str = "default",
    shard_rows: int = 10_000,
    overwrite: bool = False,
    strict: bool = False,
    progress: Callable[[JobProgress], None] | None = None,
) -> CorpusSummary:
    """Embed every text of ``inputs`` into parquet shards under ``out``; resumable.

    Args:
        model_dir: an artifact folder built by ``onnxembed build`` (on a Ray cluster: visible to every node).
        inputs: files or folders: ``.parquet``, ``.jsonl`` or text (one text per line), local or any
            URI pyarrow opens (``s3://``, ``gs://``).
        out: the output folder (local or URI).
        text_column: the text column (parquet) or field (jsonl).
        id_column: the id column or field (string or integer); None: ids are ``FILE:LINE`` (line
            files, from 1) or ``FILE:ROW`` (parquet, from 0).
        kind: ``"query"``, ``"passage"`` or a prompt name of the manifest puts that text before each input;
            None embeds the text as given.
        dimensions: keep the first ``dimensions`` values of each vector (then normalize again when the
            model normalizes); only the Matryoshka sizes the manifest lists. None: the model's size.
        max_length: tokens per text at most, from 2 to the model's window (None: the window); longer texts
            are truncated and counted. Bounds one long text's memory (``Embedder.load``'s ``max_length``).
        input_format: ``"auto"`` (by suffix; other files are text), ``"parquet"``, ``"jsonl"``, ``"text"``.
        executor: ``"local"`` (worker processes) or ``"ray"`` (Ray actors; the ``ray`` extra).
        workers: local: processes (default: one per core); ray: actors (default: cluster CPUs /
            ``cpus_per_actor``).
        threads: local: onnxruntime threads per worker (default: cores // workers).
        ray_address: the Ray cluster (``"auto"``, ``"ray://head:10001"``); None starts Ray locally.
        cpus_per_actor: CPUs each Ray actor reserves (and its onnxruntime threads).
        storage: ``"float32"``, ``"float16"``, or ``"int8"`` (with a per-row ``scale`` column).
        variant: the model file; ``"auto"`` is resolved once by the driver and used by every worker.
        batch_size, max_tokens: as for ``Embedder.encode``.
        shard_rows: texts per shard (the unit of work, of resumption, and of output files).
        overwrite: remove a previous job's files from ``out`` and start again.
        strict: refuse empty texts (empty or whitespace only) and repeated ids before anything is
            written; without it they are embedded (an empty text as the model's ``[CLS] [SEP]``),
            counted, and reported in the summary and ``_manifest.json`` (``checks``).
        progress: called with a :class:`JobProgress` at the start and after each shard.

    The local executor spawns its workers, so a script that calls this needs the usual
    ``if __name__ == "__main__":`` guard (as with any ``multiprocessing`` code). A KeyboardInterrupt
    (or a SystemExit raised by a signal handler) stops the workers at once and propagates: finished
    shards stay, the shards in progress are dropped, and the same call resumes (see :func:`job_status`).

    Returns:
        A :class:`CorpusSummary`.

    Raises:
        CorpusInputError: a bad input (the message names the file, and the row); nothing is written.
        CorpusMismatchError: ``out`` holds another job's shards (the message lists the differences).
        CorpusOutputError: ``out`` cannot be written (a file, or a folder refusing writes); checked first.
        ImportError: ``executor="ray"`` without ray installed (the message is the pip command).

    >>> embed_corpus("artifacts/all-minilm-l6-v2", "texts.txt", "vectors/").texts  # doctest: +SKIP
    1000
    """
    started = time.monotonic()
    _check_options(executor, storage, shard_rows, workers, threads, cpus_per_actor)
    paths = [str(p) for p in ([inputs] if isinstance(inputs, (str, PathLike)) else inputs)]
    out_loc = locate(out)
    out_loc.check_writable()
    if executor == "ray":
        from .ray_executor import import_ray

        import_ray()  # before any work: a missing extra is the first thing the user hears
    model = _model_entry(model_dir, variant, kind, dimensions, max_length)
    columns = Columns(text_column, id_column)
    files, shards = plan_inputs(paths, columns, shard_rows, input_format, strict=strict)
    job = _job_manifest(model, kind, dimensions, files, columns, storage, shard_rows, shards, strict)
    empty, duplicates = sum(f.empty_texts for f in files), sum(f.duplicate_ids for f in files)
    if empty or duplicates:
        logger.warning("%s: %d empty texts and %d repeated ids, embedded as given (strict=True / --strict refuses them)", out_loc, empty, duplicates)
    _prepare_out(out_loc, job, overwrite)

    done = _finished(out_loc, shards)
    todo = [s for s in shards if s.index not in done]
    logger.info("%s: %d shards, %d finished, %d to embed", out_loc, len(shards), len(done), len(todo))
    spec = WorkSpec(os.path.abspath(model_dir), model["variant"], model["sha256"], out_loc.uri, columns, kind, storage, batch_size, max_tokens, dimensions,
                    max_length)
    tracker = _Tracker(len(shards), len(done), sum(s.texts for s in todo), progress)
    used = 0
    if todo:
        if executor == "local":
            used = min(workers or usable_cores(), len(todo))
            run_local(spec, todo, used, threads or max(1, usable_cores() // used), tracker.shard_done)
        else:
            from .ray_executor import run_ray

            used = run_ray(spec, todo, workers=workers, cpus_per_actor=cpus_per_actor, address=ray_address, on_done=tracker.shard_done)
    all_stats = {**done, **tracker.stats}
    missing = [s.name for s in shards if s.index not in all_stats]
    if missing:  # pragma: no cover (an executor returned without raising)
        raise RuntimeError(f"{out_loc}: {len(missing)} shards were not written ({missing[:3]}...); rerun to finish them")
    summary = CorpusSummary(
        out=str(out_loc), model=model["name"], variant=model["variant"], dim=dimensions or model["dim"], storage=storage,
        executor=executor, workers=used, shards=len(shards), shards_skipped=len(done),
        texts=sum(st["texts"] for st in all_stats.values()), texts_embedded=sum(st["texts"] for st in tracker.stats.values()),
        tokens=sum(st["tokens"] for st in all_stats.values()), truncated=sum(st["truncated"] for st in all_stats.values()),
        wall_seconds=time.monotonic() - started,
        worker_peak_rss_mb=max((float(st.get("peak_rss_mb", 0.0)) for st in tracker.stats.values()), default=0.0),
        empty_texts=empty, duplicate_ids=duplicates,
    )
    out_loc.child(SUCCESS).write_bytes_atomic((json.dumps(summary.as_dict(), indent=2) + "\n").encode())
    return summary


def _check_options(executor: str, storage: str, shard_rows: int, workers: int | None, threads: int | None, cpus: float) -> None:
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, found {executor!r}")
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, found {storage!r}")
    for name, value in (("shard_rows", shard_rows), ("workers", workers), ("threads", threads)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a whole number >= 1, found {value!r}")
    if not cpus > 0:
        raise ValueError(f"cpus_per_actor must be > 0, found {cpus!r}")


def _model_entry(model_dir: str | PathLike[str], variant: str, kind: str | None, dimensions: int | None,
                 max_length: int | None = None) -> dict[str, Any]:
    """Resolve the variant once, here, so every worker runs the same file (and the manifest says which);
    ``kind``, ``dimensions`` and ``max_length`` are checked against the model before any work (ValueError naming the choices)."""
    emb = Embedder.load(model_dir, variant=variant, threads=1, max_length=max_length)
    if kind is not None and kind not in emb.prompts:
        raise ValueError(f"kind must be None or one of {sorted(emb.prompts)} (the prompts of {emb.manifest.name}), found {kind!r}")
    emb.check_dimensions(dimensions)
    m = emb.manifest
    entry = {
        "name": m.name, "variant": emb.variant, "sha256": m.variants[emb.variant].sha256, "dim": emb.dim,
        "normalize": m.normalize, "max_length": emb.max_length, "prefixes": emb.prompts,
    }
    del emb
    return entry


def _job_manifest(
    model: dict[str, Any], kind: str | None, dimensions: int | None, files: list[InputFile], columns: Columns, storage: str, shard_rows: int, shards: list[Shard],
    strict: bool,
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "model": model,
        "kind": kind,
        "prefix": model["prefixes"].get(kind, "") if kind else "",
        "inputs": [asdict(f) for f in files],
        "options": {"text_column": columns.text, "id_column": columns.id, "storage": storage, "shard_rows": shard_rows, "dimensions": dimensions},
        "checks": {"empty_texts": sum(f.empty_texts for f in files), "duplicate_ids": sum(f.duplicate_ids for f in files), "strict": strict},
        "output": {"columns": ["id", "embedding"] + (["scale"] if storage == "int8" else []), "shards": len(shards)},
        "shards": [{"file": s.name, **{k: v for k, v in s.as_dict().items() if k not in ("index", "uri", "file_size")}} for s in shards],
    }


def _prepare_out(out: Location, job: dict[str, Any], overwrite: bool) -> None:
    """Refuse a folder holding another job's files (or clear it with ``overwrite``), then record this job."""
    names = out.listdir()
    ours = [n for n in names if _is_job_file(n)]
    if MANIFEST in names and not overwrite:
        try:
            previous = json.loads(out.child(MANIFEST).read_bytes())
        except ValueError as e:
            raise CorpusMismatchError(f"{out.child(MANIFEST)} is not valid JSON ({e}); pass overwrite=True (--overwrite) to start again") from e
        reasons = _differences(previous, job)
        if reasons:
            raise CorpusMismatchError(
                f"{out} holds another job's shards; refusing to mix:\n  " + "\n  ".join(reasons)
                + "\npass overwrite=True (--overwrite) to start again, or choose another output folder"
            )
    elif names and not overwrite:
        what = f"shard files without {MANIFEST}" if ours else f"other files ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
        raise CorpusMismatchError(f"{out} is not empty and holds {what}; choose an empty or new folder, or pass overwrite=True (--overwrite)")
    if overwrite:
        # _SUCCESS first, the manifest last: a folder cleared halfway never looks complete.
        for name in sorted(ours, key=lambda n: (n != SUCCESS, n == MANIFEST)):
            out.child(name).remove()
    else:
        for name in names:
            if name.startswith(".part-") and ".tmp-" in name:
                out.child(name).remove()  # what a killed run was writing
    out.makedirs()
    if MANIFEST not in out.listdir():
        out.child(MANIFEST).write_bytes_atomic((json.dumps(job, indent=1) + "\n").encode())


def job_status(out: str | PathLike[str]) -> tuple[int, int] | None:
    """``(shards written, shards planned)`` of the job in ``out``, from its ``_manifest.json`` and the
    shard files present (a shard file exists only once complete); None if no job has started there.

    >>> job_status("vectors/")  # doctest: +SKIP
    (3, 10)
    """
    loc = locate(out)
    try:
        names = set(loc.listdir())
        if MANIFEST not in names:
            return None
        planned = [s["file"] for s in json.loads(loc.child(MANIFEST).read_bytes()).get("shards", [])]
    except (OSError, ValueError):
        return None
    return sum(1 for f in planned if f in names), len(planned)


def _is_job_file(name: str) -> bool:
    return name in (MANIFEST, SUCCESS) or (name.startswith("part-") and name.endswith(".parquet")) or (name.startswith(".") and ".tmp-" in name)


def _differences(previous: dict[str, Any], job: dict[str, Any]) -> list[str]:
    """Human-readable reasons why ``previous`` (the folder's job) is not ``job`` (this run)."""
    if previous.get("format") != job["format"]:
        return [f"format: the folder's job is {previous.get('format')!r}, this run writes {job['format']!r}"]
    out: list[str] = []
    for key in ("name", "variant", "sha256", "dim", "normalize", "max_length"):
        a, b = previous.get("model", {}).get(key), job["model"].get(key)
        if a != b:
            out.append(f"model {key}: the folder has {a!r}, this run {b!r}")
    if previous.get("kind") != job["kind"]:
        out.append(f"kind: the folder has {previous.get('kind')!r}, this run {job['kind']!r}")
    for key, b in job["options"].items():
        a = previous.get("options", {}).get(key)
        if a != b:
            out.append(f"option {key}: the folder has {a!r}, this run {b!r}")
    before = {f.get("path"): f for f in previous.get("inputs", [])}
    now = {f["path"]: f for f in job["inputs"]}
    for path in before.keys() - now.keys():
        out.append(f"input {path}: in the folder's job, not in this run")
    for path in now.keys() - before.keys():
        out.append(f"input {path}: new in this run")
    for path in before.keys() & now.keys():
        a, b = before[path], now[path]
        if (a.get("sha256"), a.get("size"), a.get("format")) != (b["sha256"], b["size"], b["format"]):
            out.append(f"input {path}: changed (size {a.get('size')} -> {b['size']}, sha256 {str(a.get('sha256'))[:12]}.. -> {b['sha256'][:12]}..)")
    if not out and list(before) != list(now):
        out.append("inputs: the same files in another order (shards would be numbered differently)")
    return sorted(out)


def _finished(out: Location, shards: list[Shard]) -> dict[int, dict[str, Any]]:
    """Stats of the shards whose file is present and whole (row count as planned)."""
    names = set(out.listdir())
    done: dict[int, dict[str, Any]] = {}
    for s in shards:
        if s.name not in names:
            continue
        stats = read_shard_stats(out.child(s.name))
        if stats is not None and stats.get("rows") == s.texts == stats.get("texts"):
            done[s.index] = stats
        else:
            logger.warning("%s: does not match the plan (%s rows, %d planned); embedding it again", out.child(s.name), stats and stats.get("rows"), s.texts)
    return done


class _Tracker:
    """Counts finished shards and reports progress (texts/s and ETA over this run's work)."""

    def __init__(self, total: int, skipped: int, texts_todo: int, progress: Callable[[JobProgress], None] | None) -> None:
        self.total, self.skipped, self.texts_todo = total, skipped, texts_todo
        self.progress = progress
        self.stats: dict[int, dict[str, Any]] = {}
        self.texts = 0
        self.t0 = time.monotonic()
        self._report()

    def shard_done(self, stats: dict[str, Any]) -> None:
        self.stats[int(stats["index"])] = stats
        self.texts += int(stats["texts"])
        logger.debug("shard %05d: %d texts in %.2fs", stats["index"], stats["texts"], stats.get("seconds", 0.0))
        self._report()

    def _report(self) -> None:
        if self.progress is None:
            return
        elapsed = time.monotonic() - self.t0
        rate = self.texts / elapsed if elapsed > 0 and self.texts else 0.0
        eta = (self.texts_todo - self.texts) / rate if rate else None
        self.progress(JobProgress(self.skipped + len(self.stats), self.total, self.texts, self.texts_todo, elapsed, rate, eta))
