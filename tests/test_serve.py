"""`onnxembed serve`: a real server in a subprocess on a free loopback port, driven by real clients
(the openai SDK, httpx, raw sockets). Every wait is bounded in count and time.

One shared server holds the real embedded model (where real weights matter: vectors equal to
``Embedder.encode``) and two tiny ones; a second, strict server tests the limits; a third is
stopped with SIGTERM while requests are in flight.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

import httpx  # noqa: E402 - the dev extra installs the serve stack: a missing one must fail, not skip
import openai  # noqa: E402
import starlette  # noqa: E402,F401
import uvicorn  # noqa: E402,F401
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from onnxembed import Embedder  # noqa: E402

KEY = "test-key"
MINILM = "all-minilm-l6-v2"  # the manifest's name, as the README's examples use it
AUTH = {"Authorization": f"Bearer {KEY}"}
IN_FLIGHT = ("onnxembed_requests_in_flight", ())
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sts"


def _sts_sentences(n: int) -> list[str]:
    out: list[str] = []
    for f in sorted(DATA.glob("*.tsv")):
        with open(f, encoding="utf-8") as fh:
            next(fh)
            for line in fh:
                parts = line.rstrip("\n").split("\t")
                out.extend(p for p in parts[1:3] if p)
        if len(out) >= 4 * n:
            break
    return list(dict.fromkeys(out))[:n]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``onnxembed serve`` in a subprocess; :meth:`stop` ends it and returns its exit status."""

    def __init__(self, dirs: list[Path], *args: str, log: Path, before: str = "") -> None:
        """``before``: Python run in the server's interpreter before ``onnxembed serve`` starts (a test hook)."""
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._out = open(log, "wb")
        argv = ["-v", "serve", *map(str, dirs), "--port", str(self.port), *args]
        if before:
            cmd = [sys.executable, "-c", f"import sys\n{before}\nfrom onnxembed.cli import main\nsys.exit(main(sys.argv[1:]))", *argv]
        else:
            cmd = [sys.executable, "-m", "onnxembed.cli", *argv]
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.05)):
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.text()}")
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        raise AssertionError(f"server not ready after {timeout} s:\n{self.text()}")

    def wait_listening(self, timeout: float = 120) -> None:
        for _ in range(int(timeout / 0.05)):
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.text()}")
            try:
                httpx.get(self.url + "/health", timeout=2)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError(f"server not listening after {timeout} s:\n{self.text()}")

    def text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self, sig: int | None = signal.SIGTERM, timeout: float = 60) -> int:
        """Send ``sig`` (None: none, the process is already stopping) and wait for the exit status."""
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"server did not exit within {timeout} s after {signal.Signals(sig).name}:\n{self.text()}") from None
        finally:
            self._out.close()


@pytest.fixture(scope="module")
def texts(data_dir: Path) -> list[str]:
    out = _sts_sentences(300)
    assert len(out) == 300, f"only {len(out)} STS sentences under {DATA}"
    return out


@pytest.fixture(scope="module")
def real(default_artifacts: Path) -> Embedder:
    """The same automatic choice the server makes."""
    return Embedder.load(default_artifacts)


@contextmanager
def serving(dirs: list[Path], *args: str, log: Path) -> Iterator[Server]:
    """A :class:`Server` that is ready inside the block and must exit 0 after it."""
    s = Server(dirs, *args, log=log)
    try:
        s.wait_ready()
        yield s
    finally:
        assert s.stop() == 0, s.text()


