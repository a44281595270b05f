"""The real all-mpnet-base-v2 through the rest of the chain (issue 21, item 6), on a folder that
``onnxembed build all-mpnet-base-v2`` already built. Not a test: figures for ``MPNET-REAL.md``.

    .venv/bin/python benchmarks/mpnet_real.py ARTIFACT_DIR CHECKPOINT_DIR [--texts 2000] [--steps build,parity,serve,corpus,st,speed]
        [--rounds 7] [--json benchmarks/out/mpnet-real.json]

build   what the build recorded (manifest.json): fp32 vs PyTorch, each fused file vs fp32, each int8 file's
        held-out figures and gate verdict, seconds per variant and for the whole build.
parity  ``family_parity.parity``: Embedder vs sentence-transformers (torch) on the checkpoint, fp32 and every
        int8 file of the folder, on ``--texts`` texts (STS sentences, probes in several scripts, over-long texts).
serve   ``onnxembed serve`` on 127.0.0.1 (a free port): a few texts through OpenAI ``/v1/embeddings`` and TEI
        ``/embed``, cosine to ``Embedder.load(DIR).encode`` (both the automatic variant); then stopped.
corpus  ``onnxembed corpus`` over ``--texts`` STS sentences (jsonl): shard row count, cosine per id to
        ``Embedder.encode`` of the same texts (automatic variant, as the job resolves it).
st      ``SentenceTransformer(DIR, backend="onnx", model_kwargs={"file_name": ...})`` for the fp32 file and
        this CPU's int8 file: min cosine to the Embedder on the same file.
speed   ``onnxembed.bench.bench(quick=True)`` at 32 x 128 tokens: fp32 vs this CPU's int8 file, interleaved rounds.

One heavy step at a time (the machine may be shared); the header prints the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_runtime import sts_sentences  # noqa: E402
from family_parity import parity  # noqa: E402
from family_parity import texts as parity_texts  # noqa: E402
from serve_load import Server, _free_port  # noqa: E402

from onnxembed import Embedder, load_manifest  # noqa: E402
from onnxembed.bench import bench, machine_info  # noqa: E402

STEPS = ("build", "parity", "serve", "corpus", "st", "speed")


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _int8_variants(folder: Path) -> list[str]:
    """The int8 variants of the folder, one per distinct file (``same_as`` copies left out)."""
    m = load_manifest(folder)
    return [v for v, e in m.raw["variants"].items() if e.get("precision") == "int8" and not e.get("same_as")]


def step_build(folder: Path) -> dict[str, Any]:
    m = load_manifest(folder).raw
    out: dict[str, Any] = {"seconds": m.get("build", {}).get("seconds"), "gates": m.get("gates"), "variants": {}}
    for v, e in m["variants"].items():
        row: dict[str, Any] = {"file": e["file"], "size_mb": round(e["size"] / 1e6, 1), "precision": e["precision"], "seconds": e.get("seconds", e.get("export_seconds"))}
        if "validation" in e:
            val = e["validation"]
            row.update(reference=val.get("reference"), max_abs_diff=val.get("max_abs_diff"), min_cosine=val.get("min_cosine"),
                       sentences=val.get("sentences"))
            if "pooled_max_abs_diff" in val:  # fp32: last_hidden_state vs PyTorch; pooled vs sentence-transformers
                row["pooled_max_abs_diff"] = val["pooled_max_abs_diff"]
        if "accuracy" in e and not e["accuracy"].get("gates_run", True):
            row["gates_not_run"] = e["accuracy"].get("reason", "gates not run")
        elif "accuracy" in e:
            a = e["accuracy"]
            row.update({k: a.get(k) for k in ("heldout_sentences", "mean_cosine", "min_cosine", "q001_cosine", "stsb_spearman",
                                             "stsb_spearman_fp32", "batch_stability_min_cosine", "gates_passed", "arithmetic")})
            row["fp32_nodes"] = len(e.get("recipe", {}).get("fp32_nodes", []))
        if e.get("same_as"):
            row["same_as"] = e["same_as"]
        out["variants"][v] = row
    return out


def step_parity(folder: Path, checkpoint: Path, n: int) -> dict[str, Any]:
    data = parity_texts(n)
    res = parity(folder, checkpoint, data, ["fp32", *_int8_variants(folder)])
    return {"texts": len(data), **res}


def _post(port: int, path: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.loads(r.read())


def step_serve(folder: Path, texts: list[str], log_dir: Path) -> dict[str, Any]:
    ref_emb = Embedder.load(folder)
    ref = ref_emb.encode(texts)
    port = _free_port()
    server = Server("onnxembed-serve", [sys.executable, "-m", "onnxembed.cli", "serve", str(folder), "--port", str(port), "--name", "m"],
                    port, health="/ready")
    t0 = time.perf_counter()
    server.start(log_dir)
    try:
        ready_s = time.perf_counter() - t0
        oa = _post(port, "/v1/embeddings", {"model": "m", "input": texts, "encoding_format": "float"})
        openai = np.array([d["embedding"] for d in sorted(oa["data"], key=lambda d: d["index"])], dtype=np.float32)
        tei = np.array(_post(port, "/embed", {"inputs": texts}), dtype=np.float32)
    finally:
        server.stop()
    return {"texts": len(texts), "port": port, "ready_s": round(ready_s, 1), "variant": ref_emb.variant,
            "openai_min_cos": float(_cos(openai, ref).min()), "openai_dim": int(openai.shape[1]),
            "tei_min_cos": float(_cos(tei, ref).min()), "tei_dim": int(tei.shape[1]), "exit_code": server.proc.returncode if server.proc else None}


def step_corpus(folder: Path, n: int, work: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    texts = sts_sentences(n)
    src = work / "sts.jsonl"
    with open(src, "w", encoding="utf-8") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"id": f"s{i}", "text": t}, ensure_ascii=False) + "\n")
    out = work / "corpus-out"
    cmd = [sys.executable, "-m", "onnxembed.cli", "corpus", str(folder), str(src), "--out", str(out), "--id-column", "id",
           "--workers", "1", "--overwrite", "--json"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-2000:]}"}
    summary = json.loads(proc.stdout)
    shards = sorted(out.glob("part-*.parquet"))
    ids: list[str] = []
    vecs: list[np.ndarray] = []
    for s in shards:
        t = pq.read_table(s)
        ids += t.column("id").to_pylist()
        vecs.append(np.array(t.column("embedding").to_pylist(), dtype=np.float32))
    got = np.concatenate(vecs)
    emb = Embedder.load(folder)
    ref = emb.encode(texts)
    order = {f"s{i}": i for i in range(len(texts))}
    ref_rows = ref[[order[i] for i in ids]]
    return {"texts": len(texts), "shards": len(shards), "rows": int(got.shape[0]), "unique_ids": len(set(ids)), "seconds": round(seconds, 1),
            "variant_embedder": emb.variant, "variant_job": summary.get("variant"), "min_cos": float(_cos(got, ref_rows).min()),
            "summary": summary}


def step_st(folder: Path, texts: list[str]) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    m = load_manifest(folder)
    int8 = [Embedder.load(folder, variant="int8").variant] if _int8_variants(folder) else []  # none when every preset failed its gates
    out: dict[str, Any] = {"texts": len(texts)}
    for v in ("fp32", *int8):
        file = m.raw["variants"][v]["file"]
        st = SentenceTransformer(str(folder), backend="onnx", device="cpu", model_kwargs={"file_name": file, "provider": "CPUExecutionProvider"})
        a = st.encode(texts, batch_size=32, convert_to_numpy=True)
        b = Embedder.load(folder, variant=v).encode(texts)
        c = _cos(a, b)
        out[v] = {"file": file, "min_cos": float(c.min()), "mean_cos": float(c.mean()), "max_abs_diff": float(np.abs(a - b).max())}
    return out


def step_speed(folder: Path, rounds: int, min_seconds: float) -> dict[str, Any]:
    r = bench(folder, quick=True, batch_sizes=(32,), seq_lens=(128,), rounds=rounds, min_seconds=min_seconds)
    rows = {mm.variant: {"p50_ms": mm.p50_ms, "texts_per_s": mm.texts_per_s, "speedup": mm.speedup, "calls": mm.calls}
            for mm in r.measurements if mm.workload == "32x128"}
    return {"rounds": rounds, "measurements": rows, "warnings": r.warnings, "table": r.format_table(),
            "machine_load": r.machine.get("load_average")}


def _print_tables(res: dict[str, Any]) -> None:
    if "build" in res:
        b = res["build"]
        print(f"\n== build (manifest): {b['seconds']} s in all; gates {b['gates']}")
        print(f"{'variant':<20}{'MB':>7}{'s':>8}  {'ref':<8}{'max|diff|':>11}{'min cos':>12}  int8: {'mean':>9}{'min':>9}{'q0.1%':>9}"
              f"{'Spearman':>9}{'fp32':>7}{'batch':>10}  gates")
        for v, r in b["variants"].items():
            line = f"{v:<20}{r['size_mb']:>7.1f}{r['seconds'] or 0:>8.1f}  "
            if "reference" in r:
                line += f"{r['reference'] or '':<8}{r['max_abs_diff']:>11.2e}{r['min_cosine']:>12.8f}"
                if "pooled_max_abs_diff" in r:
                    line += (f"  (hidden states vs PyTorch; pooled vs sentence-transformers: max|diff| {r['pooled_max_abs_diff']:.2e},"
                             f" min cos above; {r['sentences']} probe sentences)")
            else:
                line += " " * 31
            if "mean_cosine" in r:
                line += (f"        {r['mean_cosine']:>9.6f}{r['min_cosine']:>9.6f}{r['q001_cosine']:>9.6f}{r['stsb_spearman']:>9.2f}"
                         f"{r['stsb_spearman_fp32']:>7.2f}{r['batch_stability_min_cosine']:>10.6f}  {'PASS' if r['gates_passed'] else 'FAIL'}"
                         f" ({r['heldout_sentences']} sentences, {r['fp32_nodes']} fp32 nodes)")
            if "gates_not_run" in r:
                line += f"        int8 written WITHOUT gates: {r['gates_not_run']}"
            if r.get("same_as"):
                line += f"  (same file as {r['same_as']})"
            print(line)
    if "parity" in res:
        p = res["parity"]
        print(f"\n== parity: Embedder vs sentence-transformers (torch), {p['texts']} texts")
        for v, r in p.items():
            if isinstance(r, dict) and "min_cos" in r:
                print(f"{v:<20} min cos {r['min_cos']:.7f}  mean cos {r['mean_cos']:.7f}  max|diff| {r['max_abs_diff']:.2e}")
        print(f"tokenizer: {p['tokenizer']['mismatches']} of {p['tokenizer']['texts']} texts with ids different from the Rust library")
    if "serve" in res:
        s = res["serve"]
        print(f"\n== serve ({s['variant']}, ready in {s['ready_s']} s): {s['texts']} texts; /v1/embeddings min cos {s['openai_min_cos']:.7f}"
              f" (dim {s['openai_dim']}), /embed min cos {s['tei_min_cos']:.7f} (dim {s['tei_dim']}); server exit {s['exit_code']}")
    if "corpus" in res:
        c = res["corpus"]
        if "error" in c:
            print(f"\n== corpus: FAILED {c['error']}")
        else:
            print(f"\n== corpus ({c['variant_job']}): {c['texts']} texts -> {c['shards']} shard(s), {c['rows']} rows, {c['unique_ids']} ids,"
                  f" {c['seconds']} s; min cos to Embedder.encode ({c['variant_embedder']}) {c['min_cos']:.7f}")
    if "st" in res:
        s = res["st"]
        print(f"\n== SentenceTransformer(DIR, backend='onnx') vs Embedder, {s['texts']} texts")
        for v, r in s.items():
            if isinstance(r, dict):
                print(f"{v:<20} {r['file']:<36} min cos {r['min_cos']:.7f}  mean cos {r['mean_cos']:.7f}  max|diff| {r['max_abs_diff']:.2e}")
    if "speed" in res:
        sp = res["speed"]
        print(f"\n== speed 32 x 128 tokens, {sp['rounds']} interleaved rounds")
        for v, r in sp["measurements"].items():
            su = f"{r['speedup']:.2f}x fp32" if r["speedup"] else "reference"
            print(f"{v:<20} p50 {r['p50_ms']:>9.1f} ms  {r['texts_per_s']:>7.1f} texts/s  {su}")
        for w in sp["warnings"]:
            print(f"WARNING: {w}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifact", type=Path)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--texts", type=int, default=2000, help="texts for parity, corpus and st (serve: 8)")
    ap.add_argument("--steps", default=",".join(STEPS))
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds of the speed step")
    ap.add_argument("--min-seconds", type=float, default=1.0, help="seconds per variant and round... split over rounds (bench's min_seconds)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    bad = [s for s in steps if s not in STEPS]
    if bad:
        ap.error(f"unknown steps {bad}; known: {', '.join(STEPS)}")

    mc = machine_info()
    print(f"machine: {mc.get('cpu')}; {os.cpu_count()} cores; load average {os.getloadavg()}")
    res: dict[str, Any] = {"machine": mc, "artifact": str(args.artifact), "checkpoint": str(args.checkpoint), "seconds": {}}
    texts = parity_texts(args.texts)
    with tempfile.TemporaryDirectory(prefix="mpnet-real-") as tmp:
        work = Path(tmp)
        for step in steps:
            t0 = time.perf_counter()
            la = os.getloadavg()[0]
            if step == "build":
                res[step] = step_build(args.artifact)
            elif step == "parity":
                res[step] = step_parity(args.artifact, args.checkpoint, args.texts)
            elif step == "serve":
                res[step] = step_serve(args.artifact, [*texts[:4], *sts_sentences(4)], work)
            elif step == "corpus":
                res[step] = step_corpus(args.artifact, args.texts, work)
            elif step == "st":
                res[step] = step_st(args.artifact, texts)
            elif step == "speed":
                res[step] = step_speed(args.artifact, args.rounds, args.min_seconds)
            res["seconds"][step] = {"wall_s": round(time.perf_counter() - t0, 1), "load_at_start": round(la, 2)}
            print(f"[{step}] {res['seconds'][step]['wall_s']} s (load average at start {la:.2f})", file=sys.stderr, flush=True)
    _print_tables(res)
    print("\nwall seconds per step: " + ", ".join(f"{k} {v['wall_s']} (load {v['load_at_start']})" for k, v in res["seconds"].items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2, default=str), encoding="utf-8")
        print(f"json: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
