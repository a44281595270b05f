"""Model families beyond BERT's uncased vocabulary, at tiny size with their real tokenizer files, through the
offline hub path: XLM-RoBERTa bodies (multilingual-e5-base, bge-m3), BERT bodies with XLM-R's 250k Unigram
vocabulary (multilingual-e5-small, paraphrase-multilingual-MiniLM-L12-v2), the CLS-pooled BERT entries
(bge-*-en-v1.5, snowflake-arctic-embed-s) and ModernBERT (gte-modernbert-base, with a trained
ModernBERT-style tokenizer: no real one is on the package index). Each: the export validated against PyTorch, the fusions counted
where they apply, and the torch-free Embedder against sentence-transformers (torch) on multilingual text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import build_one, run_cli

LAYERS = 2  # tiny_spec's default
FAMILY_MODELS = ("multilingual-e5-small", "paraphrase-multilingual-minilm-l12-v2", "bge-m3", "bge-small-en-v1.5", "gte-modernbert-base")
CLS_BERT = ("bge-small-en-v1.5", "bge-base-en-v1.5", "snowflake-arctic-embed-s")

PROBES = [
    "Zwei Männer spielen Fußball auf einer grünen Wiese.", "Le café est très chaud ce matin, n'est-ce pas ?",
    "Быстрая коричневая лиса прыгает через ленивую собаку.", "Η γρήγορη καφέ αλεπού πηδά πάνω από το τεμπέλικο σκυλί.",
    "الثعلب البني السريع يقفز فوق الكلب الكسول.", "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।",
    "敏捷的棕色狐狸跳过了懒狗。", "素早い茶色の狐がのろまな犬を飛び越える。", "빠른 갈색 여우가 게으른 개를 뛰어넘는다.",
    "I love this 😀👍🏽 and 👨‍👩‍👧‍👦 too!", "ﬁnancial ﬂow of ＦＵＬＬＷＩＤＴＨ text", "e\u0301 combining a\u0308 marks",
    "zero\u200bwidth\u00a0nbsp", "ok", "Ünïcödé " * 200,  # the last one is past 512 tokens: truncated
]


def _sentence_transformers(folder: Path):  # type: ignore[no-untyped-def]
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu")


def _parity(artifact: Path, checkpoint: Path, texts: list[str], **encode: str) -> float:
    """min cosine of the torch-free fp32 Embedder against sentence-transformers (torch) on the checkpoint."""
    from onnxembed import Embedder

    ours = Embedder.load(artifact, variant="fp32").encode(texts, **encode)
    st_kw = {"prompt_name": encode["kind"]} if "kind" in encode else {}
    ref = _sentence_transformers(checkpoint).encode(texts, batch_size=8, convert_to_numpy=True, **st_kw)
    assert ours.shape == ref.shape
    cos = (ours * ref).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
    return float(cos.min())


@pytest.fixture(scope="module")
def xlmr_base(tmp_path_factory: pytest.TempPathFactory, tiny_registry: dict, tiny_build_data: list[str]) -> Path:
    return build_one(tmp_path_factory, tiny_registry, "multilingual-e5-base", data=tiny_build_data)  # every variant


@pytest.fixture(scope="module")
def family_builds(tmp_path_factory: pytest.TempPathFactory, tiny_registry: dict) -> Path:
    """One ``build --all --variants fp32,O2`` over the other XLM-R-vocabulary entries and one CLS-pooled BERT."""
    from onnxembed.export.registry import dump_registry, load_registry

    root = tmp_path_factory.mktemp("families")
    reg = {k: v for k, v in load_registry(tiny_registry["registry"]).items() if k in FAMILY_MODELS}
    registry = dump_registry(reg, root / "models.yaml")
    run_cli("build", "--all", "--variants", "fp32,O2", "--out", str(root / "out"), "--registry", str(registry),
            env=tiny_registry["env"], timeout=1800)
    return root / "out"


def test_xlmr_body_builds_fuses_and_quantizes(xlmr_base: Path) -> None:
    from onnxembed import load_manifest

    m = load_manifest(xlmr_base)
    assert m.raw["architecture"] == "xlm-roberta" and m.input_names == ("input_ids", "attention_mask")
    assert m.raw["vocab_size"] == 250002  # the real XLM-R tokenizer.json
    fp32 = m.raw["variants"]["fp32"]["validation"]
    assert fp32["max_abs_diff"] <= 1e-4 and fp32["min_cosine"] >= 0.99999
    assert set(m.variants) == {"fp32", "O1", "O2", "O3", "O4", "qint8_avx512_vnni", "quint8_avx2", "qint8_arm64"}
    for level in ("O2", "O3", "O4"):  # XLM-R is BERT-shaped: attention, residual + LayerNorm and bias + GELU fuse
        ops = m.raw["variants"][level]["fused_ops"]
        assert ops["Attention"] == LAYERS and ops["SkipLayerNormalization"] == 2 * LAYERS
        assert ops.get("BiasGelu" if level == "O2" else "FastGelu") == LAYERS
        assert m.raw["variants"][level]["validation"]["min_cosine"] >= (0.9999 if level == "O4" else 0.99999)
    assert "Attention" not in m.raw["variants"]["O1"]["fused_ops"]
    for v in ("qint8_avx512_vnni", "quint8_avx2"):
        q = m.raw["variants"][v]
        assert q["recipe"]["quantized_nodes"] == 6 * LAYERS  # q, k, v, output, and the two FFN projections per layer
        assert q["accuracy"]["gates_passed"] is True


def test_xlmr_embedder_matches_sentence_transformers_on_padded_batches(xlmr_base: Path, tiny_registry: dict) -> None:
    """Positions start at padding_idx + 1 = 2: a padded batch must give each text what it gets alone."""
    from transformers import AutoTokenizer

    from onnxembed import Embedder

    ck = tiny_registry["checkpoints"]["multilingual-e5-base"]
    assert _parity(xlmr_base, ck, PROBES) >= 0.99999
    emb = Embedder.load(xlmr_base, variant="fp32")
    hf = AutoTokenizer.from_pretrained(str(ck))
    assert emb.tokenize(PROBES).ids == [hf(t, truncation=True, max_length=512)["input_ids"] for t in PROBES]
    batch = emb.encode(PROBES, batch_size=len(PROBES))
    alone = np.concatenate([emb.encode([t]) for t in PROBES])
    assert float(np.abs(batch - alone).max()) < 1e-5
    for v in ("O2", "qint8_avx512_vnni"):
        other = Embedder.load(xlmr_base, variant=v).encode(PROBES)
        assert float((other * batch).sum(1).min()) > (0.99999 if v == "O2" else 0.5)


def test_bert_bodies_with_the_xlmr_vocabulary(family_builds: Path, tiny_registry: dict) -> None:
    from onnxembed import load_manifest

    for name in ("multilingual-e5-small", "paraphrase-multilingual-minilm-l12-v2"):
        m = load_manifest(family_builds / name)
        assert m.raw["architecture"] == "bert" and m.raw["vocab_size"] == 250002
        assert m.input_names == ("input_ids", "attention_mask", "token_type_ids")  # XLM-R's tokenizer gives none: zeros
        assert m.raw["variants"]["fp32"]["validation"]["max_abs_diff"] <= 1e-4
        o2 = m.raw["variants"]["O2"]["fused_ops"]  # a BERT graph: every BERT fusion, the embeddings' included
        assert (o2["EmbedLayerNormalization"], o2["Attention"], o2["SkipLayerNormalization"], o2["BiasGelu"]) == (1, LAYERS, 2 * LAYERS, LAYERS)
        assert _parity(family_builds / name, tiny_registry["checkpoints"][name], PROBES) >= 0.99999
    e5 = load_manifest(family_builds / "multilingual-e5-small")
    assert e5.raw["prefixes"] == {"query": "query: ", "passage": "passage: "}


def test_bge_m3_dense_runs_at_its_own_length(family_builds: Path, tiny_registry: dict) -> None:
    from onnxembed import Embedder, load_manifest

    m = load_manifest(family_builds / "bge-m3")
    assert (m.raw["architecture"], m.pooling, m.normalize, m.raw["max_length"]) == ("xlm-roberta", "cls", True, 8192)
    o2 = m.raw["variants"]["O2"]["fused_ops"]  # XLM-R: no EmbedLayerNormalization (position ids from padding_idx + 1)
    assert (o2.get("EmbedLayerNormalization", 0), o2["Attention"], o2["SkipLayerNormalization"]) == (0, LAYERS, 2 * LAYERS)
    long_text = " ".join(PROBES[:13]) * 12  # ~2,000 tokens: past 512, inside 8,192
    texts = PROBES + [long_text]
    assert _parity(family_builds / "bge-m3", tiny_registry["checkpoints"]["bge-m3"], texts) >= 0.99999
    tokens = Embedder.load(family_builds / "bge-m3", variant="fp32").tokenize([long_text])
    assert 512 < tokens.counts[0] < 8192


def test_modernbert_local_and_global_attention(family_builds: Path, tiny_registry: dict) -> None:
    """Layer 0 attends globally, layer 1 within 128-token windows: texts past 64 tokens see the difference."""
    from onnxembed import Embedder, load_manifest

    m = load_manifest(family_builds / "gte-modernbert-base")
    assert (m.raw["architecture"], m.input_names, m.pooling, m.raw["max_length"]) == ("modernbert", ("input_ids", "attention_mask"), "cls", 8192)
    assert m.raw["variants"]["fp32"]["validation"]["max_abs_diff"] <= 1e-4
    o2 = m.raw["variants"]["O2"]["fused_ops"]  # rotary + windowed attention: no Attention fusion; residual + LayerNorm and GELU fuse
    assert (o2.get("Attention", 0), o2["SkipLayerNormalization"], o2["Gelu"]) == (0, 2 * LAYERS, LAYERS)
    long_text = " ".join(PROBES[:13]) * 6
    assert Embedder.load(family_builds / "gte-modernbert-base", variant="fp32").tokenize([long_text]).counts[0] > 300
    assert _parity(family_builds / "gte-modernbert-base", tiny_registry["checkpoints"]["gte-modernbert-base"], PROBES + [long_text]) >= 0.99999


@pytest.mark.parametrize("name", CLS_BERT)
def test_cls_pooled_bert_entries_agree_with_their_checkpoint_files(name: str, tiny_registry: dict) -> None:
    """The registry's CLS pooling, normalization and query instruction match the checkpoint's
    sentence-transformers files (the build's cross-check; no export needed)."""
    from onnxembed.export.checkpoint import read_sentence_transformers_config
    from onnxembed.export.registry import load_registry

    spec = load_registry(tiny_registry["registry"])[name]
    st = read_sentence_transformers_config(tiny_registry["checkpoints"][name])
    assert (spec.pooling, spec.normalize, st["pooling"], st["normalize"]) == ("cls", True, "cls", True)
    assert spec.prompts["query"] == spec.prefixes["query"] == st["prompts"]["query"] == "Represent this sentence for searching relevant passages: "


def test_cls_pooled_bert_with_its_query_prompt_matches_sentence_transformers(family_builds: Path, tiny_registry: dict) -> None:
    ck = tiny_registry["checkpoints"]["bge-small-en-v1.5"]
    texts = ["how do I export a model to ONNX?", "A man is playing a guitar.", "ok"]
    assert _parity(family_builds / "bge-small-en-v1.5", ck, texts, kind="query") >= 0.99999
    assert _parity(family_builds / "bge-small-en-v1.5", ck, texts) >= 0.99999


def test_an_unsupported_architecture_fails_before_the_export(tmp_path: Path) -> None:
    import json

    from onnxembed.export import build_model

    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 32}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"model_type 'gpt2' is not supported; onnxembed exports bert, distilbert, mpnet, xlm-roberta, roberta, modernbert, qwen3"):
        build_model(str(tmp_path / "ck"), tmp_path / "out", variants="fp32")
    assert not (tmp_path / "out").exists()


def test_a_registry_tokenizer_that_is_not_the_checkpoints_fails_the_cross_check(tiny_registry: dict) -> None:
    import dataclasses

    from onnxembed.export.checkpoint import _cross_check
    from onnxembed.export.registry import RegistryError, load_registry

    spec = load_registry(tiny_registry["registry"])["multilingual-e5-small"]
    _cross_check(spec, tiny_registry["checkpoints"]["multilingual-e5-small"])  # agrees: no error
    with pytest.raises(RegistryError, match=r"tokenizer: registry 'bert-uncased' \(a WordPiece model\), checkpoint tokenizer.json has a Unigram model"):
        _cross_check(dataclasses.replace(spec, tokenizer="bert-uncased"), tiny_registry["checkpoints"]["multilingual-e5-small"])
