"""The int8 accuracy gates: held-out cosine to fp32, STS-B test Spearman, batch-composition stability.

The held-out texts and labelled pairs come from :mod:`onnxembed.quantize.data` (by default all unique
sentences of STS-B test and STS12-16, about 21,000; the pairs are STS-B test).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import numpy.typing as npt

from ..pooling import pool, rowwise_cosine
from ..pooling import spearman as rank_correlation
from .reference import ReferenceEncoder
from .data import QuantData, resolve_data

__all__ = ["Reference", "reference_for", "measure", "check_gates", "failed_gates", "gate_figures", "cosines", "spearman", "TAIL_QUANTILE"]

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

    @property
    def judged(self) -> int:
        """How many texts :func:`measure` embeds with the candidate file (its progress total)."""
        return len(self.heldout)


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


def measure(session: Any, enc: ReferenceEncoder, ref: Reference, on_batch: Callable[[int], None] | None = None) -> dict[str, Any]:
    """The gate figures of a quantized session against the fp32 reference; ``on_batch(n)`` after each
    batch of ``n`` held-out sentences embedded (:attr:`Reference.judged` in all).

    ``stsb_spearman`` and ``stsb_spearman_fp32`` are None when there are no labelled pairs.
    """
    emb = enc.embed(session, ref.heldout, on_batch)
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


def failed_gates(figures: dict[str, tuple[float | None, str]], gates: dict[str, float]) -> dict[str, dict[str, Any]]:
    """The gates a file fails: ``{gate: {"figure", "threshold", "rule"}}`` in the order of ``figures``.

    ``figures`` maps a gate to (the measured figure, ``">="`` or ``"<="``); a figure of None (e.g. no
    labelled pairs) is not judged, and NaN fails.
    """
    out: dict[str, dict[str, Any]] = {}
    for gate, (figure, rule) in figures.items():
        if figure is None:
            continue
        ok = figure >= gates[gate] if rule == ">=" else figure <= gates[gate]
        if not ok:
            out[gate] = {"figure": figure, "threshold": gates[gate], "rule": rule}
    return out


def gate_figures(acc: dict[str, Any]) -> dict[str, tuple[float | None, str]]:
    """An encoder's int8 figures per gate, with the rule each must meet (the Spearman gate judges the drop)."""
    drop = round(acc["stsb_spearman_fp32"] - acc["stsb_spearman"], 3) if acc.get("stsb_spearman") is not None else None
    return {"mean_cosine": (acc["mean_cosine"], ">="), "min_cosine": (acc["min_cosine"], ">="),
            "stsb_spearman_drop": (drop, "<="), "batch_stability": (acc["batch_stability_min_cosine"], ">=")}


def check_gates(acc: dict[str, Any], gates: dict[str, float]) -> list[str]:
    """One line per failing gate (empty when all hold)."""
    n = acc["heldout_sentences"]
    lines = {
        "mean_cosine": lambda: f"mean cosine to fp32 {acc['mean_cosine']:.5f} < {gates['mean_cosine']} on {n} held-out sentences",
        "min_cosine": lambda: f"min cosine to fp32 {acc['min_cosine']:.5f} < {gates['min_cosine']} on {n} held-out sentences",
        "stsb_spearman_drop": lambda: (f"STS-B test Spearman {acc['stsb_spearman']:.2f} is {acc['stsb_spearman_fp32'] - acc['stsb_spearman']:.2f} "
                                       f"points below fp32 {acc['stsb_spearman_fp32']:.2f} (allowed {gates['stsb_spearman_drop']})"),
        "batch_stability": lambda: (f"batch stability: min cosine alone vs in a padded batch {acc['batch_stability_min_cosine']:.6f} "
                                    f"< {gates['batch_stability']}"),
    }
    return [lines[g]() for g in failed_gates(gate_figures(acc), gates)]
