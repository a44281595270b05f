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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_runtime import sts_sentences, texts_of_exactly  # noqa: E402


def time_interleaved(embs: dict, work: dict, rounds: int, reps: dict[str, int]) -> dict[tuple[str, str], list[float]]:
    """Seconds per ``encode`` of each row on each workload, rows interleaved in a rotated order each round."""
    times: dict[tuple[str, str], list[float]] = {}
    for w, (texts, b) in work.items():
        for e in embs.values():
            e.encode(texts, batch_size=b)  # warm-up
        for r in range(rounds):
            order = list(embs.items())
            order = order[r % len(order):] + order[: r % len(order)]
            for k, e in order:
                n = reps.get(w, 1)
                t = time.perf_counter()
                for _ in range(n):
                    e.encode(texts, batch_size=b)
                times.setdefault((k, w), []).append((time.perf_counter() - t) / n)
    return times


def report_rows(embs: dict, work: dict, times: dict, sts: list[str], *, base: str, width: int) -> dict:
    """Print one line per row (median ms and ratio to ``base`` per workload, cosine to ``base`` on ``sts``); return them."""
    from onnxembed.pooling import rowwise_cosine

    ref = embs[base].encode(sts)
    print(f"{'row':<{width}} {'variant on':<26} " + " ".join(f"{w + ' ms':>11} {'x':>5}" for w in work) + f" {'mean cos':>9} {'min cos':>8}")
    rows = {}
    for k, e in embs.items():
        cos = rowwise_cosine(e.encode(sts), ref)
        r = {"variant": e.variant, "providers": e.providers, "mean_cosine": float(cos.mean()), "min_cosine": float(cos.min())}
        cells = []
        for w in work:
            ms = 1e3 * statistics.median(times[(k, w)])
            b_ms = 1e3 * statistics.median(times[(base, w)])
            r[w] = {"p50_ms": ms, "speedup": b_ms / ms}
            cells.append(f"{ms:>11.1f} {b_ms / ms:>5.2f}")
        rows[k] = r
        print(f"{k:<{width}} {e.variant + ' on ' + e.providers[0][:-17]:<26} " + " ".join(cells) + f" {r['mean_cosine']:>9.5f} {r['min_cosine']:>8.5f}")
    return rows


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
    times = time_interleaved(embs, work, args.rounds, reps={"1x128": 20})
    print(f"onnxruntime {ort.__version__}; {args.rounds} interleaved rounds; ratio = fp32/CPU time / row time")
    result = {"onnxruntime": ort.__version__, "rows": report_rows(embs, work, times, sts, base="fp32/CPU", width=20)}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
