"""A Hugging Face cache holding the default int8 datasets, made from a local STS folder (tests, CI, offline use).

The hub datasets :mod:`onnxembed.quantize.data` reads by default (``mteb/stsbenchmark-sts``,
``mteb/sts12-sts`` .. ``mteb/sts16-sts``) are written into a cache with their real layout (gzipped JSON
lines, one file per split, the MTEB columns), so the normal hub path runs with ``HF_HUB_OFFLINE=1``
and no network, as :func:`onnxembed.export.synthetic.offline_hub` does for models.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

from .calibrate import read_sts
from .data import HUB_CALIBRATION, HUB_CALIBRATION_MIX, HUB_HELDOUT

__all__ = ["put_dataset_in_hf_cache", "offline_data_hub", "LOCAL_FOR_HUB"]

FAKE_COMMIT = "0" * 39 + "2"  # the cache's snapshot name; not a hub revision

# Which local file stands in for which hub file.
LOCAL_FOR_HUB: dict[tuple[str, str], str | tuple[str, ...]] = {
    ("mteb/stsbenchmark-sts", "validation.jsonl.gz"): "sts/stsb-dev.tsv",
    ("mteb/sickr-sts", "test.jsonl.gz"): ("sts/sick-r-train-trial.tsv", "sts/sick-r.tsv"),  # MTEB's SICK-R: all 9,927 pairs
    ("mteb/stsbenchmark-sts", "test.jsonl.gz"): "sts/stsb-test.tsv",
    ("mteb/sts12-sts", "test.jsonl.gz"): "sts/sts12.tsv",
    ("mteb/sts13-sts", "test.jsonl.gz"): "sts/sts13.tsv",
    ("mteb/sts14-sts", "test.jsonl.gz"): "sts/sts14.tsv",
    ("mteb/sts15-sts", "test.jsonl.gz"): "sts/sts15.tsv",
    ("mteb/sts16-sts", "test.jsonl.gz"): "sts/sts16.tsv",
}


def put_dataset_in_hf_cache(files: dict[str, bytes], repo_id: str, cache_dir: str | Path) -> Path:
    """Write ``files`` (name -> bytes) as dataset ``repo_id`` at revision ``main`` into a hub cache; returns the snapshot."""
    repo = Path(cache_dir) / ("datasets--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / FAKE_COMMIT
    snap.mkdir(parents=True, exist_ok=True)
    for name, blob in files.items():
        (snap / name).write_bytes(blob)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(FAKE_COMMIT, encoding="utf-8")
    return snap


def _jsonl_gz(rows: list[dict[str, object]]) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        for r in rows:
            gz.write((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8"))
    return buf.getvalue()


def offline_data_hub(source: str | Path, cache_dir: str | Path, *, rows: int | None = None) -> dict[str, str]:
    """Put the default hub datasets into ``cache_dir``, made from the local STS folder ``source``.

    Args:
        source: a folder in the ``sts/*.tsv`` layout (e.g. ``shared/data``).
        cache_dir: what ``HF_HUB_CACHE`` will point to.
        rows: keep the first ``rows`` pairs of each file (None: all).

    Returns:
        The environment for offline use: ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE=1``.
    """
    per_repo: dict[str, dict[str, bytes]] = {}
    for repo, filename, split in (*HUB_CALIBRATION, *HUB_CALIBRATION_MIX, *HUB_HELDOUT):
        local = LOCAL_FOR_HUB[(repo, filename)]
        pairs = [p for f in ((local,) if isinstance(local, str) else local) for p in read_sts(Path(source) / f)][:rows]
        if repo == "mteb/stsbenchmark-sts":  # that dataset's columns
            recs = [{"split": split, "genre": "", "dataset": "", "year": "", "sid": f"{i:04d}", "score": s, "sentence1": a, "sentence2": b}
                    for i, (s, a, b) in enumerate(pairs)]
        else:
            recs = [{"split": split, "sentence1": a, "sentence2": b, "score": s} for s, a, b in pairs]
        per_repo.setdefault(repo, {"README.md": b"---\nlanguage:\n- en\n---\n"})[filename] = _jsonl_gz(recs)
    for repo, files in per_repo.items():
        put_dataset_in_hf_cache(files, repo, cache_dir)
    return {"HF_HUB_CACHE": str(cache_dir), "HF_HUB_OFFLINE": "1"}