@pytest.fixture(scope="module")
def server(default_artifacts: Path, tiny_bert_artifacts: Path, tiny_e5_artifacts: Path, matryoshka: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    dirs, names = [default_artifacts, tiny_bert_artifacts, tiny_e5_artifacts, matryoshka], (MINILM, "tiny", "e5", "mat")
    with serving(dirs, "--api-key", KEY, *(a for n in names for a in ("--name", n)), log=tmp_path_factory.mktemp("serve") / "server.log") as s:
        yield s


@pytest.fixture(scope="module")
def strict(tiny_bert_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    args = ("--max-payload", "4000", "--max-concurrent-requests", "1", "--max-client-batch", "3", "--threads", "1")
    with serving([tiny_bert_artifacts], *args, log=tmp_path_factory.mktemp("strict") / "server.log") as s:
        yield s


def _client(server: Server) -> Any:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=60)


def _post(server: Server, path: str, body: Any, headers: dict[str, str] | None = None, timeout: float = 60) -> Any:
    return httpx.post(server.url + path, json=body, headers=AUTH if headers is None else headers, timeout=timeout)


def _metrics(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = httpx.get(server.url + "/metrics", timeout=10)
    assert r.status_code == 200
    out = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _error(r: Any, status: int, *words: str) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    err = r.json()["error"]
    assert set(err) == {"message", "type", "code"}, err
    for w in words:
        assert w in err["message"], (w, err["message"])
    return str(err["message"])


# ------------------------------------------------------------------------------------------ numbers


def test_openai_sdk_base64_and_float_equal_encode(server: Server, real: Embedder, texts: list[str]) -> None:
    batch = texts[:40] + ["a text much longer than the rest " * 60]  # truncated at max length
    expected = real.encode(batch)
    client = _client(server)
    b64 = client.embeddings.create(model=MINILM, input=batch)  # the SDK asks for base64 by default
    flt = client.embeddings.create(model=MINILM, input=batch, encoding_format="float")
    for resp in (b64, flt):
        got = np.array([d.embedding for d in resp.data], dtype=np.float32)
        assert [d.index for d in resp.data] == list(range(len(batch)))
        assert got.shape == expected.shape and np.abs(got - expected).max() <= 1e-6
        toks = real.tokenize(batch)
        assert resp.usage.prompt_tokens == resp.usage.total_tokens == toks.n_tokens
        assert resp.model == MINILM and resp.model_extra["truncated_inputs"] == 1
    # the raw base64 is little-endian float32
    raw = _post(server, "/v1/embeddings", {"model": MINILM, "input": batch[0], "encoding_format": "base64"}).json()
    vec = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    assert np.abs(vec - expected[0]).max() <= 1e-6
    # a single string is a list of one; dimensions equal to the model's size is accepted
    one = client.embeddings.create(model=MINILM, input=batch[1], dimensions=real.dim, encoding_format="float")
    assert len(one.data) == 1 and np.abs(np.array(one.data[0].embedding) - expected[1]).max() <= 1e-6


def test_input_type_adds_the_models_prefix(server: Server, tiny_e5_artifacts: Path) -> None:
    e5 = Embedder.load(tiny_e5_artifacts)
    assert e5.manifest.prefixes.get("query")
    text = ["how fast is int8"]
    for kind in ("query", "passage"):
        r = _post(server, "/v1/embeddings", {"model": "e5", "input": text, "input_type": kind, "encoding_format": "float"})
        got = np.array(r.json()["data"][0]["embedding"], dtype=np.float32)
        assert np.abs(got - e5.encode(text, kind=kind)[0]).max() <= 1e-6
        assert r.json()["usage"]["prompt_tokens"] == e5.tokenize(text, kind=kind).n_tokens
    plain = np.array(_post(server, "/v1/embeddings", {"model": "e5", "input": text, "encoding_format": "float"}).json()["data"][0]["embedding"])
    assert np.abs(plain - e5.encode(text)[0]).max() <= 1e-6
    assert np.abs(plain - e5.encode(text, kind="query")[0]).max() > 1e-3


def test_matryoshka_dimensions_and_named_prompts(server: Server, matryoshka: Path) -> None:
    """OpenAI's ``dimensions`` for a model trained for shorter vectors, and ``input_type`` naming one of
    the manifest's prompts; both exactly what the in-process Embedder gives, through the openai SDK too."""
    mat = Embedder.load(matryoshka)
    text = ["how do I make int8 faster", "a second text"]
    for body, want in (
        ({"dimensions": 16}, mat.encode(text, dimensions=16)),
        ({"dimensions": 8, "input_type": "web"}, mat.encode(text, kind="web", dimensions=8)),
        ({"input_type": "web"}, mat.encode(text, kind="web")),
    ):
        r = _post(server, "/v1/embeddings", {"model": "mat", "input": text, "encoding_format": "float", **body})
        assert r.status_code == 200, r.text
        got = np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)
        assert got.shape == want.shape and float(np.abs(got - want).max()) <= 1e-6, body
    sdk = _client(server).embeddings.create(model="mat", input=text, dimensions=16)  # base64 on the wire
    assert float(np.abs(np.array([d.embedding for d in sdk.data]) - mat.encode(text, dimensions=16)).max()) <= 1e-6
    _error(_post(server, "/v1/embeddings", {"model": "mat", "input": "x", "dimensions": 12}), 400, "'dimensions' is 12", "[32, 16, 8]")
    _error(_post(server, "/v1/embeddings", {"model": "mat", "input": "x", "input_type": "search"}), 400, "'search'", "['passage', 'query', 'web']")


def test_tei_embed_and_info(server: Server, real: Embedder, texts: list[str]) -> None:
    batch = texts[40:50]
    r = _post(server, "/embed", {"inputs": batch, "model": MINILM})
    assert r.status_code == 200, r.text
    assert np.abs(np.array(r.json(), dtype=np.float32) - real.encode(batch)).max() <= 1e-6
    raw = np.array(_post(server, "/embed", {"inputs": batch, "model": MINILM, "normalize": False}).json(), dtype=np.float32)
    toks = real.tokenize(batch)
    expected_raw = np.vstack([real.embed_batch([ids], normalize=False) for ids in toks.ids])
    assert np.abs(raw - expected_raw).max() <= 1e-5 * np.abs(expected_raw).max()
    assert np.abs(np.linalg.norm(raw, axis=1) - 1).max() > 1e-2  # really not normalized
    long = "word " * (real.max_length + 20)
    _error(_post(server, "/embed", {"inputs": ["short", long], "model": MINILM}), 400, "inputs[1]", "truncate=true")
    ok = _post(server, "/embed", {"inputs": ["short", long], "model": MINILM, "truncate": True})
    assert ok.status_code == 200 and ok.headers["x-truncated-inputs"] == "1"
    info = httpx.get(server.url + "/info", headers=AUTH, timeout=10).json()
    assert info["model_id"] == MINILM and info["max_input_length"] == real.max_length == real.manifest.max_length
    assert info["dim"] == real.dim and info["model_dtype"] == real.variant and info["max_batch_tokens"] == real.max_tokens
    models = httpx.get(server.url + "/v1/models", headers=AUTH, timeout=10).json()
    assert [m["id"] for m in models["data"]] == [MINILM, "tiny", "e5", "mat"]
    assert [m.id for m in _client(server).models.list().data] == [MINILM, "tiny", "e5", "mat"]


def test_tei_routes_answer_a_real_tei_client(strict: Server, tiny_bert_artifacts: Path) -> None:
    """huggingface_hub's InferenceClient (a TEI client from PyPI, in the dev extra) against /embed and /info:
    given a URL it calls it directly (no hub), POSTs feature extraction to it and GETs ``<url>/info``."""
    from huggingface_hub import InferenceClient

    tiny = Embedder.load(tiny_bert_artifacts)
    texts = ["a first text", "a second text, longer than the first one"]
    embed = InferenceClient(model=strict.url + "/embed", timeout=60)
    raw = embed.feature_extraction(texts, normalize=False)
    assert raw.shape == (2, tiny.dim) and raw.dtype == np.float32
    reference = np.vstack([tiny.embed_batch([ids], normalize=False) for ids in tiny.tokenize(texts).ids])
    assert np.abs(raw - reference).max() <= 1e-5 * np.abs(reference).max()
    unit = embed.feature_extraction(texts, normalize=True)
    assert np.abs(unit - reference / np.linalg.norm(reference, axis=1, keepdims=True)).max() <= 1e-5
    one = embed.feature_extraction(texts[0], normalize=True)
    assert one.shape == (1, tiny.dim) and np.abs(one[0] - unit[0]).max() <= 1e-5
    info = InferenceClient(model=strict.url, provider="hf-inference", timeout=60).get_endpoint_info()  # GET /info
    assert info["model_id"] == tiny.manifest.name and info["max_input_length"] == tiny.max_length
    assert info["max_client_batch_size"] == 3 and info["dim"] == tiny.dim


def test_64_concurrent_clients_get_their_own_vectors(server: Server, real: Embedder, texts: list[str]) -> None:
    """64 clients at once, each with its own texts (1 to 3 per request, 3 requests each)."""
    before = _metrics(server)
    alone = {t: real.encode([t])[0] for t in texts[:192]}

    def client(c: int) -> list[tuple[list[str], Any]]:
        out = []
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=120) as h:
            for r in range(3):
                mine = [texts[(c * 3 + r + k * 64) % 192] for k in range(1 + (c + r) % 3)]
                resp = h.post("/v1/embeddings", json={"model": MINILM, "input": mine, "encoding_format": "float"})
                out.append((mine, resp))
        return out

    with ThreadPoolExecutor(64) as pool:
        results = [x for chunk in pool.map(client, range(64)) for x in chunk]
    assert len(results) == 192
    for mine, resp in results:
        assert resp.status_code == 200, resp.text
        got = np.array([d["embedding"] for d in resp.json()["data"]], dtype=np.float32)
        want = np.vstack([alone[t] for t in mine])
        # batch neighbours and padding change the last bits only; another text's vector is far away
        assert np.abs(got - want).max() <= 1e-5, np.abs(got - want).max()
    after = _metrics(server)
    batches = after[("onnxembed_batch_size_count", (("model", MINILM),))] - before.get(("onnxembed_batch_size_count", (("model", MINILM),)), 0)
    rows = after[("onnxembed_batch_size_sum", (("model", MINILM),))] - before.get(("onnxembed_batch_size_sum", (("model", MINILM),)), 0)
    assert rows == sum(len(m) for m, _ in results)
    assert batches < len(results), "concurrent requests were never batched together"


