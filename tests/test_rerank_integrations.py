"""The Reranker in LangChain (document compressor) and LlamaIndex (node postprocessor): the frameworks'
own calls return the documents in ``Reranker.rank`` order with its scores."""

from __future__ import annotations

from pathlib import Path

import pytest

from onnxembed import Reranker

QUERY = "how many people live in Berlin?"
DOCS = ["A man is playing a guitar.", "Berlin has a population of 3,520,031 registered inhabitants.", "Berlin", "Cats sleep a lot.",
        "Ünïcödé, accents and 中文 🙂"]


def test_langchain_compressor_keeps_the_top_n_in_rank_order(ce_folder: Path) -> None:
    from langchain_core.documents import Document

    from onnxembed.integrations.langchain import OnnxembedRerank

    rr = Reranker.load(ce_folder)
    want = rr.rank(QUERY, DOCS, top_n=3)
    comp = OnnxembedRerank(ce_folder, top_n=3)
    docs = [Document(page_content=t, metadata={"n": i}, id=f"d{i}") for i, t in enumerate(DOCS)]
    got = comp.compress_documents(docs, QUERY)
    assert [d.metadata["n"] for d in got] == [w.index for w in want] and [d.id for d in got] == [f"d{w.index}" for w in want]
    assert [d.metadata["relevance_score"] for d in got] == pytest.approx([w.score for w in want], abs=1e-6)
    assert len(OnnxembedRerank(rr, top_n=None).compress_documents(docs, QUERY)) == len(DOCS)  # a loaded Reranker, all kept
    with pytest.raises(TypeError, match="the Reranker passed in is already loaded"):
        OnnxembedRerank(rr, variant="fp32")
    with pytest.raises(ValueError, match="top_n must be None or an int >= 1"):
        OnnxembedRerank(rr, top_n=0)


def test_llamaindex_postprocessor_rescores_and_keeps_the_top_n(ce_folder: Path, ce_three_folder: Path) -> None:
    from llama_index.core.schema import NodeWithScore, TextNode

    from onnxembed.integrations.llamaindex import OnnxembedNodeRerank

    want = Reranker.load(ce_folder).rank(QUERY, DOCS, top_n=2)
    post = OnnxembedNodeRerank(ce_folder, top_n=2)
    nodes = [NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=0.0) for i, t in enumerate(DOCS)]
    got = post.postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in got] == [f"n{w.index}" for w in want]
    assert [n.score for n in got] == pytest.approx([w.score for w in want], abs=1e-6)
    with pytest.raises(ValueError, match="needs the query"):
        post.postprocess_nodes(nodes)
    with pytest.raises(ValueError, match="3 labels; reranking needs a one-label cross-encoder"):
        OnnxembedNodeRerank(ce_three_folder)
