"""A LlamaIndex ``BaseEmbedding`` over the :class:`onnxembed.Embedder` and a node postprocessor over the
:class:`onnxembed.Reranker`, in process (the ``llamaindex`` extra).

>>> from onnxembed.integrations.llamaindex import OnnxembedEmbedding      # doctest: +SKIP
>>> emb = OnnxembedEmbedding("artifacts/e5-small-unsupervised")           # doctest: +SKIP
>>> len(emb.get_query_embedding("how fast is int8?"))                     # doctest: +SKIP
384
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Sequence

from onnxembed import Embedder, Reranker
from onnxembed.providers import ProviderSpec

from ._common import check_options, embed_as_lists, load_embedder, load_reranker, missing_extra_message

try:
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.bridge.pydantic import Field, PrivateAttr
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
except ImportError as e:  # the message is the command that fixes it
    raise ImportError(missing_extra_message(__name__, "llamaindex", e)) from e

__all__ = ["OnnxembedEmbedding", "OnnxembedNodeRerank"]


class OnnxembedEmbedding(BaseEmbedding):
    """LlamaIndex embeddings from an onnxembed artifact folder, computed in this process.

    Queries (``get_query_embedding``, what retrievers call) are ``Embedder.encode([q], kind="query")``;
    texts (``get_text_embedding``, ``get_text_embedding_batch``, what indexing calls on nodes) are
    ``encode(texts, kind="passage")``, so each side gets the model's own prefix (e5's ``"query: "`` and
    ``"passage: "``; none for models without prefixes). The vectors are exactly ``encode``'s float32
    values (with ``batch_size=embed_batch_size`` and the same ``dimensions``), as lists of floats. The
    async methods run the same calls in a thread, where onnxruntime releases the GIL, so the event loop
    keeps going. ``model_name`` is the manifest's model name.

    Args:
        model: an artifact folder built by ``onnxembed build``, or an already loaded :class:`Embedder`
            (then the load options must be left at their defaults).
        variant: passed to :meth:`Embedder.load` (``"auto"``, ``"fp32"``, ``"O2"``, ``"int8"``, ...).
        providers: onnxruntime providers for :meth:`Embedder.load` (None: automatic choice).
        threads: onnxruntime threads for :meth:`Embedder.load` (None: one per core).
        embed_batch_size: texts per call from LlamaIndex, and most texts per onnxruntime run.
        query_kind: the kind for queries: ``"query"``, ``"passage"``, one of the manifest's named prompts
            (:attr:`Embedder.prompts`), or None for no prefix.
        text_kind: the kind for texts (documents, nodes).
        dimensions: a shorter output size the model was trained for (Matryoshka,
            :attr:`Embedder.dimensions`); None for the full size.
        **kwargs: ``BaseEmbedding`` fields (``callback_manager``, ``num_workers``, ``embeddings_cache``)
            go to LlamaIndex; the others to :meth:`Embedder.load` (``verify``, ``max_tokens``, ``cache_dir``...).

    Raises:
        ValueError: unknown kind, or a size the model was not trained for. TypeError: load options
            given with an Embedder.

    >>> from llama_index.core import Settings                                   # doctest: +SKIP
    >>> Settings.embed_model = OnnxembedEmbedding("artifacts/all-minilm-l6-v2")  # doctest: +SKIP
    """

    query_kind: str | None = Field(default="query", description="Embedder kind for queries (its prefix).")
    text_kind: str | None = Field(default="passage", description="Embedder kind for texts and nodes (its prefix).")
    dimensions: int | None = Field(default=None, description="Output size (Matryoshka); None for the model's full size.")
    _embedder: Embedder = PrivateAttr()

    def __init__(
        self,
        model: str | Path | Embedder,
        *,
        variant: str = "auto",
        providers: str | Sequence[ProviderSpec] | None = None,
        threads: int | None = None,
        embed_batch_size: int = 32,
        query_kind: str | None = "query",
        text_kind: str | None = "passage",
        dimensions: int | None = None,
        **kwargs: Any,
    ) -> None:
        fields = {k: kwargs.pop(k) for k in list(kwargs) if k in BaseEmbedding.model_fields}
        embedder = load_embedder(model, variant=variant, providers=providers, threads=threads, load_kwargs=kwargs)
        check_options(embedder, {"query_kind": query_kind, "text_kind": text_kind}, dimensions)
        fields.setdefault("model_name", embedder.manifest.name)
        super().__init__(embed_batch_size=embed_batch_size, query_kind=query_kind, text_kind=text_kind, dimensions=dimensions, **fields)
        self._embedder = embedder

    @classmethod
    def class_name(cls) -> str:
        return "OnnxembedEmbedding"

    @property
    def embedder(self) -> Embedder:
        """The :class:`Embedder` that computes the vectors."""
        return self._embedder

    def _get_query_embedding(self, query: str) -> list[float]:
        return embed_as_lists(self._embedder, [query], self.query_kind, self.embed_batch_size, self.dimensions)[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return embed_as_lists(self._embedder, [text], self.text_kind, self.embed_batch_size, self.dimensions)[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return embed_as_lists(self._embedder, texts, self.text_kind, self.embed_batch_size, self.dimensions)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)


class OnnxembedNodeRerank(BaseNodePostprocessor):
    """A LlamaIndex node postprocessor over a cross-encoder folder (what ``SentenceTransformerRerank`` does
    with torch): the nodes re-scored by :meth:`Reranker.rank` against the query (``score`` becomes the
    cross-encoder's), best first, the ``top_n`` best kept (None: all).

    Args:
        model: a cross-encoder folder built by ``onnxembed build``, or a loaded :class:`Reranker`.
        top_n: how many nodes to keep.
        batch_size: most pairs per onnxruntime run.
        variant, providers, threads, **kwargs: ``callback_manager`` goes to LlamaIndex, the others to
            :meth:`Reranker.load`.

    >>> index.as_query_engine(node_postprocessors=[OnnxembedNodeRerank("artifacts/ms-marco-minilm-l6", top_n=3)])  # doctest: +SKIP
    """

    top_n: int | None = Field(default=3, description="Nodes kept after reranking (None: all).")
    batch_size: int = Field(default=32, description="Most pairs per onnxruntime run.")
    _reranker: Reranker = PrivateAttr()

    def __init__(self, model: str | Path | Reranker, *, top_n: int | None = 3, batch_size: int = 32, variant: str = "auto",
                 providers: str | Sequence[ProviderSpec] | None = None, threads: int | None = None, **kwargs: Any) -> None:
        fields = {k: kwargs.pop(k) for k in list(kwargs) if k in BaseNodePostprocessor.model_fields}
        rr = load_reranker(model, variant=variant, providers=providers, threads=threads, load_kwargs=kwargs, top_n=top_n)
        super().__init__(top_n=top_n, batch_size=batch_size, **fields)
        self._reranker = rr

    @classmethod
    def class_name(cls) -> str:
        return "OnnxembedNodeRerank"

    @property
    def reranker(self) -> Reranker:
        """The :class:`Reranker` that scores the nodes."""
        return self._reranker

    def _postprocess_nodes(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("OnnxembedNodeRerank needs the query: call postprocess_nodes(nodes, query_str=...) or pass a query_bundle")
        texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
        ranked = self._reranker.rank(query_bundle.query_str, texts, top_n=self.top_n, batch_size=self.batch_size)
        return [NodeWithScore(node=nodes[r.index].node, score=r.score) for r in ranked]