def test_metrics_parse_and_their_counters_move(server: Server, real: Embedder, texts: list[str]) -> None:
    before = _metrics(server)
    ok = ("onnxembed_requests_total", (("endpoint", "embeddings"), ("status", "200")))
    model = (("model", MINILM),)
    usage = 0
    for i in range(3):
        r = _post(server, "/v1/embeddings", {"model": MINILM, "input": texts[60 + i : 63 + i]})
        usage += r.json()["usage"]["prompt_tokens"]
    _post(server, "/v1/embeddings", {"model": MINILM, "input": []})
    after = _metrics(server)
    assert after[ok] - before.get(ok, 0) == 3
    bad = ("onnxembed_requests_total", (("endpoint", "embeddings"), ("status", "400")))
    assert after[bad] - before.get(bad, 0) == 1
    real_tokens = ("onnxembed_tokens_total", (("kind", "real"), ("model", MINILM)))
    padded = ("onnxembed_tokens_total", (("kind", "padded"), ("model", MINILM)))
    assert after[real_tokens] - before[real_tokens] == usage
    assert after[padded] - before[padded] >= usage
    assert after[("onnxembed_texts_total", model)] - before[("onnxembed_texts_total", model)] == 9
    for hist in ("onnxembed_tokenize_seconds", "onnxembed_queue_seconds", "onnxembed_inference_seconds", "onnxembed_batch_size"):
        assert after[(f"{hist}_count", model)] > before[(f"{hist}_count", model)], hist
    assert after[("onnxembed_queue_depth", model)] == 0
    assert after[("onnxembed_ready", model)] == 1


