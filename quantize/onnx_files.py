"""ONNX model files with their weights beside them (external data), for models over protobuf's 2 GB limit.

One protobuf message cannot exceed 2 GB, so a full-size Qwen3-Embedding-0.6B (2.4 GB of fp32 weights) or
bge-m3 (2.2 GB) is written as ``model.onnx`` (the graph, a few MB) plus ``model.onnx_data`` (every
initializer over 1 KB, one file), the layout optimum and the Hugging Face Hub use; onnxruntime reads the
data file relative to the model file. Every stage that writes a model file (export, fusion, int8) saves it
with :func:`save_model`, which picks the layout by the weights' size, and the build records each data file
with its sha256 and size in the variant's manifest entry (:func:`data_files`), so ``verify`` and the
Embedder's load-time check cover the weights, not only the graph.

Build-time only (needs onnx); the runtime reads what the manifest records.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .._files import temp_name

__all__ = ["EXTERNAL_DATA_THRESHOLD", "data_files", "model_digest", "save_model", "session_source", "weight_bytes"]

# Weights above this many bytes go to an external data file: under protobuf's 2 GiB limit with room for
# the graph itself. A parameter of every stage that writes a model, so tests force the layout on a tiny model.
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


def weight_bytes(model: Any) -> int:
    """Bytes of the initializers' data of an in-memory ``onnx.ModelProto`` (loaded with its external data)."""
    total = 0
    for t in model.graph.initializer:
        total += len(t.raw_data) if t.HasField("raw_data") else t.ByteSize()
    return total


def data_files(path: str | Path) -> list[str]:
    """The external data files a model file refers to, as paths relative to its folder, in first-use order
    (empty for a self-contained file). Reads the graph only."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    m = onnx.load(str(path), load_external_data=False)
    seen: dict[str, None] = {}
    for t in _get_all_tensors(m):
        if uses_external_data(t):
            loc = ExternalDataInfo(t).location
            if Path(loc).is_absolute() or ".." in Path(loc).parts:
                raise ValueError(f"{path}: tensor {t.name!r} keeps its data at {loc!r}, outside the model's folder")
            seen.setdefault(loc, None)
    return list(seen)


def model_digest(path: str | Path) -> str:
    """sha256 over a model file and its external data files (in order): what identifies its weights."""
    from .._files import sha256_file

    path = Path(path)
    h = hashlib.sha256(sha256_file(path).encode())
    for rel in data_files(path):
        h.update(f"|{rel}|{sha256_file(path.parent / rel)}".encode())
    return h.hexdigest()


def save_model(model: Any, dst: str | Path, *, external_threshold: int | None = None) -> list[str]:
    """Write ``model`` (an ``onnx.ModelProto`` with its weights in memory) to ``dst``, atomically.

    Weights over ``external_threshold`` bytes (default :data:`EXTERNAL_DATA_THRESHOLD`) go to one data
    file ``<dst name>_data`` beside ``dst``; otherwise ``dst`` is self-contained and a stale data file of
    that name is removed. Both files are written into a hidden folder beside ``dst`` and renamed into
    place, data first, so a reader never finds a model whose data is half written. ``model`` keeps its
    weights in memory afterwards.

    Returns:
        The data files written, relative to ``dst``'s folder (empty for a single file).

    >>> save_model(onnx.load("big.onnx"), "onnx/model.onnx", external_threshold=0)  # doctest: +SKIP
    ['model.onnx_data']
    """
    import onnx
    from onnx.external_data_helper import load_external_data_for_model

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    limit = EXTERNAL_DATA_THRESHOLD if external_threshold is None else int(external_threshold)
    external = weight_bytes(model) > limit
    data_name = dst.name + "_data"
    work = dst.parent / temp_name(dst.name)
    work.mkdir()
    try:
        if external:
            onnx.save_model(model, str(work / dst.name), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data_name, size_threshold=1024)
            load_external_data_for_model(model, str(work))  # saving moved the weights out of the proto: put them back
            shutil.copymode(work / dst.name, work / data_name)  # onnx creates it owner-only (0600); readable as the model is
            os.replace(work / data_name, dst.parent / data_name)
        else:
            onnx.save_model(model, str(work / dst.name))
            (dst.parent / data_name).unlink(missing_ok=True)
        os.replace(work / dst.name, dst)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [data_name] if external else []


def session_source(model: Any, keep: list[Any], *, limit: int = EXTERNAL_DATA_THRESHOLD) -> str | bytes:
    """What ``onnxruntime.InferenceSession`` takes for an in-memory model: its bytes, or, past protobuf's
    limit (``limit`` bytes), a temporary file with external data (its folder is appended to ``keep``; it lives as long as
    ``keep`` does, which must outlive the session's creation)."""
    if model.ByteSize() <= limit:
        return model.SerializeToString()
    tmp = tempfile.TemporaryDirectory(prefix="onnxembed-session-")
    keep.append(tmp)
    path = Path(tmp.name) / "model.onnx"
    save_model(model, path, external_threshold=0)
    return str(path)
