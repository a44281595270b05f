"""onnxembed against the tools a user would otherwise pick, in one run, same texts, same thread count.

Each tool runs in its own process (``tool_runner.py``; fastembed and OpenVINO in their own virtual
environments, see ``setup_venvs.sh``), started one after another so each cold start (process start to
first embedding) is measured on its own. Then every workload runs round-robin over all live tools, in
a rotated order each round, so drift of the (shared) machine hits every row alike; only one tool
computes at a time. Accuracy is each row's embedding of the real texts against sentence-transformers
on PyTorch fp32. Usage:

    python benchmarks/compare_tools.py --artifact DIR --checkpoint CK [--tools a,b] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RUNNER = HERE / "tool_runner.py"
STS = REPO.parent / "shared" / "data" / "sts"
VENVS = {"main": sys.executable, "ov": "/tmp/bench-ov/bin/python", "fe": "/tmp/bench-fe/bin/python", "ortov": "/tmp/bench-ortov/bin/python"}
OV_DEFAULT = [["OpenVINOExecutionProvider", {"device_type": "CPU"}]]
OV_BF16 = [["OpenVINOExecutionProvider", {"device_type": "CPU", "load_config": json.dumps({"CPU": {"INFERENCE_PRECISION_HINT": "bf16"}})}]]
# Single-token words of the uncased BERT vocabulary: 126 of them + [CLS] + [SEP] = exactly 128 tokens.
WORDS = ("the of and to in is was for on as with by he at from his an were are which this be or has had one not but first "
         "new they their after two her who been its all time can during more when there other would also city most school "
         "season she only three up years about year out over later into world team may some state united him between many "
         "where both film such part known well these then no under made while high played music series national four").split()


def fixed_texts(n: int, tokens: int, tokenizer_json: Path) -> list[str]:
    """n different texts of exactly ``tokens`` tokens each (checked with the tokenizer)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        t = " ".join(rng.choice(WORDS, size=tokens - 2))
        got = len(tok.encode(t).ids)
        if got != tokens:
            raise RuntimeError(f"fixed text has {got} tokens, expected {tokens}")
        out.append(t)
    return out