# ------------------------------------------------------------------------------------------- errors


def test_tei_routes_use_the_first_model_and_info_reports_the_weights_hash(server: Server, real: Embedder, texts: list[str]) -> None:
    """TEI clients send no ``model``; TEI serves one model per process, so ``/embed`` and ``/info`` use
    the first model served. Before: 400 ``model_required``, and ``model_sha`` was "0.1.0"."""
    batch = texts[60:64]
    r = _post(server, "/embed", {"inputs": batch})
    assert r.status_code == 200, r.text
    assert np.abs(np.array(r.json(), dtype=np.float32) - real.encode(batch)).max() <= 1e-6
    tiny = _post(server, "/embed", {"inputs": batch, "model": "tiny"})  # the extension still selects
    assert tiny.status_code == 200 and len(tiny.json()[0]) != real.dim
    info = httpx.get(server.url + "/info", headers=AUTH, timeout=10).json()
    weights = real.manifest.raw["source"]["weights_sha256"]
    assert info["model_id"] == MINILM and info["model_sha"] == weights and len(weights) == 64
    _error(_post(server, "/v1/embeddings", {"input": "x"}), 400, "'model' is required")  # ambiguous on the OpenAI route


def test_non_utf8_body_and_wrong_method_are_client_errors(server: Server) -> None:
    """Before: "surrogates not allowed: line 1 column 1 (char 0)", and a 405 typed ``server_error``."""
    body = '{"model": "all-minilm-l6-v2", "input": "caf'.encode() + b"\xe9" + b'"}'
    offset = body.index(b"\xe9")
    for path in ("/v1/embeddings", "/embed"):
        r = httpx.post(server.url + path, content=body, headers={**AUTH, "content-type": "application/json"}, timeout=10)
        msg = _error(r, 400, "not UTF-8", f"byte 0xe9 at offset {offset}")
        assert "surrogates" not in msg and r.json()["error"]["code"] == "invalid_encoding"
    r = httpx.get(server.url + "/v1/embeddings", headers=AUTH, timeout=10)
    _error(r, 405, "GET is not allowed")
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_bad_input_is_a_400_that_says_what_and_where(server: Server, real: Embedder) -> None:
    cases = [
        ({"model": MINILM, "input": []}, ["empty"]),
        ({"model": MINILM, "input": ["fine", ""]}, ["input[1]", "empty"]),
        ({"model": MINILM, "input": ["fine", "also", 7]}, ["input[2]", "int", "expected a string"]),
        ({"model": MINILM, "input": [[101, 2023, 102]]}, ["input[0]", "token-id", "check_embedding_ctx_length=False"]),
        ({"model": MINILM, "input": [101, 2023]}, ["input[0]", "token-id"]),
        ({"model": MINILM, "input": "x", "dimensions": 128}, ["'dimensions' is 128", str(real.dim)]),
        ({"model": MINILM, "input": "x", "encoding_format": "int8"}, ["encoding_format"]),
        ({"model": MINILM, "input": "x", "input_type": "question"}, ["input_type"]),
        ({"model": MINILM}, ["'input' is missing"]),
        ({"input": "x"}, ["'model' is required", MINILM]),
    ]
    for body, words in cases:
        _error(_post(server, "/v1/embeddings", body), 400, *words)
    r = httpx.post(server.url + "/v1/embeddings", content=b"{not json", headers={**AUTH, "content-type": "application/json"}, timeout=10)
    _error(r, 400, "not valid JSON")
    with pytest.raises(openai.BadRequestError, match="token-id"):
        _client(server).embeddings.create(model=MINILM, input=[[101, 2023, 102]])


