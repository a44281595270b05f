"""Pooling and normalization: exact values on hand-made tensors, and sentence-transformers' torch modules as the oracle."""

from __future__ import annotations

import numpy as np
import pytest

from onnxembed.pooling import POOLERS, cosine_similarity, l2_normalize, pool

RNG = np.random.default_rng(0)


def _batch(b: int = 5, s: int = 9, h: int = 16) -> tuple[np.ndarray, np.ndarray]:
    hidden = RNG.standard_normal((b, s, h)).astype(np.float32) * 3
    lengths = np.array([s, 1, 4, 2, 7][:b])
    mask = (np.arange(s)[None, :] < lengths[:, None]).astype(np.int64)
    return hidden, mask


def test_mean_ignores_padding_exactly() -> None:
    hidden = np.array([[[1, 2], [3, 4], [100, 100]]], np.float32)
    out = pool(hidden, [[1, 1, 0]], "mean")
    assert out.dtype == np.float32 and out.shape == (1, 2)
    np.testing.assert_array_equal(out, [[2.0, 3.0]])
    unit = pool(hidden, [[1, 1, 0]], "mean", normalize=True)
    np.testing.assert_allclose(unit, [[2 / np.sqrt(13), 3 / np.sqrt(13)]], rtol=1e-6)


def test_each_mode_on_a_hand_example() -> None:
    hidden = np.array([[[1, -5], [3, 4], [9, 9]]], np.float32)
    mask = [[1, 1, 0]]
    np.testing.assert_array_equal(pool(hidden, mask, "cls"), [[1, -5]])
    np.testing.assert_array_equal(pool(hidden, mask, "max"), [[3, 4]])
    np.testing.assert_allclose(pool(hidden, mask, "mean_sqrt_len"), [[4 / np.sqrt(2), -1 / np.sqrt(2)]], rtol=1e-6)
    np.testing.assert_array_equal(pool(hidden, mask, "lasttoken"), [[3, 4]])


def test_max_with_negative_states_never_picks_padding() -> None:
    hidden = -np.ones((1, 4, 3), np.float32)
    hidden[0, 2:] = 50.0  # padding positions hold large values
    np.testing.assert_array_equal(pool(hidden, [[1, 1, 0, 0]], "max"), -np.ones((1, 3)))


def test_pooling_is_float32_whatever_the_input_dtype() -> None:
    hidden, mask = _batch()
    for mode in POOLERS:
        assert pool(hidden.astype(np.float16), mask, mode).dtype == np.float32
        assert pool(hidden.astype(np.float64), mask.astype(bool), mode).dtype == np.float32


@pytest.mark.parametrize(("ours", "theirs"), [("mean", "mean"), ("cls", "cls"), ("max", "max"), ("mean_sqrt_len", "mean_sqrt_len_tokens"), ("lasttoken", "lasttoken")])
def test_matches_sentence_transformers_pooling(ours: str, theirs: str) -> None:
    torch = pytest.importorskip("torch")
    st_modules = pytest.importorskip("sentence_transformers.sentence_transformer.modules")
    hidden, mask = _batch(5, 9, 16)
    ref = st_modules.Pooling(16, pooling_mode=theirs)(
        {"token_embeddings": torch.from_numpy(hidden), "attention_mask": torch.from_numpy(mask)}
    )["sentence_embedding"].numpy()
    got = pool(hidden, mask, ours)
    assert np.abs(got - ref).max() < 1e-5, (ours, np.abs(got - ref).max())


def test_l2_normalize_matches_torch_and_keeps_zero_rows() -> None:
    torch = pytest.importorskip("torch")
    x = RNG.standard_normal((6, 32)).astype(np.float32)
    x[3] = 0.0
    ref = torch.nn.functional.normalize(torch.from_numpy(x), p=2, dim=1).numpy()
    got = l2_normalize(x)
    assert np.abs(got - ref).max() < 1e-6
    assert not np.isnan(got).any() and np.all(got[3] == 0)
    np.testing.assert_allclose(np.linalg.norm(got[[0, 1, 2, 4, 5]], axis=1), 1.0, rtol=1e-6)


def test_cosine_similarity_shape_and_values() -> None:
    a = RNG.standard_normal((3, 8)).astype(np.float32)
    b = RNG.standard_normal((4, 8)).astype(np.float32)
    sim = cosine_similarity(a, b)
    assert sim.shape == (3, 4) and sim.dtype == np.float32
    expect = (a @ b.T) / np.outer(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1))
    assert np.abs(sim - expect).max() < 1e-6
    assert cosine_similarity(a[0], a[0]).shape == (1, 1)
    with pytest.raises(ValueError, match="dimensions differ"):
        cosine_similarity(a, np.ones((2, 5)))


def test_bad_mode_and_shapes_are_value_errors() -> None:
    hidden, mask = _batch()
    with pytest.raises(ValueError, match="unknown pooling 'avg'; known:"):
        pool(hidden, mask, "avg")
    with pytest.raises(ValueError, match=r"expected hidden \(batch, seq, dim\)"):
        pool(hidden, mask[:, :3], "mean")
