"""onnxembed.integrations: the Embedder inside the frameworks people call embeddings from, in process.

Each module needs its framework's extra and imports nothing else of onnxembed but the runtime core:

- :mod:`onnxembed.integrations.langchain`: ``OnnxembedEmbeddings``, a LangChain ``Embeddings``
  (``pip install "langchain-core>=0.3"``, the ``langchain`` extra);
- :mod:`onnxembed.integrations.llamaindex`: ``OnnxembedEmbedding``, a LlamaIndex ``BaseEmbedding``
  (``pip install "llama-index-core>=0.12"``, the ``llamaindex`` extra).

Queries are embedded with the model's query prefix and documents with its passage prefix (e5's
``"query: "`` / ``"passage: "``), the kinds of :meth:`onnxembed.Embedder.encode`.

>>> from onnxembed.integrations.langchain import OnnxembedEmbeddings                # doctest: +SKIP
>>> len(OnnxembedEmbeddings("artifacts/e5-small-unsupervised").embed_query("how fast is int8?"))  # doctest: +SKIP
384
"""

from __future__ import annotations

__all__: list[str] = []