def test_api_key_unknown_model_and_path(server: Server) -> None:
    body = {"model": MINILM, "input": "hello"}
    _error(_post(server, "/v1/embeddings", body, headers={}), 401, "missing API key")
    _error(_post(server, "/v1/embeddings", body, headers={"Authorization": "Bearer nope"}), 401, "wrong API key")
    _error(httpx.get(server.url + "/v1/models", timeout=10), 401)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="nope", max_retries=0).embeddings.create(model=MINILM, input="x")
    for path in ("/health", "/ready", "/metrics"):
        assert httpx.get(server.url + path, timeout=10).status_code == 200, path
    _error(_post(server, "/v1/embeddings", {"model": "gpt-4", "input": "x"}), 404, "'gpt-4'", MINILM)
    with pytest.raises(openai.NotFoundError):
        _client(server).embeddings.create(model="text-embedding-3-small", input="x")
    _error(_post(server, "/embed", {"inputs": "x", "model": "nope"}), 404, "'nope'")
    _error(httpx.get(server.url + "/v2/nothing", timeout=10), 404, "/v2/nothing")
    assert _post(server, "/embeddings", body).status_code == 200  # the path without /v1 too


def test_payload_limit_413_and_client_batches_are_split(strict: Server, tiny_bert_artifacts: Path) -> None:
    tiny = Embedder.load(tiny_bert_artifacts)
    _error(_post(strict, "/v1/embeddings", {"input": ["x" * 2000, "y" * 2500]}, headers={}), 413, "4000 bytes", "--max-payload")
    batch = [f"text number {i} with some words" for i in range(10)]  # 10 > --max-client-batch 3: split, not refused
    before = _metrics(strict)
    r = _post(strict, "/v1/embeddings", {"input": batch, "encoding_format": "float"}, headers={})
    assert r.status_code == 200, r.text
    got = np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)
    assert np.abs(got - tiny.encode(batch)).max() <= 1e-5
    assert r.json()["usage"]["prompt_tokens"] == tiny.tokenize(batch).n_tokens
    # split into chunks of 3, at most two of them queued at a time: no batch holds more than 6 of the 10
    model = (("model", tiny.manifest.name),)
    after = _metrics(strict)
    batches = after[("onnxembed_batch_size_count", model)] - before.get(("onnxembed_batch_size_count", model), 0)
    small = after[("onnxembed_batch_size_bucket", (("le", "8.0"), *model))] - before.get(("onnxembed_batch_size_bucket", (("le", "8.0"), *model)), 0)
    assert batches >= 2 and small == batches, (batches, small)


def test_too_many_concurrent_requests_is_a_429(strict: Server) -> None:
    """--max-concurrent-requests 1: while one request is in flight (its body still arriving), the next is refused."""
    assert_429_while_one_in_flight(strict, "/v1/embeddings", b'{"input": ["a slow client"]}', "/v1/embeddings", {"input": "x"})
    assert _post(strict, "/v1/embeddings", {"input": "x"}, headers={}).status_code == 200  # the slot is free again


