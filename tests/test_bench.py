"""``onnxembed bench``: structure and numbers of the result, never timings.

Tiny random models, one or two rounds without a minimum time, so each test takes seconds. Speed is
measured by ``benchmarks/``, not here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from onnxembed import load_manifest
from onnxembed.bench import ACCURACY_SENTENCES, BenchResult, bench, flops_per_token, machine_info, peak_gflops, plot_result

from conftest import run_cli

FAST = dict(rounds=2, min_seconds=0.0, warmup=1)


@pytest.fixture(scope="module")
def all_variants_result(tiny_bert_artifacts: Path) -> BenchResult:
    return bench(tiny_bert_artifacts, batch_sizes=(1, 3), seq_lens=(8, 24), memory=False, **FAST)


def test_every_variant_is_reported_and_cuda_formats_are_skipped_with_a_reason(all_variants_result: BenchResult, tiny_bert_artifacts: Path) -> None:
    m = load_manifest(tiny_bert_artifacts)
    reported = {v.name: v for v in all_variants_result.variants}
    assert set(reported) == set(m.variants)
    for name, v in m.variants.items():
        rep = reported[name]
        if v.device == "cuda" or v.precision == "fp16":
            assert rep.status == "skipped" and "CUDA" in rep.reason
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
    mc = machine_info(threads=3)
    assert mc["threads"] == 3 and mc["cores"] >= 1


def test_plot_needs_matplotlib_or_draws(all_variants_result: BenchResult, tmp_path: Path) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install"):
            plot_result(all_variants_result, tmp_path / "p.png")
        return
    out = plot_result(all_variants_result, tmp_path / "p.png")
    assert out.stat().st_size > 1000


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
