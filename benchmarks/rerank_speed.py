"""Reranker speed and parity: onnxembed's torch-free ``Reranker`` (fp32, O2, int8) against
sentence-transformers' ``CrossEncoder`` (torch and ONNX backends), interleaved rounds in one run, on a
trained MiniLM-L6 cross-encoder.

The model is the trained fixture of the tests (``tests/trained_cross_encoder.py``: all-MiniLM-L6-v2
fine-tuned as a one-label CrossEncoder on SICK train + STS-B dev, cached in ``$ONNXEMBED_CACHE``; trained
on first use), ms-marco-MiniLM-L-6-v2's exact shape (6 layers x 384). It is built with fp32, O2 and the
int8 variant this CPU runs (gated on scores and rankings, see ``onnxembed.quantize.rerank``). Parity
figures are the max |diff| of scores (and logits) against CrossEncoder torch over every pair of the
workloads; for int8 they are its quantization error, not a bug.

Workloads (Cranfield, /work/shared/data/retrieval): ``1x100`` one query and its first 100 documents
(one ``rank`` call, as a retrieval pipeline reranks its top 100) and ``32x32`` 32 queries x 32 documents
(1,024 pairs in one ``score`` call). Ratios are to CrossEncoder torch (> 1: faster).

    nice -n 10 .venv/bin/python benchmarks/rerank_speed.py [--rounds 5] [--work /tmp/rerank-bench] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "retrieval" / "cranfield"


def trained_checkpoint() -> Path:
    """The tests' trained cross-encoder fixture (trained now if it is not cached yet: a few minutes)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from trained_cross_encoder import trained_cross_encoder

    return trained_cross_encoder()


def machine() -> str:
    import os
    import platform
    import subprocess

    model = next((line.split(":", 1)[1].strip() for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                  if line.startswith("Model name")), platform.processor())
    return f"{model}, {os.cpu_count()} logical CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"


