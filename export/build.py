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
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ..catalog import ALL_VARIANTS, FP32, INT8_VARIANTS, variant_file
from ..manifest import FORMAT_VERSION, MANIFEST_NAME, load_manifest, sha256_file, variant_entry
from ..verify import verify_artifacts
from .checkpoint import Checkpoint, resolve_checkpoint, weights_sha256
from ..quantize.onnx_files import data_files
from .onnx_export import export_onnx
from .registry import ModelSpec, load_registry
from .st_files import write_model_files
from .validate import validate_against_torch

__all__ = ["build_model", "build_models", "BuildResult", "ALL_VARIANTS", "tool_versions", "inputs_key"]

logger = logging.getLogger(__name__)

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


def _base_manifest(ck: Checkpoint, spec: ModelSpec, weights: str) -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION,
        "name": spec.name,
        "source": {**ck.source, "weights_sha256": weights, "alt_sources": list(spec.alt_sources)},
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
        "prompts": dict(spec.prompts),
        "dimensions": list(spec.dimensions),
        "input_names": list(spec.input_names),
        "output_name": "logits" if spec.task == "rerank" else "last_hidden_state",
        "vocab_size": 0,
        "tokenizer": "tokenizer.json",
        "gates": dict(spec.gates),
        **({"task": "rerank", "num_labels": spec.num_labels, "activation": spec.activation} if spec.task == "rerank" else {}),
        "variants": {},
        "tools": tool_versions(),
    }


@dataclass
class BuildResult:
    """What one model's build did: ``status`` is ``built``, ``skipped`` (inputs unchanged) or ``failed``.

    ``refused`` holds the int8 variants the build made and its gates refused (their files are not in the
    folder; the manifest keeps the same records under ``refused``): ``{variant: {"failed_gates",
    "failures", "judged_on", "accuracy", ...}}``. A folder with refusals is still published with every
    variant that passed; ``onnxembed build`` then exits with status 3.
    """

    model: str
    out: Path
    status: str
    seconds: float = 0.0
    reason: str = ""
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    refused: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "out": str(self.out), "status": self.status, "seconds": round(self.seconds, 2),
                "reason": self.reason, "variants": self.variants,
                "refused": {v: {k: r[k] for k in ("failed_gates", "failures", "judged_on")} for v, r in self.refused.items()}}


