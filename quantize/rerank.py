"""int8 for cross-encoders: calibration pairs, and gates that judge scores and rankings, not embeddings.

A cross-encoder scores a (query, document) pair; what int8 must keep is the order of those scores.
The recipe is the encoders' (static QDQ, SmoothQuant, row scales, sensitivity-ranked fp32 fallback,
see :mod:`onnxembed.quantize.api`); what changes is what goes through the graph and what judges it.

Calibration pairs (from the calibration texts that :mod:`onnxembed.quantize.data` resolves, held-out
texts already removed): the source's own scored pairs when it has them (STS-B dev and SICK, in the
default mix), else consecutive texts paired (a user's ``.txt`` corpus); then one pair in four gets a
long document instead (a text, then the next :data:`LONG_DOC_TEXTS` texts joined), because reranked
documents are longer than STS sentences and the static scales must cover the later positions too.

Gates (defaults :data:`RERANK_GATES`; ``models.yaml`` ``gates`` overrides them per model):

* ``score_spearman``: Spearman between the fp32 and the int8 scores over the held-out pairs
  (STS-B test by default, the ``--gate-data`` pairs, or the shipped set's pairs) >= 0.995;
* ``ndcg10_drop``: nDCG@10 of reranking the Cranfield top-100 with int8 at most 0.5 % (relative)
  below fp32. The top-100 is BM25's (k1 0.9, b 0.4; numpy, no model: the build has no bi-encoder at hand), for :data:`RETRIEVAL_QUERIES`
  evenly spaced queries: the candidates only have to be the same for both files. Cranfield is read from
  the local data folder (``data_dir``, ``$ONNXEMBED_DATA``, ``shared/data``: ``retrieval/cranfield/``
  in the BEIR layout). Neither the hub nor the shipped set has it: without a local copy this gate is
  not run, the build says so in one line and the manifest records ``ndcg10_skipped`` with the reason;
* ``batch_stability``: 1 - the largest change of a probe pair's score between scored alone and scored
  in a padded batch of long pairs, over the fp32 scores' range on the held-out pairs; >= 0.999.

Every figure is computed for any model; only a trained model makes them mean something (random
weights score all pairs alike), so the tests judge them on a fine-tuned cross-encoder.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import numpy.typing as npt

from .data import QuantData, TextSet, _local_folder, texts_sha256
from .gates import failed_gates, spearman

__all__ = ["RERANK_GATES", "PairEncoder", "RerankReference", "calibration_pairs", "check_rerank_gates", "heldout_pairs", "rerank_gate_figures",
           "load_retrieval", "measure_rerank", "rerank_reference"]

logger = logging.getLogger(__name__)

RERANK_GATES: dict[str, float] = {
    "score_spearman": 0.995,  # fp32 vs int8 scores, held-out pairs
    "ndcg10_drop": 0.005,  # relative: (fp32 - int8) / fp32, Cranfield top-100 reranked
    "batch_stability": 0.999,  # 1 - max |score alone - score in a padded batch| / fp32 score range
}
LONG_DOC_EVERY = 4
LONG_DOC_TEXTS = 8
RETRIEVAL_QUERIES = 50  # of Cranfield's 225, evenly spaced: 5,000 pairs per file judged
CANDIDATES = 100
STABILITY_PROBES = 16
STABILITY_BATCH = 8
LOCAL_RETRIEVAL = "retrieval/cranfield"
Pair = tuple[str, str]


class PairEncoder:
    """The build's reference harness for pairs: the checkpoint's transformers tokenizer, ``longest_first``
    truncation, any onnxruntime session; ``embed`` returns the first logit (the relevance score)."""

    def __init__(self, enc: Any) -> None:
        self.enc = enc
        self.batch_size = enc.batch_size

    def batches(self, pairs: Sequence[Pair]) -> list[npt.NDArray[np.int64]]:
        order = np.argsort([len(a) + len(b) for a, b in pairs], kind="stable")
        return [order[i: i + self.batch_size] for i in range(0, len(pairs), self.batch_size)]

    def feeds(self, pairs: Sequence[Pair]) -> dict[str, npt.NDArray[np.int64]]:
        return self.enc.pair_feeds(list(pairs))

    def embed(self, session: Any, pairs: Sequence[Pair], on_batch: Callable[[int], None] | None = None) -> npt.NDArray[np.float64]:
        """The logit of label 0 per pair, in input order (float64); ``on_batch(n)`` after each batch of ``n`` pairs."""
        out = np.zeros(len(pairs), np.float64)
        for idx in self.batches(pairs):
            out[idx] = session.run(None, self.feeds([pairs[i] for i in idx]))[0][:, 0]
            if on_batch is not None:
                on_batch(len(idx))
        return out


# --- pairs ---------------------------------------------------------------------------------------


def _paired(s: TextSet) -> list[Pair]:
    if s.pairs:
        return list(dict.fromkeys((a, b) for _, a, b in s.pairs if a.strip() and b.strip()))
    t = s.texts
    return [(t[i], t[i + 1]) for i in range(0, len(t) - 1, 2)]


def calibration_pairs(calib: TextSet) -> list[Pair]:
    """The calibration pairs (see the module docstring): scored pairs or consecutive texts, one in
    :data:`LONG_DOC_EVERY` with a long document."""
    pairs = _paired(calib)
    t = calib.texts
    out = []
    for i, (a, b) in enumerate(pairs):
        if i % LONG_DOC_EVERY == LONG_DOC_EVERY - 1 and len(t) > LONG_DOC_TEXTS:
            j = (i * 7) % (len(t) - LONG_DOC_TEXTS)
            b = " ".join(t[j: j + LONG_DOC_TEXTS])
        out.append((a, b))
    return out


def heldout_pairs(data: QuantData) -> tuple[list[Pair], list[float] | None, dict[str, Any]]:
    """The held-out pairs of the Spearman gate, their gold labels (None without), and what they are."""
    src = data.sts if data.sts is not None else data.heldout
    if src is None:
        raise ValueError("no held-out texts (the gates were skipped)")
    if src.pairs:
        rows = list(dict.fromkeys((a, b, s) for s, a, b in src.pairs))
        return [(a, b) for a, b, _ in rows], [s for _, _, s in rows], src.describe()
    return _paired(src), None, {**src.describe(), "paired": "consecutive texts"}


# --- retrieval (Cranfield) -----------------------------------------------------------------------


@dataclass
class Retrieval:
    """Queries with their BM25 top-:data:`CANDIDATES` documents and graded judgements."""

    queries: list[str]
    candidates: list[list[str]]  # document ids per query, BM25 order
    docs: dict[str, str]
    qrels: list[dict[str, float]]  # per query: document id -> gain
    info: dict[str, Any] = field(default_factory=dict)

    def pairs(self) -> list[Pair]:
        return [(q, self.docs[d]) for q, cands in zip(self.queries, self.candidates) for d in cands]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


_WORD = re.compile(r"\w+", re.UNICODE)


def _bm25_top(queries: list[str], docs: list[str], k: int, k1: float = 0.9, b: float = 0.4) -> list[list[int]]:
    toks = [Counter(_WORD.findall(d.lower())) for d in docs]
    lens = np.array([sum(c.values()) for c in toks], np.float64)
    avg = float(lens.mean()) if len(lens) else 1.0
    df = Counter(w for c in toks for w in c)
    n = len(docs)
    out = []
    for q in queries:
        s = np.zeros(n, np.float64)
        for w in set(_WORD.findall(q.lower())):
            if w not in df:
                continue
            idf = math.log(1 + (n - df[w] + 0.5) / (df[w] + 0.5))
            tf = np.array([c.get(w, 0) for c in toks], np.float64)
            s += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * lens / avg))
        out.append(list(np.argsort(-s, kind="stable")[:k]))
    return out


def load_retrieval(data_dir: str | Path | None = None) -> tuple[Retrieval | None, str]:
    """Cranfield from the local data folder and its BM25 top-100, or (None, why it is not there)."""
    try:
        local = _local_folder(data_dir)
    except ValueError as e:
        return None, str(e)
    if local is None:
        return None, ("no local data folder (data_dir, $ONNXEMBED_DATA, shared/data) and neither the Hugging Face hub nor the "
                      "shipped set holds a retrieval set")
    root = local[0] / LOCAL_RETRIEVAL
    names = ("corpus.jsonl", "queries.jsonl", "qrels.tsv")
    if not all((root / f).is_file() for f in names):
        return None, f"{local[1]} folder {local[0]} has no {LOCAL_RETRIEVAL}/{{{','.join(names)}}} (BEIR layout)"
    corpus = _jsonl(root / "corpus.jsonl")
    ids = [str(d["_id"]) for d in corpus]
    texts = [(d.get("title", "") + ". " + d["text"]).strip() if d.get("title") and d["title"] not in d["text"] else d["text"] for d in corpus]
    judged: dict[str, dict[str, float]] = {}
    for line in (root / "qrels.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        q, d, s = line.split("\t")
        if float(s) > 0:
            judged.setdefault(q, {})[d] = float(s)
    queries = [q for q in _jsonl(root / "queries.jsonl") if str(q["_id"]) in judged]
    step = max(1, len(queries) // RETRIEVAL_QUERIES)
    queries = queries[::step][:RETRIEVAL_QUERIES]
    top = _bm25_top([q["text"] for q in queries], texts, CANDIDATES)
    from .textfiles import _sha256_file

    info = {"source": f"{local[1]}:{root.resolve()}", "queries": len(queries), "candidates": CANDIDATES,
            "first_stage": "BM25 (k1 0.9, b 0.4) over each document (its title prepended when the text does not start with it)", "documents": len(ids),
            "files": {f: _sha256_file(root / f) for f in names}}
    return Retrieval([q["text"] for q in queries], [[ids[i] for i in t] for t in top], dict(zip(ids, texts)),
                     [judged[str(q["_id"])] for q in queries], info), ""


def ndcg_at(scores: npt.NDArray[np.float64], r: Retrieval, k: int = 10) -> float:
    """Mean nDCG@k of the candidates reordered by ``scores`` (one per candidate, query-major)."""
    total, i = 0.0, 0
    for cands, rel in zip(r.candidates, r.qrels):
        s = scores[i: i + len(cands)]
        i += len(cands)
        order = np.argsort(-s, kind="stable")[:k]
        dcg = sum(rel.get(cands[j], 0.0) / math.log2(rank + 2) for rank, j in enumerate(order))
        ideal = sum(g / math.log2(rank + 2) for rank, g in enumerate(sorted(rel.values(), reverse=True)[:k]))
        total += dcg / ideal if ideal else 0.0
    return total / max(1, len(r.candidates))


# --- reference and gates -------------------------------------------------------------------------


@dataclass
class RerankReference:
    """What the fp32 cross-encoder gives on the gate data (computed once per build)."""

    pairs: list[Pair]
    labels: list[float] | None
    scores: npt.NDArray[np.float64]
    retrieval: Retrieval | None
    retrieval_skipped: str
    retrieval_scores: npt.NDArray[np.float64] | None
    probes: list[Pair]
    fillers: list[Pair]
    data: dict[str, Any]

    @property
    def judged(self) -> int:
        """How many pairs :func:`measure_rerank` scores with the candidate file (its progress total)."""
        return len(self.pairs) + (len(self.retrieval.pairs()) if self.retrieval is not None else 0)


def rerank_reference(fp32_session: Any, penc: PairEncoder, data: QuantData, data_dir: str | Path | None = None) -> RerankReference:
    """Score the gate data with the fp32 file once."""
    pairs, labels, described = heldout_pairs(data)
    retrieval, why = load_retrieval(data_dir)
    if retrieval is None:
        logger.warning("reranker int8: the Cranfield nDCG@10 gate is NOT run: %s", why)
    longest = sorted({b for _, b in pairs}, key=len, reverse=True)
    fillers = [(pairs[i][0], " ".join(longest[i:: STABILITY_BATCH - 1][:40])) for i in range(STABILITY_BATCH - 1)]
    probes = pairs[:: max(1, len(pairs) // STABILITY_PROBES)][:STABILITY_PROBES]
    return RerankReference(
        pairs=pairs, labels=labels, scores=penc.embed(fp32_session, pairs), retrieval=retrieval, retrieval_skipped=why,
        retrieval_scores=penc.embed(fp32_session, retrieval.pairs()) if retrieval is not None else None,
        probes=probes, fillers=fillers,
        data={"heldout_pairs": {**described, "pairs_sha256": texts_sha256([f"{a}\t{b}" for a, b in pairs])},
              "retrieval": retrieval.info if retrieval is not None else None},
    )


def _stability(session: Any, penc: PairEncoder, ref: RerankReference) -> float:
    span = float(ref.scores.max() - ref.scores.min()) or 1.0
    worst = 0.0
    for p in ref.probes:
        alone = penc.embed(session, [p])[0]
        batched = float(session.run(None, penc.feeds([p, *ref.fillers]))[0][0, 0])
        worst = max(worst, abs(alone - batched))
    return 1.0 - worst / span


def measure_rerank(session: Any, penc: PairEncoder, ref: RerankReference, on_batch: Callable[[int], None] | None = None) -> dict[str, Any]:
    """The gate figures of a candidate session against the fp32 reference; ``on_batch(n)`` after each batch
    of ``n`` pairs scored (:attr:`RerankReference.judged` in all)."""
    got = penc.embed(session, ref.pairs, on_batch)
    acc: dict[str, Any] = {
        "gates_run": True,
        "task": "rerank",
        "heldout_pairs": len(ref.pairs),
        "score_spearman": round(spearman(got, ref.scores) / 100, 6),
        "max_abs_logit_diff": round(float(np.abs(got - ref.scores).max()), 6),
        "gold_spearman": round(spearman(np.asarray(ref.labels), got), 3) if ref.labels else None,
        "gold_spearman_fp32": round(spearman(np.asarray(ref.labels), ref.scores), 3) if ref.labels else None,
    }
    if ref.retrieval is not None and ref.retrieval_scores is not None:
        n32 = ndcg_at(ref.retrieval_scores, ref.retrieval)
        n8 = ndcg_at(penc.embed(session, ref.retrieval.pairs(), on_batch), ref.retrieval)
        acc.update(ndcg10=round(n8, 6), ndcg10_fp32=round(n32, 6), ndcg10_drop=round((n32 - n8) / n32 if n32 else 0.0, 6),
                   ndcg10_first_stage=round(ndcg_at(-np.tile(np.arange(CANDIDATES, dtype=np.float64), len(ref.retrieval.queries)),
                                                    ref.retrieval), 6))
    else:
        acc.update(ndcg10=None, ndcg10_fp32=None, ndcg10_drop=None, ndcg10_skipped=f"not run: {ref.retrieval_skipped}")
    acc["batch_stability"] = round(_stability(session, penc, ref), 7)
    acc["data"] = ref.data
    return acc


def rerank_gate_figures(acc: dict[str, Any]) -> dict[str, tuple[float | None, str]]:
    """A cross-encoder's int8 figures per gate, with the rule each must meet (no Cranfield: nDCG not judged)."""
    return {"score_spearman": (acc["score_spearman"], ">="), "ndcg10_drop": (acc.get("ndcg10_drop"), "<="),
            "batch_stability": (acc["batch_stability"], ">=")}