def assert_429_while_one_in_flight(server: Server, path: str, payload: bytes, other: str, other_body: Any) -> None:
    """A request to ``path`` whose body is still arriving holds the only slot: ``other`` answers 429, then the first 200."""
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as slow:
        slow.sendall(head.encode() + payload[:10])
        for _ in range(400):
            if _metrics(server)[("onnxembed_requests_in_flight", ())] >= 1:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the slow request never showed up as in flight")
        _error(_post(server, other, other_body, headers={}), 429, "limit is 1")
        slow.sendall(payload[10:])
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = slow.recv(1 << 16)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_a_request_whose_client_left_is_dropped_before_it_runs(server: Server, texts: list[str]) -> None:
    model = (("model", MINILM),)
    before = _metrics(server)
    long_job: dict[str, Any] = {}
    big = {"model": MINILM, "input": (texts * 4)[:1024]}  # four chunks: keeps the queue busy
    t = threading.Thread(target=lambda: long_job.setdefault("r", _post(server, "/v1/embeddings", big, timeout=120)))
    t.start()
    try:
        for _ in range(400):
            if _metrics(server)[("onnxembed_queue_depth", model)] > 0:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the long request never queued")
        payload = json.dumps({"model": MINILM, "input": ["left", "before", "its", "turn"]}).encode()
        head = f"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(head.encode() + payload)
            # close only once the server has taken the request in (2 in flight: the long one and this one);
            # the long one is still running then, so this one waits in the queue behind it
            _wait_for(server, lambda m: m[IN_FLIGHT] >= 2, "the short request never showed up as in flight")
    finally:
        t.join(120)
    assert long_job["r"].status_code == 200
    after = _metrics(server)
    for _ in range(100):
        if after[("onnxembed_dropped_texts_total", model)] > before.get(("onnxembed_dropped_texts_total", model), 0):
            break
        time.sleep(0.02)
        after = _metrics(server)
    assert after[("onnxembed_dropped_texts_total", model)] - before.get(("onnxembed_dropped_texts_total", model), 0) == 4
    assert after[("onnxembed_texts_total", model)] - before[("onnxembed_texts_total", model)] == 1024


# ----------------------------------------------------------------------------------------- shutdown


def _wait_for(server: Server, cond: Any, why: str, tries: int = 1000) -> dict:
    """Poll ``/metrics`` (every 10 ms, at most ``tries`` times) until ``cond(metrics)``; the metrics then."""
    for _ in range(tries):
        m = _metrics(server)
        if cond(m):
            return m
        time.sleep(0.01)
    pytest.fail(f"{why}:\n{server.text()}")


def _hold(server: Server, body: bytes, keep: int = 10) -> socket.socket:
    """A POST /v1/embeddings whose body is sent up to ``keep`` bytes: in flight until the test sends the rest."""
    head = f"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=120)
    sock.sendall(head.encode() + body[:keep])
    return sock


def _answer(sock: socket.socket) -> tuple[int, Any]:
    import http.client

    resp = http.client.HTTPResponse(sock)
    resp.begin()
    return resp.status, json.loads(resp.read())


def _wait_draining(server: Server) -> httpx.Response:
    for _ in range(1000):
        ready = httpx.get(server.url + "/ready", timeout=10)
        if ready.status_code == 503:
            return ready
        time.sleep(0.01)
    pytest.fail(f"/ready never answered 503 after the signal:\n{server.text()}")


# Run in the server's interpreter: Embedder.load (the model load the server does in the background) first
# says it began, then waits for the test's word, at most 120 s. The test sees the server while it loads.
HOLD_LOAD = """
import time
from pathlib import Path
from onnxembed import Embedder
_load = Embedder.load.__func__
def _held(cls, *a, **kw):
    Path({loading!r}).touch()
    for _ in range(1200):
        if Path({release!r}).exists():
            break
        time.sleep(0.1)
    return _load(cls, *a, **kw)
Embedder.load = classmethod(_held)
"""


def test_health_while_loading_and_ready_only_once_warm(tiny_bert_artifacts: Path, tmp_path: Path) -> None:
    """README: /health is liveness; /ready answers 503 while loading, 200 once warm. The load is held by
    the test, so "while loading" is a state the test is sure of, not a window it hopes to catch."""
    loading, release = tmp_path / "loading", tmp_path / "release"
    s = Server([tiny_bert_artifacts], "--threads", "1", log=tmp_path / "server.log",
               before=HOLD_LOAD.format(loading=str(loading), release=str(release)))
    try:
        for _ in range(2400):
            if loading.exists() or s.proc.poll() is not None:
                break
            time.sleep(0.05)
        assert loading.exists(), f"the model load never began:\n{s.text()}"
        s.wait_listening()
        for _ in range(3):  # the same answers each time: the load cannot finish while it is held
            assert httpx.get(s.url + "/health", timeout=10).status_code == 200
            ready = httpx.get(s.url + "/ready", timeout=10)
            assert ready.status_code == 503 and ready.json()["status"] == "loading", ready.text
            assert not any(ready.json()["models"].values()), ready.text
            _error(httpx.post(s.url + "/v1/embeddings", json={"input": "early"}, timeout=10), 503, "still loading")
        release.touch()
        s.wait_ready()
        assert httpx.get(s.url + "/health", timeout=10).status_code == 200
        assert httpx.post(s.url + "/v1/embeddings", json={"input": "on time"}, timeout=60).status_code == 200
    finally:
        release.touch()
        code = s.stop()
    assert code == 0, s.text()


