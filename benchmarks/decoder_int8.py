"""Decoder int8: static QDQ (the build's recipe) against weight-only MatMulNBits, against fp32, on a random
checkpoint of Qwen3-Embedding-0.6B's exact width (1024 hidden, 16 heads, 8 key/value heads, head_dim 128,
SwiGLU 3072, the real Qwen BPE tokenizer) with fewer layers (``--layers``; the real model has 28: each
layer is the same work, so the per-layer ratio is the model's, embeddings and the lookup aside).

The fp32 file and the QDQ file come from ``onnxembed build`` (offline hub, ``--skip-gates``: random weights
carry no meaning; the build still validates fp32 against PyTorch), the MatMulNBits file from
``onnxembed.quantize.weight_only``. Speed: interleaved rounds in one run on a (batch x tokens) random batch;
ratios = fp32 time / variant time. Agreement: cosine of each int8 file's last-token embeddings to fp32.
Usage:

    python benchmarks/decoder_int8.py [--layers 4] [--batch 32] [--tokens 128] [--rounds 5] [--calibration FILE] [--work DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def build(work: Path, layers: int, calibration: Path | None) -> Path:
    from tokenizer_fixtures import qwen_bpe

    from onnxembed.export.registry import load_registry
    from onnxembed.export.synthetic import offline_hub, tokenizer_folder

    spec = dataclasses.replace(load_registry()["qwen3-embedding-0.6b"], num_layers=layers)
    hub = offline_hub({spec.name: spec}, work, vocab_from={"qwen": tokenizer_folder("qwen", qwen_bpe(), work / "tok")})
    out = work / "artifact"
    if not (out / "manifest.json").is_file():
        subprocess.run([sys.executable, "-m", "onnxembed.cli", "build", spec.name, "--out", str(out), "--registry", str(hub.registry),
                        "--variants", "fp32,quint8_avx2", "--skip-gates", "--force",
                        *(["--calibration", str(calibration)] if calibration else [])], env={**os.environ, **hub.env}, check=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/qwen3-bench"))
    ap.add_argument("--calibration", type=Path, default=None, help="int8 calibration texts (default: the build's own set)")
    args = ap.parse_args()

    import onnxruntime as ort

    from onnxembed.batching import position_ids
    from onnxembed.bench.machine import machine_info
    from onnxembed.export.fusion import fused_op_counts
    from onnxembed.pooling import pool
    from onnxembed.quantize.weight_only import weight_only_int8

    args.work.mkdir(parents=True, exist_ok=True)
    art = build(args.work, args.layers, args.calibration)
    files = {"fp32": art / "onnx" / "model.onnx", "qdq_quint8_avx2": art / "onnx" / "model_quint8_avx2.onnx",
             "matmulnbits_int8": args.work / "model_matmulnbits_int8.onnx"}
    if not files["matmulnbits_int8"].is_file():
        weight_only_int8(files["fp32"], files["matmulnbits_int8"])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    sessions = {k: ort.InferenceSession(str(f), opts, providers=["CPUExecutionProvider"]) for k, f in files.items()}
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 150000, (args.batch, args.tokens), dtype=np.int64)
    mask = np.ones_like(ids)
    mask[1::2, args.tokens // 2:] = 0  # half the rows padded, so pooling sees real padding
    feed = {"input_ids": ids, "attention_mask": mask, "position_ids": position_ids(mask)}
    out = {k: pool(s.run(None, feed)[0], mask, "lasttoken", True) for k, s in sessions.items()}
    times: dict[str, list[float]] = {k: [] for k in sessions}
    names = list(sessions)
    for r in range(args.rounds):
        for k in names[r % len(names):] + names[: r % len(names)]:  # rotated order each round
            t0 = time.perf_counter()
            sessions[k].run(None, feed)
            times[k].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    report = {
        "machine": machine_info(args.threads or None),
        "shape": {"layers": args.layers, "batch": args.batch, "tokens": args.tokens, "rounds": args.rounds},
        "files": {k: {"MB": round(f.stat().st_size / 1e6, 1), "ops": fused_op_counts(f)} for k, f in files.items()},
        "median_ms": {k: round(1e3 * v, 1) for k, v in med.items()},
        "speedup_vs_fp32": {k: round(med["fp32"] / v, 2) for k, v in med.items()},
        "min_cosine_vs_fp32": {k: round(float(((v * out["fp32"]).sum(1)).min()), 5) for k, v in out.items()},
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
