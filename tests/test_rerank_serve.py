"""Serving a cross-encoder: TEI's ``POST /rerank`` and the Cohere/Jina ``POST /v1/rerank`` beside an
embedding model in one ``onnxembed serve`` process, answers equal to ``Reranker`` in-process, and the
same errors as the embedding routes (400, 401, 404, 413, 429)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest

from onnxembed import Reranker
from test_serve import Server, _error, _post, assert_429_while_one_in_flight, serving  # the serve tests' server and helpers

KEY = "test-key"
QUERY = "how many people live in Berlin?"
DOCS = ["Berlin has a population of 3,520,031 registered inhabitants.", "A man is playing a guitar.", "word " * 600,
        "Ünïcödé, accents and 中文 🙂", "Berlin"]


@pytest.fixture(scope="module")
def server(ce_folder: Path, ce_three_folder: Path, tiny_e5_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving([ce_folder, ce_three_folder, tiny_e5_artifacts], "--api-key", KEY, "--name", "rr", "--name", "rr3", "--name", "e5",
                 "--max-payload", "20000", log=tmp_path_factory.mktemp("serve-rerank") / "server.log") as s:
        yield s


@pytest.fixture(scope="module")
def strict(ce_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving([ce_folder], "--max-concurrent-requests", "1", "--threads", "1", log=tmp_path_factory.mktemp("serve-rerank-strict") / "server.log") as s:
        yield s


AUTH = {"Authorization": f"Bearer {KEY}"}


def test_tei_rerank_equals_the_reranker(server: Server, ce_folder: Path) -> None:
    rr = Reranker.load(ce_folder)  # the server's own automatic choice
    want = rr.score([(QUERY, d) for d in DOCS])
    r = _post(server, "/rerank", {"query": QUERY, "texts": DOCS, "truncate": True, "model": "rr"}, headers=AUTH)
    assert r.status_code == 200, r.text
    got = r.json()
    assert [g["index"] for g in got] == [x.index for x in rr.rank(QUERY, DOCS)]
    assert max(abs(g["score"] - want[g["index"]]) for g in got) <= 1e-5 and "text" not in got[0]
    assert int(r.headers["x-truncated-inputs"]) == 1 and int(r.headers["x-prompt-tokens"]) == rr.tokenize([(QUERY, d) for d in DOCS]).n_tokens
    raw = _post(server, "/rerank", {"query": QUERY, "texts": DOCS[:2], "raw_scores": True, "return_text": True, "model": "rr"}, headers=AUTH).json()
    logits = rr.score([(QUERY, d) for d in DOCS[:2]], raw=True)
    assert {g["index"]: g["score"] for g in raw} == pytest.approx({i: float(v) for i, v in enumerate(logits)}, abs=1e-5)
    assert {g["index"]: g["text"] for g in raw} == {0: DOCS[0], 1: DOCS[1]}
    # TEI truncates only when asked: a document over max_length is a 400 naming it
    _error(_post(server, "/rerank", {"query": QUERY, "texts": DOCS, "model": "rr"}, headers=AUTH), 400, "texts[2]", "truncate=true")
    body = httpx.get(server.url + "/info", params={"model": "rr"}, headers=AUTH, timeout=30).json()
    assert body["model_type"] == {"reranker": {"num_labels": 1, "activation": "sigmoid"}}


def test_cohere_rerank_top_n_and_documents(server: Server, ce_folder: Path) -> None:
    rr = Reranker.load(ce_folder)
    want = rr.rank(QUERY, DOCS, top_n=3)
    body = {"model": "rr", "query": QUERY, "documents": [DOCS[0], {"text": DOCS[1]}, *DOCS[2:]], "top_n": 3, "return_documents": True}
    r = _post(server, "/v1/rerank", body, headers=AUTH)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"] == "rr" and [x["index"] for x in out["results"]] == [w.index for w in want]
    assert np.allclose([x["relevance_score"] for x in out["results"]], [w.score for w in want], atol=1e-5)
    assert [x["document"]["text"] for x in out["results"]] == [DOCS[w.index] for w in want]
    assert out["usage"]["total_tokens"] == rr.tokenize([(QUERY, d) for d in DOCS]).n_tokens and out["truncated_inputs"] == 1
    # the embedding model in the same process still embeds
    emb = _post(server, "/v1/embeddings", {"model": "e5", "input": ["hello"]}, headers=AUTH)
    assert emb.status_code == 200 and len(emb.json()["data"][0]["embedding"]) > 0


def test_rerank_errors_as_for_embeddings(server: Server) -> None:
    _error(_post(server, "/v1/rerank", {"model": "rr", "query": QUERY, "documents": DOCS}, headers={}), 401, "missing API key")
    _error(_post(server, "/v1/rerank", {"model": "nope", "query": QUERY, "documents": DOCS}, headers=AUTH), 404, "'nope' is not served")
    _error(_post(server, "/v1/rerank", {"model": "e5", "query": QUERY, "documents": DOCS}, headers=AUTH), 400, "embedding model", "/v1/embeddings")
    _error(_post(server, "/v1/embeddings", {"model": "rr", "input": ["x"]}, headers=AUTH), 400, "cross-encoder", "/v1/rerank")
    _error(_post(server, "/v1/rerank", {"model": "rr3", "query": QUERY, "documents": DOCS}, headers=AUTH), 400, "3 labels")
    _error(_post(server, "/v1/rerank", {"model": "rr", "documents": DOCS}, headers=AUTH), 400, "'query' must be a non-empty string")
    _error(_post(server, "/v1/rerank", {"model": "rr", "query": QUERY, "documents": [DOCS[0], 3]}, headers=AUTH), 400, "documents[1] is int")
    _error(_post(server, "/v1/rerank", {"model": "rr", "query": QUERY, "documents": DOCS, "top_n": 0}, headers=AUTH), 400, "'top_n' must be")
    _error(_post(server, "/v1/rerank", {"model": "rr", "query": QUERY, "documents": ["x" * 25000]}, headers=AUTH), 413, "--max-payload")
    _error(_post(server, "/v1/rerank", {"query": QUERY, "documents": DOCS}, headers=AUTH), 400, "'model' is required", "rr", "rr3")


def test_too_many_concurrent_rerank_requests_is_a_429(strict: Server) -> None:
    assert_429_while_one_in_flight(strict, "/v1/rerank", b'{"query": "q", "documents": ["a slow client"]}', "/rerank", {"query": "q", "texts": ["x"]})