def test_sigterm_with_requests_in_flight_loses_none(tiny_bert_artifacts: Path, tmp_path: Path) -> None:
    """8 requests in flight when SIGTERM arrives, held there by the test (their bodies are not all sent), so
    none can finish before the checks on any machine: /ready and new requests answer 503, the process waits
    for all 8, then every one of them gets its vectors (run during the drain) and the exit status is 0."""
    tiny = Embedder.load(tiny_bert_artifacts)
    s = Server([tiny_bert_artifacts], "--max-client-batch", "4", "--threads", "1", log=tmp_path / "server.log")
    s.wait_ready()
    jobs = [[f"request {j} text {i} " + "more words " * (i % 30) for i in range(300)] for j in range(8)]
    bodies = [json.dumps({"input": job, "encoding_format": "float"}).encode() for job in jobs]
    socks: list[socket.socket] = []
    answers: list[tuple[int, Any]] = []
    try:
        socks = [_hold(s, body) for body in bodies]
        _wait_for(s, lambda m: m[IN_FLIGHT] == 8, "the 8 requests never were in flight together")
        s.proc.send_signal(signal.SIGTERM)
        ready = _wait_draining(s)
        late = httpx.post(s.url + "/v1/embeddings", json={"input": "too late"}, timeout=10)
        in_flight = _metrics(s)[IN_FLIGHT]
        alive = s.proc.poll() is None
        for sock, body in zip(socks, bodies):
            sock.sendall(body[10:])
        answers = [_answer(sock) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
        code = s.stop(None if answers else signal.SIGTERM)  # after the answers it exits on its own: no second signal
    assert in_flight == 8 and alive, (in_flight, alive)  # nothing finished, nothing was dropped, the process waits
    assert ready.json()["status"] == "draining"
    _error(late, 503, "shutting down")
    assert code == 0, s.text()
    assert len(answers) == 8
    for job, (status, body) in zip(jobs, answers):
        assert status == 200, body
        got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
        assert np.abs(got - tiny.encode(job)).max() <= 1e-5


def test_a_second_sigint_during_the_drain_stops_at_once(tiny_bert_artifacts: Path, tmp_path: Path) -> None:
    """README: "A second SIGINT stops at once": with a request still in flight (held by the test), the first
    SIGINT drains and waits for it; the second ends the process without waiting, and that request gets no answer."""
    s = Server([tiny_bert_artifacts], "--threads", "1", log=tmp_path / "server.log")
    s.wait_ready()
    body = json.dumps({"input": ["never finished"]}).encode()
    sock = _hold(s, body)
    try:
        _wait_for(s, lambda m: m[IN_FLIGHT] == 1, "the held request never was in flight")
        s.proc.send_signal(signal.SIGINT)
        assert _wait_draining(s).json()["status"] == "draining"
        assert _metrics(s)[IN_FLIGHT] == 1 and s.proc.poll() is None  # the first SIGINT waits for the request
        s.proc.send_signal(signal.SIGINT)
        code = s.proc.wait(30)
        try:
            sock.sendall(body[10:])
            answer = sock.recv(1 << 16)
        except OSError:
            answer = b""
    finally:
        sock.close()
        s.stop()
    # cut short: no answer, or uvicorn's 500 for a response it never completed; never a 200
    assert answer == b"" or answer.startswith(b"HTTP/1.1 500"), answer[:300]
    assert "second interrupt" in s.text()
    assert code is not None  # it ended within 30 s with the request unfinished (today with status 0, as a clean drain)


def test_cli_errors_before_listening(tmp_path: Path) -> None:
    from conftest import run_cli

    proc = run_cli("serve", str(tmp_path / "nowhere"), check=False, timeout=120)
    assert proc.returncode == 2 and "nowhere" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_readme_serve_examples_run(server: Server) -> None:
    """The README's Serve section: its curl command and its openai SDK example, against a live server."""
    import re
    import shutil

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Serve\n", 1)[1].split("\n## ", 1)[0]
    url = "http://127.0.0.1:8080"
    blocks = [b for b in re.findall(r"```python\n(.*?)```", section, re.S) if url in b]
    assert blocks, "the Serve section has no openai SDK example"
    for code in blocks:
        code = code.replace(url, server.url).replace('api_key="unused"', f'api_key="{KEY}"')
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.split()[:2] == ["2", "384"], proc.stdout
    curls = [line for line in re.findall(r"```bash\n(.*?)```", section, re.S)[1].splitlines() if line.startswith("curl ")]
    assert curls
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    import shlex

    for line in curls:
        argv = shlex.split(line.replace(url, server.url)) + ["-H", f"Authorization: Bearer {KEY}"]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        body = json.loads(proc.stdout)
        assert len(body["data"][0]["embedding"]) == 384 and body["usage"]["prompt_tokens"] > 0, proc.stdout[:300]


def test_workers_share_the_port_and_drain_together(tiny_bert_artifacts: Path, tmp_path: Path) -> None:
    """--workers 2: two processes on one port (SO_REUSEPORT), each answering correctly; SIGTERM ends both, exit 0."""
    tiny = Embedder.load(tiny_bert_artifacts)
    s = Server([tiny_bert_artifacts], "--workers", "2", "--threads", "1", log=tmp_path / "server.log")
    try:
        s.wait_ready()
        for _ in range(200):  # both workers warm: /ready on fresh connections is 200 ten times running
            if all(httpx.get(s.url + "/ready", timeout=5).status_code == 200 for _ in range(10)):
                break
            time.sleep(0.05)
        children = Path(f"/proc/{s.proc.pid}/task/{s.proc.pid}/children").read_text().split()
        workers = [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert len(workers) == 2, children
        texts = [f"worker test {i}" for i in range(24)]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda t: httpx.post(s.url + "/v1/embeddings", json={"input": t, "encoding_format": "float"}, timeout=60), texts))
        got = np.array([a.json()["data"][0]["embedding"] for a in answers], dtype=np.float32)
        assert np.abs(got - tiny.encode(texts)).max() <= 1e-5
    finally:
        code = s.stop()
    assert code == 0, s.text()
    assert all(not Path(f"/proc/{c}").exists() or b"spawn_main" not in Path(f"/proc/{c}/cmdline").read_bytes() for c in workers)


