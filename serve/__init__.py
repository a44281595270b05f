"""onnxembed.serve: an OpenAI- and TEI-compatible HTTP embedding server on the runtime's public stages.

Three layers, as text-embeddings-inference has them: HTTP handlers that parse, check and answer
(``app``, ``schema``); a batcher per model that owns the queue and the token budget (``batcher``);
the Embedder's public ``tokenize`` / ``plan_batches`` / ``embed_batch``.

Needs the ``serve`` extra: ``pip install "onnxembed[serve]"``.

>>> from onnxembed.serve import serve                      # doctest: +SKIP
>>> serve(["artifacts/all-minilm-l6-v2"], port=8080)       # until SIGTERM; returns 0
"""

from __future__ import annotations

import importlib.util

SERVE_EXTRA = ("starlette", "uvicorn", "orjson", "prometheus_client")
SERVE_EXTRA_HINT = 'pip install "onnxembed[serve]"'

_missing = [m for m in SERVE_EXTRA if importlib.util.find_spec(m) is None]
if _missing:  # model2vec's habit: the message is the command that fixes it
    raise ImportError(f"onnxembed.serve needs the serve extra (missing: {', '.join(_missing)}); install it with: {SERVE_EXTRA_HINT}")

from .app import create_app as create_app
from .batcher import Batcher as Batcher
from .batcher import Embedded as Embedded
from .server import serve as serve

__all__ = ["SERVE_EXTRA_HINT", "Batcher", "Embedded", "create_app", "serve"]
