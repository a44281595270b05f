"""The build's fingerprints: embeddings of fixed probe sentences per variant, computed by the runtime
and recorded in the manifest (with the sentences), so that ``onnxembed verify`` can recompute them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import Embedder, Reranker, load_manifest
from ..manifest import Manifest

__all__ = ["FINGERPRINT_PAIRS", "FINGERPRINT_SENTENCES", "compute_fingerprints"]

FINGERPRINT_SENTENCES: tuple[str, ...] = (
    "A man is playing a guitar.",
    "query: how many people live in London?",
    "passage: Around 9 million people live in London, the capital of the United Kingdom.",
    "Ünïcödé, accents and 中文 are tokenized with the same vocabulary 🙂",
    "ok",
)

# A cross-encoder's probe: the query against each sentence (the passage's answer among them).
FINGERPRINT_PAIRS: tuple[tuple[str, str], ...] = tuple((FINGERPRINT_SENTENCES[1].removeprefix("query: "), s) for s in FINGERPRINT_SENTENCES)


def compute_fingerprints(folder: str | Path) -> dict[str, Any]:
    """Embeddings of :data:`FINGERPRINT_SENTENCES` for every CPU-runnable variant of a folder
    (a cross-encoder's: the logits of :data:`FINGERPRINT_PAIRS`)."""
    m = load_manifest(folder)
    if m.task == "rerank":
        return _rerank_fingerprints(m)
    out: dict[str, Any] = {"sentences": list(FINGERPRINT_SENTENCES), "variants": {}}
    for name, v in m.variants.items():
        if v.device == "cuda":
            out["variants"][name] = {"skipped": "needs the CUDA provider"}
            continue
        emb = Embedder.load(m.root, variant=name, providers=["CPUExecutionProvider"], verify=False)
        out["variants"][name] = {"embeddings": [[round(float(x), 6) for x in row] for row in emb.encode(list(FINGERPRINT_SENTENCES))]}
    return out


def _rerank_fingerprints(m: Manifest) -> dict[str, Any]:
    out: dict[str, Any] = {"pairs": [list(p) for p in FINGERPRINT_PAIRS], "variants": {}}
    for name, v in m.variants.items():
        if v.device == "cuda":
            out["variants"][name] = {"skipped": "needs the CUDA provider"}
            continue
        rr = Reranker.load(m.root, variant=name, providers=["CPUExecutionProvider"], verify=False)
        logits = rr.score(list(FINGERPRINT_PAIRS), raw=True).reshape(len(FINGERPRINT_PAIRS), -1)
        out["variants"][name] = {"logits": [[round(float(x), 6) for x in row] for row in logits]}
    return out
