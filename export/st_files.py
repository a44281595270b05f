"""The sentence-transformers module files of an artifact folder, so it loads with ``backend="onnx"``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .registry import ModelSpec

__all__ = ["pair_template", "write_model_files", "write_sentence_transformers_files"]

_POOLING_KEYS = {
    "mean": "pooling_mode_mean_tokens",
    "cls": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
    "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens",
    "lasttoken": "pooling_mode_lasttoken",
}


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_model_files(checkpoint: Path, workdir: Path, spec: ModelSpec) -> None:
    """Write config.json, the tokenizer files and the sentence-transformers module files into ``workdir``.

    The tokenizer is saved through transformers, so a checkpoint with only ``vocab.txt`` still gets a
    ``tokenizer.json`` (the file the runtime reads).
    """
    from transformers import AutoTokenizer

    shutil.copyfile(checkpoint / "config.json", workdir / "config.json")
    tok = AutoTokenizer.from_pretrained(str(checkpoint))
    if not getattr(tok, "is_fast", False):
        raise ValueError(f"{checkpoint}: no fast tokenizer could be built; onnxembed needs tokenizer.json")
    tok.save_pretrained(str(workdir))
    set_tokenizer_lengths(workdir / "tokenizer.json", spec.max_length)
    if spec.task != "rerank":  # a cross-encoder folder is a plain transformers one: CrossEncoder reads config.json
        write_sentence_transformers_files(workdir, spec)


def pair_template(path: Path) -> str:
    """The pair form of ``tokenizer.json``'s post-processor, e.g. ``[CLS] $A [SEP] $B [SEP]`` (for the manifest)."""
    post = json.loads(path.read_text(encoding="utf-8")).get("post_processor") or {}
    kind = post.get("type")
    if kind == "TemplateProcessing" and post.get("pair"):
        parts = []
        for item in post["pair"]:
            if "SpecialToken" in item:
                parts.append(item["SpecialToken"]["id"])
            else:
                parts.append("$" + item["Sequence"]["id"])
        return " ".join(parts)
    if kind == "BertProcessing":
        cls, sep = post["cls"][0], post["sep"][0]
        return f"{cls} $A {sep} $B {sep}"
    if kind == "RobertaProcessing":
        cls, sep = post["cls"][0], post["sep"][0]
        return f"{cls} $A {sep} {sep} $B {sep}"
    raise ValueError(f"{path}: post_processor {kind!r} has no pair form; a cross-encoder needs one to join query and document")


def set_tokenizer_lengths(path: Path, max_length: int) -> None:
    """Make ``tokenizer.json`` truncate at the model's ``max_length`` and pad to the batch's longest text.

    Hub files often carry another length (all-MiniLM-L6-v2's pads and truncates at 128 while the model
    and sentence-transformers use 256); whoever uses the file with the ``tokenizers`` library must get
    the model's length.
    """
    data = json.loads(path.read_text(encoding="utf-8"))
    trunc = data.get("truncation") or {"direction": "Right", "strategy": "LongestFirst", "stride": 0}
    data["truncation"] = {**trunc, "max_length": int(max_length)}
    pad = data.get("padding")
    if isinstance(pad, dict):
        data["padding"] = {**pad, "strategy": "BatchLongest"}
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def write_sentence_transformers_files(workdir: Path, spec: ModelSpec) -> None:
    """modules.json, sentence_bert_config.json, 1_Pooling/config.json, config_sentence_transformers.json."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if spec.normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (workdir / "2_Normalize").mkdir(exist_ok=True)
    _write_json(workdir / "modules.json", modules)
    _write_json(workdir / "sentence_bert_config.json", {"max_seq_length": spec.max_length, "do_lower_case": False})
    pooling = {"word_embedding_dimension": spec.embedding_dim}
    pooling.update({key: spec.pooling == mode for mode, key in _POOLING_KEYS.items()})
    pooling["pooling_mode_weightedmean_tokens"] = False
    pooling["include_prompt"] = True
    _write_json(workdir / "1_Pooling" / "config.json", pooling)
    prompts = {k: v for k, v in spec.prefixes.items() if v}
    _write_json(
        workdir / "config_sentence_transformers.json",
        {"prompts": prompts, "default_prompt_name": None, "similarity_fn_name": "cosine"},
    )
