"""The tokenizer.json an artifact carries, for a Unigram (XLM-R) and a byte-level BPE (Qwen) model (issue 17,
item 5): written by the export's ``write_model_files`` from a tiny local checkpoint holding the real
tokenizer files, it loads in the Rust library, in onnxembed and in sentence-transformers, truncates at
the model's length there, and gives the ids of the checkpoint's own file.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from onnxembed import Tokenizer

sys.path.insert(0, str(Path(__file__).parent))
import tokenizer_fixtures as fx  # noqa: E402

tokenizers = pytest.importorskip("tokenizers")
pytest.importorskip("transformers")

_XLMR_SPECIALS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>", "cls_token": "<s>",
                  "pad_token": "<pad>", "mask_token": "<mask>"}  # fmt: skip
FAMILIES: dict[str, dict[str, Any]] = {
    # the model's length differs from what the checkpoint's tokenizer_config says, as for real hub files
    "xlmr_unigram": {"max_length": 256, "tokenizer_config": {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 512, **_XLMR_SPECIALS}},
    "qwen_bpe": {"max_length": 1024, "tokenizer_config": {"tokenizer_class": "Qwen2Tokenizer", "model_max_length": 32768,
                                                          "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}},
}  # fmt: skip


def _spec(max_length: int) -> Any:
    from onnxembed.export.registry import ModelSpec

    return ModelSpec(
        name="tiny", source="local", id="tiny", revision="local", architecture="bert", hidden_size=8, num_layers=1, num_heads=2,
        embedding_dim=8, max_length=max_length, pooling="mean", normalize=True, prefixes={"query": "", "passage": ""}, license="unknown",
    )


@pytest.fixture(scope="module", params=list(FAMILIES))
def artifact(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    """(family, the checkpoint's tokenizer.json, an artifact folder's model files written from the checkpoint)."""
    import torch
    from transformers import AutoModel, BertConfig

    from onnxembed.export.st_files import write_model_files

    name, family = request.param, FAMILIES[request.param]
    source = getattr(fx, name)()
    root = tmp_path_factory.mktemp(name)
    checkpoint, out = root / "checkpoint", root / "artifact"
    checkpoint.mkdir()
    out.mkdir()
    torch.manual_seed(0)
    config = BertConfig(vocab_size=Tokenizer.from_file(source).vocab_size, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=family["max_length"])  # fmt: skip
    AutoModel.from_config(config).save_pretrained(str(checkpoint), safe_serialization=True)
    shutil.copyfile(source, checkpoint / "tokenizer.json")
    (checkpoint / "tokenizer_config.json").write_text(json.dumps(family["tokenizer_config"]), encoding="utf-8")
    write_model_files(checkpoint, out, _spec(family["max_length"]))
    return name, source, out


def _texts() -> list[str]:
    texts = fx.corpus(500)
    return texts + ["word " * 2000, "漢字" * 1500]  # past every max_length here


def test_rust_library_reads_the_artifact_file_with_the_models_length(artifact: tuple[str, Path, Path]) -> None:
    name, source, out = artifact
    max_length = FAMILIES[name]["max_length"]
    # the vocabulary is kept to the character, Unigram scores included (transformers saves through the Rust
    # library, and both it and Python's json write the shortest repr, so the rewrite keeps each number)
    model = [json.loads(f.read_text(encoding="utf-8"), parse_float=str)["model"] for f in (source, out / "tokenizer.json")]
    assert (model[0]["vocab"], model[0].get("merges")) == (model[1]["vocab"], model[1].get("merges"))
    ref = tokenizers.Tokenizer.from_file(str(out / "tokenizer.json"))
    assert ref.truncation is not None and ref.truncation["max_length"] == max_length
    texts = _texts()
    truncated = [e.ids for e in ref.encode_batch_fast(texts)]
    assert max(map(len, truncated)) == max_length
    ref.no_truncation()
    original = tokenizers.Tokenizer.from_file(str(source))
    original.no_truncation()
    original.no_padding()
    ours = Tokenizer.from_file(out)
    untruncated = [e.ids for e in ref.encode_batch_fast(texts)]
    assert untruncated == [e.ids for e in original.encode_batch_fast(texts)]  # the checkpoint's ids, unchanged
    assert ours.encode_batch(texts)[0] == untruncated
    assert ours.encode_batch(texts, max_length)[0] == truncated


def test_sentence_transformers_reads_the_artifact_files_with_the_models_length(artifact: tuple[str, Path, Path]) -> None:
    """sentence-transformers (torch backend here: the weights are copied beside the model files) uses the
    artifact's tokenizer files and truncates at the model's length, with the same ids as the Rust library."""
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import SentenceTransformer

    name, _, out = artifact
    max_length = FAMILIES[name]["max_length"]
    folder = out.parent / "with-weights"
    if not folder.exists():
        shutil.copytree(out, folder)
        shutil.copyfile(out.parent / "checkpoint" / "model.safetensors", folder / "model.safetensors")
    model = SentenceTransformer(str(folder), device="cpu")
    assert model.max_seq_length == max_length
    texts = _texts()[-40:]
    features = model.tokenize(texts)
    rows = [ids[mask.bool()].tolist() for ids, mask in zip(features["input_ids"], features["attention_mask"])]
    ref = tokenizers.Tokenizer.from_file(str(out / "tokenizer.json"))
    assert rows == [e.ids for e in ref.encode_batch_fast(texts)]
    assert max(map(len, rows)) == max_length
    assert model.encode(texts[:4]).shape == (4, 8)
