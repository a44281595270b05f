"""onnxembed.serve: an OpenAI- and TEI-compatible HTTP embedding server on the runtime's public stages.

Layers, as text-embeddings-inference has them (router -> ``Infer`` -> queue): HTTP handlers that
parse, call one method of the model layer and answer (``app``, ``schema``); the model layer, which
loads and warms the models and owns admission, client-batch splitting and cancellation (``model``,
``loading``); a batcher per model that owns the queue and the token budget (``batcher``); the
runtime's public ``tokenize`` / ``plan_batches`` / ``embed_batch``.

Needs the ``serve`` extra; a missing one raises ImportError whose message is the ``pip install``
line for this install (see :func:`onnxembed.extras.install_hint`).

>>> from onnxembed.serve import serve                      # doctest: +SKIP
>>> serve(["artifacts/all-minilm-l6-v2"], port=8080)       # until SIGTERM; returns 0
"""

from __future__ import annotations

from onnxembed.extras import require_extra

require_extra("serve", "onnxembed.serve", modules=("starlette", "uvicorn", "orjson", "prometheus_client"))

from .app import create_app as create_app
from .batcher import Batcher as Batcher
from .batcher import Embedded as Embedded
from .server import serve as serve

__all__ = ["Batcher", "Embedded", "create_app", "serve"]
