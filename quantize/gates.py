"""The int8 accuracy gates: held-out cosine to fp32, STS-B test Spearman, batch-composition stability.

The held-out texts and labelled pairs come from :mod:`onnxembed.quantize.data` (by default all unique
sentences of STS-B test and STS12-16, about 21,000; the pairs are STS-B test).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..pooling import pool, rowwise_cosine
from ..pooling import spearman as rank_correlation
from .reference import ReferenceEncoder
from .data import QuantData, resolve_data

__all__ = ["Reference", "reference_for", "measure", "check_gates", "cosines", "spearman", "TAIL_QUANTILE"]

logger = logging.getLogger(__name__)

TAIL_QUANTILE = 0.001  # reported as q001_cosine: 0.1 % of held-out texts are below it
STABILITY_PROBES = 8
STABILITY_BATCH = 8


def cosines(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Row-wise cosine similarity, in float64: :func:`onnxembed.pooling.rowwise_cosine`."""
    return rowwise_cosine(a, b)


def spearman(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> float:
    """Spearman rank correlation x100 (the STS convention): :func:`onnxembed.pooling.spearman`."""
    return 100.0 * rank_correlation(x, y)


@dataclass
class Reference:
    """What the fp32 model gives on the evaluation sets (computed once per build, shared by the presets)."""

    heldout: list[str]
    heldout_emb: npt.NDArray[np.float32]
    stsb_rows: list[tuple[float, str, str]]  # empty: no labelled pairs, the Spearman gate is not run
    stsb_spearman: float | None
    stability_probes: list[str]
    stability_fillers: list[str]
    data: dict[str, Any] | None = None  # what judged the gates, for the manifest


def _sts_spearman(session: Any, enc: ReferenceEncoder, rows: list[tuple[float, str, str]], texts: list[str],
                  emb: npt.NDArray[np.float32]) -> float:
    """Spearman of the pairs' cosines; sentences already embedded in ``emb`` (rows of ``texts``) are not
    embedded again (the STS-B test sentences are held-out texts; an embedding does not depend on its batch)."""
    index = {t: i for i, t in enumerate(texts)}
    missing = list(dict.fromkeys(t for _, a, b in rows for t in (a, b) if t not in index))
    if missing:
        index.update({t: len(texts) + i for i, t in enumerate(missing)})
        emb = np.concatenate([emb, enc.embed(session, missing)]) if len(texts) else enc.embed(session, missing)
    a = emb[[index[r[1]] for r in rows]]
    b = emb[[index[r[2]] for r in rows]]
    return spearman(np.array([r[0] for r in rows]), cosines(a, b))


def reference_for(fp32_session: Any, enc: ReferenceEncoder, data: QuantData | Path) -> Reference:
    """Evaluate the fp32 model once: held-out embeddings, STS-B test Spearman, stability texts.

    ``data`` is the build's resolved texts, or a local STS data folder (``sts/*.tsv``).
    """
    if isinstance(data, (str, Path)):
        data = resolve_data(data_dir=data)
    if data.heldout is None:
        raise ValueError("no held-out texts (the gates were skipped); reference_for needs QuantData.heldout")
    held = list(data.heldout.texts)
    rows = list(data.sts.pairs) if data.sts is not None else []
    longest = sorted(held, key=len, reverse=True)
    fillers = [" ".join(longest[i::STABILITY_BATCH - 1]) for i in range(STABILITY_BATCH - 1)]  # each past max_length
    probes = held[:: max(1, len(held) // STABILITY_PROBES)][:STABILITY_PROBES]
    held_emb = enc.embed(fp32_session, held)
    return Reference(
        heldout=held,
        heldout_emb=held_emb,
        stsb_rows=rows,
        stsb_spearman=_sts_spearman(fp32_session, enc, rows, held, held_emb) if rows else None,
        stability_probes=probes,
        stability_fillers=fillers,
        data={"heldout": data.heldout.describe(), "sts_pairs": data.sts.describe() if data.sts is not None else None},
    )


def _stability(session: Any, enc: ReferenceEncoder, ref: Reference) -> float:
    worst = 1.0
    for text in ref.stability_probes:
        alone = enc.embed(session, [text])
        f = enc.feeds([text, *ref.stability_fillers])
        batched = pool(session.run(None, f)[0], f["attention_mask"], enc.pooling, enc.normalize)[:1]
        worst = min(worst, float(cosines(alone, batched)[0]))
    return worst


def measure(session: Any, enc: ReferenceEncoder, ref: Reference) -> dict[str, Any]:
    """The gate figures of a quantized session against the fp32 reference.

    ``stsb_spearman`` and ``stsb_spearman_fp32`` are None when there are no labelled pairs.
    """
    emb = enc.embed(session, ref.heldout)
    cos = cosines(emb, ref.heldout_emb)
    sp = _sts_spearman(session, enc, ref.stsb_rows, ref.heldout, emb) if ref.stsb_rows else None
    return {
        "gates_run": True,
        "heldout_sentences": len(ref.heldout),
        "mean_cosine": round(float(cos.mean()), 6),
        "min_cosine": round(float(cos.min()), 6),
        "q001_cosine": round(float(np.quantile(cos, TAIL_QUANTILE)), 6),
        "stsb_spearman": round(sp, 3) if sp is not None else None,
        "stsb_spearman_fp32": round(ref.stsb_spearman, 3) if ref.stsb_spearman is not None else None,
        "batch_stability_min_cosine": round(_stability(session, enc, ref), 7),
        "data": ref.data,
    }


def check_gates(acc: dict[str, float], gates: dict[str, float]) -> list[str]:
    """One line per failing gate (empty when all hold)."""
    fails = []
    if not acc["mean_cosine"] >= gates["mean_cosine"]:
        fails.append(f"mean cosine to fp32 {acc['mean_cosine']:.5f} < {gates['mean_cosine']} on {acc['heldout_sentences']} held-out sentences")
    if not acc["min_cosine"] >= gates["min_cosine"]:
        fails.append(f"min cosine to fp32 {acc['min_cosine']:.5f} < {gates['min_cosine']} on {acc['heldout_sentences']} held-out sentences")
    drop = acc["stsb_spearman_fp32"] - acc["stsb_spearman"] if acc.get("stsb_spearman") is not None else None
    if drop is not None and not drop <= gates["stsb_spearman_drop"]:
        fails.append(f"STS-B test Spearman {acc['stsb_spearman']:.2f} is {drop:.2f} points below fp32 {acc['stsb_spearman_fp32']:.2f} (allowed {gates['stsb_spearman_drop']})")
    if not acc["batch_stability_min_cosine"] >= gates["batch_stability"]:
        fails.append(f"batch stability: min cosine alone vs in a padded batch {acc['batch_stability_min_cosine']:.6f} < {gates['batch_stability']}")
    return fails
