"""Request bodies in, response bodies out: the OpenAI and TEI formats as pure functions.

Parsing checks what a client sent and says what is wrong with it; it knows nothing about models
or the queue. Answers are bytes (orjson).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from onnxembed.embedder import KINDS

__all__ = ["ApiError", "EmbedRequest", "RerankRequest", "cohere_rerank_response", "error_type", "openai_response", "parse_cohere_rerank",
           "parse_json", "parse_openai", "parse_tei", "parse_tei_rerank", "ranked_order", "tei_rerank_response", "tei_response"]

# The request field for the model's prompts: query/passage prefixes (e5 needs them) and the manifest's
# named prompts (checked against the model by the server); "document" is accepted for "passage" (the
# word other embedding APIs use).
KIND_FIELD = "input_type"
_ALIASES = {"document": "passage"}

# OpenAI's error types: every 4xx is the client's (invalid_request_error) except 429; 5xx the server's.
_TYPES = {429: "rate_limit_error"}


def error_type(status: int) -> str:
    """The OpenAI ``type`` of an error status."""
    return _TYPES.get(status, "invalid_request_error" if 400 <= status < 500 else "server_error")


class ApiError(Exception):
    """An answer with an error status and an OpenAI-style body ``{"error": {message, type, code}}``."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code

    def body(self) -> bytes:
        err = {"message": self.message, "type": error_type(self.status), "code": self.code}
        return orjson.dumps({"error": err})


@dataclass(frozen=True)
class EmbedRequest:
    """What both APIs ask for, once checked."""

    texts: list[str]
    model: str | None
    kind: str | None = None
    normalize: bool | None = None  # None: as the model's manifest says
    truncate: bool = True
    encoding: str = "float"  # "float" or "base64"
    dimensions: int | None = None
    field: str = "input"  # the request's name for the texts, for messages


def parse_json(body: bytes) -> Any:
    """The request body as JSON; a body that is not UTF-8 is named as such, with the byte and its offset."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as u:
            raise ApiError(
                400, f"the request body is not UTF-8: byte 0x{body[u.start]:02x} at offset {u.start}; send JSON encoded as UTF-8", "invalid_encoding"
            ) from None
        raise ApiError(400, f"the request body is not valid JSON: {e}", "invalid_json") from None


def _bad(message: str, code: str = "invalid_input") -> ApiError:
    return ApiError(400, message, code)


def _texts(value: Any, field: str) -> list[str]:
    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, list):
        items = value
    else:
        raise _bad(f"'{field}' must be a string or a list of strings, found {type(value).__name__}")
    if not items:
        raise _bad(f"'{field}' is empty; send at least one text")
    all_ints = all(_is_int(t) for t in items)  # one text as token ids: [101, 2023, 102]
    for i, t in enumerate(items):
        if isinstance(t, str):
            if not t:
                raise _bad(f"{field}[{i}] is an empty string; send text to embed")
            continue
        if all_ints or (isinstance(t, list) and t and all(_is_int(x) for x in t)):
            raise _bad(
                f"{field}[{i}] is a token-id array ({type(t).__name__}), but this server takes text: it tokenizes "
                "with the model's own vocabulary, and ids from another tokenizer (tiktoken) mean nothing to it. "
                "Send strings; with LangChain's OpenAIEmbeddings pass check_embedding_ctx_length=False",
                "token_ids_not_supported",
            )
        raise _bad(f"{field}[{i}] is {type(t).__name__} {orjson.dumps(t).decode()[:60]}, expected a string")
    return items


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _bool(body: dict[str, Any], key: str, default: bool | None) -> bool | None:
    value = body.get(key, default)
    if value is not None and not isinstance(value, bool):
        raise _bad(f"'{key}' must be true or false, found {orjson.dumps(value).decode()[:40]}")
    return value


def _kind(body: dict[str, Any]) -> str | None:
    value = body.get(KIND_FIELD)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _bad(f"'{KIND_FIELD}' must be a prompt name such as {sorted(KINDS)} (adds the model's prefix), found {orjson.dumps(value).decode()[:40]}")
    return _ALIASES.get(value, value)


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _bad(f"the request body must be a JSON object, found {type(body).__name__}")
    return body


def _texts_and_model(b: dict[str, Any], field: str) -> tuple[list[str], str | None]:
    """The texts under ``field`` (a string or a list of strings) and the optional ``model`` name."""
    if field not in b:
        raise _bad(f"'{field}' is missing: send a string or a list of strings")
    texts = _texts(b[field], field)
    model = b.get("model")
    if model is not None and not isinstance(model, str):
        raise _bad(f"'model' must be a string, found {type(model).__name__}")
    return texts, model


def parse_openai(body: Any) -> EmbedRequest:
    """``POST /v1/embeddings``: ``input``, ``model``, ``encoding_format``, ``dimensions``, plus
    ``input_type`` (query/passage prefix) and ``truncate`` (default true)."""
    b = _object(body)
    texts, model = _texts_and_model(b, "input")
    encoding = b.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise _bad(f"'encoding_format' must be 'float' or 'base64', found {encoding!r}")
    dims = b.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int)):
        raise _bad(f"'dimensions' must be an integer, found {orjson.dumps(dims).decode()[:40]}")
    truncate = _bool(b, "truncate", True)
    return EmbedRequest(texts, model, _kind(b), None, bool(truncate), encoding, dims)


def parse_tei(body: Any) -> EmbedRequest:
    """``POST /embed`` (text-embeddings-inference): ``inputs``, ``normalize`` (default true),
    ``truncate`` (default false, as TEI), plus ``input_type`` and ``model``."""
    b = _object(body)
    texts, model = _texts_and_model(b, "inputs")
    normalize = _bool(b, "normalize", True)
    truncate = _bool(b, "truncate", False)
    return EmbedRequest(texts, model, _kind(b), normalize, bool(truncate), field="inputs")


def openai_response(vectors: npt.NDArray[np.float32], model: str, n_tokens: int, n_truncated: int, encoding: str) -> bytes:
    """The OpenAI body; ``truncated_inputs`` (an extension) counts the inputs cut at max length."""
    if encoding == "base64":
        le = vectors.astype("<f4", copy=False)
        rows: list[Any] = [base64.b64encode(r.tobytes()).decode("ascii") for r in le]
    else:
        rows = list(vectors)
    data = [{"object": "embedding", "index": i, "embedding": r} for i, r in enumerate(rows)]
    body = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
        "truncated_inputs": n_truncated,
    }
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def tei_response(vectors: npt.NDArray[np.float32]) -> bytes:
    """TEI's body: a list of vectors."""
    return orjson.dumps(vectors, option=orjson.OPT_SERIALIZE_NUMPY)


