"""The real model's int8 gates and its O4 file, recomputed without the build's code or figures.

The build judges int8 with its own harness and writes the figures into the manifest; here
sentence-transformers (its ONNX backend, through optimum) loads the fp32 and the int8 files of the same
folder and embeds 2,500 held-out STS sentences, and the default gates must hold on its numbers. O4 (fp16
weights, for CUDA) runs once through a raw onnxruntime session on the CPU provider, compared with the
fp32 file run the same way.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from onnxembed import load_manifest
from onnxembed.providers import detect_cpu_features, int8_variants_for_cpu
from onnxembed.quantize import DEFAULT_GATES
from reference import onnxruntime_embeddings  # tests/ is on sys.path (pytest rootdir mode)

HELDOUT = ("stsb-test.tsv", "sts12.tsv", "sts13.tsv", "sts14.tsv", "sts15.tsv", "sts16.tsv")  # the gate split
CALIBRATION = ("stsb-dev.tsv", "sick-r-train-trial.tsv", "sick-r.tsv")  # what int8 was calibrated on
MEAN_GATE, MIN_GATE = 0.997, 0.98  # the default gates, written here so that loosening the code's defaults fails


def _sentences(path: Path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [s for row in rows[1:] for s in row[1:3]]


def heldout_sample(data_dir: Path, n: int) -> list[str]:
    """``n`` unique STS-B test and STS12-16 sentences, none among the calibration texts, spread evenly
    over the files in file order (deterministic)."""
    calibration = {s for f in CALIBRATION for s in _sentences(data_dir / "sts" / f)}
    pool = list(dict.fromkeys(s for f in HELDOUT for s in _sentences(data_dir / "sts" / f) if s.strip() and s not in calibration))
    assert len(pool) >= n, len(pool)
    return [pool[i * len(pool) // n] for i in range(n)]


def _st_encode(folder: Path, file: str, texts: list[str]) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), backend="onnx", device="cpu", model_kwargs={"file_name": file, "provider": "CPUExecutionProvider"})
    ort_model = model[0].auto_model
    assert Path(ort_model.path).resolve() == (folder / file).resolve(), (ort_model.path, file)  # the file asked for
    return model.encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True).astype(np.float64)


def test_int8_holds_the_default_gates_in_sentence_transformers(default_artifacts: Path, data_dir: Path) -> None:
    """Every int8 file this CPU would run (the runtime's rule: the AVX512-VNNI file only where VNNI exists,
    since elsewhere onnxruntime runs it on another, less exact path) against fp32, both through
    sentence-transformers' ONNX backend."""
    assert (DEFAULT_GATES["mean_cosine"], DEFAULT_GATES["min_cosine"]) == (MEAN_GATE, MIN_GATE)
    texts = heldout_sample(data_dir, 2500)
    assert len(set(texts)) == len(texts) == 2500
    m = load_manifest(default_artifacts)
    runnable = int8_variants_for_cpu(m.variants, detect_cpu_features())
    assert runnable, f"no int8 file for this CPU among {sorted(m.variants)}"
    fp32 = _st_encode(default_artifacts, m.variants["fp32"].file, texts)
    figures = {}
    for name in runnable:
        cos = (_st_encode(default_artifacts, m.variants[name].file, texts) * fp32).sum(1)
        figures[name] = (float(cos.mean()), float(cos.min()), texts[int(cos.argmin())])
        assert cos.mean() >= MEAN_GATE and cos.min() >= MIN_GATE, (name, figures[name])
    print(json.dumps(figures, indent=1))


def test_o4_through_a_raw_onnxruntime_session(default_artifacts: Path, data_dir: Path) -> None:
    import onnx

    m = load_manifest(default_artifacts)
    o4 = m.variants["O4"]
    assert o4.precision == "fp16" and o4.device == "cuda"
    graph = onnx.load(str(default_artifacts / o4.file))
    weights = [i for i in graph.graph.initializer if len(i.dims) == 2]
    assert weights and all(i.data_type == onnx.TensorProto.FLOAT16 for i in weights), "O4's matrices are not all fp16"
    texts = heldout_sample(data_dir, 300)
    ref = onnxruntime_embeddings(default_artifacts, m.variants["fp32"].file, texts, normalize=True)
    got = onnxruntime_embeddings(default_artifacts, o4.file, texts, normalize=True)
    cos = (got * ref).sum(1)
    assert cos.min() >= 0.9999, (float(cos.min()), texts[int(cos.argmin())])
    assert np.abs(got - ref).max() > 0  # fp16 weights do change the numbers: this ran the O4 file
