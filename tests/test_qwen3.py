"""Qwen3-Embedding's architecture (a causal decoder: grouped-query attention, RMSNorm, RoPE, last-token pooling
of the <|endoftext|> its tokenizer appends) at tiny size with the real Qwen BPE tokenizer.json: the export
(with its position_ids input) validated against PyTorch on a left-padded batch, the onnxruntime fusions that
apply, static QDQ int8 with its gates beside weight-only MatMulNBits int8, and the torch-free Embedder
(right padding) against sentence-transformers (left padding) with the Instruct prompt and Matryoshka sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import build_one

LAYERS = 2  # tiny_spec's default
NAME = "qwen3-embedding-0.6b"
EOS = 151643  # <|endoftext|>
TEXTS = ["A man is playing a guitar.", "Zwei Männer spielen Fußball.", "敏捷的棕色狐狸跳过了懒狗。", "ok",
         "Быстрая коричневая лиса прыгает через ленивую собаку, " * 20, "def f(x):\n\treturn x**2  # 😀"]


@pytest.fixture(scope="module")
def tiny_qwen3(tmp_path_factory: pytest.TempPathFactory, tiny_registry: dict, tiny_build_data: list[str]) -> Path:
    return build_one(tmp_path_factory, tiny_registry, NAME, "fp32,O2,qint8_avx512_vnni", data=tiny_build_data)


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_tiny_qwen3_export_fusions_and_int8(tiny_qwen3: Path) -> None:
    from onnxembed import load_manifest

    m = load_manifest(tiny_qwen3)
    assert m.raw["architecture"] == "qwen3" and m.input_names == ("input_ids", "attention_mask", "position_ids")
    assert (m.pooling, m.normalize, m.raw["vocab_size"], m.dimensions) == ("lasttoken", True, 151646, (16, 8))
    fp32 = m.raw["variants"]["fp32"]["validation"]  # the tokenizer's own left padding, position_ids from the mask
    assert fp32["max_abs_diff"] <= 1e-4 and fp32["min_cosine"] >= 0.99999
    o2 = m.raw["variants"]["O2"]["fused_ops"]
    # onnxruntime's own fusions: RMSNorm (input, post-attention, q and k norms per layer, + the final one)
    # and SiLU; the BERT Attention/SkipLayerNorm patterns match nothing in a decoder.
    assert o2["SimplifiedLayerNormalization"] == 4 * LAYERS + 1 and o2["QuickGelu"] == LAYERS
    assert not {"Attention", "GroupQueryAttention", "SkipLayerNormalization"} & set(o2)
    q = m.raw["variants"]["qint8_avx512_vnni"]
    assert q["recipe"]["quantized_nodes"] == 7 * LAYERS  # q, k, v, o, gate, up, down per layer
    assert q["accuracy"]["gates_passed"] is True


def test_eos_is_appended_and_pooled_under_left_and_right_padding(tiny_qwen3: Path) -> None:
    import onnxruntime as ort

    from onnxembed import Embedder
    from onnxembed.batching import position_ids
    from onnxembed.pooling import pool

    emb = Embedder.load(tiny_qwen3, variant="fp32")
    ids = emb.tokenize(TEXTS).ids
    assert all(row[-1] == EOS for row in ids)
    width = max(map(len, ids))
    sess = ort.InferenceSession(str(tiny_qwen3 / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    pooled = {}
    for side in ("left", "right"):
        input_ids = np.full((len(ids), width), EOS, np.int64)
        mask = np.zeros_like(input_ids)
        for i, row in enumerate(ids):
            sl = slice(width - len(row), width) if side == "left" else slice(0, len(row))
            input_ids[i, sl], mask[i, sl] = row, 1
        hidden = sess.run(None, {"input_ids": input_ids, "attention_mask": mask, "position_ids": position_ids(mask)})[0]
        pooled[side] = pool(hidden, mask, "lasttoken", True)
    alone = np.concatenate([emb.encode([t]) for t in TEXTS])
    assert float(np.abs(pooled["left"] - pooled["right"]).max()) < 1e-5
    assert float(np.abs(pooled["right"] - alone).max()) < 1e-5


def test_lasttoken_pooling_matches_sentence_transformers_on_both_sides() -> None:
    import torch
    from sentence_transformers.sentence_transformer.modules import Pooling

    from onnxembed.pooling import lasttoken_pool

    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((3, 5, 4)).astype(np.float32)
    for mask in ([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]]):
        m = np.array(mask)
        ref = Pooling(4, pooling_mode="lasttoken")({"token_embeddings": torch.from_numpy(hidden), "attention_mask": torch.from_numpy(m)})
        assert np.array_equal(lasttoken_pool(hidden, m), ref["sentence_embedding"].numpy())


def test_qwen3_embedder_matches_sentence_transformers_with_prompts_and_dimensions(tiny_qwen3: Path, tiny_registry: dict) -> None:
    from sentence_transformers import SentenceTransformer

    from onnxembed import Embedder

    st = SentenceTransformer(str(tiny_registry["checkpoints"][NAME]), device="cpu")
    assert st.tokenizer.padding_side == "left"
    emb = Embedder.load(tiny_qwen3, variant="fp32")
    ref = st.encode(TEXTS, batch_size=8, convert_to_numpy=True)
    assert float(_cos(emb.encode(TEXTS), ref).min()) >= 0.99999
    ref_q = st.encode(TEXTS, prompt_name="query", batch_size=8, convert_to_numpy=True)
    assert float(_cos(emb.encode(TEXTS, kind="query"), ref_q).min()) >= 0.99999
    task = "Instruct: Given a question, retrieve code that answers it\nQuery:"
    assert float(_cos(emb.encode(TEXTS, prompt=task), st.encode(TEXTS, prompt=task, convert_to_numpy=True)).min()) >= 0.99999
    ours16 = emb.encode(TEXTS, kind="query", dimensions=16)
    assert ours16.shape == (len(TEXTS), 16) and np.allclose(np.linalg.norm(ours16, axis=1), 1.0, atol=1e-6)
    assert float(_cos(ours16, ref_q[:, :16]).min()) >= 0.99999


def test_static_qdq_and_weight_only_int8_differ_in_structure(tiny_qwen3: Path, tmp_path: Path) -> None:
    """Both int8 recipes quantize the same 7 projections per layer: QDQ with fixed activation scales
    (QuantizeLinear in the graph), MatMulNBits with int8 weight blocks and float activations in the graph."""
    import onnxruntime as ort

    from onnxembed import Embedder
    from onnxembed.batching import position_ids
    from onnxembed.export.fusion import fused_op_counts
    from onnxembed.pooling import pool
    from onnxembed.quantize.weight_only import weight_only_int8

    counts = weight_only_int8(tiny_qwen3 / "onnx" / "model.onnx", tmp_path / "model_wint8.onnx")
    assert counts == {"MatMul": fused_op_counts(tiny_qwen3 / "onnx" / "model.onnx")["MatMul"] - 7 * LAYERS, "MatMulNBits": 7 * LAYERS}
    assert "QuantizeLinear" not in fused_op_counts(tmp_path / "model_wint8.onnx")
    qdq = fused_op_counts(tiny_qwen3 / "onnx" / "model_qint8_avx512_vnni.onnx")
    assert qdq["QuantizeLinear"] > 0 and "MatMulNBits" not in qdq
    fp32 = Embedder.load(tiny_qwen3, variant="fp32")
    want = fp32.encode(TEXTS)
    ids = fp32.tokenize(TEXTS).ids
    sess = ort.InferenceSession(str(tmp_path / "model_wint8.onnx"), providers=["CPUExecutionProvider"])
    arrays = fp32.tokenizer.pad(ids, input_names=("input_ids", "attention_mask"))
    hidden = sess.run(None, {**arrays, "position_ids": position_ids(arrays["attention_mask"])})[0]
    assert float(_cos(pool(hidden, arrays["attention_mask"], "lasttoken", True), want).min()) > 0.99


def test_token_budget_gives_each_long_text_a_batch_of_its_own(tiny_qwen3: Path) -> None:
    """Under the CPU provider's default budget (rows x longest <= 1,024) a text of a few thousand tokens
    (Qwen3 reads 32k) runs alone: no short text is padded to its length, and halving batches to fill the
    batches in flight (spread) never pairs it with another."""
    from onnxembed import Embedder
    from onnxembed._session import spread
    from onnxembed.providers import default_max_tokens

    emb = Embedder.load(tiny_qwen3, variant="fp32")
    budget = default_max_tokens(["CPUExecutionProvider"])
    assert emb.max_tokens == budget
    long_a, long_b = " ".join(["guitar"] * 2500), " ".join(["football"] * 3000)  # a few thousand tokens: attention is S x S
    texts = [TEXTS[0], long_a, TEXTS[3], TEXTS[1], long_b, TEXTS[2]]
    toks = emb.tokenize(texts)
    counts = toks.counts
    assert 2 * budget < counts[1] < 4000 and 2 * budget < counts[4] < 4000 and max(counts[i] for i in (0, 2, 3, 5)) < budget // 4
    batches = spread(emb.plan_batches(toks, 32), emb.parallel)
    rows = {int(i): b for b in batches for i in b}
    assert sorted(rows) == list(range(len(texts)))
    assert rows[1].tolist() == [1] and rows[4].tolist() == [4]
    assert all(len(b) * max(counts[int(i)] for i in b) <= budget for b in batches if len(b) > 1)
    together = emb.encode(texts)
    alone = np.concatenate([emb.encode([t]) for t in texts])
    assert float(np.abs(together - alone).max()) < 1e-5