# ------------------------------------------------------------------------------------- rerank


@dataclass(frozen=True)
class RerankRequest:
    """What both rerank APIs ask for, once checked: the query, its documents and the answer's shape."""

    query: str
    documents: list[str]
    model: str | None
    raw_scores: bool = False  # the logits, without the model's activation
    truncate: bool = True
    return_documents: bool = False
    top_n: int | None = None
    field: str = "documents"  # the request's name for the documents, for messages


def _query(b: dict[str, Any]) -> str:
    q = b.get("query")
    if not isinstance(q, str) or not q:
        raise _bad(f"'query' must be a non-empty string, found {orjson.dumps(q).decode()[:60]}")
    return q


def parse_tei_rerank(body: Any) -> RerankRequest:
    """``POST /rerank`` (text-embeddings-inference): ``query``, ``texts``, ``raw_scores`` (default false),
    ``return_text`` (default false), ``truncate`` (default false, as TEI), plus ``model``."""
    b = _object(body)
    query = _query(b)
    texts, model = _texts_and_model(b, "texts")
    return RerankRequest(query, texts, model, bool(_bool(b, "raw_scores", False)), bool(_bool(b, "truncate", False)),
                         bool(_bool(b, "return_text", False)), None, "texts")


def parse_cohere_rerank(body: Any) -> RerankRequest:
    """``POST /v1/rerank`` (Cohere, Jina): ``model``, ``query``, ``documents`` (strings or ``{"text": ...}``),
    ``top_n``, ``return_documents`` (default false); long documents are truncated, as Cohere does."""
    b = _object(body)
    query = _query(b)
    docs = b.get("documents")
    if isinstance(docs, list):
        docs = [d.get("text") if isinstance(d, dict) and set(d) == {"text"} else d for d in docs]
    texts, model = _texts_and_model({**b, "documents": docs} if "documents" in b else b, "documents")
    top_n = b.get("top_n")
    if top_n is not None and (not _is_int(top_n) or top_n < 1):
        raise _bad(f"'top_n' must be an integer >= 1, found {orjson.dumps(top_n).decode()[:40]}")
    return RerankRequest(query, texts, model, False, True, bool(_bool(b, "return_documents", False)), top_n, "documents")


def ranked_order(scores: npt.NDArray[np.float32], top_n: int | None) -> list[int]:
    """Indices by score, best first (ties in input order), at most ``top_n``."""
    return [int(i) for i in np.argsort(-scores, kind="stable")[:top_n]]


def tei_rerank_response(req: RerankRequest, scores: npt.NDArray[np.float32]) -> bytes:
    """TEI's body: ``[{"index", "score", "text"?}]``, best first."""
    out = [{"index": i, "score": float(scores[i]), **({"text": req.documents[i]} if req.return_documents else {})}
           for i in ranked_order(scores, None)]
    return orjson.dumps(out)


def cohere_rerank_response(req: RerankRequest, scores: npt.NDArray[np.float32], model: str, n_tokens: int, n_truncated: int) -> bytes:
    """Cohere's and Jina's body: ``results`` with ``index`` and ``relevance_score`` (and ``document``), best first."""
    results = [{"index": i, "relevance_score": float(scores[i]), **({"document": {"text": req.documents[i]}} if req.return_documents else {})}
               for i in ranked_order(scores, req.top_n)]
    return orjson.dumps({"model": model, "results": results, "usage": {"total_tokens": n_tokens}, "truncated_inputs": n_truncated})
