"""``onnxembed bench``: structure and numbers of the result, never timings.

Tiny random models, one or two rounds without a minimum time, so each test takes seconds. Speed is
measured by ``benchmarks/``, not here.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from onnxembed import ManifestError, load_manifest
from onnxembed.bench import ACCURACY_SENTENCES, BenchResult, bench, flops_per_token, machine_info, peak_gflops
from onnxembed.providers import detect_cpu_features, int8_variants_for_cpu

from conftest import run_cli

FAST = dict(rounds=2, min_seconds=0.0, warmup=1)


@pytest.fixture(scope="module")
def all_variants_result(tiny_bert_artifacts: Path) -> BenchResult:
    return bench(tiny_bert_artifacts, batch_sizes=(1, 3), seq_lens=(8, 24), memory=False, **FAST)


def test_every_variant_is_reported_and_cuda_formats_are_skipped_with_a_reason(all_variants_result: BenchResult, tiny_bert_artifacts: Path) -> None:
    m = load_manifest(tiny_bert_artifacts)
    for_cpu = int8_variants_for_cpu(m.variants, detect_cpu_features())
    reported = {v.name: v for v in all_variants_result.variants}
    assert set(reported) == set(m.variants)
    for name, v in m.variants.items():
        rep = reported[name]
        if v.device == "cuda" or v.precision == "fp16":
            assert rep.status == "skipped" and "CUDA" in rep.reason
            assert not [x for x in all_variants_result.measurements if x.variant == name]
        elif v.precision == "int8" and name not in for_cpu:  # the runtime's rule: never another CPU's int8 file
            assert rep.status == "skipped" and "another CPU" in rep.reason and f"--variants {name}" in rep.reason
            assert not [x for x in all_variants_result.measurements if x.variant == name]
        else:
            assert rep.status == "ok", rep.reason
            assert rep.providers and rep.providers[0] == "CPUExecutionProvider"
            assert rep.size_mb == round(v.size / 1e6, 1)


def test_every_workload_has_every_timed_variant_with_consistent_numbers(all_variants_result: BenchResult) -> None:
    timed = [v.name for v in all_variants_result.variants if v.status == "ok"]
    workloads = ["1x8", "3x8", "1x24", "3x24"]
    for w in workloads:
        for name in timed:
            mm = all_variants_result.measurement(name, w)
            assert mm is not None, (name, w)
            assert mm.calls >= 2  # at least one call per round
            assert 0 < mm.p50_ms <= mm.p90_ms <= mm.p99_ms
            assert mm.texts_per_call == mm.batch_size and mm.tokens_per_call == mm.batch_size * mm.seq_len
            assert math.isclose(mm.texts_per_s, mm.batch_size / (mm.p50_ms / 1000), rel_tol=1e-9)
            assert math.isclose(mm.tokens_per_s, mm.texts_per_s * mm.seq_len, rel_tol=1e-9)
            assert mm.speedup is not None and mm.speedup > 0
            assert mm.gflops is not None and mm.gflops > 0
        assert all_variants_result.measurement("fp32", w).speedup == 1.0
        # speedup is the ratio of medians measured in the same run
        for name in timed:
            mm = all_variants_result.measurement(name, w)
            assert math.isclose(mm.speedup, all_variants_result.measurement("fp32", w).p50_ms / mm.p50_ms, rel_tol=1e-9)


def test_accuracy_is_measured_against_fp32(all_variants_result: BenchResult) -> None:
    reps = {v.name: v for v in all_variants_result.variants}
    assert reps["fp32"].mean_cosine == pytest.approx(1.0, abs=1e-6)
    assert reps["fp32"].min_cosine == pytest.approx(1.0, abs=1e-6)
    for rep in reps.values():
        if rep.status != "ok":
            assert rep.mean_cosine is None
            continue
        assert -1.0 <= rep.min_cosine <= rep.mean_cosine <= 1.0 + 1e-6
        if rep.precision == "fp32":  # fused fp32 graphs compute the same function
            assert rep.min_cosine > 0.9999
    assert all_variants_result.settings["accuracy_sentences"] == len(ACCURACY_SENTENCES)


def test_json_has_the_header_settings_and_all_rows(all_variants_result: BenchResult) -> None:
    data = json.loads(all_variants_result.to_json())
    assert set(data) >= {"folder", "model", "machine", "settings", "variants", "measurements", "peak"}
    mc = data["machine"]
    assert set(mc) >= {"cpu", "features", "cores", "threads", "onnxruntime", "mhz"}
    import onnxruntime

    assert mc["onnxruntime"] == onnxruntime.__version__
    assert data["settings"]["rounds"] == 2 and data["settings"]["batch_sizes"] == [1, 3]
    timed = sum(1 for v in data["variants"] if v["status"] == "ok")
    assert len(data["measurements"]) == 4 * timed
    assert set(data["measurements"][0]) >= {"variant", "workload", "p50_ms", "p90_ms", "p99_ms", "texts_per_s", "tokens_per_s", "speedup"}
    table = all_variants_result.format_table()
    for v in data["variants"]:
        assert v["name"] in table
    assert mc["cpu"] in table and "skipped" in table


def test_real_texts_without_token_type_ids_and_peak_memory(tiny_distilbert_artifacts: Path) -> None:
    texts = list(ACCURACY_SENTENCES[:10])
    r = bench(tiny_distilbert_artifacts, variants=["fp32"], batch_sizes=(4,), texts=texts, memory=True, **FAST)
    assert [x.workload for x in r.measurements] == ["text n=10 b=4"]
    mm = r.measurements[0]
    assert mm.texts_per_call == 10 and mm.seq_len is None
    from onnxembed import Tokenizer

    tok = Tokenizer.from_file(tiny_distilbert_artifacts / "tokenizer.json")
    ids, _ = tok.encode_batch(texts, max_length=load_manifest(tiny_distilbert_artifacts).max_length)
    assert mm.tokens_per_call == sum(len(x) for x in ids)
    rep = r.variants[0]
    assert rep.peak_rss_mb is not None and rep.peak_rss_mb >= rep.load_rss_mb > 0
    assert r.settings["texts"] == 10 and r.settings["seq_lens"] is None


def test_quick_compares_fp32_with_this_cpus_int8_file(tiny_bert_artifacts: Path) -> None:
    r = bench(tiny_bert_artifacts, quick=True, rounds=1, min_seconds=0.0)
    names = [v.name for v in r.variants]
    assert names[0] == "fp32" and len(names) == 2
    assert r.variants[1].precision == "int8"
    assert sorted({x.workload for x in r.measurements}) == ["1x128", "32x128"]
    assert all(v.peak_rss_mb is None for v in r.variants)  # quick skips the memory subprocesses


def test_bad_arguments_say_what_is_present(tiny_bert_artifacts: Path) -> None:
    with pytest.raises(ValueError, match="present"):
        bench(tiny_bert_artifacts, variants=["fp33"])
    with pytest.raises(ValueError, match="batch sizes"):
        bench(tiny_bert_artifacts, batch_sizes=(0,))
    with pytest.raises(ValueError, match="empty"):
        bench(tiny_bert_artifacts, variants=["fp32"], texts=[])


def test_flops_and_peak_from_architecture() -> None:
    cfg = {"hidden_size": 384, "num_hidden_layers": 6, "intermediate_size": 1536}
    # all-MiniLM-L6-v2: 6 x (2 x (4 h^2 + 2 h i) + 4 s h)
    assert flops_per_token(cfg, 128) == 6 * (2 * (4 * 384**2 + 2 * 384 * 1536) + 4 * 128 * 384)
    distil = {"dim": 768, "n_layers": 6, "hidden_dim": 3072}
    assert flops_per_token(distil, 0) == 6 * 2 * (4 * 768**2 + 2 * 768 * 3072)
    intel = {"mhz": 2000.0, "cores": 2, "features": ["avx2", "avx512f", "avx512_vnni"], "vendor": "GenuineIntel", "cpu_family": "6"}
    pk = peak_gflops(intel)
    assert pk["fp32"] == pytest.approx(2 * 2.0 * 64) and pk["int8"] == pytest.approx(4 * pk["fp32"])
    zen4 = {**intel, "vendor": "AuthenticAMD", "cpu_family": "25"}
    assert peak_gflops(zen4)["fp32"] == pytest.approx(2 * 2.0 * 32)
    assert peak_gflops({**intel, "mhz": None}) is None
    assert "bf16" not in pk  # no bf16 hardware: no bf16 peak
    bf16 = peak_gflops({**intel, "features": [*intel["features"], "avx512_bf16"]})
    assert bf16["bf16"] == pytest.approx(2 * bf16["fp32"]) and bf16["int8"] == pytest.approx(4 * bf16["fp32"])
    amx = peak_gflops({**intel, "features": [*intel["features"], "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16"]})
    assert amx["int8"] == pytest.approx(32 * amx["fp32"]) and amx["bf16"] == pytest.approx(16 * amx["fp32"])
    avx2 = peak_gflops({**intel, "features": ["avx2"]})
    assert avx2["fp32"] == pytest.approx(2 * 2.0 * 32) and avx2["int8"] == pytest.approx(2 * avx2["fp32"])
    mc = machine_info(threads=3)
    assert mc["threads"] == 3 and mc["cores"] >= 1


def test_cli_plot_draws_a_real_png_and_without_matplotlib_names_the_pip_command(tiny_bert_artifacts: Path, tmp_path: Path) -> None:
    """``onnxembed bench --plot`` (matplotlib is in the dev extra): a PNG that decodes, of a real size, with
    bars on it (many colours, not a blank canvas). Without matplotlib: exit 1 and the pip command."""
    import matplotlib.image

    png = tmp_path / "bench.png"
    args = ["bench", str(tiny_bert_artifacts), "--variants", "fp32,O2", "--batch-sizes", "1,4", "--seq-lens", "8,32",
            "--rounds", "1", "--min-seconds", "0", "--no-memory", "--no-progress", "--plot", str(png)]
    proc = run_cli(*args)
    assert f"plot: {png}" in proc.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(str(png))
    assert image.ndim == 3 and image.shape[0] >= 300 and image.shape[1] >= 500, image.shape
    colours = np.unique((image[..., :3] * 255).round().astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) >= 20, len(colours)  # axes, labels, log ticks and one colour per variant
    background = (image[..., :3] > 0.98).all(axis=-1).mean()
    assert 0.3 < background < 0.99, background  # a white figure with something drawn on it
    blocked = "import sys\nsys.modules['matplotlib'] = None\nfrom onnxembed.cli import main\nsys.exit(main(sys.argv[1:]))"
    no_mpl = subprocess.run([sys.executable, "-c", blocked, *args[:-1], str(tmp_path / "none.png")], capture_output=True, text=True, timeout=600)
    assert no_mpl.returncode == 1 and "pip install" in no_mpl.stderr and "matplotlib" in no_mpl.stderr, no_mpl.stderr
    assert not (tmp_path / "none.png").exists()


def test_cli_quick_writes_json_and_draws_progress(tiny_bert_artifacts: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = run_cli("bench", str(tiny_bert_artifacts), "--quick", "--rounds", "1", "--min-seconds", "0", "--json", str(out))
    data = json.loads(out.read_text())
    assert [v["name"] for v in data["variants"]][0] == "fp32"
    assert "vs fp32" in proc.stdout and "1.00x" in proc.stdout
    assert "[" in proc.stderr and "accuracy" in proc.stderr  # the progress bar
    proc = run_cli("bench", str(tiny_bert_artifacts), "--variants", "fp32", "--batch-sizes", "2", "--seq-lens", "8",
                   "--rounds", "1", "--min-seconds", "0", "--no-memory", "--no-progress")
    assert "2x8" in proc.stdout and proc.stderr == ""
    bad = run_cli("bench", str(tiny_bert_artifacts), "--batch-sizes", "x", check=False)
    assert bad.returncode != 0 and "comma-separated integers" in bad.stderr
    bad = run_cli("bench", str(tiny_bert_artifacts), "--min-seconds", "-1", check=False)
    assert bad.returncode == 2 and "seconds >= 0, found -1" in bad.stderr


# ------------------------------------------------------------------- the int8 file for this CPU


def _only_vnni_int8(src: Path, dst: Path) -> Path:
    """A copy of an artifact folder whose only int8 file is the AVX512-VNNI one."""
    shutil.copytree(src, dst)
    path = dst / "manifest.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw["variants"] = {k: v for k, v in raw["variants"].items() if v["precision"] != "int8" or k == "qint8_avx512_vnni"}
    path.write_text(json.dumps(raw), encoding="utf-8")
    return dst


def test_quick_times_the_int8_file_the_runtime_picks_for_a_faked_cpu(tiny_bert_artifacts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONNXEMBED_CPU_FEATURES", "avx2")  # an AVX2-only CPU: the reduce_range file
    r = bench(tiny_bert_artifacts, quick=True, rounds=1, min_seconds=0.0, seq_lens=(8,), batch_sizes=(1,))
    from onnxembed import Embedder

    picked = Embedder.load(tiny_bert_artifacts, variant="int8", verify=False).variant
    assert [v.name for v in r.variants] == ["fp32", picked] and picked == "quint8_avx2"
    assert r.settings["cpu_int8_preset"] == "avx2" and r.settings["int8_for_this_cpu"] == ["quint8_avx2"]


def test_avx2_cpu_with_only_the_vnni_file_agrees_with_the_runtime(tiny_bert_artifacts: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _only_vnni_int8(tiny_bert_artifacts, tmp_path / "vnni-only")
    monkeypatch.setenv("ONNXEMBED_CPU_FEATURES", "avx2")
    from onnxembed import Embedder

    with pytest.raises(ManifestError, match="no int8 file for this CPU"):
        Embedder.load(folder, variant="int8", verify=False)
    quick = bench(folder, quick=True, rounds=1, min_seconds=0.0, seq_lens=(8,), batch_sizes=(1,))
    assert [v.name for v in quick.variants] == ["fp32"]  # not the unsafe file
    assert any("no int8 file for this CPU (avx2)" in w for w in quick.warnings)
    assert "WARNING: no int8 file for this CPU" in quick.format_table()
    full = bench(folder, rounds=1, min_seconds=0.0, seq_lens=(8,), batch_sizes=(1,), memory=False)
    rep = {v.name: v for v in full.variants}["qint8_avx512_vnni"]
    assert rep.status == "skipped" and "another CPU" in rep.reason
    assert not [x for x in full.measurements if x.variant == "qint8_avx512_vnni"]
    asked = bench(folder, variants=["qint8_avx512_vnni"], rounds=1, min_seconds=0.0, seq_lens=(8,), batch_sizes=(1,), memory=False)
    rep = {v.name: v for v in asked.variants}["qint8_avx512_vnni"]
    assert rep.status == "ok" and "timed because asked for" in rep.reason  # as Embedder.load(variant=NAME) loads it


# ----------------------------------------------------------------------- % of peak, busy machine


def test_share_of_peak_is_against_the_variants_own_precision(all_variants_result: BenchResult) -> None:
    peak = all_variants_result.peak
    if not peak:
        pytest.skip("this machine reports no CPU frequency, so no peak")
    precision = {v.name: v.precision for v in all_variants_result.variants}
    for mm in all_variants_result.measurements:
        own = peak["int8"] if precision[mm.variant] == "int8" else peak["fp32"]
        assert mm.pct_of_peak == pytest.approx(100.0 * mm.gflops / own)
    table = all_variants_result.format_table()
    assert "% own peak" in table and "peak per precision" in table
    assert f"int8 {peak['int8']:.0f} GOP/s ({peak['int8'] / peak['fp32']:.0f}x fp32)" in table


def test_a_busy_machine_is_warned_about_in_the_table_and_json(tiny_bert_artifacts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxembed.bench.engine as engine

    cpus = 4
    monkeypatch.setattr(engine, "cpu_load", lambda: {"load_average": [9.5, 8.0, 7.0], "busy_cpus": 3.5, "cpus": cpus})
    r = bench(tiny_bert_artifacts, variants=["fp32"], rounds=1, min_seconds=0.0, seq_lens=(8,), batch_sizes=(1,), memory=False)
    assert len(r.warnings) == 1 and "3.5 of 4 CPUs busy" in r.warnings[0] and "unreliable" in r.warnings[0]
    assert r.format_table().splitlines()[0] == f"WARNING: {r.warnings[0]}"
    data = json.loads(r.to_json())
    assert data["warnings"] == r.warnings and data["machine"]["load"]["busy_cpus"] == 3.5
    monkeypatch.setattr(engine, "cpu_load", lambda: {"load_average": [9.5, 8.0, 7.0], "busy_cpus": 0.1, "cpus": cpus})
    quiet = bench(tiny_bert_artifacts, variants=["fp32"], rounds=1, min_seconds=0.0, seq_lens=(8,), batch_sizes=(1,), memory=False)
    assert quiet.warnings == [] and not quiet.format_table().startswith("WARNING")


def test_load_warning_rule() -> None:
    from onnxembed.bench.machine import BUSY_FRACTION, load_warning

    limit = max(0.5, BUSY_FRACTION * 8)
    assert load_warning({"load_average": [limit * 4, 0, 0], "busy_cpus": limit / 2, "cpus": 8}) is None  # own past work only
    assert "busy" in load_warning({"load_average": [0.0, 0, 0], "busy_cpus": limit, "cpus": 8})
    assert "load average" in load_warning({"load_average": [limit, 0, 0], "busy_cpus": None, "cpus": 8})  # no /proc/stat
    assert load_warning({"load_average": [limit / 2, 0, 0], "busy_cpus": None, "cpus": 8}) is None
    assert load_warning({"load_average": None, "busy_cpus": None, "cpus": 8}) is None


# ------------------------------------------------------------------------------------- accuracy


def test_accuracy_is_labelled_with_the_sentences_it_was_measured_on(all_variants_result: BenchResult, tiny_bert_artifacts: Path) -> None:
    n = len(ACCURACY_SENTENCES)
    assert all_variants_result.settings["accuracy"] == f"cosine to fp32 on {n} bench sentences"
    assert f"on {n} bench sentences" in all_variants_result.format_table()
    r = bench(tiny_bert_artifacts, variants=["fp32"], accuracy_texts=["one", "two", "three"], rounds=1, min_seconds=0.0,
              seq_lens=(8,), batch_sizes=(1,), memory=False)
    assert "on 3 given sentences" in r.format_table() and r.settings["accuracy_sentences"] == 3


class _FixedEmbedder:
    def __init__(self, vecs: np.ndarray) -> None:
        self.vecs = vecs

    def encode(self, texts: list[str], batch_size: int = 8) -> np.ndarray:
        return self.vecs[: len(texts)]


def test_cosine_to_reference_is_rowwise_and_guards_zero_rows() -> None:
    from onnxembed.bench.accuracy import cosine_to_reference

    ref = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
    other = np.array([[2.0, 0.0], [0.0, 0.0], [1.0, -1.0]], np.float32)  # same direction, a zero row, orthogonal
    out = cosine_to_reference({"fp32": _FixedEmbedder(ref), "int8": _FixedEmbedder(other)}, "fp32", ["a", "b", "c"])
    assert out["fp32"] == pytest.approx((1.0, 1.0))
    assert out["int8"] == pytest.approx((1.0 / 3.0, 0.0))  # finite, not NaN


# ------------------------------------------------------------------------------ workloads, timing


def test_workloads_are_data_and_skip_lengths_over_the_positions(caplog: pytest.LogCaptureFixture) -> None:
    from onnxembed.bench.workloads import Workload, shape_workloads, text_workloads

    ws = shape_workloads((1, 4), (8, 600), max_positions=512)
    assert [(w.label, w.batch_size, w.seq_len, w.texts_per_call, w.tokens_per_call) for w in ws] == [
        ("1x8", 1, 8, 1, 8), ("4x8", 4, 8, 4, 32)]
    assert "600" in caplog.text
    (tw,) = text_workloads(["a", "b c"], (2,), n_tokens=9)
    assert tw == Workload("text n=2 b=2", 2, None, 2, 9, ("a", "b c"))
    with pytest.raises(ValueError, match="empty"):
        text_workloads([], (2,), n_tokens=0)


def test_rounds_are_interleaved_in_rotated_order_and_speedups_are_ratios_of_medians() -> None:
    from onnxembed.bench.result import Measurement
    from onnxembed.bench.timing import add_speedups, time_interleaved

    order: list[str] = []
    calls = {n: (lambda n=n: order.append(n)) for n in ("fp32", "O2", "int8")}
    samples = time_interleaved(calls, rounds=3, min_seconds=0.0, warmup=2)
    assert order[:6] == ["fp32", "fp32", "O2", "O2", "int8", "int8"]  # warm-up
    assert order[6:] == ["fp32", "O2", "int8", "O2", "int8", "fp32", "int8", "fp32", "O2"]
    assert {n: len(s) for n, s in samples.items()} == {"fp32": 3, "O2": 3, "int8": 3}
    rows = [Measurement(n, "w", 1, 8, 3, 1, 8, p50, p50, p50, p50, 1, 1) for n, p50 in (("fp32", 4.0), ("int8", 2.0))]
    rows.append(Measurement("fp32", "other", 1, 8, 3, 1, 8, 1.0, 1.0, 1.0, 1.0, 1, 1))
    add_speedups(rows[:2])
    assert [r.speedup for r in rows] == [1.0, 2.0, None]


def test_compare_tools_uses_the_runtimes_int8_rule(tiny_bert_artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare_tools", Path(__file__).resolve().parents[1] / "benchmarks" / "compare_tools.py")
    compare_tools = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare_tools)
    monkeypatch.setenv("ONNXEMBED_CPU_FEATURES", "avx2")
    assert compare_tools.onnxembed_int8(load_manifest(tiny_bert_artifacts).variants) == "quint8_avx2"
    vnni_only = load_manifest(_only_vnni_int8(tiny_bert_artifacts, tmp_path / "vnni-only")).variants
    with pytest.raises(ManifestError, match="no int8 file for this CPU"):
        compare_tools.onnxembed_int8(vnni_only)
    monkeypatch.setenv("ONNXEMBED_CPU_FEATURES", "avx2,avx512_vnni")
    assert compare_tools.onnxembed_int8(vnni_only) == "qint8_avx512_vnni"
