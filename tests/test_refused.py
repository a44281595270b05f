"""An int8 variant refused by its gates does not discard the build, and long judging says how far it is.

The refusal is forced with a real gate, not a mock: the tiny gte-small's two int8 presets (8-bit weights
judged in this CPU's arithmetic or exactly, 7-bit weights) give different STS-B Spearman drops on the
same gate pairs, and a registry whose ``stsb_spearman_drop`` gate sits between the two refuses exactly
one of them. That gate is not used by the recipe search (which reads the cosine gates only), so the files
are the same as in the unrestricted build and the figures can be predicted from it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli
from test_fusion import make_workdir  # tests/ is on sys.path (pytest rootdir mode)

from onnxembed import Embedder, ManifestError, load_manifest
from onnxembed.quantize.progress import JudgeProgress, format_duration

INT8 = ("qint8_avx512_vnni", "quint8_avx2")
VARIANTS = "fp32,O2," + ",".join(INT8)
CPU_OF = {"qint8_avx512_vnni": "avx2,avx512_vnni", "quint8_avx2": "avx2"}  # a CPU for which the variant is the runtime's first int8 choice


def _drop(acc: dict[str, Any]) -> float:
    return round(acc["stsb_spearman_fp32"] - acc["stsb_spearman"], 3)


def _build(tiny_registry: dict, registry: Path, out: Path, data: list[str], *more: str) -> Any:
    return run_cli("build", "gte-small", "--out", str(out), "--registry", str(registry), "--variants", VARIANTS, *data, *more,
                   env=tiny_registry["env"], check=False, timeout=1800)


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory, tiny_registry: dict, tiny_build_data: list[str]) -> dict[str, Any]:
    """An unrestricted build (both int8 presets pass), then one whose Spearman-drop gate refuses the worse preset."""
    from onnxembed.export.registry import dump_registry, load_registry

    root = tmp_path_factory.mktemp("refused")
    free = _build(tiny_registry, tiny_registry["registry"], root / "free", tiny_build_data)
    assert free.returncode == 0, free.stderr[-3000:]
    acc = {v: load_manifest(root / "free").variants[v].info["accuracy"] for v in INT8}
    drops = {v: _drop(a) for v, a in acc.items()}
    assert drops[INT8[0]] != drops[INT8[1]], f"the two presets give the same Spearman drop {drops}: no gate between them to test with"
    worse = max(drops, key=lambda v: drops[v])
    threshold = round(sum(drops.values()) / 2, 4)
    spec = load_registry(tiny_registry["registry"])["gte-small"]
    registry = dump_registry({"gte-small": dataclasses.replace(spec, gates={**spec.gates, "stsb_spearman_drop": threshold})},
                             root / "strict.yaml")
    proc = _build(tiny_registry, registry, root / "strict", tiny_build_data)
    return {"root": root, "out": root / "strict", "free": root / "free", "registry": registry, "data": tiny_build_data, "proc": proc,
            "refused": worse, "kept": next(v for v in INT8 if v != worse), "threshold": threshold, "drops": drops, "acc": acc}


def test_a_refused_variant_leaves_the_validated_ones_published(strict: dict[str, Any]) -> None:
    proc, out, bad, good = strict["proc"], strict["out"], strict["refused"], strict["kept"]
    assert proc.returncode == 3, proc.stderr[-3000:]
    m = load_manifest(out)
    assert sorted(m.variants) == sorted(["fp32", "O2", good])
    assert not (out / "onnx" / f"model_{bad}.onnx").exists() and (out / "onnx" / f"model_{good}.onnx").is_file()
    assert [p.name for p in out.parent.iterdir() if ".onnxembed-tmp-" in p.name] == []  # published atomically, nothing left over
    rec = m.refused[bad]
    assert list(m.refused) == [bad]
    assert rec["failed_gates"] == {"stsb_spearman_drop": {"figure": strict["drops"][bad], "threshold": strict["threshold"], "rule": "<="}}
    assert rec["judged_on"] == {"sentences": strict["acc"][bad]["heldout_sentences"]}
    assert rec["accuracy"]["gates_passed"] is False and rec["accuracy"]["stsb_spearman"] == strict["acc"][bad]["stsb_spearman"]
    assert len(rec["failures"]) == 1 and "STS-B test Spearman" in rec["failures"][0]
    assert m.variants[good].info["accuracy"]["gates_passed"] is True
    # the summary table: every variant with passed/refused and its figures
    rows = {line.split()[0]: line for line in proc.stdout.splitlines() if line.split() and line.split()[0] in ("fp32", "O2", *strict["acc"])}
    assert rows[good].split()[1] == "passed" and rows["fp32"].split()[1] == "validated"
    assert rows[bad].split()[1] == "REFUSED" and f"stsb_spearman_drop {strict['drops'][bad]:.6g} (needs <= {strict['threshold']:g})" in rows[bad]
    assert f"STS-B {strict['acc'][bad]['stsb_spearman']:.2f}" in rows[bad]
    err = proc.stderr
    assert f"{bad} REFUSED by its int8 gates" in err and f"on {strict['acc'][bad]['heldout_sentences']:,} sentences" in err
    assert f"{out} was written with the variants that passed (fp32, O2, {good})" in err
    assert "--skip-gates" in err and "--calibration" in err and "--force rebuilds" in err


def test_verify_reports_the_refusal_and_passes(strict: dict[str, Any]) -> None:
    proc = run_cli("verify", str(strict["out"]))
    assert f"NOTE    {strict['refused']}: refused by its int8 accuracy gates" in proc.stdout, proc.stdout
    asked = run_cli("verify", str(strict["out"]), "--variants", strict["refused"], "--no-run", check=False)
    assert asked.returncode == 1 and "was refused by its int8 accuracy gates" in asked.stdout, asked.stdout


def test_a_rerun_is_up_to_date_and_repeats_the_refusal(strict: dict[str, Any], tiny_registry: dict) -> None:
    out = strict["out"]
    before = (out / "manifest.json").read_bytes()
    again = _build(tiny_registry, strict["registry"], out, strict["data"])
    assert again.returncode == 3, again.stderr[-3000:]
    assert again.stdout.startswith(f"skipped {out} (inputs unchanged)"), again.stdout
    assert f"up to date (inputs unchanged), skipped; its build refused {strict['refused']}" in again.stderr
    assert f"{strict['refused']} REFUSED by its int8 gates" in again.stderr
    assert (out / "manifest.json").read_bytes() == before  # nothing rebuilt
    forced = _build(tiny_registry, strict["registry"], out, strict["data"], "--force")
    assert forced.returncode == 3 and forced.stdout.startswith(f"built {out}"), forced.stderr[-3000:]
    assert list(load_manifest(out).refused) == [strict["refused"]]


def test_the_runtime_never_chooses_a_refused_variant(strict: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    bad = strict["refused"]
    monkeypatch.setenv("ONNXEMBED_CPU_FEATURES", CPU_OF[bad])  # a CPU whose first int8 choice is the refused preset
    assert Embedder.load(strict["free"], variant="auto", verify=False).variant == bad  # where it was published, it is chosen
    emb = Embedder.load(strict["out"], variant="auto")
    assert emb.variant != bad and emb.variant in load_manifest(strict["out"]).variants
    assert emb.encode(["a refused int8 file is never loaded"]).shape == (1, load_manifest(strict["out"]).dim)
    with pytest.raises(ManifestError, match=f"variant '{bad}' was refused by its int8 accuracy gates"):
        Embedder.load(strict["out"], variant=bad)
    with pytest.raises(ManifestError, match="refused by its int8 accuracy gates"):
        load_manifest(strict["out"]).variant(bad)
    from onnxembed.bench import bench

    quick = bench(strict["out"], quick=True, rounds=1, min_seconds=0.0, seq_lens=(8,), batch_sizes=(1,))  # fp32 against this CPU's int8
    timed = [v.name for v in quick.variants]
    if timed == ["fp32"]:  # no int8 file left for this CPU: the warning names the refusal
        assert any(f"({bad} refused by its accuracy gates at build time)" in w for w in quick.warnings), quick.warnings
    else:  # the VNNI file refused: a VNNI CPU falls back to the passing avx2 file
        assert timed == ["fp32", strict["kept"]], timed


# ------------------------------------------------------------------------------- the Python API


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory, real_checkpoint: Path, tiny_build_data: list[str]) -> dict[str, Any]:
    """``add_variants`` with a batch-stability gate no file can meet, every progress line kept (a line per batch)."""
    import onnxembed.quantize.progress as judging
    from onnxembed.export.variants import add_variants
    from onnxembed.quantize import DEFAULT_GATES

    work, manifest = make_workdir(tmp_path_factory.mktemp("refused-api"), "gte-small", real_checkpoint, seed=5)
    lines: list[str] = []
    gates = {**DEFAULT_GATES, "mean_cosine": 0.0, "min_cosine": 0.0, "stsb_spearman_drop": 100.0, "batch_stability": 1.5}
    every, judging.EVERY = judging.EVERY, 0.0
    try:
        refused = add_variants(work, manifest, ["O2", "qint8_avx512_vnni", "quint8_avx2"], gates=gates, calibration=tiny_build_data[1],
                               gate_data=tiny_build_data[3], progress=lines.append)
    finally:
        judging.EVERY = every
    return {"work": work, "manifest": manifest, "refused": refused, "lines": lines, "gates": gates}


def test_add_variants_returns_refusals_instead_of_raising(judged: dict[str, Any]) -> None:
    work, manifest, refused = judged["work"], judged["manifest"], judged["refused"]
    assert sorted(refused) == sorted(["qint8_avx512_vnni", "quint8_avx2"]) and manifest["refused"] is refused
    assert sorted(manifest["variants"]) == ["O2"] and (work / "onnx" / "model_O2.onnx").is_file()
    assert not any((work / "onnx" / f"model_{v}.onnx").exists() for v in refused)
    for v, rec in refused.items():
        stab = rec["accuracy"]["batch_stability_min_cosine"]
        assert rec["failed_gates"] == {"batch_stability": {"figure": stab, "threshold": judged["gates"]["batch_stability"], "rule": ">="}}, v
        assert rec["recipe"]["gates"]["batch_stability"] == judged["gates"]["batch_stability"]


def test_judging_says_how_far_it_is(judged: dict[str, Any]) -> None:
    """With the interval at 0 every batch gives a line: the counts climb by batches to the held-out total."""
    for v, rec in judged["refused"].items():
        total = rec["judged_on"]["sentences"]
        pat = re.compile(rf"^{v}: judged ([\d,]+) / {total:,} sentences, \d+ (s|min \d+ s), ~\d+ (s|min) left$")
        counts = [int(m.group(1).replace(",", "")) for m in map(pat.match, judged["lines"]) if m]
        assert counts and counts[-1] == total, (v, judged["lines"][:5])
        steps = [b - a for a, b in zip([0, *counts], counts)]
        assert all(0 < s <= 32 for s in steps) and sum(steps) == total  # the reference encoder's batches of 32


def test_progress_lines_are_spaced_by_the_interval() -> None:
    now = [0.0]
    lines: list[str] = []
    p = JudgeProgress("quint8_avx2", 21166, lines.append, every=30.0, clock=lambda: now[0])
    for _ in range(20):
        now[0] += 10.0
        p.add(256)
    assert len(lines) == 20 * 10 // 30  # one line each 30 s of the 200 s
    for k, line in enumerate(lines):
        n, elapsed = 256 * 3 * (k + 1), 30.0 * (k + 1)  # three batches per line
        left = elapsed * (21166 - n) / n
        assert line.startswith(f"quint8_avx2: judged {n:,} / 21,166 sentences, {format_duration(elapsed)}, ~"), line
        assert line.endswith(f"~{round(left / 60)} min left") if left >= 60 else line.endswith(f"~{format_duration(left)} left"), line
    quiet = JudgeProgress("x", 10, lines.append, every=30.0, clock=lambda: 0.0)
    quiet.add(5)
    assert len(lines) == 20 * 10 // 30  # no time passed: no line


@pytest.mark.parametrize("seconds,text", [(0.4, "0 s"), (42, "42 s"), (190, "3 min 10 s"), (3720, "1 h 02 min")])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_build_models_reports_the_refusal(strict: dict[str, Any], tiny_registry: dict) -> None:
    root = strict["root"] / "all"
    proc = run_cli("build", "--models", "gte-small", "--out", str(root), "--registry", str(strict["registry"]), "--variants", VARIANTS,
                   *strict["data"], env=tiny_registry["env"], check=False, timeout=1800)
    assert proc.returncode == 3, proc.stderr[-3000:]
    row = next(line for line in proc.stdout.splitlines() if line.startswith("gte-small"))
    assert row.split()[1] == "built" and f"{strict['refused']} REFUSED" in row and strict["kept"] in row
    report = json.loads((root / "build-report.json").read_text(encoding="utf-8"))
    assert report["ok"] is False and report["models"][0]["status"] == "built"
    assert report["models"][0]["refused"][strict["refused"]]["failed_gates"] == load_manifest(root / "gte-small").refused[strict["refused"]]["failed_gates"]


def test_a_search_in_exact_arithmetic_says_each_candidate(judged: dict[str, Any]) -> None:
    """The file for another CPU is searched and judged in exact int8 arithmetic (slow): a line per candidate."""
    exact = [v for v, rec in judged["refused"].items() if rec["accuracy"]["arithmetic"].startswith("exact")]
    assert exact, "one of avx512_vnni / avx2 is always another CPU's preset"
    for v in exact:
        tried = judged["refused"][v]["recipe"]["search"]["tried"]
        steps = [line for line in judged["lines"] if line.startswith(f"{v}: recipe search in exact int8 arithmetic, candidate ")]
        assert len(steps) == len(tried), (steps, tried)
        for line, row in zip(steps, tried):
            assert f"smooth_alpha {row['smooth_alpha']}, {row['fp32_nodes']} MatMuls fp32: mean_cosine {row['mean_cosine']:.5f}" in line
        assert any(line.startswith(f"{v}: judging ") and "in exact int8 arithmetic" in line for line in judged["lines"])


def test_leaving_the_refused_variant_out_finds_the_folder_up_to_date(strict: dict[str, Any], tiny_registry: dict, tmp_path: Path) -> None:
    out = tmp_path / "gte-small"
    shutil.copytree(strict["out"], out, symlinks=True)  # a copy: this test rebuilds it
    before = (out / "manifest.json").read_bytes()
    kept = ",".join(v for v in VARIANTS.split(",") if v != strict["refused"])
    proc = run_cli("build", "gte-small", "--out", str(out), "--registry", str(strict["registry"]), "--variants", kept, *strict["data"],
                   env=tiny_registry["env"], check=False, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith(f"skipped {out}") and f"({strict['refused']}, refused by the gates, left out)" in proc.stderr
    assert (out / "manifest.json").read_bytes() == before
    other = run_cli("build", "gte-small", "--out", str(out), "--registry", str(strict["registry"]), "--variants", "fp32,O2", *strict["data"],
                    env=tiny_registry["env"], check=False, timeout=1800)  # not the same request without the refused variant: rebuilt
    assert other.returncode == 0 and other.stdout.startswith(f"built {out}"), other.stderr[-3000:]
    assert sorted(load_manifest(out).variants) == ["O2", "fp32"] and load_manifest(out).refused == {}
