"""The fp32 reference harness of the build: the checkpoint's own (transformers) tokenizer and the
manifest's pooling, run on any onnxruntime session, so that a candidate file (fused, fp16, int8) is
compared with the fp32 export on the same inputs. Used by the int8 stage (calibration, gates) and by
the export's variant checks.

Build-time only (it needs transformers); the runtime's own path is :class:`onnxembed.Embedder`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import numpy.typing as npt

from ..batching import position_ids
from ..pooling import pool

__all__ = ["ReferenceEncoder", "graph_feeds", "make_session"]


def graph_feeds(enc: Any, input_names: Sequence[str]) -> dict[str, npt.NDArray[np.int64]]:
    """A transformers tokenizer's padded batch as exactly the graph's inputs: XLM-R's tokenizer gives no
    token_type_ids (a BERT body with it, multilingual-e5-small, reads zeros, as torch does); a decoder's
    position_ids count each row's real tokens from 0, on either padding side."""
    made = {"token_type_ids": lambda: np.zeros_like(enc["input_ids"], dtype=np.int64),
            "position_ids": lambda: position_ids(enc["attention_mask"])}
    return {name: enc[name].astype(np.int64) if name in enc else made[name]() for name in input_names}


class ReferenceEncoder:
    """The build's reference encoder: the transformers tokenizer of the artifact folder plus pooling like
    the manifest says, run on any session (fp32 or a candidate int8 file) to compare their embeddings.

    Build-time only (it needs transformers); the runtime's own path is :class:`onnxembed.Embedder`.
    """

    def __init__(self, model_dir: Path, manifest: dict[str, Any], *, max_length: int | None = None, batch_size: int = 32) -> None:
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(str(model_dir))
        self.input_names = list(manifest["input_names"])
        self.max_length = int(max_length or manifest["max_length"])
        self.pooling = manifest["pooling"]
        self.normalize = bool(manifest["normalize"])
        self.batch_size = batch_size

    def feeds(self, texts: Sequence[str]) -> dict[str, npt.NDArray[np.int64]]:
        """One padded batch with exactly the graph's inputs."""
        enc = self.tok(list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
        return graph_feeds(enc, self.input_names)

    def pair_feeds(self, pairs: Sequence[tuple[str, str]]) -> dict[str, npt.NDArray[np.int64]]:
        """One padded batch of (query, document) pairs for a cross-encoder (``longest_first`` truncation)."""
        enc = self.tok([a for a, _ in pairs], [b for _, b in pairs], padding=True, truncation=True, max_length=self.max_length,
                       return_tensors="np")
        return {name: enc[name].astype(np.int64) for name in self.input_names}

    def batches(self, texts: Sequence[str]) -> list[npt.NDArray[np.int64]]:
        """Index batches sorted by length (little padding), deterministic."""
        order = np.argsort([len(t) for t in texts], kind="stable")
        return [order[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]

    def embed(self, session: Any, texts: Sequence[str], on_batch: Callable[[int], None] | None = None) -> npt.NDArray[np.float32]:
        """Pooled embeddings of ``texts`` with an onnxruntime session, in input order; ``on_batch(n)``
        after each batch of ``n`` texts (progress)."""
        out: npt.NDArray[np.float32] | None = None
        for idx in self.batches(texts):
            f = self.feeds([texts[i] for i in idx])
            emb = pool(session.run(None, f)[0], f["attention_mask"], self.pooling, self.normalize)
            if out is None:
                out = np.zeros((len(texts), emb.shape[1]), np.float32)
            out[idx] = emb
            if on_batch is not None:
                on_batch(len(idx))
        return out if out is not None else np.zeros((0, 0), np.float32)


def make_session(model: Any, threads: int = 0, *, exact_int8: bool = False) -> Any:
    """A CPU session on a path or an in-memory ``onnx.ModelProto``.

    ``exact_int8`` runs a QDQ int8 graph unfused (DequantizeLinear, then float MatMul): the exact integer
    products with int32 accumulation that the file's target CPU computes (VNNI, arm64 dot products),
    where this CPU's own int8 kernels would differ (AVX2 without VNNI saturates u8 x s8 sums in 16 bits).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    if exact_int8:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if isinstance(model, (str, Path)):
        return ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    from .onnx_files import session_source

    keep: list[Any] = []  # a model over 2 GB goes through a temporary file, removed once the session holds it
    return ort.InferenceSession(session_source(model, keep), opts, providers=["CPUExecutionProvider"])