def test_workers_drain_and_exit_when_their_parent_is_killed(tiny_bert_artifacts: Path, tmp_path: Path) -> None:
    """A parent killed without forwarding SIGTERM (SIGKILL, the OOM killer) must not leave workers serving the port."""
    s = Server([tiny_bert_artifacts], "--workers", "2", "--threads", "1", log=tmp_path / "server.log")
    try:
        s.wait_ready()
        deadline = time.monotonic() + 60
        workers: list[str] = []
        while time.monotonic() < deadline and len(workers) < 2:
            children = Path(f"/proc/{s.proc.pid}/task/{s.proc.pid}/children").read_text().split()
            workers = [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
            time.sleep(0.1)
        assert len(workers) == 2
        s.proc.kill()
        s.proc.wait(10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(Path(f"/proc/{c}").exists() for c in workers):
            time.sleep(0.2)
        left = [c for c in workers if Path(f"/proc/{c}").exists() and b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert not left, f"workers {left} outlived their parent"
        assert "is gone: draining this worker" in s.text()
    finally:
        for c in workers:
            if Path(f"/proc/{c}").exists():
                os.kill(int(c), signal.SIGKILL)
        s.stop()


def test_max_length_caps_the_tokens_per_text_and_info_says_so(tiny_bert_artifacts: Path, tmp_path: Path) -> None:
    """--max-length bounds one text's tokens (so its memory) below the model's window: /info reports it and a long
    text is embedded as Embedder.load(max_length=...) embeds it; the warm-up never runs past the batch budget."""
    capped = Embedder.load(tiny_bert_artifacts, max_length=12)  # the same automatic variant the server picks
    long = "a man is playing a large guitar on the stage while the crowd sings along loudly tonight"
    ids = capped.tokenize([long]).ids
    assert len(ids[0]) == 12
    with serving([tiny_bert_artifacts], "--max-length", "12", log=tmp_path / "server.log") as s:
        info = httpx.get(s.url + "/info", timeout=10).json()
        refused = httpx.post(s.url + "/embed", json={"inputs": [long]}, timeout=60)  # TEI: over the length without truncate
        r = httpx.post(s.url + "/embed", json={"inputs": [long], "normalize": True, "truncate": True}, timeout=60)
        assert r.status_code == 200, r.text
    assert refused.status_code == 400 and "max length of 12" in refused.json()["error"]["message"]
    assert info["max_input_length"] == 12 < capped.manifest.max_length
    np.testing.assert_allclose(np.array(r.json(), np.float32), capped.embed_batch(ids, normalize=True), atol=1e-5)


def test_warm_up_rows_stay_within_the_budget() -> None:
    from onnxembed.serve.loading import _warm_length

    assert _warm_length(512, 1024) == 512 and _warm_length(8192, 1024) == 1024 and _warm_length(32768, None) == 32768
    assert _warm_length(8192, 8192) == 8192 and _warm_length(384, 8192) == 384
