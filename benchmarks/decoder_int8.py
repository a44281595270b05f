"""Decoder int8: static QDQ (the build's recipe) against weight-only MatMulNBits, against fp32, on a random
checkpoint of Qwen3-Embedding-0.6B's exact architecture (1024 hidden, 16 heads, 8 key/value heads, head_dim
128, SwiGLU 3072, 151,669 embedding rows, the real Qwen BPE tokenizer) at full depth (28 layers) or fewer
(``--layers``; each layer is the same work).

The fp32 folder is ``--artifact`` (e.g. the one ``benchmarks/long_inputs.py`` builds; at full size it is
``model.onnx`` + ``model.onnx_data``) or built here through the offline hub (``onnxembed build --variants
fp32``, validated against PyTorch). The QDQ file comes from :func:`onnxembed.quantize.quantize_model` (preset
``--preset``; calibrated on STS-B dev from ``$ONNXEMBED_DATA``; gates not run: random weights carry no
meaning, and ``--alphas`` bounds the SmoothQuant search), the MatMulNBits file from
:func:`onnxembed.quantize.weight_only.weight_only_int8`. Speed: one onnxruntime session per file
(``--threads``, 0 = one per core, one batch at a time), interleaved rounds with the order rotated each round
on a (batch x tokens) batch of random ids; ratio = fp32 median / file median. Agreement: cosine of each int8
file's embeddings to fp32's on ``--sentences`` real STS sentences (structural only on random weights: it
shows the int8 graph computes the same function, not what a trained model would lose). Usage:

    python benchmarks/decoder_int8.py --artifact /tmp/long-inputs/artifacts/qwen3-embedding-0.6b [--rounds 5] [--json FILE]
    python benchmarks/decoder_int8.py --layers 4
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))


def build(work: Path, layers: int) -> Path:
    from tokenizer_fixtures import qwen_bpe

    from onnxembed.export.registry import load_registry
    from onnxembed.export.synthetic import offline_hub, tokenizer_folder

    spec = dataclasses.replace(load_registry()["qwen3-embedding-0.6b"], num_layers=layers)
    hub = offline_hub({spec.name: spec}, work, vocab_from={"qwen": tokenizer_folder("qwen", qwen_bpe(), work / "tok")})
    out = work / "artifact"
    if not (out / "manifest.json").is_file():
        subprocess.run([sys.executable, "-m", "onnxembed.cli", "build", spec.name, "--out", str(out), "--registry", str(hub.registry),
                        "--variants", "fp32", "--force"], env={**os.environ, **hub.env}, check=True)
    return out


def file_mb(path: Path) -> float:
    from onnxembed.quantize.onnx_files import data_files

    return round(sum(p.stat().st_size for p in [path, *(path.parent / d for d in data_files(path))]) / 1e6, 1)


def make_files(art: Path, work: Path, preset: str, alphas: list[float]) -> tuple[dict[str, Path], dict]:
    from onnxembed.export.synthetic import RANDOM_WEIGHT_GATES
    from onnxembed.quantize import quantize_model
    from onnxembed.quantize.weight_only import weight_only_int8

    files = {"fp32": art / "onnx" / "model.onnx", "qdq_int8": work / f"model_qdq_{preset}.onnx",
             "matmulnbits_int8": work / "model_matmulnbits_int8.onnx"}
    seconds = {}
    if not files["matmulnbits_int8"].is_file():
        t = time.perf_counter()
        weight_only_int8(files["fp32"], files["matmulnbits_int8"])
        seconds["matmulnbits_int8"] = round(time.perf_counter() - t, 1)
    if not files["qdq_int8"].is_file():
        t = time.perf_counter()
        r = quantize_model(art, preset, out=files["qdq_int8"], gates=dict(RANDOM_WEIGHT_GATES), skip_gates=True, check=False,
                           smooth_alphas=alphas)
        seconds["qdq_int8"] = round(time.perf_counter() - t, 1)
        (work / "qdq_recipe.json").write_text(json.dumps(r.recipe, indent=2, default=str))
    return files, seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", type=Path, default=None, help="an fp32 qwen3 folder (default: build one with --layers)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--shapes", default="32x128,1x128", help="batch x tokens, comma-separated")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--preset", default="avx512_vnni")
    ap.add_argument("--alphas", default="0.5", help="SmoothQuant strengths the QDQ search tries (the build tries 0.75,0.6,0.5)")
    ap.add_argument("--sentences", type=int, default=500)
    ap.add_argument("--work", type=Path, default=Path("/tmp/qwen3-bench"))
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--make-only", action="store_true", help="only write the two int8 files")
    args = ap.parse_args()

    import onnxruntime as ort

    from bench_runtime import sts_sentences
    from onnxembed import load_manifest
    from onnxembed.batching import position_ids
    from onnxembed.bench.machine import machine_info
    from onnxembed.export.fusion import fused_op_counts
    from onnxembed.quantize.reference import ReferenceEncoder

    args.work.mkdir(parents=True, exist_ok=True)
    art = args.artifact or build(args.work, args.layers)
    m = load_manifest(art)
    if args.make_only:
        _, seconds = make_files(art, args.work, args.preset, [float(a) for a in args.alphas.split(",")])
        if seconds:
            (args.work / "make_seconds.json").write_text(json.dumps(seconds))
        return 0
    # the int8 files are made in a process of their own: the quantizer's cached fp32 model and session would
    # otherwise stay in memory beside the three sessions timed here
    subprocess.run([sys.executable, __file__, "--make-only", "--artifact", str(art), "--work", str(args.work), "--preset", args.preset,
                    "--alphas", args.alphas], check=True)
    files, _ = make_files(art, args.work, args.preset, [])
    made = args.work / "make_seconds.json"
    seconds = json.loads(made.read_text()) if made.is_file() else {}
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    sessions = {k: ort.InferenceSession(str(f), opts, providers=["CPUExecutionProvider"]) for k, f in files.items()}
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rng = np.random.default_rng(0)
    names = list(sessions)
    speed: dict[str, dict] = {}
    for shape in args.shapes.split(","):
        b, t = (int(x) for x in shape.split("x"))
        ids = rng.integers(1000, 150000, (b, t), dtype=np.int64)
        mask = np.ones_like(ids)
        feed = {"input_ids": ids, "attention_mask": mask, "position_ids": position_ids(mask)}
        for s in sessions.values():
            s.run(None, feed)  # warm-up
        times: dict[str, list[float]] = {k: [] for k in names}
        for r in range(args.rounds):
            for k in names[r % len(names):] + names[: r % len(names)]:  # rotated order each round
                t0 = time.perf_counter()
                sessions[k].run(None, feed)
                times[k].append(time.perf_counter() - t0)
        med = {k: float(np.median(v)) for k, v in times.items()}
        speed[shape] = {"median_ms": {k: round(1e3 * v, 1) for k, v in med.items()},
                        "texts_per_s": {k: round(b / v, 2) for k, v in med.items()},
                        "speedup_vs_fp32": {k: round(med["fp32"] / v, 2) for k, v in med.items()}}
        print(shape, json.dumps(speed[shape]), file=sys.stderr, flush=True)
    texts = sts_sentences(args.sentences)
    enc = ReferenceEncoder(art, m.raw)
    emb = {k: enc.embed(s, texts) for k, s in sessions.items()}
    cos = {k: (v * emb["fp32"]).sum(1) for k, v in emb.items()}
    report = {
        "machine": machine_info(args.threads or None),
        "model": {"layers": m.raw["num_layers"], "hidden": m.raw["hidden_size"], "artifact": str(art)},
        "files": {k: {"MB": file_mb(f), "ops": fused_op_counts(f)} for k, f in files.items()},
        "make_seconds": seconds,
        "rounds": args.rounds,
        "speed": speed,
        "cosine_vs_fp32": {k: {"min": round(float(c.min()), 5), "mean": round(float(c.mean()), 5), "sentences": len(texts)}
                           for k, c in cos.items() if k != "fp32"},
        "peak_rss_mb_after_loading_three_sessions": round(rss_loaded),
    }
    out = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(out)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
