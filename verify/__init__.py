"""onnxembed.verify: the engine behind ``onnxembed verify``, re-checking an artifact folder someone downloaded.

Checks that the manifest is well-formed, every recorded file is present with the recorded size and
sha256, and every variant loads and reproduces the embeddings of the probe sentences the build
recorded (its fingerprint, see ``onnxembed.export.fingerprint``), within a tolerance per precision.
Needs only the runtime; a production process does not import it (the Embedder checks its file's
sha256 at load).

>>> from onnxembed.verify import verify_artifacts                # doctest: +SKIP
>>> verify_artifacts("artifacts/all-minilm-l6-v2").ok
True
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onnxembed import ManifestError
from onnxembed.manifest import MANIFEST_NAME, load_manifest, sha256_file
from onnxembed.pooling import rowwise_cosine

__all__ = ["MIN_COSINE", "VerifyReport", "format_report", "report_json", "verify_artifacts"]

logger = logging.getLogger(__name__)

# Minimum cosine between a recorded and a recomputed embedding. int8 kernels differ between CPUs
# (VNNI vs AVX2 vs ARM), fp16 between GPUs, so those get looser bounds than fp32.
MIN_COSINE = {"fp32": 0.99999, "fp16": 0.999, "int8": 0.99}


# A cross-encoder's fingerprint is its logits: the largest |diff| allowed per precision.
MAX_LOGIT_DIFF = {"fp32": 1e-4, "fp16": 2e-2, "int8": 0.1}


def _embed(folder: Path, variant: str, sentences: list[Any]) -> np.ndarray:
    from onnxembed import Embedder, Reranker

    if sentences and isinstance(sentences[0], (list, tuple)):  # a cross-encoder's probe pairs: its logits
        rr = Reranker.load(folder, variant=variant, providers=["CPUExecutionProvider"], verify=False)
        return rr.score([tuple(p) for p in sentences], raw=True).reshape(len(sentences), -1)
    emb = Embedder.load(folder, variant=variant, providers=["CPUExecutionProvider"], verify=False)
    return emb.encode(sentences)


@dataclass
class VerifyReport:
    """One line per problem; ``ok`` when there are none. ``notes`` are facts that are not problems
    (e.g. an int8 file whose accuracy gates were not run at build time)."""

    folder: Path
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    # file -> why its fingerprint was not compared (sha256 still checked), e.g. "needs CUDA"
    not_run: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_artifacts(folder: str | Path, *, variants: list[str] | None = None, run: bool = True) -> VerifyReport:
    """Check an artifact folder against its manifest.

    Args:
        folder: the artifact folder.
        variants: only these variants (default: all).
        run: also load each variant and compare with its recorded fingerprint.

    >>> verify_artifacts("artifacts/all-minilm-l6-v2").ok  # doctest: +SKIP
    True
    """
    root = Path(folder)
    report = VerifyReport(root)
    try:
        m = load_manifest(root)
    except ManifestError as e:
        report.problems.append(f"{root / MANIFEST_NAME}: {e}")
        return report
    for rel, rec in sorted((m.raw.get("files") or {}).items()):
        p = root / rel
        if not p.is_file():
            report.problems.append(f"{rel}: missing")
        elif p.stat().st_size != rec["size"] or sha256_file(p) != rec["sha256"]:
            report.problems.append(f"{rel}: sha256/size differ from the manifest (file altered or corrupt)")
        else:
            report.checked.append(rel)
    names = variants or list(m.variants)
    recorded = m.raw.get("fingerprint") or {}
    fp = recorded.get("variants", {})
    rerank = m.task == "rerank"
    sentences: list[Any] = [tuple(map(str, p)) for p in recorded.get("pairs", [])] if rerank else [str(s) for s in recorded.get("sentences", [])]
    hashed: dict[str, str | None] = {}  # file -> its integrity problem (None: fine); a file shared by variants is hashed once
    embedded: dict[str, Any] = {}  # file -> its embeddings of the probe sentences, computed once
    if variants is None:
        report.notes += [f"{name}: refused by its int8 accuracy gates at build time, not in the folder ({'; '.join(r.get('failures') or [])})"
                         for name, r in m.refused.items() if isinstance(r, dict)]
    for name in names:
        if name not in m.variants:
            report.problems.append(m.refusal(name) or f"variant {name!r}: not in the manifest; present: {sorted(m.variants)}")
            continue
        v = m.variants[name]
        if v.file not in hashed:
            try:
                m.verify_file(name)
                hashed[v.file] = None
            except ManifestError as e:
                hashed[v.file] = str(e)
        if hashed[v.file] is not None:
            report.problems.append(f"{v.file}: {hashed[v.file]}")
            continue
        label = f"{v.file} (as {name})" if v.info.get("same_as") else v.file
        report.checked.append(label)
        acc = v.info.get("accuracy")
        if isinstance(acc, dict) and acc.get("gates_run") is False:
            report.notes.append(f"{v.file}: the int8 accuracy gates were NOT run at build time ({acc.get('reason', 'skip_gates')})")
        if not run:
            report.not_run[label] = "--no-run"
            continue
        rec = fp.get(name)
        if rec is None or not sentences:
            report.problems.append(f"{v.file}: no fingerprint recorded for variant {name!r}")
            continue
        if "skipped" in rec:
            report.not_run[label] = str(rec["skipped"])
            logger.info("%s: fingerprint not checked (%s)", v.file, rec["skipped"])
            continue
        try:
            if v.file not in embedded:
                embedded[v.file] = _embed(root, name, sentences)
            got = embedded[v.file]
        except Exception as e:  # noqa: BLE001 - reported as a problem of this file
            report.problems.append(f"{v.file}: does not load or run: {type(e).__name__}: {e}")
            continue
        want = np.asarray(rec["logits" if rerank else "embeddings"], dtype=np.float32)
        bound = MIN_COSINE.get(v.precision, MIN_COSINE["fp32"])
        if got.shape != want.shape:
            report.problems.append(f"{v.file}: {'logits' if rerank else 'embeddings'} have shape {got.shape}, fingerprint {want.shape}")
            continue
        if rerank:
            diff, lim = float(np.abs(got - want).max()), MAX_LOGIT_DIFF.get(v.precision, MAX_LOGIT_DIFF["fp32"])
            if not diff <= lim:
                report.problems.append(f"{v.file}: fingerprint mismatch, logits max |diff| {diff:.3g} > {lim:g} ({v.precision})")
            continue
        worst = float(rowwise_cosine(got, want).min())
        if worst < bound:
            report.problems.append(f"{v.file}: fingerprint mismatch, min cosine {worst:.6f} < {bound} ({v.precision})")
    return report


def format_report(report: VerifyReport) -> str:
    """Human-readable report, one line per file."""
    partial = f", {len(report.not_run)} of them by sha256 only" if report.not_run else ""
    lines = [f"{report.folder}: {'OK' if report.ok else 'FAILED'} ({len(report.checked)} files checked{partial}, {len(report.problems)} problems)"]
    for c in report.checked:
        why = report.not_run.get(c)
        lines.append(f"  ok      {c}" + (f" (sha256 ok; fingerprint not checked: {why})" if why else ""))
    lines += [f"  NOTE    {n}" for n in report.notes]
    lines += [f"  PROBLEM {p}" for p in report.problems]
    return "\n".join(lines)


def report_json(report: VerifyReport) -> str:
    return json.dumps({"folder": str(report.folder), "ok": report.ok, "checked": report.checked,
                       "fingerprint_not_checked": report.not_run, "notes": report.notes, "problems": report.problems}, indent=2)