def _source_digest() -> str:
    """sha256 over the stage folders whose code shapes an artifact: the runtime core, export, quantize.

    The command line, the bench engine, the server and the corpus job live in other folders, so
    editing them never invalidates a build.
    """
    import hashlib

    import onnxembed
    import onnxembed.export
    import onnxembed.quantize

    h = hashlib.sha256()
    for pkg in (onnxembed, onnxembed.export, onnxembed.quantize):
        root = Path(pkg.__file__).parent
        for f in sorted(root.glob("*.py")):
            h.update(f"{pkg.__name__}/{f.name}".encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def _data_options(calibration: str | Path | None, gate_data: str | Path | None, skip_gates: bool) -> dict[str, Any]:
    """The int8 data options as the manifest and the inputs key see them (files by path and sha256)."""
    return {"calibration": {"path": str(calibration), "sha256": sha256_file(Path(calibration))} if calibration else None,
            "gate_data": {"path": str(gate_data), "sha256": sha256_file(Path(gate_data))} if gate_data else None,
            "skip_gates": bool(skip_gates)}


def inputs_key(weights_sha256: str, spec: ModelSpec, variants: list[str], opset: int | None, data: dict[str, Any] | None = None,
               external_threshold: int | None = None) -> str:
    """sha256 of everything that determines a build's outputs: weights, registry entry, tools, code, options
    (``external_threshold`` decides which files keep their weights beside them)."""
    import hashlib

    blob = json.dumps(
        {"weights": weights_sha256, "spec": spec.as_dict(), "tools": tool_versions(), "code": _source_digest(),
         "variants": variants, "opset": opset, **({"data": data} if data else {}),
         **({"external_threshold": external_threshold} if external_threshold is not None else {})},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _existing_key(out: Path) -> str | None:
    """The inputs key of a finished onnxembed folder at ``out``, or None if it is not one."""
    try:
        return load_manifest(out).raw.get("build", {}).get("inputs_key")
    except Exception:  # noqa: BLE001 - any unreadable folder is "not ours"
        return None


def _record_files(work: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every non-model file (tokenizer, configs), so verify can check them too."""
    out = {}
    for p in sorted(work.rglob("*")):
        rel = p.relative_to(work).as_posix()
        if p.is_file() and not rel.startswith("onnx/") and rel != MANIFEST_NAME:
            out[rel] = {"sha256": sha256_file(p), "size": p.stat().st_size}
    return out


def _refused(out: Path) -> dict[str, dict[str, Any]]:
    """The int8 variants a finished folder's build refused (manifest ``refused``)."""
    return dict(load_manifest(out).raw.get("refused") or {})


def _say_refused(say: Callable[[str], None], model: str, refused: dict[str, dict[str, Any]]) -> None:
    for v, r in refused.items():
        say(f"{model}: {v} REFUSED by its int8 gates, not published: {'; '.join(r['failures'])}")


def _left_out_refused(out: Path, weights: str, spec: ModelSpec, wanted: list[str], opset: int | None, calibration: str | Path | None,
                      gate_data: str | Path | None, skip_gates: bool, external_threshold: int | None = None) -> list[str]:
    """The variants ``out``'s build refused when this request is that build's without them (same inputs
    otherwise): leaving a refused variant out then finds the folder up to date instead of rebuilding it."""
    raw = load_manifest(out).raw
    refused, asked = list(raw.get("refused") or {}), list((raw.get("build") or {}).get("variants") or [])
    if not refused or [v for v in asked if v not in refused] != wanted:
        return []
    same = (inputs_key(weights, spec, asked, opset, _int8_data_options(asked, calibration, gate_data, skip_gates), external_threshold)
            == raw["build"]["inputs_key"])
    return refused if same else []


def _variant_summary(out: Path) -> dict[str, dict[str, Any]]:
    m = load_manifest(out)
    summary = {}
    for v in m.variants.values():
        row: dict[str, Any] = {"file": v.file, "size": v.size, "sha256": v.sha256}
        for key in ("validation", "accuracy", "fused_ops"):
            if key in v.info:
                row[key] = v.info[key]
        summary[v.name] = row
    return summary


def build_model(
    model: str,
    out: str | Path,
    *,
    variants: Iterable[str] | str | None = None,
    force: bool = False,
    revision: str | None = None,
    opset: int | None = None,
    registry: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    calibration: str | Path | None = None,
    gate_data: str | Path | None = None,
    skip_gates: bool = False,
    external_threshold: int | None = None,
) -> BuildResult:
    """Build an artifact folder: fp32 ONNX validated against PyTorch, then the requested variants.

    Everything is written into a hidden temporary folder beside ``out`` and renamed at the end, with
    ``manifest.json`` written last: an interrupted build never leaves a folder that looks complete.
    An existing onnxembed folder built from the same inputs (weights, registry entry, tool versions,
    onnxembed's code, options) is left as it is (status ``skipped``); one built from other inputs is
    rebuilt. A folder that is not an onnxembed build is replaced only with ``force``.

    An int8 variant that fails its accuracy gates does not discard the rest: the folder is published
    with fp32 and every variant that passed, the refused file is left out, and the manifest records the
    refusal under ``refused`` with its figures. A re-run with the same inputs is up to date and reports
    the same refusals (``BuildResult.refused``); ``force`` rebuilds.

    Args:
        model: registry name (``models.yaml``), local checkpoint folder, hub id, or ``modelscope:ORG/NAME``.
        out: the artifact folder to create.
        variants: ``"all"``/None, or a list / comma-separated string of ``fp32``, ``O1``..``O4``,
            ``qint8_avx512_vnni``, ``quint8_avx2``, ``qint8_arm64``.
        force: rebuild even when up to date, and replace a folder that is not an onnxembed build.
        revision: hub revision overriding the registry's.
        opset: ONNX opset for the export (None: the exporter's default).
        registry: another ``models.yaml`` to resolve registry names with (None: the packaged one).
        progress: called with a short message as each stage starts.
        calibration: a file of int8 calibration texts (``--calibration``; ``.txt``, ``.jsonl``, ``.parquet``).
        gate_data: a file of held-out texts or labelled pairs for the int8 gates (``--gate-data``).
        skip_gates: write int8 files without judging them (``--skip-gates``); the manifest says so.
            Where texts come from otherwise: :mod:`onnxembed.quantize.data`.
        external_threshold: a model file whose weights pass this many bytes keeps them in
            ``<file>_data`` beside it (default: under protobuf's 2 GB limit; see :mod:`onnxembed.quantize.onnx_files`).

    Returns:
        A :class:`BuildResult` (``status`` built or skipped; ``refused`` the int8 variants its gates
        refused). Any other failure raises and writes nothing.

    >>> build_model("all-minilm-l6-v2", "artifacts/all-minilm-l6-v2", variants="fp32").status  # doctest: +SKIP
    'built'
    """
    say = progress or (lambda msg: logger.info("%s", msg))
    out = Path(out)
    wanted = _normalize_variants(variants)
    data_opts = _int8_data_options(wanted, calibration, gate_data, skip_gates)
    existing = _check_out(out, force)
    started = time.perf_counter()
    say(f"{model}: resolving checkpoint")
    ck = resolve_checkpoint(model, revision=revision, registry=load_registry(registry))
    if ck.spec.task == "rerank":
        _check_rerank_variants(ck.spec, wanted, variants is None or variants == "all", say)
        data_opts = _int8_data_options(wanted, calibration, gate_data, skip_gates)
    if variants is None or variants == "all":  # the default set leaves out what the registry says fails this model
        for v, why in ck.spec.skip_variants.items():
            if v in wanted:
                wanted.remove(v)
                say(f"{model}: {v} not built by default ({why}); name it in --variants to build it anyway")
    weights = weights_sha256(ck.path)
    key = inputs_key(weights, ck.spec, wanted, opset, data_opts, external_threshold)
    left_out = (_left_out_refused(out, weights, ck.spec, wanted, opset, calibration, gate_data, skip_gates, external_threshold)
                if existing not in (None, key) else [])
    if (existing == key or left_out) and not force:
        damaged = verify_artifacts(out, run=False).problems  # sizes and sha256 of every recorded file
        if not damaged:
            refused = {} if left_out else _refused(out)
            say(f"{model}: up to date (inputs unchanged), skipped" + (f"; its build refused {', '.join(refused)}" if refused else "")
                + (f"; the folder holds exactly these variants ({', '.join(left_out)}, refused by the gates, left out)" if left_out else ""))
            _say_refused(say, model, refused)
            return BuildResult(ck.spec.name, out, "skipped", time.perf_counter() - started, "inputs unchanged", _variant_summary(out),
                               refused)
        say(f"{model}: inputs unchanged but {damaged[0]}{f' (and {len(damaged) - 1} more)' if len(damaged) > 1 else ''}: rebuilding")
    if data_opts is not None:
        _say_int8_data(say, model, calibration, gate_data, skip_gates)  # resolves the texts: fails before the export
    work = out.parent / f".{out.name}{_TMP_TAG}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    try:
        manifest = _export_and_validate(ck, weights, work, opset, say, model, external_threshold)
        rest = [v for v in wanted if v != FP32]
        refused: dict[str, dict[str, Any]] = {}
        if rest:
            from .variants import add_variants

            say(f"{model}: building {', '.join(rest)}")
            refused = add_variants(work, manifest, rest, gates=dict(ck.spec.gates), calibration=calibration, gate_data=gate_data,
                                   skip_gates=skip_gates, progress=say,
                                   external_threshold=external_threshold)
            _say_refused(say, model, refused)
        manifest.setdefault("refused", {})
        manifest["files"] = _record_files(work)
        say(f"{model}: recording fingerprints")
        _add_fingerprints(work, manifest)
        manifest["build"] = {
            "variants": wanted,
            "opset": opset,
            "registry": str(registry) if registry else "packaged models.yaml",
            "inputs_key": key,
            **({"int8_data": data_opts} if data_opts else {}),
            "seconds": round(time.perf_counter() - started, 2),
        }
        _publish(work, out, manifest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    seconds = time.perf_counter() - started
    say(f"{model}: built into {out} in {seconds:.1f} s" + (f" without {', '.join(refused)} (refused)" if refused else ""))
    return BuildResult(ck.spec.name, out, "built", seconds, "", _variant_summary(out), refused)


def _int8_data_options(wanted: list[str], calibration: str | Path | None, gate_data: str | Path | None,
                       skip_gates: bool) -> dict[str, Any] | None:
    """The int8 data options for the inputs key (None when no int8 variant is wanted); resolves no text."""
    if not any(v in INT8_VARIANTS for v in wanted):
        if calibration is not None or gate_data is not None or skip_gates:
            logger.warning("--calibration/--gate-data/--skip-gates apply to int8 variants only; none is requested (%s)", ",".join(wanted))
        return None
    return _data_options(calibration, gate_data, skip_gates)


def _say_int8_data(say: Callable[[str], None], model: str, calibration: str | Path | None, gate_data: str | Path | None,
                   skip_gates: bool) -> None:
    """Resolve the int8 texts once before the export (a missing set fails here, not after minutes of work)
    and say in one line which set calibrates and which judges the gates."""
    from ..quantize.data import resolve_data

    data = resolve_data(calibration=calibration, gate_data=gate_data, skip_gates=skip_gates)

    def short(source: str) -> str:  # the shipped set by its name; several hub files as the first and a count
        if source.startswith("shipped"):
            return source.split(": ")[0]
        parts = source.split("+")
        return parts[0] + (f" (+{len(parts) - 1} more)" if len(parts) > 1 else "")

    line = f"{model}: int8 calibration on {short(data.calibration.source)} ({len(data.calibration.texts)} texts)"
    if data.heldout is None:
        line += "; gates NOT run (--skip-gates)"
    else:
        pairs = f", {len(data.sts.pairs)} scored pairs" if data.sts is not None else ", no scored pairs"
        line += f"; gates judged on {short(data.heldout.source)} ({len(data.heldout.texts)} sentences{pairs})"
    say(line)


def _check_rerank_variants(spec: ModelSpec, wanted: list[str], default: bool, say: Callable[[str], None]) -> None:
    """A cross-encoder's int8 files are built when named (their gates judge scores and rankings:
    :mod:`onnxembed.quantize.rerank`); the default set leaves them out, so a plain build stays fast and
    needs no gate data. Only one-label cross-encoders (a relevance score) get int8 files."""
    int8 = [v for v in wanted if v in INT8_VARIANTS]
    if int8 and not default and spec.num_labels != 1:
        raise ValueError(f"{spec.name} is a cross-encoder with {spec.num_labels} labels: int8 variants {int8} are built for one-label "
                         "cross-encoders only (their gates judge one relevance score per pair); build fp32 and O1..O4, e.g. --variants fp32,O2")
    if not default:
        return
    for v in int8:
        wanted.remove(v)
    if int8:
        say(f"{spec.name}: cross-encoder (task rerank): int8 variants are built when named (--variants fp32,quint8_avx2; "
            f"gated on scores and rankings); building {', '.join(wanted)}")


def _check_out(out: Path, force: bool) -> str | None:
    """The inputs key of an existing onnxembed folder at ``out`` (None if there is none); refuses a foreign folder."""
    existing = _existing_key(out) if out.exists() else None
    if out.exists() and existing is None and not force:
        raise FileExistsError(
            f"{out} already exists and is not an onnxembed artifact folder; pass force=True (--force) to "
            "replace it, or choose another --out"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale(out)
    return existing


def _export_and_validate(ck: Checkpoint, weights: str, work: Path, opset: int | None, say: Callable[[str], None], model: str,
                         external_threshold: int | None = None) -> dict[str, Any]:
    """Model files, the fp32 export and its validation against PyTorch: the manifest so far."""
    manifest = _base_manifest(ck, ck.spec, weights)
    write_model_files(ck.path, work, ck.spec)
    tok = json.loads((work / "tokenizer.json").read_text(encoding="utf-8"))
    added = [int(t["id"]) for t in tok.get("added_tokens") or ()]  # Qwen's specials sit past the BPE vocabulary
    manifest["vocab_size"] = max(len(tok["model"]["vocab"]), max(added, default=-1) + 1)
    say(f"{model}: exporting fp32 ONNX")
    t0 = time.perf_counter()
    fp32 = work / variant_file(FP32)
    export_onnx(ck.path, fp32, expected_inputs=ck.spec.input_names, opset=opset, task=ck.spec.task, external_threshold=external_threshold)
    export_s = time.perf_counter() - t0
    if ck.spec.task == "rerank":
        from .validate_rerank import validate_reranker_against_torch
        from .st_files import pair_template

        manifest["pair_template"] = pair_template(work / "tokenizer.json")
        say(f"{model}: cross-encoder ({ck.spec.num_labels} label(s), {ck.spec.activation}): validating logits against PyTorch and CrossEncoder")
        figures = validate_reranker_against_torch(fp32, ck.path, ck.spec)
    else:
        say(f"{model}: validating against PyTorch")
        figures = validate_against_torch(fp32, ck.path, ck.spec)
    manifest["variants"][FP32] = variant_entry(work, variant_file(FP32), "fp32", "any", data_files=data_files(fp32), validation=figures,
                                               export_seconds=round(export_s, 2))
    return manifest


def _publish(work: Path, out: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` last, check the runtime reads it, then swap ``work`` into place."""
    (work / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    load_manifest(work)  # the runtime must be able to read what we wrote
    if out.exists():
        old = out.parent / f".{out.name}{_TMP_TAG}{os.getpid()}-old"
        out.rename(old)
        work.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        work.rename(out)


def _add_fingerprints(work: Path, manifest: dict[str, Any]) -> None:
    """Embeddings of fixed probe sentences per variant, computed by the runtime, for ``onnxembed verify``."""
    manifest_tmp = dict(manifest, build={})
    (work / MANIFEST_NAME).write_text(json.dumps(manifest_tmp), encoding="utf-8")
    try:
        from .fingerprint import compute_fingerprints

        manifest["fingerprint"] = compute_fingerprints(work)
    finally:
        (work / MANIFEST_NAME).unlink()


def build_models(
    models: Iterable[str],
    outroot: str | Path,
    *,
    variants: Iterable[str] | str | None = None,
    force: bool = False,
    fail_fast: bool = False,
    opset: int | None = None,
    registry: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    calibration: str | Path | None = None,
    gate_data: str | Path | None = None,
    skip_gates: bool = False,
    external_threshold: int | None = None,
) -> list[BuildResult]:
    """Build several models into ``outroot/NAME/`` and write ``outroot/build-report.json``.

    One model's failure does not stop the others unless ``fail_fast``; its reason is in the report. A
    model with refused int8 variants is published without them (``refused`` in its report entry; the
    report's ``ok`` is then false).
    """
    outroot = Path(outroot)
    outroot.mkdir(parents=True, exist_ok=True)
    results: list[BuildResult] = []
    for name in models:
        out = outroot / name
        t0 = time.perf_counter()
        try:
            results.append(build_model(name, out, variants=variants, force=force, opset=opset, registry=registry, progress=progress,
                                       calibration=calibration, gate_data=gate_data, skip_gates=skip_gates,
                                       external_threshold=external_threshold))
        except Exception as e:  # noqa: BLE001 - reported per model, the others go on
            results.append(BuildResult(name, out, "failed", time.perf_counter() - t0, f"{type(e).__name__}: {e}"))
            if progress:
                progress(f"{name}: FAILED: {type(e).__name__}: {str(e).splitlines()[0]}")
            if fail_fast:
                break
    report = {
        "tools": tool_versions(),
        "models": [r.as_dict() for r in results],
        "ok": all(r.status != "failed" and not r.refused for r in results),
    }
    tmp = outroot / ".build-report.json.tmp"
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    tmp.replace(outroot / "build-report.json")
    return results
