"""The model registry (``models.yaml``): one validated :class:`ModelSpec` per supported checkpoint."""

from __future__ import annotations

import importlib.resources
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..catalog import ALL_VARIANTS, FP32
from ..pooling import POOLERS
from ..quantize.presets import DEFAULT_GATES
from ..quantize.rerank import RERANK_GATES

__all__ = ["ACTIVATIONS", "TASKS", "ModelSpec", "RegistryError", "load_registry", "dump_registry", "get_spec", "REGISTRY_FILE", "ARCHITECTURES",
           "DECODERS", "TOKENIZERS"]

REGISTRY_FILE = "models.yaml"
REGISTRY_ENV = "ONNXEMBED_REGISTRY"
ARCHITECTURES = ("bert", "distilbert", "mpnet", "xlm-roberta", "roberta", "modernbert", "qwen3")
DECODERS = ("qwen3",)  # causal attention, last-token pooling, position_ids as a graph input
# The tokenizer families (``tokenizer``): the tokenizer.json model type each one has. The build checks the
# checkpoint's tokenizer against the entry, and the synthetic checkpoints take their files from it.
TOKENIZERS: dict[str, str] = {
    "bert-uncased": "WordPiece",  # the 30,522-token uncased BERT vocabulary
    "mpnet": "WordPiece",  # MPNet's 30,527-token WordPiece with <s> A </s>
    "xlm-r": "Unigram",  # XLM-R's 250,002-piece SentencePiece Unigram (Precompiled normalizer, Metaspace)
    "qwen": "BPE",  # Qwen's 151,643-rank byte-level BPE with the Split regex; <|endoftext|> appended
    "modernbert": "BPE",  # ModernBERT's byte-level BPE (OLMo's) with [CLS] A [SEP]; 50,368 embedding rows
}
_DEFAULT_TOKENIZER = {"mpnet": "mpnet", "xlm-roberta": "xlm-r", "roberta": "xlm-r", "qwen3": "qwen", "modernbert": "modernbert"}
# Architectures whose exported graph takes no token_type_ids (optimum's OnnxConfig for them has none).
_NO_TYPE_IDS = ("distilbert", "mpnet", "xlm-roberta", "roberta", "modernbert")
POOLINGS = tuple(POOLERS)
SOURCES = ("hub", "package", "pypi-parts", "modelscope", "local")
GATE_KEYS = tuple(DEFAULT_GATES)
RERANK_GATE_KEYS = tuple(RERANK_GATES)  # a task 'rerank' entry's int8 gates judge scores and rankings

# field -> (type, required)
_FIELDS: dict[str, tuple[type | tuple[type, ...], bool]] = {
    "source": (str, True),
    "id": (str, True),
    "revision": (str, True),
    "package_path": (str, False),
    "parts": (int, False),
    "alt_sources": (list, False),
    "architecture": (str, True),
    "hidden_size": (int, True),
    "num_layers": (int, True),
    "num_heads": (int, True),
    "embedding_dim": (int, True),
    "max_length": (int, True),
    "pooling": (str, True),
    "normalize": (bool, True),
    "prefixes": (dict, True),
    "license": (str, True),
    "gates": (dict, False),
    "prompts": (dict, False),
    "dimensions": (list, False),
    "skip_variants": (dict, False),
    "tokenizer": (str, False),
    "num_kv_heads": (int, False),
    "head_dim": (int, False),
    "task": (str, False),
    "num_labels": (int, False),
    "activation": (str, False),
}
TASKS = ("embed", "rerank")
# What a cross-encoder's scores go through after the logits (sentence-transformers' CrossEncoder.activation_fn).
ACTIVATIONS = ("sigmoid", "identity", "softmax")


