"""``build_model``: checkpoint -> validated artifact folder, written atomically."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from ..manifest import FORMAT_VERSION, MANIFEST_NAME, load_manifest, sha256_file
from .checkpoint import Checkpoint, resolve_checkpoint, weights_sha256
from .onnx_export import export_onnx
from .registry import ModelSpec, load_registry
from .st_files import write_model_files
from .validate import validate_against_torch

__all__ = ["build_model", "ALL_VARIANTS", "tool_versions"]

logger = logging.getLogger(__name__)

FUSED_VARIANTS = ("O1", "O2", "O3", "O4")
INT8_VARIANTS = ("qint8_avx512_vnni", "quint8_avx2", "qint8_arm64")
ALL_VARIANTS = ("fp32",) + FUSED_VARIANTS + INT8_VARIANTS
_TMP_TAG = ".onnxembed-tmp-"
_TOOLS = ("onnxembed", "torch", "transformers", "optimum-onnx", "optimum", "onnx", "onnxruntime", "sentence-transformers")


def tool_versions() -> dict[str, str]:
    """Versions of the packages whose behaviour shapes the artifacts."""
    out = {}
    for name in _TOOLS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _sweep_stale(out: Path) -> None:
    """Remove temp folders of earlier builds of ``out`` whose process is gone (e.g. killed with SIGKILL)."""
    for p in out.parent.glob(f".{out.name}{_TMP_TAG}*"):
        try:
            pid = int(p.name.rsplit("-", 2)[-2])
            os.kill(pid, 0)
            continue  # still running: another build of the same folder
        except ProcessLookupError:
            pass
        except (ValueError, PermissionError):
            continue
        logger.warning("removing %s left by an interrupted build", p)
        shutil.rmtree(p, ignore_errors=True)


def _normalize_variants(variants: Iterable[str] | str | None) -> list[str]:
    if variants is None or variants == "all":
        return list(ALL_VARIANTS)
    if isinstance(variants, str):
        variants = [v.strip() for v in variants.split(",") if v.strip()]
    wanted = list(dict.fromkeys(variants))
    unknown = [v for v in wanted if v not in ALL_VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; known: {list(ALL_VARIANTS)}")
    if "fp32" not in wanted:
        wanted.insert(0, "fp32")  # every other variant is derived from and checked against it
    return [v for v in ALL_VARIANTS if v in wanted]


def _base_manifest(ck: Checkpoint, spec: ModelSpec) -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION,
        "name": spec.name,
        "source": {**ck.source, "weights_sha256": weights_sha256(ck.path), "alt_sources": list(spec.alt_sources)},
        "license": spec.license,
        "architecture": spec.architecture,
        "dim": spec.embedding_dim,
        "hidden_size": spec.hidden_size,
        "num_layers": spec.num_layers,
        "num_heads": spec.num_heads,
        "max_length": spec.max_length,
        "pooling": spec.pooling,
        "normalize": spec.normalize,
        "prefixes": dict(spec.prefixes),
        "input_names": list(spec.input_names),
        "output_name": "last_hidden_state",
        "vocab_size": 0,
        "tokenizer": "tokenizer.json",
        "gates": dict(spec.gates),
        "variants": {},
        "tools": tool_versions(),
    }


def file_entry(workdir: Path, rel: str, precision: str, device: str, **info: Any) -> dict[str, Any]:
    """A manifest variant entry for a file written into ``workdir``."""
    p = workdir / rel
    return {"file": rel, "sha256": sha256_file(p), "size": p.stat().st_size, "precision": precision, "device": device, **info}


def build_model(
    model: str,
    out: str | Path,
    *,
    variants: Iterable[str] | str | None = None,
    force: bool = False,
    revision: str | None = None,
    opset: int | None = None,
    registry: str | Path | None = None,
) -> Path:
    """Build an artifact folder: fp32 ONNX validated against PyTorch, then the requested variants.

    Everything is written into a hidden temporary folder beside ``out`` and renamed at the end, with
    ``manifest.json`` written last: an interrupted build never leaves a folder that looks complete.

    Args:
        model: registry name (``models.yaml``), local checkpoint folder, or hub id.
        out: the artifact folder to create.
        variants: ``"all"``/None, or a list / comma-separated string of ``fp32``, ``O1``..``O4``,
            ``qint8_avx512_vnni``, ``quint8_avx2``, ``qint8_arm64``.
        force: replace an existing ``out``.
        revision: hub revision overriding the registry's.
        opset: ONNX opset for the export (None: the exporter's default).
        registry: another ``models.yaml`` to resolve registry names with (None: the packaged one).

    Returns:
        The finished folder.

    >>> build_model("all-minilm-l6-v2", "artifacts/all-minilm-l6-v2", variants="fp32")  # doctest: +SKIP
    PosixPath('artifacts/all-minilm-l6-v2')
    """
    out = Path(out)
    wanted = _normalize_variants(variants)
    if out.exists() and not force:
        raise FileExistsError(f"{out} already exists; pass force=True (--force) to rebuild it, or choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale(out)
    started = time.perf_counter()
    ck = resolve_checkpoint(model, revision=revision, registry=load_registry(registry))
    spec = ck.spec
    work = out.parent / f".{out.name}{_TMP_TAG}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    try:
        manifest = _base_manifest(ck, spec)
        write_model_files(ck.path, work, spec)
        vocab = json.loads((work / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
        manifest["vocab_size"] = len(vocab)
        t0 = time.perf_counter()
        export_onnx(ck.path, work / "onnx" / "model.onnx", expected_inputs=spec.input_names, opset=opset)
        export_s = time.perf_counter() - t0
        figures = validate_against_torch(work / "onnx" / "model.onnx", ck.path, spec)
        manifest["variants"]["fp32"] = file_entry(
            work, "onnx/model.onnx", "fp32", "any", validation=figures, export_seconds=round(export_s, 2)
        )
        rest = [v for v in wanted if v != "fp32"]
        if rest:
            from .variants import add_variants

            add_variants(work, manifest, rest, gates=dict(spec.gates))
        manifest["build"] = {
            "variants": wanted,
            "opset": opset,
            "registry": str(registry) if registry else "packaged models.yaml",
            "seconds": round(time.perf_counter() - started, 2),
        }
        (work / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        load_manifest(work)  # the runtime must be able to read what we wrote
        if out.exists():
            old = out.parent / f".{out.name}{_TMP_TAG}{os.getpid()}-old"
            out.rename(old)
            work.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    logger.info("built %s into %s in %.1f s", spec.name, out, time.perf_counter() - started)
    return out
