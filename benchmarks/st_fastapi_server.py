"""The server many users write: FastAPI + sentence-transformers (torch), one ``encode`` per request.

Baseline (c) of ``serve_load.py``. Run: ``MODEL_PATH=... uvicorn st_fastapi_server:app --port 8002``
from this folder (the main venv has fastapi, uvicorn and sentence-transformers).
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer

model = SentenceTransformer(os.environ["MODEL_PATH"], device="cpu")
app = FastAPI()


class EmbeddingRequest(BaseModel):
    input: str | list[str]
    model: str = "default"
    encoding_format: str = "float"


@app.post("/v1/embeddings")
def embeddings(req: EmbeddingRequest) -> dict:
    texts = [req.input] if isinstance(req.input, str) else req.input
    vectors = model.encode(texts, normalize_embeddings=True)
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)],
        "model": req.model,
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }


@app.get("/health")
def health() -> dict:
    return {"status": "ok"}
