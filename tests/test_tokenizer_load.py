"""Loading a tokenizer.json fast without changing what is read: the chunked Unigram vocabulary reader
(``onnxembed._tokenizer_json``) and the vectorized ``serde_json`` float reader against their plain forms.

The 20,000-text parity of the real XLM-R file loaded this way is in ``test_tokenizer_families.py``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from onnxembed import Tokenizer, _tokenizer_json
from onnxembed._models import UnigramVocab, serde_f64, serde_f64_all


def _decimal(rng: random.Random, most: int) -> str:
    digits = rng.randint(1, most)
    body = "".join(rng.choice("0123456789") for _ in range(digits))
    point = rng.randint(1, max(1, digits - 1)) if digits > 1 else 1
    text = body[:point] + "." + (body[point:] or "0")
    return ("-" if rng.random() < 0.7 else "") + text


def test_vectorized_serde_floats_equal_the_scalar_reader_bit_for_bit() -> None:
    rng = random.Random(5)
    short = [_decimal(rng, 19) for _ in range(20_000)]  # up to 21 characters: the vectorized path
    short += ["0.0", "-0.0", "-3.4635426998138428", "-20.3647518157959", "18446744073709551.615", "18446744073709551.616",
              "9007199254740993.0", "-999999999999999999.9", "1e5", "-1.5E-3", "12"]  # fmt: skip
    long = [_decimal(rng, 22) for _ in range(2_000)] + ["-0.10000000000000000555"]  # longer: the scalar path
    for texts in (short, long):
        fast = np.array(serde_f64_all(texts)).view(np.int64)
        slow = np.array([serde_f64(t) for t in texts]).view(np.int64)
        assert np.array_equal(fast, slow), [t for t, a, b in zip(texts, fast, slow) if a != b][:5]
    # the double rounding is real: some of these strings read differently from Python's float()
    assert sum(serde_f64(t) != float(t) for t in short) > 0
    assert serde_f64_all([]) == [] and serde_f64_all(["١.٥"]) == [serde_f64("١.٥")]  # non-ASCII: the scalar path


def _unigram_config(pieces: list[tuple[str, float]], pretty: bool) -> str:
    config = {
        "version": "1.0",
        "added_tokens": [{"id": 0, "content": "<unk>", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
        "post_processor": None,
        "model": {"type": "Unigram", "unk_id": 0, "vocab": [[p, s] for p, s in pieces], "byte_fallback": False},
        "x-extra": {"vocab": [["decoy", -1.0]]},  # a "vocab" key that is not the model's: must not be taken
    }
    return json.dumps(config, indent=2 if pretty else None, ensure_ascii=not pretty)


def _pieces(n: int, rng: random.Random) -> list[tuple[str, float]]:
    alphabet = "abcdeé▁\"\\],[ 😀\u0301中"
    out = [("<unk>", 0.0)]
    seen = {"<unk>"}
    while len(out) < n:
        piece = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6)))
        if piece not in seen:
            seen.add(piece)
            out.append((piece, -rng.uniform(1, 20)))
    out.append(("1],[", -5.25))  # an item boundary inside a string
    return out


def _plain(config: Any) -> Any:
    vocab = config["model"]["vocab"]
    if isinstance(vocab, UnigramVocab):
        config["model"]["vocab"] = [list(pair) for pair in zip(vocab.pieces, vocab.scores)]
    else:
        config["model"]["vocab"] = [[p, serde_f64(s)] for p, s in vocab]
    return config


@pytest.mark.parametrize("pretty", [True, False])
@pytest.mark.parametrize("chunk", [1, 64, 1 << 20])
def test_chunked_vocabulary_reads_what_json_reads(pretty: bool, chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the chunk size (a cut may fall inside a string: then the whole file is read plainly),
    the configuration equals ``json.loads`` of the file, scores as the Rust library reads them."""
    text = _unigram_config(_pieces(400, random.Random(chunk)), pretty)
    monkeypatch.setattr(_tokenizer_json, "CHUNK", chunk)
    fast = _tokenizer_json.loads(text.encode())
    plain = json.loads(text, parse_float=str)
    # one-byte chunks cut at every item boundary, so also inside the piece "1],[": the plain reading
    assert isinstance(fast["model"]["vocab"], UnigramVocab) == (chunk > 1)
    assert _plain(fast) == _plain(plain)


def test_chunked_reader_is_taken_for_a_unigram_file_and_not_fooled_by_a_decoy(monkeypatch: pytest.MonkeyPatch) -> None:
    pieces = [("<unk>", 0.0)] + [(f"p{i}", -1.0 - i / 7) for i in range(1, 300)]
    text = _unigram_config(pieces, pretty=True)
    monkeypatch.setattr(_tokenizer_json, "CHUNK", 256)
    config = _tokenizer_json.loads(text.encode())
    assert isinstance(config["model"]["vocab"], UnigramVocab) and len(config["model"]["vocab"].pieces) == 300
    assert config["x-extra"] == {"vocab": [["decoy", "-1.0"]]}
    # the decoy placed after the model: the first "vocab" key found is not the model's, so the file is read plainly
    swapped = json.dumps({k: v for k, v in reversed(list(json.loads(text).items()))}, indent=2)
    assert _plain(_tokenizer_json.loads(swapped.encode())) == _plain(json.loads(swapped, parse_float=str))


def test_tokenizer_from_file_equals_from_str(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pieces = _pieces(300, random.Random(3)) + [(c, -30.0) for c in "▁abcdeéxyz"]
    text = _unigram_config(pieces, pretty=True)
    (tmp_path / "tokenizer.json").write_text(text, encoding="utf-8")
    monkeypatch.setattr(_tokenizer_json, "CHUNK", 128)
    from_file, from_str = Tokenizer.from_file(tmp_path / "tokenizer.json"), Tokenizer.from_str(text)
    texts = ["abc de", "é😀 x]y", "zzz 中\u0301", 'a"b\\c'] * 3
    assert from_file.encode_batch(texts) == from_str.encode_batch(texts)
    assert from_file.encode("abc")[0] != from_file.unk_token_id


def test_malformed_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "tokenizer.json"
    bad.write_bytes(_unigram_config(_pieces(20, random.Random(1)), pretty=True).encode()[:-40])
    with pytest.raises(ValueError, match="not a valid tokenizer.json"):
        Tokenizer.from_file(bad)
    bad.write_bytes(b'{"model": {"type": "Unigram", "vocab": [["\xff", -1.0]]}}')
    with pytest.raises(ValueError, match="not a valid tokenizer.json"):
        Tokenizer.from_file(bad)
