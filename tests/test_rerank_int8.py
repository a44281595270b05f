"""int8 cross-encoders, judged on a trained one (tests/trained_cross_encoder.py): the gates on scores and
rankings hold and are recorded in the manifest; a bad calibration fails them and nothing is published.

Random weights score every pair alike, so gate figures on them mean nothing; these tests build the
fine-tuned fixture (all-MiniLM-L6-v2 trained as a CrossEncoder on SICK train + STS-B dev) with fp32
and the int8 variant this CPU runs, on the repository's shared/data (STS-B test pairs, Cranfield).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from onnxembed import Reranker
from onnxembed.catalog import int8_variant_for
from onnxembed.errors import ValidationError
from onnxembed.providers import detect_cpu_features

PAIRS = [
    ("A man is playing a guitar.", "A man plays the guitar."),
    ("A man is playing a guitar.", "A woman is slicing an onion."),
    ("what similarity laws must be obeyed when constructing aeroelastic models of heated high speed aircraft .",
     "the aeroelastic behaviour of heated wings at high speed, with similarity rules for scale models."),
    ("what similarity laws must be obeyed when constructing aeroelastic models of heated high speed aircraft .",
     "a note on the boiling of water in kettles."),
]


def _variant() -> str:
    preset = detect_cpu_features().int8_preset
    if preset is None:
        pytest.skip("this CPU runs no int8 preset (no AVX2, AVX-512 VNNI or arm64 dot products)")
    return int8_variant_for(preset)


@pytest.fixture(scope="module")
def ce_int8(tmp_path_factory: pytest.TempPathFactory, trained_ce: Path) -> Path:
    from onnxembed.export import build_model

    out = tmp_path_factory.mktemp("ce-int8") / "ce-minilm-stsb"
    build_model(str(trained_ce), out, variants=f"fp32,{_variant()}")
    return out


def test_the_fixture_learned_to_score_pairs(trained_ce: Path) -> None:
    from trained_cross_encoder import quality

    q = quality(trained_ce)
    # Spearman x100 against the gold labels on STS-B test, held out from training: a random head gives ~0.
    assert q["stsb_test_spearman"] >= 60, q
    assert q["recipe"]["seed"] == 12 and q["train_pairs"] == q["recipe"]["train_pairs"]


def test_int8_gates_hold_on_the_trained_cross_encoder_and_are_recorded(ce_int8: Path) -> None:
    v = _variant()
    m = json.loads((ce_int8 / "manifest.json").read_text(encoding="utf-8"))
    assert m["task"] == "rerank" and set(m["variants"]) == {"fp32", v}
    e = m["variants"][v]
    acc, recipe = e["accuracy"], e["recipe"]
    assert acc["gates_run"] and acc["gates_passed"] and acc["task"] == "rerank"
    assert recipe["gates"] == {"score_spearman": 0.995, "ndcg10_drop": 0.005, "batch_stability": 0.999}
    assert acc["score_spearman"] >= 0.995 and acc["heldout_pairs"] == 1378  # STS-B test's 1,379 pairs, one duplicate
    assert acc["ndcg10_drop"] is not None and acc["ndcg10_drop"] <= 0.005
    assert abs(acc["ndcg10_drop"] - (acc["ndcg10_fp32"] - acc["ndcg10"]) / acc["ndcg10_fp32"]) < 1e-5
    assert acc["batch_stability"] >= 0.999
    # the data that judged: held-out pairs, Cranfield (50 queries x BM25 top-100) from shared/data
    ret = acc["data"]["retrieval"]
    assert ret["queries"] == 50 and ret["candidates"] == 100 and ret["source"].startswith("shared/data:")
    assert acc["data"]["heldout_pairs"]["source"].startswith("shared/data:")
    # trained: fp32 agrees with the gold labels (held out), and reranking changes the first stage's order
    assert acc["gold_spearman_fp32"] >= 60 and abs(acc["gold_spearman"] - acc["gold_spearman_fp32"]) <= 1.0
    assert acc["ndcg10_fp32"] != acc["ndcg10_first_stage"]
    cal = recipe["calibration"]
    assert cal["pairs_used"] == 256 and cal["overlap_removed"] >= 0 and "scored pairs" in cal["pairs_from"]
    assert e["precision"] == "int8" and e["fused_ops"]["QuantizeLinear"] > 0 and e["fused_ops"]["DequantizeLinear"] > 0


def test_the_runtime_ranks_with_the_int8_file_as_with_fp32(ce_int8: Path) -> None:
    fp32 = Reranker.load(ce_int8, variant="fp32")
    q8 = Reranker.load(ce_int8, variant=_variant())
    a, b = fp32.score(PAIRS), q8.score(PAIRS)
    assert a.shape == b.shape == (4,) and np.abs(a - b).max() < 0.05, (a, b)
    assert a[0] > a[1] and a[2] > a[3]  # trained: the related document wins
    assert [h.index for h in q8.rank(PAIRS[0][0], [PAIRS[1][1], PAIRS[0][1]])] == [1, 0]


def test_a_gate_can_fail_and_says_which(tmp_path: Path, ce_int8: Path) -> None:
    """The same file judged against a score-Spearman gate it cannot reach: refused, naming figure and gate.
    (Same process as the build: the fp32 reference and calibration are reused, so this costs one int8 pass.)"""
    from onnxembed.quantize import quantize_model

    folder = tmp_path / "ce"
    shutil.copytree(ce_int8, folder)
    acc = json.loads((ce_int8 / "manifest.json").read_text(encoding="utf-8"))["variants"][_variant()]["accuracy"]
    tight = min(1.0, acc["score_spearman"] + 0.0005)
    with pytest.raises(ValidationError) as e:
        quantize_model(folder, _variant(), gates={"score_spearman": tight}, smooth_alphas=(0.6,), max_fp32_nodes=0)
    msg = str(e.value)
    assert "fails the int8 accuracy gates" in msg and "Spearman of int8 vs fp32 scores" in msg and f"< {tight}" in msg, msg
    assert "on 1378 held-out pairs" in msg
    with pytest.raises(ValueError, match=r"unknown gate\(s\) \['mean_cosine'\] for task 'rerank'"):
        quantize_model(folder, _variant(), gates={"mean_cosine": 0.9})