class RegistryError(ValueError):
    """``models.yaml`` is malformed, or a model name is not in it."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything that differs between models: the registry entry, or what a checkpoint's files say."""

    name: str
    source: str
    id: str
    revision: str
    architecture: str
    hidden_size: int
    num_layers: int
    num_heads: int
    embedding_dim: int
    max_length: int
    pooling: str
    normalize: bool
    prefixes: dict[str, str]
    license: str
    package_path: str | None = None
    parts: int | None = None  # source pypi-parts: how many split-zip parts (ID-001 .. ID-00N)
    alt_sources: tuple[str, ...] = ()
    gates: dict[str, float] = field(default_factory=dict)
    prompts: dict[str, str] = field(default_factory=dict)  # named prompts (sentence-transformers' "prompts")
    dimensions: tuple[int, ...] = ()  # Matryoshka sizes the model was trained for (besides embedding_dim)
    skip_variants: dict[str, str] = field(default_factory=dict)  # variant -> why the default build leaves it out
    tokenizer: str = ""  # a TOKENIZERS family; "" means the architecture's usual one (see tokenizer_family)
    num_kv_heads: int | None = None  # decoders with grouped-query attention: key/value heads
    head_dim: int | None = None  # decoders whose head size is not hidden_size / num_heads (Qwen3: 128 at 1024 / 16)
    task: str = "embed"  # "embed" (a pooled sentence embedder) or "rerank" (a cross-encoder's logits)
    num_labels: int = 0  # rerank: the classifier's outputs (1 for a relevance score)
    activation: str = ""  # rerank: one of ACTIVATIONS, applied to the logits as CrossEncoder.predict does

    @property
    def tokenizer_family(self) -> str:
        """The entry's ``tokenizer``, or its architecture's usual one (BERT's uncased WordPiece for bert/distilbert)."""
        return self.tokenizer or _DEFAULT_TOKENIZER.get(self.architecture, "bert-uncased")

    @property
    def input_names(self) -> tuple[str, ...]:
        """The inputs the exported graph takes: DistilBERT, MPNet and (XLM-)RoBERTa have no token_type_ids."""
        if self.architecture in DECODERS:
            return ("input_ids", "attention_mask", "position_ids")
        if self.architecture in _NO_TYPE_IDS:
            return ("input_ids", "attention_mask")
        return ("input_ids", "attention_mask", "token_type_ids")

    def as_dict(self) -> dict[str, Any]:
        """The entry as plain data (for the manifest and the build's input key)."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["alt_sources"] = list(self.alt_sources)
        d["dimensions"] = list(self.dimensions)
        return d


def _check_entry(name: str, raw: Any, where: str) -> ModelSpec:
    if not isinstance(raw, dict):
        raise RegistryError(f"{where}: entry {name!r} should be a mapping, found {type(raw).__name__}")
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise RegistryError(f"{where}: entry {name!r} has unknown field(s) {unknown}; known: {sorted(_FIELDS)}")
    for key, (typ, required) in _FIELDS.items():
        if key not in raw:
            if required:
                raise RegistryError(f"{where}: entry {name!r} is missing field {key!r}")
            continue
        val = raw[key]
        if not isinstance(val, typ) or (typ is int and isinstance(val, bool)):
            raise RegistryError(
                f"{where}: entry {name!r} field {key!r} should be {getattr(typ, '__name__', typ)}, "
                f"found {type(val).__name__} {val!r}"
            )
    task = raw.get("task", "embed")
    if task not in TASKS:
        raise RegistryError(f"{where}: entry {name!r} field 'task' is {task!r}; known: {list(TASKS)}")
    poolings = POOLINGS + ("none",) if task == "rerank" else POOLINGS  # a cross-encoder pools inside its graph
    for key, allowed in (("source", SOURCES), ("architecture", ARCHITECTURES), ("pooling", poolings), ("tokenizer", tuple(TOKENIZERS))):
        if key in raw and raw[key] not in allowed:
            raise RegistryError(f"{where}: entry {name!r} field {key!r} is {raw[key]!r}; known: {list(allowed)}")
    for key in ("hidden_size", "num_layers", "num_heads", "embedding_dim", "max_length"):
        if raw[key] <= 0:
            raise RegistryError(f"{where}: entry {name!r} field {key!r} must be positive, found {raw[key]}")
    if raw["hidden_size"] % raw["num_heads"]:
        raise RegistryError(f"{where}: entry {name!r}: hidden_size {raw['hidden_size']} is not a multiple of num_heads {raw['num_heads']}")
    if raw.get("num_kv_heads") is not None and (raw["num_kv_heads"] <= 0 or raw["num_heads"] % raw["num_kv_heads"]):
        raise RegistryError(f"{where}: entry {name!r}: num_kv_heads {raw['num_kv_heads']} must be a positive divisor of num_heads {raw['num_heads']}")
    prefixes = raw["prefixes"]
    if set(prefixes) != {"query", "passage"} or not all(isinstance(v, str) for v in prefixes.values()):
        raise RegistryError(f"{where}: entry {name!r} field 'prefixes' must be {{query: str, passage: str}}, found {prefixes!r}")
    prompts = raw.get("prompts", {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in prompts.items()):
        raise RegistryError(f"{where}: entry {name!r} field 'prompts' must map names to strings, found {prompts!r}")
    dims = raw.get("dimensions", [])
    if not all(isinstance(d, int) and not isinstance(d, bool) and 0 < d <= raw["embedding_dim"] for d in dims):
        raise RegistryError(f"{where}: entry {name!r} field 'dimensions' must list ints from 1 to embedding_dim "
                            f"{raw['embedding_dim']}, found {dims!r}")
    skip = raw.get("skip_variants", {})
    if not all(k in ALL_VARIANTS and k != FP32 and isinstance(v, str) and v for k, v in skip.items()):
        raise RegistryError(f"{where}: entry {name!r} field 'skip_variants' must map variant names (not fp32) to the reason, "
                            f"found {skip!r}; variants: {list(ALL_VARIANTS)}")
    if task == "rerank" and (raw.get("num_labels", 0) < 1 or raw.get("activation") not in ACTIVATIONS):
        raise RegistryError(f"{where}: entry {name!r} has task 'rerank' but no 'num_labels' (>= 1) or no 'activation' "
                            f"(one of {list(ACTIVATIONS)}, as sentence-transformers' CrossEncoder applies it)")
    if task == "embed" and ("num_labels" in raw or "activation" in raw):
        raise RegistryError(f"{where}: entry {name!r}: 'num_labels' and 'activation' belong to task 'rerank' entries only")
    if raw["source"] == "pypi-parts" and ("parts" not in raw or "package_path" not in raw or raw["parts"] < 1):
        raise RegistryError(f"{where}: entry {name!r} has source 'pypi-parts' but no 'parts' (>= 1) or no 'package_path' (the folder in the zip)")
    if raw["source"] == "package" and "package_path" not in raw:
        raise RegistryError(f"{where}: entry {name!r} has source 'package' but no 'package_path' (import_name/folder)")
    gates = raw.get("gates", {})
    keys = RERANK_GATE_KEYS if task == "rerank" else GATE_KEYS
    bad = sorted(set(gates) - set(keys))
    if bad or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in gates.values()):
        raise RegistryError(f"{where}: entry {name!r} (task {task}) field 'gates' has unknown keys {bad} or non-numbers; known: {list(keys)}")
    return ModelSpec(
        name=name,
        source=raw["source"],
        id=raw["id"],
        revision=raw["revision"],
        architecture=raw["architecture"],
        hidden_size=raw["hidden_size"],
        num_layers=raw["num_layers"],
        num_heads=raw["num_heads"],
        embedding_dim=raw["embedding_dim"],
        max_length=raw["max_length"],
        pooling=raw["pooling"],
        normalize=raw["normalize"],
        prefixes=dict(prefixes),
        license=raw["license"],
        package_path=raw.get("package_path"),
        parts=raw.get("parts"),
        alt_sources=tuple(raw.get("alt_sources", ())),
        gates={k: float(v) for k, v in gates.items()},
        prompts=dict(prompts),
        dimensions=tuple(sorted(set(dims), reverse=True)),
        skip_variants=dict(skip),
        tokenizer=raw.get("tokenizer", ""),
        num_kv_heads=raw.get("num_kv_heads"),
        head_dim=raw.get("head_dim"),
        task=task,
        num_labels=raw.get("num_labels", 0),
        activation=raw.get("activation", ""),
    )


def _default_registry_text() -> tuple[str, str]:
    res = importlib.resources.files("onnxembed.export").joinpath(REGISTRY_FILE)
    return res.read_text(encoding="utf-8"), str(res)


def load_registry(path: str | Path | None = None) -> dict[str, ModelSpec]:
    """Parse and validate the registry.

    Args:
        path: a ``models.yaml``; None reads ``$ONNXEMBED_REGISTRY`` if set, else the one shipped
            with the package.

    Raises:
        RegistryError: naming the entry and field that is wrong.

    >>> sorted(load_registry())[:2]
    ['all-minilm-l6-v2', 'e5-base-unsupervised']
    """
    try:
        import yaml
    except ImportError as e:  # pragma: no cover - depends on the environment
        from onnxembed.extras import install_hint

        raise ImportError(f"reading models.yaml needs PyYAML (the export extra); install it with: {install_hint('export')}") from e
    if path is None and os.environ.get(REGISTRY_ENV):
        path = os.environ[REGISTRY_ENV]
    if path is None:
        text, where = _default_registry_text()
    else:
        where = str(path)
        text = Path(path).read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise RegistryError(f"{where}: not valid YAML: {e}") from e
    if not isinstance(raw, dict) or set(raw) != {"models"} or not isinstance(raw["models"], dict):
        raise RegistryError(f"{where}: expected one top-level key 'models' mapping names to entries")
    return {name: _check_entry(name, entry, where) for name, entry in raw["models"].items()}


def get_spec(name: str, registry: dict[str, ModelSpec] | None = None) -> ModelSpec:
    """The registry entry called ``name``, or RegistryError listing the known names."""
    reg = load_registry() if registry is None else registry
    if name not in reg:
        raise RegistryError(f"unknown model {name!r}; known: {sorted(reg)}; registry: {REGISTRY_FILE}")
    return reg[name]


def dump_registry(specs: dict[str, ModelSpec], path: str | Path) -> Path:
    """Write specs as a ``models.yaml`` that :func:`load_registry` reads back unchanged."""
    import yaml

    models = {}
    for name, spec in specs.items():
        d = spec.as_dict()
        d.pop("name")
        if d["task"] == "embed":
            d.pop("task")
        for key in ("package_path", "parts", "alt_sources", "gates", "prompts", "dimensions", "skip_variants", "tokenizer", "num_kv_heads", "head_dim",
                    "num_labels", "activation"):
            if not d[key]:
                d.pop(key)
        models[name] = d
    Path(path).write_text(yaml.safe_dump({"models": models}, sort_keys=False), encoding="utf-8")
    return Path(path)