def sts_sentences(n: int, split: str = "stsb-test") -> list[str]:
    """The first n distinct sentences of an STS file (both columns, in file order)."""
    rows = [line.split("\t") for line in (STS / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    seen = list(dict.fromkeys(s.strip() for r in rows for s in (r[1], r[2])))
    return seen[:n]


# ------------------------------------------------------------------------------------------ tools
def default_tools(artifact: Path, checkpoint: Path, prep: dict[str, Path], int8: str, dim: int, subset: str = "all") -> list[dict[str, Any]]:
    a, ck = str(artifact), str(checkpoint)
    int8_file = f"onnx/model_{int8}.onnx"
    tools: list[dict[str, Any]] = [
        {"label": "onnxembed fp32", "venv": "main", "kind": "onnxembed", "folder": a, "variant": "fp32"},
        {"label": "onnxembed O2", "venv": "main", "kind": "onnxembed", "folder": a, "variant": "O2"},
        {"label": f"onnxembed {int8}", "venv": "main", "kind": "onnxembed", "folder": a, "variant": int8, "ours_int8": True},
        {"label": "onnxembed fp32 on OpenVINO EP bf16", "venv": "ortov", "kind": "onnxembed", "folder": a, "variant": "fp32", "providers": OV_BF16},
        {"label": f"onnxembed {int8} on OpenVINO EP", "venv": "ortov", "kind": "onnxembed", "folder": a, "variant": int8, "providers": OV_DEFAULT},
        {"label": "bare onnxruntime fp32", "venv": "main", "kind": "ort-bare", "folder": a, "file": "onnx/model.onnx"},
        {"label": f"bare onnxruntime {int8}", "venv": "main", "kind": "ort-bare", "folder": a, "file": int8_file},
        {"label": "ST torch fp32", "venv": "main", "kind": "st-torch", "checkpoint": ck, "reference": True},
        {"label": "ST torch bf16 autocast", "venv": "main", "kind": "st-torch", "checkpoint": ck, "bf16": True},
        {"label": "ST onnx fp32", "venv": "main", "kind": "st-onnx", "folder": a, "file": "onnx/model.onnx"},
        {"label": f"ST onnx, our {int8}", "venv": "main", "kind": "st-onnx", "folder": a, "file": int8_file},
        {"label": "optimum ORTModel fp32", "venv": "main", "kind": "optimum", "folder": a, "file": "onnx/model.onnx"},
        {"label": "fastembed fp32", "venv": "fe", "kind": "fastembed", "folder": a, "file": "onnx/model.onnx", "dim": dim},
        {"label": f"fastembed, our {int8}", "venv": "fe", "kind": "fastembed", "folder": a, "file": int8_file, "dim": dim},
    ]
    if "st" in prep:
        for f in sorted((prep["st"] / "onnx").glob("model_*.onnx")):
            tools.append({"label": f"ST onnx, its own {f.stem[6:]}", "venv": "main", "kind": "st-onnx", "folder": str(prep["st"]), "file": f"onnx/{f.name}"})
    if "ov" in prep:
        tools += [
            {"label": "ST openvino f32", "venv": "ov", "kind": "st-openvino", "folder": str(prep["ov"]), "precision": "f32"},
            {"label": "ST openvino bf16", "venv": "ov", "kind": "st-openvino", "folder": str(prep["ov"]), "precision": "bf16"},
            {"label": "ST openvino int8 (NNCF static)", "venv": "ov", "kind": "st-openvino", "folder": str(prep["ov"]),
             "file": "openvino/openvino_model_qint8_quantized.xml", "precision": "f32"},
        ]
    if subset == "timing":  # random-weight architectures: the main rows only
        keep = {"onnxembed fp32", f"onnxembed {int8}", "ST torch fp32", "ST onnx fp32", f"ST onnx, our {int8}", f"fastembed, our {int8}",
                "onnxembed fp32 on OpenVINO EP bf16", "ST openvino int8 (NNCF static)", f"onnxembed {int8} on OpenVINO EP"}
        tools = [t for t in tools if t["label"] in keep]
    return tools


def prepare_st_own(artifact: Path, work: Path, presets: list[str]) -> tuple[Path | None, str]:
    """sentence-transformers' own ONNX recipes (dynamic int8 presets, O-levels) on a copy holding only model.onnx."""
    dst = work / "st-own"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(artifact, dst, ignore=lambda d, names: [n for n in names if n.startswith("model_") or n == "manifest.json"])
    code = (
        "import sys\nfrom sentence_transformers import SentenceTransformer\n"
        "from sentence_transformers.backend import export_dynamic_quantized_onnx_model as q, export_optimized_onnx_model as o\n"
        "d=sys.argv[1]\nm=SentenceTransformer(d, backend='onnx', device='cpu')\n"
        "for p in sys.argv[2].split(','):\n"
        "    try:\n        (o if p.startswith('O') else q)(m, p, d)\n"
        "    except Exception as e:\n        print('FAILED', p, type(e).__name__, str(e)[:300], file=sys.stderr)\n"
    )
    proc = subprocess.run([VENVS["main"], "-c", code, str(dst), ",".join(presets)], capture_output=True, text=True)
    notes = "; ".join(line for line in proc.stderr.splitlines() if line.startswith("FAILED"))
    return (dst if list((dst / "onnx").glob("model_*.onnx")) else None), notes


def prepare_ov(checkpoint: Path, work: Path, threads: int) -> tuple[Path | None, str]:
    if not Path(VENVS["ov"]).exists():
        return None, f"no OpenVINO venv at {VENVS['ov']} (benchmarks/setup_venvs.sh)"
    calib = work / "calibration.json"
    calib.write_text(json.dumps(sts_sentences(300, "stsb-dev")))  # calibration on dev, never the test split
    out = work / "ov"
    proc = subprocess.run([VENVS["ov"], str(RUNNER), "quantize-openvino", "--checkpoint", str(checkpoint), "--out", str(out),
                           "--calibration", str(calib), "--threads", str(threads)], capture_output=True, text=True)
    if proc.returncode:
        return None, "OpenVINO export/quantization failed: " + proc.stderr.strip().splitlines()[-1][:300]
    return out, ""


# ----------------------------------------------------------------------------------------- running
class Runner:
    """One tool's process."""

    def __init__(self, tool: dict[str, Any], threads: int) -> None:
        self.tool = tool
        py = VENVS[tool["venv"]]
        if not Path(py).exists():
            self.info: dict[str, Any] = {"ready": False, "error": f"no venv {py} (benchmarks/setup_venvs.sh)"}
            self.proc = None
            return
        shim = Path(tempfile.gettempdir()) / "onnxembed-shim"  # onnxembed for the other venvs, without installing it there
        shim.mkdir(exist_ok=True)
        link = shim / "onnxembed"
        if not link.exists():
            link.symlink_to(REPO / "runtime")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               "OMP_WAIT_POLICY": "PASSIVE"}
        if tool["venv"] != "main":
            env["PYTHONPATH"] = str(shim)
        spec = {k: v for k, v in tool.items() if k not in ("label", "venv")}
        t0 = time.time()
        self.proc = subprocess.Popen([py, str(RUNNER), "--spec", json.dumps(spec), "--t0", repr(t0), "--threads", str(threads)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        line = self.proc.stdout.readline()
        self.info = json.loads(line) if line else {"ready": False, "error": "process exited before it was ready"}

    @property
    def ok(self) -> bool:
        return bool(self.info.get("ready"))

    def ask(self, cmd: dict[str, Any]) -> dict[str, Any]:
        assert self.proc and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.info = {"ready": False, "error": "process died during a run"}
            raise RuntimeError(self.info["error"])
        return json.loads(line)

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                assert self.proc.stdin
                self.proc.stdin.write('{"cmd": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()


def onnxembed_int8(variants: Any) -> str:
    """The int8 variant onnxembed runs on this CPU: the runtime's rule (``Embedder.load(variant="int8")``).

    Raises:
        ManifestError: this CPU has no int8 file in the folder (the message names those present),
            rather than timing a file the runtime calls unsafe on this CPU.
    """
    from onnxembed.providers import detect_cpu_features, resolve_variant

    return resolve_variant("int8", variants, detect_cpu_features())


def compare(artifact: Path, checkpoint: Path, *, threads: int = 2, rounds: int = 3, sts_n: int = 1000, tools: list[str] | None = None,
            subset: str = "all", st_presets: str = "avx512_vnni,O3", workloads: str = "32x128,1x128,sts",
            progress: Any = print) -> dict[str, Any]:
    from onnxembed import load_manifest
    from onnxembed.bench import machine_info

    m = load_manifest(artifact)
    load_start = os.getloadavg()[0]
    int8 = onnxembed_int8(m.variants)
    work = Path(tempfile.mkdtemp(prefix="onnxembed-compare-"))
    notes: list[str] = []
    prep: dict[str, Path] = {}
    t = time.perf_counter()
    if subset == "all" and st_presets:
        p, note = prepare_st_own(artifact, work, st_presets.split(","))
        if p:
            prep["st"] = p
        if note:
            notes.append("sentence-transformers' own recipes: " + note)
    p, note = prepare_ov(checkpoint, work, threads)
    if p:
        prep["ov"] = p
    if note:
        notes.append(note)
    progress(f"prepared competitors' files in {time.perf_counter() - t:.0f}s")

    texts: dict[str, tuple[list[str], int]] = {}
    tok_json = artifact / "tokenizer.json"
    wl = workloads.split(",")
    if "32x128" in wl:
        texts["32x128"] = (fixed_texts(32, 128, tok_json), 32)
    if "1x128" in wl:
        texts["1x128"] = (fixed_texts(1, 128, tok_json), 1)
    if "sts" in wl:
        texts[f"STS-B test, {sts_n} sentences, b=32"] = (sts_sentences(sts_n), 32)
    from tokenizers import Tokenizer

    tk = Tokenizer.from_file(str(tok_json))
    tk.enable_truncation(m.max_length)
    files: dict[str, Path] = {}
    ntokens: dict[str, int] = {}
    for name, (tx, _) in texts.items():
        files[name] = work / f"texts-{len(files)}.json"
        files[name].write_text(json.dumps(tx))
        ntokens[name] = sum(len(e.ids) for e in tk.encode_batch(tx))

    specs = default_tools(artifact, checkpoint, prep, int8, m.dim, subset)
    if tools:
        specs = [s for s in specs if s["label"] in tools or s.get("reference")]
    runners: list[Runner] = []
    for s in specs:
        r = Runner(s, threads)
        progress(f"started {s['label']}: " + (f"cold start {r.info['cold_start_s']:.1f}s" if r.ok else r.info.get("error", "?")))
        runners.append(r)
    live = [r for r in runners if r.ok]
    results: dict[str, dict[str, Any]] = {r.tool["label"]: {"tool": {k: v for k, v in r.tool.items() if k != "providers"}, "ready": r.info, "times": {}}
                                          for r in runners}
    try:
        for name, (tx, b) in texts.items():
            reps: dict[str, int] = {}
            for r in list(live):  # warm-up, which also sets the calls per round (~0.5 s of work, at least one)
                try:
                    w = r.ask({"cmd": "run", "texts": str(files[name]), "batch_size": b, "repeat": 1})["times"][0]
                except RuntimeError:
                    live.remove(r)
                    continue
                reps[r.tool["label"]] = max(1, min(20, int(0.5 / max(w, 1e-4))))
            for k in range(rounds):
                order = live[k % len(live):] + live[:k % len(live)] if live else []
                for r in order:
                    time.sleep(0.05)  # let the previous tool's spinning threads go idle
                    try:
                        ts = r.ask({"cmd": "run", "texts": str(files[name]), "batch_size": b, "repeat": reps[r.tool["label"]]})["times"]
                    except RuntimeError:
                        live.remove(r)
                        continue
                    results[r.tool["label"]]["times"].setdefault(name, []).extend(ts)
                progress(f"{name}: round {k + 1}/{rounds}")
        acc_name = next((n for n in texts if n.startswith("STS")), next(iter(texts)))
        for r in live:
            out = work / f"emb-{runners.index(r)}.npy"
            r.ask({"cmd": "run", "texts": str(files[acc_name]), "batch_size": texts[acc_name][1], "repeat": 1, "out": str(out)})
            results[r.tool["label"]]["emb"] = str(out)
            results[r.tool["label"]]["stats"] = r.ask({"cmd": "stats"})
    finally:
        for r in runners:
            r.close()

    ref_label = next((s["label"] for s in specs if s.get("reference")), None)
    ref = np.load(results[ref_label]["emb"]).astype(np.float64) if ref_label and "emb" in results.get(ref_label, {}) else None
    rows = []
    for label, res in results.items():
        row: dict[str, Any] = {"tool": label, "ok": bool(res["ready"].get("ready")), "error": res["ready"].get("error"),
                               "cold_start_s": res["ready"].get("cold_start_s"), "peak_rss_mb": res.get("stats", {}).get("peak_rss_mb"),
                               "workloads": {}}
        for name, ts in res["times"].items():
            p50 = float(np.median(ts))
            row["workloads"][name] = {"p50_ms": p50 * 1000, "p90_ms": float(np.percentile(ts, 90)) * 1000, "calls": len(ts),
                                      "texts_per_s": len(texts[name][0]) / p50, "tokens_per_s": ntokens[name] / p50}
        if ref is not None and "emb" in res:
            e = np.load(res["emb"]).astype(np.float64)
            cos = (e * ref).sum(1) / np.maximum(np.linalg.norm(e, axis=1) * np.linalg.norm(ref, axis=1), 1e-30)
            row["mean_cosine"], row["min_cosine"] = float(cos.mean()), float(cos.min())
        rows.append(row)
    shutil.rmtree(work, ignore_errors=True)
    return {"model": m.name, "artifact": str(artifact), "machine": machine_info(threads), "threads": threads, "rounds": rounds,
            "int8_variant": int8, "reference": ref_label, "workloads": {n: {"texts": len(t[0]), "batch_size": t[1], "tokens": ntokens[n]}
                                                                        for n, t in texts.items()},
            "notes": notes, "rows": rows, "versions": tool_versions(), "load_average": [load_start, os.getloadavg()[0]]}


def tool_versions() -> dict[str, dict[str, str]]:
    code = ("import importlib.metadata as m, json\nout={}\nfor p in ['onnxruntime','onnxruntime-openvino','torch','sentence-transformers',"
            "'transformers','optimum','optimum-onnx','optimum-intel','openvino','nncf','fastembed','numpy']:\n"
            "    try: out[p]=m.version(p)\n    except Exception: pass\nprint(json.dumps(out))")
    out = {}
    for venv, py in VENVS.items():
        if Path(py).exists():
            proc = subprocess.run([py, "-c", code], capture_output=True, text=True)
            out[venv] = json.loads(proc.stdout) if proc.returncode == 0 else {}
    return out


def format_tables(res: dict[str, Any]) -> str:
    """Markdown: one table per workload (p50, texts/s, ratio to the fastest competitor rows), plus accuracy, cold start, RSS."""
    names = list(res["workloads"])
    rows = res["rows"]
    la = res.get("load_average") or [float("nan")] * 2
    lines = [f"**{res['model']}**, {res['threads']} threads, {res['rounds']} interleaved rounds; accuracy vs {res['reference']} on "
             f"{next((res['workloads'][n]['texts'] for n in names if n.startswith('STS')), '?')} STS-B test sentences; machine load "
             f"average {la[0]:.1f} at the start, {la[1]:.1f} at the end (2 cores)", ""]
    head = "| tool | " + " | ".join(f"{n}: p50 ms | texts/s" for n in names) + " | mean cos | min cos | cold start s | peak RSS MB |"
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if not r["ok"]:
            lines.append(f"| {r['tool']} | not measured: {r['error']} |")
            continue
        cells = []
        for n in names:
            w = r["workloads"].get(n)
            cells.append("-" if not w else f"{w['p50_ms']:.1f} | {w['texts_per_s']:.1f}")
        f = lambda x, s: "-" if x is None else format(x, s)  # noqa: E731
        lines.append(f"| {r['tool']} | " + " | ".join(cells) + f" | {f(r.get('mean_cosine'), '.5f')} | {f(r.get('min_cosine'), '.5f')}"
                     f" | {f(r['cold_start_s'], '.1f')} | {f(r['peak_rss_mb'], '.0f')} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", type=Path, required=True)
    ap.add_argument("--checkpoint", type=Path, required=True, help="the sentence-transformers checkpoint (torch rows, OpenVINO export)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sts-n", type=int, default=1000)
    ap.add_argument("--tools", default=None, help="comma-separated row labels (default: all)")
    ap.add_argument("--subset", default="all", choices=["all", "timing"])
    ap.add_argument("--workloads", default="32x128,1x128,sts")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    res = compare(args.artifact, args.checkpoint, threads=args.threads, rounds=args.rounds, sts_n=args.sts_n,
                  tools=args.tools.split(",") if args.tools else None, subset=args.subset, workloads=args.workloads,
                  progress=lambda msg: print(f"[compare] {msg}", file=sys.stderr, flush=True))
    print(format_tables(res))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
