"""The AMX / OpenVINO path (issue 12, point 3): which file and which OpenVINO settings, measured end to end.

Every row is ``Embedder.encode`` on the same texts, interleaved round by round with the plain fp32 file on
the CPU provider (the denominator of every ratio). Rows: the fp32 file and the fused O2 file on the
OpenVINO provider with bf16 inference precision, each with OpenVINO's LATENCY and THROUGHPUT performance
hints, and the static int8 file on OpenVINO for reference. Workloads: 32 texts x 128 tokens, 1 x 128, and the
first 1,000 STS-B test sentences (real variable length, length-sorted batches under the token budget).
Accuracy: min and mean cosine to fp32 on the CPU provider over those 1,000 sentences. Cold start: a fresh
interpreter from import to the first embedding, without and with OpenVINO's compiled-model cache
(``Embedder.load(..., cache_dir=...)``), the cached case measured on a second start.

Run it with the interpreter of an environment that has onnxruntime-openvino (one flavour per venv):

    /tmp/ov/bin/python benchmarks/openvino_path.py artifacts/all-minilm-l6-v2 --rounds 5

It prints the CPU flags it ran on: bf16 is fast only where ``amx_bf16`` (or at least ``avx512_bf16``) is
present; on other CPUs OpenVINO computes in fp32 and the rows show that.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_runtime import sts_sentences, texts_of_exactly  # noqa: E402
from engine_choice import report_rows, time_interleaved  # noqa: E402

COLD = """
import sys, time, json
t0 = time.perf_counter()
from onnxembed import Embedder
emb = Embedder.load(sys.argv[1], variant=sys.argv[2], providers=json.loads(sys.argv[3]), cache_dir=sys.argv[4] or None, verify=False)
emb.encode(["a first text to embed"])
print(time.perf_counter() - t0)
"""


def _ov(hint: str | None) -> list:
    cfg: dict = {"INFERENCE_PRECISION_HINT": "bf16"}
    if hint:
        cfg["PERFORMANCE_HINT"] = hint
    return [["OpenVINOExecutionProvider", {"device_type": "CPU", "load_config": json.dumps({"CPU": cfg})}], "CPUExecutionProvider"]


def _cold(folder: Path, variant: str, providers: list, cache_dir: str) -> float:
    proc = subprocess.run([sys.executable, "-c", COLD, str(folder), variant, json.dumps(providers), cache_dir],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return float(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import onnxruntime as ort

    from onnxembed import Embedder
    from onnxembed.providers import detect_cpu_features

    if "OpenVINOExecutionProvider" not in ort.get_available_providers():
        print("this onnxruntime has no OpenVINO provider: run with an onnxruntime-openvino venv", file=sys.stderr)
        return 2
    feats = detect_cpu_features()
    flags = sorted(f for f in ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni") if f in feats.flags)
    rows = {
        "fp32 / CPU": ("fp32", ["CPUExecutionProvider"]),
        "fp32 bf16 / OV": ("fp32", _ov(None)),
        "O2 bf16 / OV": ("O2", _ov(None)),
        "O2 bf16 / OV LATENCY": ("O2", _ov("LATENCY")),
        "O2 bf16 / OV THROUGHPUT": ("O2", _ov("THROUGHPUT")),
        "fp32 bf16 / OV THROUGHPUT": ("fp32", _ov("THROUGHPUT")),
        "int8 / OV": ("qint8_avx512_vnni", [["OpenVINOExecutionProvider", {"device_type": "CPU"}], "CPUExecutionProvider"]),
    }
    embs = {k: Embedder.load(args.folder, variant=v, providers=[tuple(p) if isinstance(p, list) else p for p in prov], verify=False)
            for k, (v, prov) in rows.items()}
    base = embs["fp32 / CPU"]
    sts = sts_sentences(1000, ("stsb-test.tsv",))
    work = {"32x128": (texts_of_exactly(base, 128, 32), 32), "1x128": (texts_of_exactly(base, 128, 1), 1), "sts1000": (sts, 32)}
    times = time_interleaved(embs, work, args.rounds, reps={"1x128": 10})
    print(f"onnxruntime {ort.__version__}; CPU flags {flags}; load average {os.getloadavg()[0]:.1f}; {args.rounds} interleaved rounds")
    out: dict = {"onnxruntime": ort.__version__, "cpu_flags": flags, "load_average": os.getloadavg(),
                 "rows": report_rows(embs, work, times, sts, base="fp32 / CPU", width=26)}
    del embs
    with tempfile.TemporaryDirectory() as cache:
        prov = _ov(None)
        cold = {"no cache": _cold(args.folder, "O2", prov, ""), "cache, first start": _cold(args.folder, "O2", prov, cache),
                "cache, second start": _cold(args.folder, "O2", prov, cache), "fp32 / CPU": _cold(args.folder, "fp32", ["CPUExecutionProvider"], "")}
    out["cold_start_s"] = cold
    print("cold start, import to first embedding (O2 bf16 on OpenVINO): " + ", ".join(f"{k} {v:.2f} s" for k, v in cold.items()))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