def workloads() -> dict[str, list[tuple[str, str]]]:
    queries = [json.loads(line)["text"] for line in (DATA / "queries.jsonl").read_text(encoding="utf-8").splitlines()]
    docs = [(lambda d: (d.get("title", "") + ". " + d["text"]).strip())(json.loads(line))
            for line in (DATA / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    return {"1x100": [(queries[0], d) for d in docs[:100]],
            "32x32": [(q, d) for i, q in enumerate(queries[:32]) for d in docs[32 * i: 32 * i + 32]]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--work", type=Path, default=Path("/tmp/onnxembed-rerank-bench"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch
    from sentence_transformers import CrossEncoder

    from onnxembed import Reranker
    from onnxembed.catalog import int8_variant_for
    from onnxembed.export import build_model
    from onnxembed.providers import detect_cpu_features

    args.work.mkdir(parents=True, exist_ok=True)
    ck = trained_checkpoint()
    q8 = int8_variant_for(detect_cpu_features().int8_preset or "avx2")
    folder = args.work / "artifact"
    built = build_model(str(ck), folder, variants=f"fp32,O2,{q8}")
    if built.refused:  # the folder has no int8 file to time: say why instead of a KeyError below
        raise SystemExit(f"{q8} was refused by its int8 gates: {'; '.join(built.refused[q8]['failures'])}; see {folder}/manifest.json 'refused'")
    print(f"{time.strftime('%Y-%m-%d %H:%M %Z')}; {machine()}")
    print(f"model: {ck}; build: {built.status}; fp32 validation {json.dumps(built.variants['fp32'].get('validation'))}")
    print(f"O2 vs fp32: {json.dumps(built.variants['O2'].get('validation'))}")
    acc = built.variants[q8].get("accuracy", {})
    print(f"{q8} gates: " + json.dumps({k: acc.get(k) for k in ("score_spearman", "ndcg10_fp32", "ndcg10", "ndcg10_drop", "batch_stability",
                                                                 "gold_spearman_fp32", "gold_spearman", "gates_passed")}))
    max_length = Reranker.load(folder, variant="fp32").max_length
    threads = torch.get_num_threads()
    engines: dict[str, Any] = {
        "CrossEncoder torch": CrossEncoder(str(ck), device="cpu", max_length=max_length),
        "CrossEncoder onnx": CrossEncoder(str(folder), device="cpu", backend="onnx", max_length=max_length,
                                          model_kwargs={"file_name": "onnx/model.onnx", "provider": "CPUExecutionProvider"}),
        "onnxembed fp32": Reranker.load(folder, variant="fp32"),
        "onnxembed O2": Reranker.load(folder, variant="O2"),
        f"CrossEncoder onnx {q8}": CrossEncoder(str(folder), device="cpu", backend="onnx", max_length=max_length,
                                                model_kwargs={"file_name": f"onnx/model_{q8}.onnx", "provider": "CPUExecutionProvider"}),
        f"onnxembed {q8}": Reranker.load(folder, variant=q8),
    }

    def call(name: str, pairs: list[tuple[str, str]]) -> Callable[[], Any]:
        e = engines[name]
        if name.startswith("CrossEncoder"):
            return lambda: e.predict([list(p) for p in pairs], batch_size=32, show_progress_bar=False)
        return lambda: e.score(pairs, batch_size=32)

    work = workloads()
    # parity on every pair of the workloads, against CrossEncoder torch
    parity = {}
    for w, pairs in work.items():
        ref = np.asarray(call("CrossEncoder torch", pairs)(), np.float32)
        ref_logits = np.asarray(engines["CrossEncoder torch"].predict([list(p) for p in pairs], batch_size=32, show_progress_bar=False,
                                                                      activation_fn=torch.nn.Identity()), np.float32)
        for name in engines:
            if name == "CrossEncoder torch":
                continue
            got = np.asarray(call(name, pairs)(), np.float32)
            row = {"scores_max_abs_diff": float(np.abs(got - ref).max())}
            if name.startswith("onnxembed"):
                row["logits_max_abs_diff"] = float(np.abs(engines[name].score(pairs, raw=True) - ref_logits).max())
            parity[(name, w)] = row
    times: dict[tuple[str, str], list[float]] = {}
    for w, pairs in work.items():
        calls = {n: call(n, pairs) for n in engines}
        for c in calls.values():
            c()  # warm-up
        names = list(calls)
        for r in range(args.rounds):
            for n in names[r % len(names):] + names[: r % len(names)]:
                t = time.perf_counter()
                calls[n]()
                times.setdefault((n, w), []).append(time.perf_counter() - t)
    print(f"onnxruntime {ort.__version__}, torch {torch.__version__} ({threads} threads), {args.rounds} interleaved rounds; "
          "pairs/s = median; x = vs CrossEncoder torch")
    print(f"{'engine':<30} " + " ".join(f"{w + ' pairs/s':>15} {'x':>5}" for w in work) + "  max|diff| scores vs torch")
    result: dict[str, Any] = {"onnxruntime": ort.__version__, "torch": torch.__version__, "threads": threads, "machine": machine(),
                              "gates": acc, "rows": {}}
    for n in engines:
        cells, row = [], {}
        for w, pairs in work.items():
            pps = len(pairs) / statistics.median(times[(n, w)])
            base = len(pairs) / statistics.median(times[("CrossEncoder torch", w)])
            cells.append(f"{pps:>15.1f} {pps / base:>5.2f}")
            row[w] = {"pairs_per_s": pps, "vs_torch": pps / base, **parity.get((n, w), {})}
        diffs = [parity[(n, w)]["scores_max_abs_diff"] for w in work if (n, w) in parity]
        print(f"{n:<30} " + " ".join(cells) + (f"  {max(diffs):.2e}" if diffs else "  (reference)"))
        result["rows"][n] = row
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
