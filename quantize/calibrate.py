"""Calibration and evaluation text, tokenization, pooled embeddings and activation statistics."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import numpy.typing as npt

from ..pooling import pool
from .qdq import ActStats

__all__ = ["data_dir", "read_sts", "unique_sentences", "ReferenceEncoder", "collect_stats", "pool"]

logger = logging.getLogger(__name__)

def data_dir(override: str | Path | None = None) -> Path:
    """The local STS data folder: ``override``, ``$ONNXEMBED_DATA``, or ``shared/data`` beside a source checkout.

    (For benchmarks; the build resolves its texts with :func:`onnxembed.quantize.data.resolve_data`,
    which also knows user files and the Hugging Face hub.)
    """
    from .data import DATA_ENV, LOCAL_FILES, _local_folder

    found = _local_folder(override)
    if found is None:
        raise FileNotFoundError(
            f"no local STS data folder: ${DATA_ENV} is unset and there is no shared/data beside a source checkout; "
            f"set {DATA_ENV} to a folder holding {', '.join(LOCAL_FILES)}"
        )
    return found[0]


def read_sts(path: Path) -> list[tuple[float, str, str]]:
    """Rows of an STS file: header ``score<TAB>sentence1<TAB>sentence2``, no quoting."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        return [(float(r[0]), r[1], r[2]) for r in reader]


def unique_sentences(rows: Sequence[tuple[float, str, str]]) -> list[str]:
    """Both sentences of every row, first occurrence order, duplicates and blanks removed."""
    seen: dict[str, None] = {}
    for _, a, b in rows:
        for t in (a, b):
            if t.strip():
                seen.setdefault(t, None)
    return list(seen)


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
        out = {}
        for name in self.input_names:
            out[name] = enc[name].astype(np.int64) if name in enc else np.zeros_like(enc["input_ids"], dtype=np.int64)
        return out

    def batches(self, texts: Sequence[str]) -> list[npt.NDArray[np.int64]]:
        """Index batches sorted by length (little padding), deterministic."""
        order = np.argsort([len(t) for t in texts], kind="stable")
        return [order[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]

    def embed(self, session: Any, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Pooled embeddings of ``texts`` with an onnxruntime session, in input order."""
        out: npt.NDArray[np.float32] | None = None
        for idx in self.batches(texts):
            f = self.feeds([texts[i] for i in idx])
            emb = pool(session.run(None, f)[0], f["attention_mask"], self.pooling, self.normalize)
            if out is None:
                out = np.zeros((len(texts), emb.shape[1]), np.float32)
            out[idx] = emb
        return out if out is not None else np.zeros((0, 0), np.float32)


def make_session(model: Any, threads: int = 0) -> Any:
    """A CPU session on a path or an in-memory ``onnx.ModelProto``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    src = str(model) if isinstance(model, (str, Path)) else model.SerializeToString()
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def collect_stats(model: Any, activations: Sequence[str], enc: ReferenceEncoder, texts: Sequence[str], *, sample_rows: int = 1024) -> dict[str, ActStats]:
    """Per-channel min/max of each named activation over the real (non-padding) tokens of ``texts``.

    Also keeps a fixed, evenly spaced subsample of token rows for the sensitivity measure.
    """
    import onnx

    probe = onnx.ModelProto.FromString(model.SerializeToString())
    present = {o.name for o in probe.graph.output}
    for name in activations:
        if name not in present:
            probe.graph.output.append(onnx.ValueInfoProto(name=name))
    sess = make_session(probe)
    names = list(activations)
    lo: dict[str, npt.NDArray[np.float64]] = {}
    hi: dict[str, npt.NDArray[np.float64]] = {}
    rows: dict[str, list[npt.NDArray[np.float32]]] = {n: [] for n in names}
    for idx in enc.batches(texts):
        f = enc.feeds([texts[i] for i in idx])
        real = f["attention_mask"].astype(bool).reshape(-1)
        outs = sess.run(names, f)
        for name, x in zip(names, outs):
            x2 = x.reshape(-1, x.shape[-1])[real].astype(np.float64)
            lo[name] = np.minimum(lo[name], x2.min(0)) if name in lo else x2.min(0)
            hi[name] = np.maximum(hi[name], x2.max(0)) if name in hi else x2.max(0)
            rows[name].append(x2[:: max(1, len(x2) // 16)].astype(np.float32))
    stats = {}
    for name in names:
        sample = np.concatenate(rows[name])
        step = max(1, len(sample) // sample_rows)
        stats[name] = ActStats(cmin=lo[name], cmax=hi[name], sample=sample[::step][:sample_rows])
    return stats
