"""Named prompts and Matryoshka dimensions: registry -> manifest -> Embedder, checked against numpy on the
full-size output (truncate, then L2-normalize) and against sentence-transformers' own prompt handling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import QWEN_STYLE


def test_manifest_records_prompts_and_dimensions(matryoshka: Path) -> None:
    m = json.loads((matryoshka / "manifest.json").read_text(encoding="utf-8"))
    assert m["dimensions"] == [16, 8] and m["prompts"] == {"query": "query: ", "web": QWEN_STYLE}


def test_dimensions_truncate_then_normalize(matryoshka: Path) -> None:
    from onnxembed import Embedder

    emb = Embedder.load(matryoshka, variant="fp32")
    assert emb.dimensions == (32, 16, 8)
    texts = ["A man is playing a guitar.", "Ein Mann spielt Gitarre.", "x" * 300]
    full = emb.encode(texts)
    raw = emb.embed_batch(emb.tokenize(texts).ids, normalize=False)  # the pooled vectors before normalization
    for d in (16, 8):
        got = emb.encode(texts, dimensions=d)
        want = raw[:, :d] / np.linalg.norm(raw[:, :d], axis=1, keepdims=True)
        assert got.shape == (3, d) and got.dtype == np.float32
        assert float(np.abs(got - want).max()) < 1e-6
        assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
        unnormalized = emb.embed_batch(emb.tokenize(texts).ids, normalize=False, dimensions=d)
        assert float(np.abs(unnormalized - raw[:, :d]).max()) == 0.0  # a model that does not normalize: truncation only
        streamed = np.concatenate(list(emb.encode_iter(iter(texts), dimensions=d, chunk_size=2)))
        assert float(np.abs(streamed - got).max()) < 1e-6
    assert float(np.abs(emb.encode(texts, dimensions=32) - full).max()) < 1e-6
    assert emb.encode([], dimensions=8).shape == (0, 8)
    with pytest.raises(ValueError, match=r"dimensions=12 is not supported .*trained for \[32, 16, 8\]"):
        emb.encode(texts, dimensions=12)
    with pytest.raises(TypeError, match="dimensions must be an int"):
        emb.encode(texts, dimensions=8.0)  # type: ignore[arg-type]


def test_a_model_without_matryoshka_refuses_dimensions(tiny_bert_artifacts: Path) -> None:
    from onnxembed import Embedder

    emb = Embedder.load(tiny_bert_artifacts, variant="fp32")
    with pytest.raises(ValueError, match="not trained for shorter embeddings"):
        emb.encode(["hello"], dimensions=16)
    assert emb.dimensions == (emb.dim,)


def test_named_prompts_and_free_prompts_match_sentence_transformers(matryoshka: Path) -> None:
    from sentence_transformers import SentenceTransformer

    from onnxembed import Embedder

    emb = Embedder.load(matryoshka, variant="fp32")
    st = SentenceTransformer(str(matryoshka), backend="onnx", device="cpu", prompts={"query": "query: ", "web": QWEN_STYLE})
    texts = ["how do I make int8 faster", "what is a sentence embedding"]
    for kind in ("query", "web"):
        ours = emb.encode(texts, kind=kind)
        ref = st.encode(texts, prompt_name=kind, convert_to_numpy=True)
        cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
        assert float(cos.min()) > 0.99999, (kind, cos)
    free = emb.encode(texts, prompt=QWEN_STYLE)
    assert float(np.abs(free - emb.encode(texts, kind="web")).max()) == 0.0
    assert float(np.abs(emb.encode(texts, kind="query") - emb.encode(texts)).max()) > 1e-3  # the prompt changes the vector
    with pytest.raises(ValueError, match="not both"):
        emb.encode(texts, kind="query", prompt="x")
    with pytest.raises(ValueError, match=r"kind must be None or one of \['passage', 'query', 'web'\]"):
        emb.encode(texts, kind="search")
