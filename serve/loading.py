"""Loading a served model: the runtime object for its task (an :class:`~onnxembed.Embedder`, or a
:class:`~onnxembed.Reranker` behind :class:`~.batcher.RerankStages`), with server session options,
warmed up at its longest batch before the server says it is ready."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from onnxembed import Embedder, Reranker, Tokens

from .batcher import RerankStages

__all__ = ["load_warm"]


def load_warm(folder: Path, task: str, *, variant: str, threads: int | None, max_tokens: int | None, max_batch_size: int,
              parallel: int | str = "auto", max_length: int | None = None) -> Embedder | RerankStages:
    """The folder's model for ``task`` (``embed`` or ``rerank``), loaded and warmed up; ``max_length``: tokens
    per input (None: the model's window)."""
    budget = {} if max_tokens is None else {"max_tokens": max_tokens}  # None: the runtime's default
    if task == "rerank":
        rr = Reranker.load(folder, variant=variant, threads=threads, parallel=parallel, session_options=_session_options(),
                           max_length=max_length, **budget)
        _warm_up_rerank(rr, max_batch_size)
        return RerankStages(rr)
    emb = Embedder.load(folder, variant=variant, threads=threads, parallel=parallel, session_options=_session_options(),
                        max_length=max_length, **budget)
    _warm_up(emb, max_batch_size)
    return emb


def _session_options() -> Any:
    """No spinning between runs: a server's onnxruntime threads should leave the cores to the
    event loop and the tokenizer while they wait for the next batch."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


def _warm_up_rerank(rr: Reranker, max_batch_size: int) -> None:
    """The reranker's warm-up: the largest batch of full-length pairs the budget allows, then one short pair
    (rows built from a short pair's ids, so nothing is counted as truncated)."""
    short = rr.tokenize([("warm", "warm")])
    ids, types = short.ids[0], short.type_ids[0]  # type: ignore[index]
    length = _warm_length(rr.max_length, rr.max_tokens)
    half = (length - len(ids)) // 2
    row = ids[:2] + [ids[1]] * half + ids[2:4] + [ids[3]] * (length - len(ids) - half) + ids[4:]
    row_types = [0] * (half + 3) + [types[-1]] * (len(row) - half - 3)
    rows = max(1, min(max_batch_size, (rr.max_tokens or length) // length))
    rr.score_batch(Tokens([row] * rows, [len(row)] * rows, rr.max_length, [row_types] * rows))
    rr.score_batch(short)


def _warm_length(max_length: int, max_tokens: int | None) -> int:
    """The warm-up's row length: the model's max length, but no longer than the batch budget. A long-window
    model (8,192 tokens; Qwen3's 32,768) is not run at its full window before the server is ready: one
    such text's attention alone needs GBs (over 20 GB for one 8,192-token Qwen3 text on the CPU provider)."""
    return max_length if max_tokens is None else max(2, min(max_length, max_tokens))


def _warm_up(emb: Embedder, max_batch_size: int) -> None:
    """Run the largest batch the budget allows at the model's max length (at most the budget's length),
    then one short text.

    The long rows are built from a short text's ids ([CLS] word ... word [SEP]), so the warm-up is
    not counted as truncated input.
    """
    short = emb.tokenize(["warm"]).ids[0]
    length = _warm_length(emb.max_length, emb.max_tokens)
    row = [short[0]] + [short[1]] * (length - 2) + [short[-1]]
    rows = max(1, min(max_batch_size, (emb.max_tokens or length) // length))
    emb.embed_batch([row] * rows)
    emb.embed_batch([short])

