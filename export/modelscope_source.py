"""Checkpoints from ModelScope (``modelscope:ORG/NAME``), and what its sentence-embedding pipeline does.

The download goes through the ``modelscope`` package's own ``snapshot_download`` and cache:
``$MODELSCOPE_CACHE`` (default ``~/.cache/modelscope``), laid out ``models/ORG--NAME/snapshots/REV/``.
modelscope (1.40) and modelscope-hub (0.5) read no offline environment variable; their offline switch
is ``snapshot_download(local_files_only=True)``, which reads the cache and never the network. onnxembed
passes it whenever the hub does not answer one short request (as the Hugging Face path does), so a warm
cache builds offline without retries.

A ModelScope folder is a transformers BERT checkpoint (``config.json``, weights, ``vocab.txt``) plus
``configuration.json``, which tells modelscope's pipeline what to run. What ``pipeline(Tasks.sentence_embedding,
model=...)`` computes, read from modelscope's code (``models/nlp/bert/sentence_embedding.py``,
``preprocessors/nlp/sentence_embedding_preprocessor.py``, ``pipelines/nlp/sentence_embedding_pipeline.py``):

- ``model.emb_pooler_type``: ``cls`` (the default when absent: the first token's hidden state, no MLP
  pooler) or ``avg`` (mean over the attention mask); ``avg_top2`` / ``avg_first_last`` pool hidden
  states of other layers, which the exported graph does not output, so they are refused.
- ``model.normalize``: L2 normalization, default false.
- length: the preprocessor section's ``max_length`` when the configuration sets it; otherwise the
  pipeline's ``sequence_length`` argument, 128 unless the caller passes another (the pipeline passes it
  on every call, so a ``sequence_length`` in the configuration file is overridden and never used).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

__all__ = ["MODELSCOPE_PREFIX", "DEFAULT_REVISION", "PIPELINE_SEQUENCE_LENGTH", "modelscope_folder", "read_modelscope_config"]

logger = logging.getLogger(__name__)

MODELSCOPE_PREFIX = "modelscope:"
DEFAULT_REVISION = "master"  # ModelScope's default branch
PIPELINE_SEQUENCE_LENGTH = 128  # SentenceEmbeddingPipeline(sequence_length=128)
CONFIGURATION = "configuration.json"
TASK = "sentence-embedding"
MODEL_TYPES = ("bert",)  # BertForSentenceEmbedding; bloom's weighted-mean model is another family
POOLERS = {"cls": "cls", "avg": "mean"}  # modelscope's emb_pooler_type -> onnxembed's pooling
_REFUSED_POOLERS = {
    "avg_top2": "the mean of the last two layers' hidden states",
    "avg_first_last": "the mean of the first and last layers' hidden states",
}
PROBE_TIMEOUT = 3.0
_REACHABLE: dict[str, str] = {}


def _unreachable(endpoint: str) -> str:
    """Why ``endpoint`` cannot be reached ("" if it answers): one short request, no retries, remembered."""
    if endpoint not in _REACHABLE:
        import requests  # a dependency of modelscope

        try:
            requests.head(endpoint, timeout=PROBE_TIMEOUT)
            _REACHABLE[endpoint] = ""
        except requests.RequestException as e:
            first = (str(e).strip().splitlines() or [""])[0][:120]
            _REACHABLE[endpoint] = f"{endpoint} not reachable ({type(e).__name__}: {first})"
            logger.warning("ModelScope hub not reachable: %s; reading its cache only", _REACHABLE[endpoint])
    return _REACHABLE[endpoint]


def modelscope_folder(model_id: str, revision: str = DEFAULT_REVISION) -> Path:
    """The checkpoint folder of ModelScope's ``model_id`` at ``revision``, from modelscope's cache or its hub.

    Raises:
        ValueError: ``model_id`` is not ``ORG/NAME``.
        ImportError: modelscope is not installed (the message is the pip command).
        FileNotFoundError: the hub cannot be reached and the cache does not hold that revision.
    """
    owner, _, name = model_id.partition("/")
    if not owner or not name or "/" in name:
        raise ValueError(f"ModelScope id {model_id!r} should be ORG/NAME, e.g. modelscope:iic/nlp_gte_sentence-embedding_english-base")
    try:
        from modelscope import snapshot_download
        from modelscope_hub import get_default_config
        from modelscope_hub.errors import CacheNotFound
    except ImportError as e:
        from onnxembed.extras import install_hint

        raise ImportError(f"the source modelscope:{model_id} needs the modelscope package (the modelscope extra); "
                          f"install it with: {install_hint('modelscope')}") from e
    config = get_default_config()
    why = _unreachable(config.endpoint)
    try:
        path = snapshot_download(model_id, revision=revision, local_files_only=bool(why))
    except CacheNotFound as e:  # raised with local_files_only only
        raise FileNotFoundError(
            f"modelscope:{model_id}@{revision} is not in the ModelScope cache {config.cache_dir} "
            f"($MODELSCOPE_CACHE) and {why}: download it once with network access "
            f"(modelscope download --model {model_id} --revision {revision}), or pass a local checkpoint folder"
        ) from e
    return Path(path)


def _section(cfg: dict[str, Any], key: str) -> dict[str, Any]:
    val = cfg.get(key) or {}
    return val if isinstance(val, dict) else {}


def read_modelscope_config(folder: Path) -> dict[str, Any]:
    """What modelscope's sentence-embedding pipeline does with ``folder``: pooling, normalize, max_length.

    Returns ``{"pooling", "normalize", "max_length", "length_from"}``; ``length_from`` says whether the
    length is the configuration's ``max_length`` or the pipeline's default ``sequence_length``.

    Raises:
        FileNotFoundError: no ``configuration.json`` (not a ModelScope model folder).
        ValueError: another task or model type, or a pooler onnxembed cannot reproduce.
    """
    import json

    path = Path(folder) / CONFIGURATION
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no {CONFIGURATION}: not a ModelScope model folder")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from e
    task = cfg.get("task")
    if task != TASK:
        raise ValueError(f"{path}: task {task!r} is not {TASK!r}; onnxembed builds ModelScope sentence-embedding models only")
    model = _section(cfg, "model")
    mtype = model.get("type", model.get("model_type"))
    if mtype not in MODEL_TYPES:
        raise ValueError(f"{path}: model type {mtype!r} is not supported; onnxembed builds ModelScope sentence-embedding "
                         f"models of type {', '.join(MODEL_TYPES)}")
    pooler = model.get("emb_pooler_type", "cls")  # BertForSentenceEmbedding's default
    if pooler in _REFUSED_POOLERS:
        raise ValueError(f"{path}: emb_pooler_type {pooler!r} pools {_REFUSED_POOLERS[pooler]}, which the exported graph "
                         f"(last_hidden_state only) cannot reproduce; onnxembed supports {sorted(POOLERS)}")
    if pooler not in POOLERS:
        raise ValueError(f"{path}: emb_pooler_type {pooler!r} is unknown; modelscope's BERT model takes "
                         f"{sorted([*POOLERS, *_REFUSED_POOLERS])}, onnxembed reproduces {sorted(POOLERS)}")
    pre = _section(cfg, "preprocessor")
    if "type" not in pre and isinstance(pre.get("val"), dict):  # the inference-mode sub-preprocessor
        pre = pre["val"]
    length, length_from = pre.get("max_length"), f"{CONFIGURATION} preprocessor.max_length"
    if length is None:
        length, length_from = PIPELINE_SEQUENCE_LENGTH, f"the pipeline's default sequence_length ({PIPELINE_SEQUENCE_LENGTH})"
    if not isinstance(length, int) or isinstance(length, bool) or length <= 0:
        raise ValueError(f"{path}: preprocessor max_length should be a positive integer, found {length!r}")
    return {"pooling": POOLERS[pooler], "normalize": bool(model.get("normalize", False)), "max_length": length,
            "length_from": length_from}
