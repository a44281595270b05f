"""Cross-encoders (rerankers): built from a local folder, a hub id and a registry entry, validated against
PyTorch and sentence-transformers' CrossEncoder, run torch-free by :class:`onnxembed.Reranker`.

The checkpoints are tiny random ``BertForSequenceClassification`` models (one label with sigmoid, three
labels with softmax) with the real all-MiniLM-L6-v2 vocabulary; their weights are drawn wide enough
(``initializer_range`` 0.2) that the logits differ from pair to pair, so a parity check can fail.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli, tiny_ce_spec
from onnxembed import Embedder, ManifestError, Ranked, Reranker
from onnxembed.export.registry import RegistryError, dump_registry, load_registry

PAIRS = [
    ("how many people live in Berlin?", "Berlin has a population of 3,520,031 registered inhabitants."),
    ("how many people live in Berlin?", "A man is playing a guitar."),
    ("how many people live in Berlin?", "word " * 600),  # longer than max_length: the document is cut
    ("long query " * 200, "short document"),  # the query alone exceeds half the window: both are cut
    ("中文 🙂", "Ünïcödé, accents and 中文 🙂"),
    ("", ""),
    ("x", "tabs\tand\nnewlines \x00 NUL \ufffd"),
]


def _crossencoder(folder: Path, **kw: object):  # type: ignore[no-untyped-def]
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(folder), device="cpu", max_length=256, **kw)


# ------------------------------------------------------------------------------------------- build


def test_build_exports_the_cross_encoder_not_an_embedder(ce_folder: Path) -> None:
    m = json.loads((ce_folder / "manifest.json").read_text(encoding="utf-8"))
    assert (m["task"], m["num_labels"], m["activation"], m["dim"], m["output_name"]) == ("rerank", 1, "sigmoid", 1, "logits")
    assert m["pair_template"] == "[CLS] $A [SEP] $B [SEP]" and m["pooling"] == "none"
    val = m["variants"]["fp32"]["validation"]
    assert val["pairs"] == 6 and val["crossencoder_activation"] == "Sigmoid"
    for key in ("max_abs_diff", "crossencoder_max_abs_diff", "scores_max_abs_diff"):
        assert 0 <= val[key] <= 1e-4, (key, val[key])
    o2 = m["variants"]["O2"]
    assert o2["validation"]["max_abs_diff"] <= 1e-4 and o2["fused_ops"].get("Attention", 0) == 2  # the 2 layers fused
    assert not (ce_folder / "modules.json").exists()  # no pooling module: CrossEncoder reads config.json
    fp = m["fingerprint"]["variants"]["fp32"]["logits"]
    assert len(fp) == 5 and np.ptp(np.asarray(fp)) > 0.05  # logits differ between pairs: the parity checks can fail
    assert "ok" in run_cli("verify", str(ce_folder)).stdout.lower()


def test_build_from_a_hub_id_and_a_registry_entry(tmp_path: Path, ce_checkpoints: dict[str, Path]) -> None:
    from onnxembed.export.synthetic import put_in_hf_cache

    put_in_hf_cache(ce_checkpoints["one"], "test-org/tiny-ce", tmp_path / "hub")
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    registry = dump_registry({"tiny-ce": tiny_ce_spec(1, "sigmoid")}, tmp_path / "models.yaml")
    assert load_registry(registry)["tiny-ce"].task == "rerank"  # the entry round-trips
    run_cli("build", "test-org/tiny-ce", "--out", str(tmp_path / "by-id"), "--variants", "fp32", env=env)
    run_cli("build", "tiny-ce", "--registry", str(registry), "--out", str(tmp_path / "by-name"), "--variants", "fp32", env=env)
    for out in ("by-id", "by-name"):
        m = json.loads((tmp_path / out / "manifest.json").read_text(encoding="utf-8"))
        assert m["task"] == "rerank" and m["variants"]["fp32"]["validation"]["crossencoder_max_abs_diff"] <= 1e-4
    a = Reranker.load(tmp_path / "by-id").score(PAIRS)
    np.testing.assert_array_equal(a, Reranker.load(tmp_path / "by-name").score(PAIRS))
    # the registry entry must agree with the checkpoint: a wrong activation is refused, naming both
    bad = dump_registry({"tiny-ce": tiny_ce_spec(1, "identity")}, tmp_path / "bad.yaml")
    proc = run_cli("build", "tiny-ce", "--registry", str(bad), "--out", str(tmp_path / "bad"), "--variants", "fp32", env=env, check=False)
    assert proc.returncode != 0 and "activation: registry 'identity', checkpoint 'sigmoid'" in proc.stderr


def test_int8_of_a_reranker_is_built_when_named_and_left_out_of_the_default_set() -> None:
    from onnxembed.export.build import _check_rerank_variants

    said: list[str] = []
    wanted = ["fp32", "O2", "quint8_avx2"]
    _check_rerank_variants(tiny_ce_spec(1, "sigmoid"), wanted, False, said.append)  # named: kept (gated in tests/test_rerank_int8.py)
    assert wanted == ["fp32", "O2", "quint8_avx2"] and not said
    with pytest.raises(ValueError, match=r"cross-encoder with 3 labels: int8 variants \['quint8_avx2'\] are built for one-label"):
        _check_rerank_variants(tiny_ce_spec(3, "softmax"), list(wanted), False, said.append)
    _check_rerank_variants(tiny_ce_spec(1, "sigmoid"), wanted, True, said.append)
    assert wanted == ["fp32", "O2"] and "int8 variants are built when named" in said[0]


def test_registry_and_config_errors_name_the_fix(tmp_path: Path) -> None:
    from onnxembed.export.checkpoint import read_cross_encoder_config

    import yaml

    d = yaml.safe_load(dump_registry({"x": tiny_ce_spec(1, "sigmoid")}, tmp_path / "ok.yaml").read_text(encoding="utf-8"))["models"]["x"]
    for change, msg in (({"num_labels": 0}, "no 'num_labels'"), ({"task": "classify"}, "field 'task' is 'classify'"),
                        ({"task": "embed", "pooling": "mean"}, "belong to task 'rerank' entries only")):
        (tmp_path / "r.yaml").write_text(yaml.safe_dump({"models": {"x": {**d, **change}}}), encoding="utf-8")
        with pytest.raises(RegistryError, match=msg):
            load_registry(tmp_path / "r.yaml")
    assert read_cross_encoder_config({"architectures": ["BertModel"]}, tmp_path) == {}
    assert read_cross_encoder_config({"architectures": ["XForSequenceClassification"], "num_labels": 2}, tmp_path)["activation"] == "identity"
    with pytest.raises(ValueError, match="not supported.*cross-encoders"):
        read_cross_encoder_config({"architectures": ["BertForTokenClassification"]}, tmp_path)
    with pytest.raises(ValueError, match="names the activation 'my.Custom'"):
        read_cross_encoder_config({"architectures": ["BertForSequenceClassification"], "sentence_transformers": {"activation_fn": "my.Custom"}}, tmp_path)


# ----------------------------------------------------------------------------------------- runtime


def test_scores_match_crossencoder_torch(ce_folder: Path, ce_checkpoints: dict[str, Path]) -> None:
    import torch

    ce = _crossencoder(ce_checkpoints["one"])
    for variant in ("fp32", "O2"):
        rr = Reranker.load(ce_folder, variant=variant)
        got = rr.score(PAIRS)
        assert got.shape == (len(PAIRS),) and got.dtype == np.float32
        ref = ce.predict([list(p) for p in PAIRS], batch_size=3)
        assert np.abs(got - ref).max() <= 1e-5, variant
        logits = ce.predict([list(p) for p in PAIRS], batch_size=3, activation_fn=torch.nn.Identity())
        assert np.abs(rr.score(PAIRS, raw=True) - logits).max() <= 1e-4
    assert np.ptp(got) > 0.02  # the pairs really score differently
    ranked = rr.rank(PAIRS[0][0], [d for _, d in PAIRS[:3]] + ["Berlin"], top_n=3)
    want = ce.rank(PAIRS[0][0], [d for _, d in PAIRS[:3]] + ["Berlin"], top_k=3)
    assert [r.index for r in ranked] == [w["corpus_id"] for w in want] and len(ranked) == 3
    assert all(isinstance(r, Ranked) for r in ranked) and ranked[0].score >= ranked[1].score >= ranked[2].score
    assert rr.score([]).shape == (0,)


def test_multi_label_softmax_matches_crossencoder(ce_three_folder: Path, ce_checkpoints: dict[str, Path]) -> None:
    rr = Reranker.load(ce_three_folder)
    assert (rr.num_labels, rr.activation) == (3, "softmax")
    got = rr.score(PAIRS)
    ref = _crossencoder(ce_checkpoints["three"]).predict([list(p) for p in PAIRS], batch_size=4)
    assert got.shape == ref.shape == (len(PAIRS), 3) and np.abs(got - ref).max() <= 1e-5
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="3 labels: rank needs one score"):
        rr.rank("q", ["a", "b"])


def test_truncation_on_the_document_side_is_counted_and_logged_once(ce_folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    rr = Reranker.load(ce_folder, variant="fp32", verify=False)
    with caplog.at_level(logging.WARNING, logger="onnxembed.reranker"):
        toks = rr.tokenize([PAIRS[2], PAIRS[0]])
        rr.score(PAIRS)
        rr.score(PAIRS)
    q_len = len(rr.tokenizer.encode_pair(PAIRS[2][0], "x")[0]) - 2  # the query and its [CLS] [SEP], without "x [SEP]"
    assert toks.counts[0] == rr.max_length and toks.truncated == [True, False]
    assert toks.type_ids is not None and toks.type_ids[0].count(0) == q_len  # the query kept whole, the document cut
    assert rr.truncated == 1 + 2 + 2
    warnings = [r.getMessage() for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warnings) == 1 and "1 of 2 pairs" in warnings[0] and "Reranker.truncated" in warnings[0]


def test_budget_batch_size_and_threads_do_not_change_scores(ce_folder: Path) -> None:
    rr = Reranker.load(ce_folder, variant="fp32", max_tokens=300)
    pairs = PAIRS * 5
    ref = rr.score(pairs, batch_size=1)
    toks = rr.tokenize(pairs)
    batches = rr.plan_batches(toks, 32)
    assert len(batches) > 1 and all(len(b) == 1 or len(b) * max(toks.counts[i] for i in b) <= 300 for b in batches)
    np.testing.assert_allclose(rr.score(pairs, batch_size=32), ref, atol=1e-6)
    np.testing.assert_allclose(rr.score(pairs, max_tokens=None), ref, atol=1e-6)
    out: list[np.ndarray] = [np.empty(0)] * 4
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            out[i] = rr.score(pairs[i:] + pairs[:i])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(4):
        np.testing.assert_allclose(out[i], np.roll(ref, -i), atol=1e-6)


def test_errors_name_the_problem_and_the_fix(ce_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"holds a cross-encoder \(task rerank\).*onnxembed.Reranker.load"):
        Embedder.load(ce_folder)
    emb_like = tmp_path / "emb"
    shutil.copytree(ce_folder, emb_like)
    m = json.loads((emb_like / "manifest.json").read_text(encoding="utf-8"))
    m.pop("task"), m.update(pooling="cls")
    (emb_like / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    with pytest.raises(ManifestError, match=r"holds a sentence embedder \(task embed\).*onnxembed.Embedder.load"):
        Reranker.load(emb_like)
    rr = Reranker.load(ce_folder, variant="fp32", verify=False)
    with pytest.raises(TypeError, match=r"for one pair pass \[\(query, document\)\]"):
        rr.score(("q", "d"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"pairs\[1\] is str"):
        rr.score([("q", "d"), "q d"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"documents\[1\] is int"):
        rr.rank("q", ["d", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="top_n must be None or an int >= 1"):
        rr.rank("q", ["d"], top_n=0)
    with pytest.raises(ManifestError, match=r"unknown variant 'O4'; present in this folder: \['O2', 'fp32'\]"):
        Reranker.load(ce_folder, variant="O4")


def test_readme_reranker_example_runs(ce_folder: Path, tmp_path: Path) -> None:
    import re
    import subprocess
    import sys

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "artifacts/ms-marco-minilm-l6" in b]
    assert len(blocks) == 1
    script = tmp_path / "readme_rerank.py"
    script.write_text(blocks[0].replace("artifacts/ms-marco-minilm-l6", ce_folder.as_posix()), encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3 and lines[0].startswith("[")  # the scores, then the two best documents
    want = Reranker.load(ce_folder).rank("how many people live in Berlin?",
                                         ["Berlin has 3.5 million inhabitants.", "A man is playing a guitar.", "Berlin"], top_n=2)
    assert [int(line.split()[0]) for line in lines[1:]] == [w.index for w in want]


def test_bench_times_pairs_and_compares_scores_with_fp32(ce_folder: Path, tmp_path: Path) -> None:
    """``onnxembed bench`` on a reranker folder: query x documents workloads in pairs/s, and each
    variant's scores against fp32's (Spearman, max |diff|) computed on the same pairs as by hand."""
    from onnxembed.bench import bench
    from onnxembed.pooling import spearman

    texts = ["berlin has 3.5 million people", "cats sleep most of the day", "the train leaves at noon",
             "how many people live in berlin?", "a recipe for bread", "the museum opens on sunday"]
    r = bench(ce_folder, texts=texts, pair_shapes=[(1, 5), (3, 4)], rounds=1, min_seconds=0, memory=False)
    assert r.settings["task"] == "rerank" and r.settings["pair_shapes"] == [[1, 5], [3, 4]]
    assert {(x.variant, x.workload) for x in r.measurements} == {(v, w) for v in ("fp32", "O2") for w in ("1q x 5d", "3q x 4d")}
    big = next(x for x in r.measurements if x.workload == "3q x 4d" and x.variant == "O2")
    assert big.texts_per_call == 12 and big.texts_per_s > 0 and big.speedup is not None
    # the figures are the scores' own: recompute them from Reranker.score on the 12 pairs of the 3x4 workload
    pairs = [(texts[i % 6], texts[(i + 1 + j) % 6]) for i in range(3) for j in range(4)]
    ref = Reranker.load(ce_folder, variant="fp32").score(pairs)
    o2 = Reranker.load(ce_folder, variant="O2").score(pairs)
    rep = {v.name: v for v in r.variants}
    assert rep["fp32"].score_spearman == pytest.approx(1.0) and rep["fp32"].score_max_diff == 0.0
    assert rep["O2"].score_max_diff == pytest.approx(float(np.abs(o2 - ref).max()), abs=1e-7)
    assert rep["O2"].score_spearman == pytest.approx(spearman(o2, ref)) and rep["O2"].score_spearman > 0.99
    assert rep["O2"].mean_cosine is None  # no embedding cosine for a reranker
    table = r.format_table()
    assert "pairs/s" in table and "score rho" in table and "3q x 4d" in table and "texts/s" not in table
    # the command line: --pairs, fixed shapes only when --seq-lens is given, the JSON written
    out = run_cli("bench", str(ce_folder), "--pairs", "1x8", "--seq-lens", "16", "--batch-sizes", "2", "--rounds", "1",
                  "--min-seconds", "0", "--no-memory", "--no-progress", "--json", str(tmp_path / "b.json")).stdout
    got = json.loads((tmp_path / "b.json").read_text())
    assert sorted({m["workload"] for m in got["measurements"]}) == ["1q x 8d", "2x16"], out
    bad = run_cli("bench", str(ce_folder), "--pairs", "8", check=False)
    assert bad.returncode == 2 and "QUERIESxDOCUMENTS" in bad.stderr


def test_spearman_matches_the_textbook_formula_with_ties() -> None:
    from onnxembed.pooling import spearman

    a = np.array([1.0, 2.0, 2.0, 5.0, 3.0])
    b = np.array([2.0, 1.0, 4.0, 5.0, 3.0])
    # ranks with ties averaged: a -> [1, 2.5, 2.5, 5, 4], b -> [2, 1, 4, 5, 3]; Pearson of those
    ra, rb = np.array([1, 2.5, 2.5, 5, 4]), np.array([2, 1, 4, 5, 3.0])
    assert spearman(a, b) == pytest.approx(float(np.corrcoef(ra, rb)[0, 1]))
    assert spearman(a, a) == pytest.approx(1.0) and spearman(a, -a) == pytest.approx(-1.0)
