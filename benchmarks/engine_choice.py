"""Which engine for which file: end-to-end ``Embedder.encode`` per (variant, provider), interleaved in one run.

Backs ``variant="auto"``'s choice. Rows: fp32 and int8 on the CPU provider, and, when the running
onnxruntime has OpenVINO, the int8 file and the fp32 file (bf16 hint) on OpenVINO. Shapes: 32 texts x 128
tokens and 1 x 128 (real words, exactly 128 tokens), plus the first 1,000 STS-B test sentences. Accuracy: min/mean
cosine to fp32 on the CPU provider over the STS sentences. Run it with the interpreter of the
environment to measure (onnxruntime-openvino lives in its own venv):

    /tmp/ov/bin/python benchmarks/engine_choice.py artifacts/all-minilm-l6-v2 [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_runtime import sts_sentences, texts_of_exactly  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import onnxruntime as ort

    from onnxembed import Embedder
    from onnxembed.providers import OPENVINO_BF16_OPTIONS

    rows = {"fp32/CPU": dict(variant="fp32", providers=["CPUExecutionProvider"]),
            "int8/CPU": dict(variant="qint8_avx512_vnni", providers=["CPUExecutionProvider"])}
    if "OpenVINOExecutionProvider" in ort.get_available_providers():
        rows["int8/OpenVINO"] = dict(variant="qint8_avx512_vnni", providers=[("OpenVINOExecutionProvider", {"device_type": "CPU"}), "CPUExecutionProvider"])
        rows["fp32-bf16/OpenVINO"] = dict(variant="fp32", providers=[("OpenVINOExecutionProvider", dict(OPENVINO_BF16_OPTIONS)), "CPUExecutionProvider"])
    embs = {k: Embedder.load(args.folder, verify=False, **kw) for k, kw in rows.items()}
    sts = sts_sentences(1000, ("stsb-test.tsv",))
    work = {"32x128": (texts_of_exactly(embs["fp32/CPU"], 128, 32), 32), "1x128": (texts_of_exactly(embs["fp32/CPU"], 128, 1), 1),
            "sts1000": (sts, 32)}
    times: dict[tuple[str, str], list[float]] = {}
    for w, (texts, b) in work.items():
        for e in embs.values():
            e.encode(texts, batch_size=b)  # warm-up
        for _ in range(args.rounds):
            for k, e in embs.items():
                reps = 20 if w == "1x128" else 1
                t = time.perf_counter()
                for _ in range(reps):
                    e.encode(texts, batch_size=b)
                times.setdefault((k, w), []).append((time.perf_counter() - t) / reps)
    ref = embs["fp32/CPU"].encode(sts)
    result = {"onnxruntime": ort.__version__, "rows": {}}
    print(f"onnxruntime {ort.__version__}; {args.rounds} interleaved rounds; ratio = fp32/CPU time / row time")
    print(f"{'row':<20} {'variant on':<26} " + " ".join(f"{w + ' ms':>11} {'x':>5}" for w in work) + f" {'mean cos':>9} {'min cos':>8}")
    for k, e in embs.items():
        v = e.encode(sts)
        cos = (v * ref).sum(1) / (np.linalg.norm(v, axis=1) * np.linalg.norm(ref, axis=1))
        r = {"variant": e.variant, "providers": e.providers, "mean_cosine": float(cos.mean()), "min_cosine": float(cos.min())}
        cells = []
        for w in work:
            ms = 1e3 * statistics.median(times[(k, w)])
            base = 1e3 * statistics.median(times[("fp32/CPU", w)])
            r[w] = {"p50_ms": ms, "speedup": base / ms}
            cells.append(f"{ms:>11.1f} {base / ms:>5.2f}")
        result["rows"][k] = r
        print(f"{k:<20} {e.variant + ' on ' + e.providers[0][:-17]:<26} " + " ".join(cells) + f" {r['mean_cosine']:>9.5f} {r['min_cosine']:>8.5f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
