"""Embeddings of an artifact folder computed without onnxembed: a reference for the tests.

The Rust ``tokenizers`` library reads the folder's ``tokenizer.json``, a plain onnxruntime session runs the
named ONNX file on the CPU provider, and pooling and normalization are written here in numpy from the
manifest's fields. One text per run, so there is no padding to get wrong.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def onnxruntime_embeddings(folder: Path, file: str, texts: list[str], *, normalize: bool | None = None) -> np.ndarray:
    """float64 embeddings of ``texts`` by ``folder/file``; ``normalize`` None follows the manifest."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["pooling"] == "mean", manifest["pooling"]
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.enable_truncation(manifest["max_length"])
    tok.no_padding()
    session = ort.InferenceSession(str(folder / file), providers=["CPUExecutionProvider"])
    graph_inputs = {i.name for i in session.get_inputs()}
    out = []
    for enc in tok.encode_batch(texts):
        feed = {"input_ids": enc.ids, "attention_mask": enc.attention_mask, "token_type_ids": enc.type_ids}
        feed = {k: np.array([v], dtype=np.int64) for k, v in feed.items() if k in graph_inputs}
        hidden = session.run(None, feed)[0][0].astype(np.float64)
        mask = np.array(enc.attention_mask, dtype=np.float64)[:, None]
        out.append((hidden * mask).sum(0) / mask.sum())
    vecs = np.array(out).reshape(len(texts), -1)
    if manifest["normalize"] if normalize is None else normalize:
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs
