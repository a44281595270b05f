"""Calibration: the local STS texts (for benchmarks) and the activation statistics of a model over texts."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import numpy.typing as npt

from .qdq import ActStats
from .reference import ReferenceEncoder, make_session

__all__ = ["collect_stats", "data_dir", "read_sts", "unique_sentences"]

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
    """Rows of an STS file: header ``score<TAB>sentence1<TAB>sentence2``, no quoting (the build's
    reader of labelled pairs, :func:`onnxembed.quantize.data.read_texts`)."""
    from .textfiles import _read_tsv

    return _read_tsv(Path(path))[1]


def unique_sentences(rows: Sequence[tuple[float, str, str]]) -> list[str]:
    """Both sentences of every row, first occurrence order, duplicates and blanks removed."""
    seen: dict[str, None] = {}
    for _, a, b in rows:
        for t in (a, b):
            if t.strip():
                seen.setdefault(t, None)
    return list(seen)


def collect_stats(model: Any, activations: Sequence[str], enc: ReferenceEncoder, texts: Sequence[str], *, sample_rows: int = 1024,
                  growth_texts: Sequence[Any] = ()) -> dict[str, ActStats]:
    """Per-channel min/max of each named activation over the real (non-padding) tokens of ``texts``.

    Also keeps a fixed, evenly spaced subsample of token rows for the sensitivity measure, and, with
    ``growth_texts`` (other texts: the search's dev set), each activation's ``growth``: its largest |value|
    over those texts divided by its largest |value| over ``texts`` (run on the same session).
    """
    import onnx

    probe = onnx.ModelProto()
    probe.CopyFrom(model)  # not through bytes: a model over 2 GB has none
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
    seen = dict.fromkeys(names, 0.0)
    for idx in enc.batches(growth_texts) if len(growth_texts) else []:
        f = enc.feeds([growth_texts[i] for i in idx])
        real = f["attention_mask"].astype(bool).reshape(-1)
        for name, x in zip(names, sess.run(names, f)):
            seen[name] = max(seen[name], float(np.abs(x.reshape(-1, x.shape[-1])[real]).max(initial=0.0)))
    stats = {}
    for name in names:
        sample = np.concatenate(rows[name])
        step = max(1, len(sample) // sample_rows)
        absmax = max(float(hi[name].max()), float(-lo[name].min()), 1e-12)
        stats[name] = ActStats(cmin=lo[name], cmax=hi[name], sample=sample[::step][:sample_rows],
                               growth=seen[name] / absmax if len(growth_texts) else 1.0)
    return stats
