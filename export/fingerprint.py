"""The build's fingerprints: embeddings of fixed probe sentences per variant, computed by the runtime
and recorded in the manifest (with the sentences), so that ``onnxembed verify`` can recompute them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import Embedder, load_manifest

__all__ = ["FINGERPRINT_SENTENCES", "compute_fingerprints"]

FINGERPRINT_SENTENCES: tuple[str, ...] = (
    "A man is playing a guitar.",
    "query: how many people live in London?",
    "passage: Around 9 million people live in London, the capital of the United Kingdom.",
    "Ünïcödé, accents and 中文 are tokenized with the same vocabulary 🙂",
    "ok",
)


def compute_fingerprints(folder: str | Path) -> dict[str, Any]:
    """Embeddings of :data:`FINGERPRINT_SENTENCES` for every CPU-runnable variant of a folder."""
    m = load_manifest(folder)
    out: dict[str, Any] = {"sentences": list(FINGERPRINT_SENTENCES), "variants": {}}
    for name, v in m.variants.items():
        if v.device == "cuda":
            out["variants"][name] = {"skipped": "needs the CUDA provider"}
            continue
        emb = Embedder.load(m.root, variant=name, providers=["CPUExecutionProvider"], verify=False)
        out["variants"][name] = {"embeddings": [[round(float(x), 6) for x in row] for row in emb.encode(list(FINGERPRINT_SENTENCES))]}
    return out
