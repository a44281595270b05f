"""A LangChain ``Embeddings`` over the :class:`onnxembed.Embedder` and a document compressor over the
:class:`onnxembed.Reranker`, in process (the ``langchain`` extra).

>>> from onnxembed.integrations.langchain import OnnxembedEmbeddings      # doctest: +SKIP
>>> emb = OnnxembedEmbeddings("artifacts/e5-small-unsupervised")          # doctest: +SKIP
>>> len(emb.embed_query("how fast is int8?"))                             # doctest: +SKIP
384
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from onnxembed import Embedder, Reranker
from onnxembed.providers import ProviderSpec

from ._common import check_options, embed_as_lists, load_embedder, load_reranker, missing_extra_message

try:
    from langchain_core.documents import Document
    from langchain_core.documents.compressor import BaseDocumentCompressor
    from langchain_core.embeddings import Embeddings
except ImportError as e:  # the message is the command that fixes it
    raise ImportError(missing_extra_message(__name__, "langchain", e)) from e

__all__ = ["OnnxembedEmbeddings", "OnnxembedRerank"]


class OnnxembedEmbeddings(Embeddings):
    """LangChain embeddings from an onnxembed artifact folder, computed in this process.

    ``embed_documents`` is ``Embedder.encode(texts, kind="passage")`` and ``embed_query`` is
    ``encode([text], kind="query")``, so each side gets the model's own prefix (e5's ``"passage: "`` and
    ``"query: "``; none for models without prefixes). The vectors are exactly ``encode``'s float32
    values (with the same ``batch_size`` and ``dimensions``), as lists of floats. The async methods (``aembed_documents``, ``aembed_query``) are
    LangChain's: they run these in a thread, where onnxruntime releases the GIL.

    Args:
        model: an artifact folder built by ``onnxembed build``, or an already loaded :class:`Embedder`
            (then the load options below must be left at their defaults).
        variant: passed to :meth:`Embedder.load` (``"auto"``, ``"fp32"``, ``"O2"``, ``"int8"``, ...).
        providers: onnxruntime providers for :meth:`Embedder.load` (None: automatic choice).
        threads: onnxruntime threads for :meth:`Embedder.load` (None: one per core).
        batch_size: most texts per onnxruntime run.
        query_kind: the kind for ``embed_query``: ``"query"``, ``"passage"``, one of the manifest's named
            prompts (:attr:`Embedder.prompts`), or None for no prefix.
        document_kind: the kind for ``embed_documents``.
        dimensions: a shorter output size the model was trained for (Matryoshka,
            :attr:`Embedder.dimensions`); None for the full size.
        **load_kwargs: further :meth:`Embedder.load` keywords (``verify``, ``max_tokens``, ``cache_dir``...).

    Raises:
        ValueError: unknown kind, or a size the model was not trained for. TypeError: load options
            given with an Embedder.

    >>> emb = OnnxembedEmbeddings("artifacts/all-minilm-l6-v2", variant="int8")   # doctest: +SKIP
    >>> len(emb.embed_documents(["a first text", "a second one"]))               # doctest: +SKIP
    2
    """

    def __init__(
        self,
        model: str | Path | Embedder,
        *,
        variant: str = "auto",
        providers: str | Sequence[ProviderSpec] | None = None,
        threads: int | None = None,
        batch_size: int = 32,
        query_kind: str | None = "query",
        document_kind: str | None = "passage",
        dimensions: int | None = None,
        **load_kwargs: Any,
    ) -> None:
        self.embedder = load_embedder(model, variant=variant, providers=providers, threads=threads, load_kwargs=load_kwargs)
        check_options(self.embedder, {"query_kind": query_kind, "document_kind": document_kind}, dimensions)
        self.batch_size = batch_size
        self.query_kind = query_kind
        self.document_kind = document_kind
        self.dimensions = dimensions

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents with the model's passage prefix: one list of ``dim`` floats per text."""
        return embed_as_lists(self.embedder, texts, self.document_kind, self.batch_size, self.dimensions)

    def embed_query(self, text: str) -> list[float]:
        """Embed one query with the model's query prefix."""
        return embed_as_lists(self.embedder, [text], self.query_kind, self.batch_size, self.dimensions)[0]

    def __repr__(self) -> str:
        return (f"OnnxembedEmbeddings({self.embedder!r}, query_kind={self.query_kind!r}, document_kind={self.document_kind!r}, "
                f"dimensions={self.dimensions!r})")


class OnnxembedRerank(BaseDocumentCompressor):
    """A LangChain ``BaseDocumentCompressor`` over a cross-encoder folder (what ``CrossEncoderReranker``
    does with torch): the documents sorted by :meth:`Reranker.rank` for the query, best first, the
    ``top_n`` best kept (None: all), each with ``metadata["relevance_score"]``.

    Args:
        model: a cross-encoder folder built by ``onnxembed build``, or a loaded :class:`Reranker`.
        top_n: how many documents to keep (None: all, re-ordered).
        batch_size: most pairs per onnxruntime run.
        variant, providers, threads, **load_kwargs: for :meth:`Reranker.load`.

    >>> from langchain_classic.retrievers import ContextualCompressionRetriever          # doctest: +SKIP
    >>> ContextualCompressionRetriever(base_compressor=OnnxembedRerank("artifacts/ms-marco-minilm-l6"), base_retriever=r)  # doctest: +SKIP
    """

    model_config = {"arbitrary_types_allowed": True}
    reranker: Reranker
    top_n: int | None = 3
    batch_size: int = 32

    def __init__(self, model: str | Path | Reranker, *, top_n: int | None = 3, batch_size: int = 32, variant: str = "auto",
                 providers: str | Sequence[ProviderSpec] | None = None, threads: int | None = None, **load_kwargs: Any) -> None:
        rr = load_reranker(model, variant=variant, providers=providers, threads=threads, load_kwargs=load_kwargs, top_n=top_n)
        super().__init__(reranker=rr, top_n=top_n, batch_size=batch_size)

    def compress_documents(self, documents: Sequence[Document], query: str, callbacks: Any = None) -> Sequence[Document]:
        """The ``top_n`` documents most relevant to ``query``, best first, with their score in ``metadata``."""
        docs = list(documents)
        ranked = self.reranker.rank(query, [d.page_content for d in docs], top_n=self.top_n, batch_size=self.batch_size)
        return [Document(page_content=docs[r.index].page_content, id=docs[r.index].id,
                         metadata={**docs[r.index].metadata, "relevance_score": r.score}) for r in ranked]