def check_rerank_gates(acc: dict[str, Any], gates: dict[str, float]) -> list[str]:
    """One line per failing gate (empty when all hold)."""
    lines = {
        "score_spearman": lambda: (f"Spearman of int8 vs fp32 scores {acc['score_spearman']:.5f} < {gates['score_spearman']} on "
                                   f"{acc['heldout_pairs']} held-out pairs"),
        "ndcg10_drop": lambda: (f"Cranfield nDCG@10 {acc['ndcg10']:.4f} is {100 * acc['ndcg10_drop']:.2f} % below fp32 "
                                f"{acc['ndcg10_fp32']:.4f} (allowed {100 * gates['ndcg10_drop']:.2f} %)"),
        "batch_stability": lambda: (f"batch stability: a pair's score alone vs in a padded batch {acc['batch_stability']:.6f} "
                                    f"< {gates['batch_stability']}"),
    }
    return [lines[g]() for g in failed_gates(rerank_gate_figures(acc), gates)]


def dev_score(sel: npt.NDArray[np.float64], ref: npt.NDArray[np.float64]) -> dict[str, float]:
    """The search's figure on the selection pairs: Spearman to fp32 (0..1) and the largest logit change."""
    return {"score_spearman": round(spearman(sel, ref) / 100, 6), "max_abs_logit_diff": round(float(np.abs(sel - ref).max()), 6)}
