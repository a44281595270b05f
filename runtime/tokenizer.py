"""A torch-free BERT WordPiece tokenizer whose ids are identical to the Rust ``tokenizers`` library's.

Configured from a ``tokenizer.json`` (or a BERT ``vocab.txt``). The pipeline is the reference's:
added/special tokens are cut out of the raw text, the rest is normalized, pre-tokenized and split into
word pieces, then the template adds ``[CLS]``/``[SEP]``. The stages live in :mod:`onnxembed._wordpiece`.

Speed comes from caching: the raw text is first split on the characters that will be whitespace after
normalization (normalization never moves a word boundary across them), and the ids of each such chunk
are cached, so a repeated chunk costs one dict lookup.
"""

from __future__ import annotations

import json
import logging
import os
from collections import ChainMap
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _tokenizer_json
from . import _wordpiece as wp
from ._components import (
    AddedToken,
    Template,
    alternation,
    bert_split_punctuation,
    find_added,
    parse_added_tokens,
    parse_post_processor,
    truncate_pair,
)
from ._models import parse_model
from ._normalizers import parse_normalizer
from ._pipeline import Pipeline
from ._pretokenizers import parse_pre_tokenizer

logger = logging.getLogger(__name__)

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
_CACHE_SIZE = 200_000
_BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_PAD_TOKENS = ("[PAD]", "<pad>")


class Tokenizer:
    """BERT-family WordPiece tokenizer, thread-safe, with ids identical to Hugging Face ``tokenizers``.

    Build it with :meth:`from_file`. Encoding keeps no per-call state on the object; the only shared
    state is a bounded cache of chunk -> ids, safe to use from several threads.

    >>> tok = Tokenizer.from_file("artifacts/all-minilm-l6-v2/tokenizer.json")  # doctest: +SKIP
    >>> tok.encode("Hello world!")  # doctest: +SKIP
    [101, 7592, 2088, 999, 102]
    """

    def __init__(
        self,
        vocab: dict[str, int],
        *,
        normalizer: wp.Normalizer,
        split_punctuation: bool = True,
        unk_token: str = "[UNK]",
        continuing_subword_prefix: str = "##",
        max_input_chars_per_word: int = 100,
        template: Template = Template(),
        added_tokens: Sequence[AddedToken] = (),
        pad_token_id: int | None = None,
    ) -> None:
        """Assemble a tokenizer from parsed components (most callers want :meth:`from_file`).

        Args:
            vocab: WordPiece vocabulary, token -> id.
            normalizer: The normalizing chain.
            split_punctuation: Isolate punctuation characters as words (BertPreTokenizer).
            unk_token: Token for words that cannot be split.
            continuing_subword_prefix: Prefix of non-initial word pieces.
            max_input_chars_per_word: Longer words become ``unk_token``.
            template: Special tokens around each sequence.
            added_tokens: Tokens matched in the text before the model sees it.
            pad_token_id: Id used for padding; defaults to ``[PAD]``'s id, else 0.

        Raises:
            ValueError: If ``unk_token`` is not in ``vocab``.
        """
        if unk_token not in vocab:
            raise ValueError(f"unk_token {unk_token!r} is not in the vocabulary ({len(vocab)} tokens); fix the WordPiece model's unk_token")
        self._vocab = vocab
        self._normalizer = normalizer
        self._split_punctuation = split_punctuation
        self._unk_id = vocab[unk_token]
        self._prefix = continuing_subword_prefix
        self._max_chars = max_input_chars_per_word
        self._max_piece = max((len(t) for t in vocab), default=1)
        self._template = template
        self._added = {t.content: t for t in added_tokens if t.content}
        self._raw_added_re = alternation(t.content for t in self._added.values() if not t.normalized)
        self._norm_added = {normalizer(t.content): t for t in self._added.values() if t.normalized and normalizer(t.content)}
        self._norm_added_re = alternation(self._norm_added)
        self._split_raw = (wp.SPLIT_AFTER_CLEAN_RE if normalizer.cleans else wp.SPLIT_RE).split
        self._id_to_token = {i: t for t, i in vocab.items()} | {t.id: t.content for t in self._added.values()}
        self._vocab_size = max(self._id_to_token, default=-1) + 1
        self._pad_id = pad_token_id if pad_token_id is not None else self._default_pad_id()
        self._cache: dict[str, tuple[int, ...]] = {}
        self._pipeline: Pipeline | None = None
        self._kind = "WordPiece"

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """Load from a ``tokenizer.json``, a ``vocab.txt`` (BERT uncased defaults), or a folder holding either.

        A folder prefers ``tokenizer.json``. Beside a ``vocab.txt``, a ``tokenizer_config.json`` may set
        ``do_lower_case``, ``tokenize_chinese_chars`` and ``strip_accents``.

        Args:
            path: File or folder.

        Returns:
            The tokenizer.

        Raises:
            FileNotFoundError: If nothing loadable is there.
            ValueError: If the file is malformed or uses a component this tokenizer does not implement.

        >>> Tokenizer.from_file("artifacts/all-minilm-l6-v2").vocab_size  # doctest: +SKIP
        30522
        """
        p = Path(path)
        if p.is_dir():
            found = [p / name for name in ("tokenizer.json", "vocab.txt") if (p / name).is_file()]
            if not found:
                raise FileNotFoundError(f"no tokenizer.json or vocab.txt in {p}; pass the tokenizer file or the model's folder")
            p = found[0]
        if not p.is_file():
            raise FileNotFoundError(f"tokenizer file {p} does not exist; expected a tokenizer.json, a vocab.txt or a folder")
        if p.suffix == ".txt":
            return cls._from_vocab_txt(p)
        try:  # a large Unigram vocabulary is read from the bytes in chunks (see _tokenizer_json)
            config = _tokenizer_json.loads(p.read_bytes())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{p} is not a valid tokenizer.json ({e}); expected the JSON written by Hugging Face tokenizers") from e
        return cls._from_config(config, str(p))

    @classmethod
    def from_str(cls, text: str, source: str = "<string>") -> Tokenizer:
        """Load from the text of a ``tokenizer.json`` (``source`` names it in error messages).

        Floats are kept as written and read as the Rust library reads them (Unigram scores).

        >>> Tokenizer.from_str(Path("tokenizer.json").read_text())  # doctest: +SKIP
        """
        try:
            config = json.loads(text, parse_float=str)
            del text
        except json.JSONDecodeError as e:
            raise ValueError(f"{source} is not a valid tokenizer.json ({e}); expected the JSON written by Hugging Face tokenizers") from e
        return cls._from_config(config, source)

    @classmethod
    def _from_config(cls, config: Any, source: str) -> Tokenizer:
        if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
            raise ValueError(f"{source} has no 'model' object; expected the JSON written by Hugging Face tokenizers")
        added = parse_added_tokens(config.get("added_tokens"))
        model = parse_model(config["model"], source)
        normalizer = parse_normalizer(config.get("normalizer"), source)
        pre_tokenizer = parse_pre_tokenizer(config.get("pre_tokenizer"), source)
        template = parse_post_processor(config.get("post_processor"), ChainMap({t.content: t.id for t in added}, model.vocab), source)
        padding = config.get("padding")
        pad_id = int(padding["pad_id"]) if isinstance(padding, dict) and "pad_id" in padding else None
        split_punctuation = bert_split_punctuation(config.get("pre_tokenizer"))
        logger.debug("tokenizer from %s: %s model, %d tokens", source, type(model).__name__, len(model.vocab))
        if isinstance(normalizer, wp.Normalizer) and split_punctuation is not None and type(model).__name__ == "WordPiece":
            options = config["model"]
            return cls(
                model.vocab,
                normalizer=normalizer,
                split_punctuation=split_punctuation,
                unk_token=options.get("unk_token", "[UNK]"),
                continuing_subword_prefix=options.get("continuing_subword_prefix") or "##",
                max_input_chars_per_word=int(options.get("max_input_chars_per_word", 100)),
                template=template,
                added_tokens=added,
                pad_token_id=pad_id,
            )
        tok = cls.__new__(cls)
        tok._pipeline = Pipeline(normalizer, pre_tokenizer, model, added)
        tok._vocab = model.vocab
        tok._normalizer = normalizer
        tok._template = template
        tok._added = {t.content: t for t in added if t.content}
        tok._id_to_token = None  # built on first use by tokenize()
        tok._vocab_size = max([*model.vocab.values(), *(t.id for t in added)], default=-1) + 1
        tok._unk_id = getattr(model, "unk_id", None)
        tok._pad_id = pad_id if pad_id is not None else tok._default_pad_id()
        tok._cache = tok._pipeline.cache
        tok._kind = type(model).__name__
        return tok

    @classmethod
    def _from_vocab_txt(cls, path: Path) -> Tokenizer:
        vocab: dict[str, int] = {}
        with path.open(encoding="utf-8") as f:
            for i, line in enumerate(f):
                vocab[line.rstrip("\n")] = i
        options: dict[str, Any] = {}
        config_path = path.with_name("tokenizer_config.json")
        if config_path.is_file():
            try:
                options = json.loads(config_path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ValueError(f"{config_path} is not valid JSON ({e}); fix or remove it to use BERT uncased defaults") from e
        normalizer = wp.bert_normalizer(
            handle_chinese_chars=options.get("tokenize_chinese_chars", True),
            strip_accents=options.get("strip_accents"),
            lowercase=options.get("do_lower_case", True),
        )
        missing = [t for t in ("[UNK]", "[CLS]", "[SEP]") if t not in vocab]
        if missing:
            raise ValueError(f"{path} lacks the BERT special tokens {missing}; pass the model's tokenizer.json instead")
        template = Template(prefix=(vocab["[CLS]"],), prefix_types=(0,), suffix=(vocab["[SEP]"],), suffix_types=(0,))
        added = [AddedToken(t, vocab[t]) for t in _BERT_SPECIALS if t in vocab]
        return cls(vocab, normalizer=normalizer, template=template, added_tokens=added)

    # ------------------------------------------------------------------ properties

    @property
    def vocab_size(self) -> int:
        """One more than the largest token id (the embedding rows a model needs)."""
        return self._vocab_size

    @property
    def pad_token_id(self) -> int:
        """Id used to pad batches."""
        return self._pad_id

    @property
    def unk_token_id(self) -> int | None:
        """Id of the unknown-word token (None for a byte-level BPE without one)."""
        return self._unk_id

    @property
    def cls_token_id(self) -> int | None:
        """First special id the template puts before a sequence (``[CLS]``), or None."""
        return self._template.prefix[0] if self._template.prefix else self._lookup("[CLS]", None)

    @property
    def sep_token_id(self) -> int | None:
        """First special id the template puts after a sequence (``[SEP]``), or None."""
        return self._template.suffix[0] if self._template.suffix else self._lookup("[SEP]", None)

    def _default_pad_id(self) -> int:
        found = [i for t in _PAD_TOKENS if (i := self._lookup(t, None)) is not None]
        return found[0] if found else 0

    def _lookup(self, token: str, default: int | None) -> int | None:
        added = self._added.get(token)
        return added.id if added is not None else self._vocab.get(token, default)

    # ------------------------------------------------------------------ encoding

    def tokenize(self, text: str) -> list[str]:
        """Word pieces of ``text`` without special tokens (for debugging).

        >>> tok.tokenize("Unaffable!")  # doctest: +SKIP
        ['una', '##ffa', '##ble', '!']
        """
        if self._id_to_token is None:
            self._id_to_token = {i: t for t, i in self._vocab.items()} | {t.id: t.content for t in self._added.values()}
        return [self._id_to_token[i] for i in self._encode_body(_check_text(text, None))]

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """Token ids of one text, with the template's special tokens.

        Args:
            text: The text.
            max_length: Truncate to this many ids, special tokens included (they are kept); None keeps all.

        Returns:
            The ids.

        Raises:
            TypeError: If ``text`` is not a str.
            ValueError: If ``max_length`` cannot hold the special tokens.

        >>> tok.encode("Hello world!")  # doctest: +SKIP
        [101, 7592, 2088, 999, 102]
        """
        self._check_max_length(max_length)
        return self._encode_one(_check_text(text, None), max_length)[0]

    def encode_batch(self, texts: Iterable[str], max_length: int | None = None) -> tuple[list[list[int]], list[int]]:
        """Token ids of several texts, and each text's length in tokens before truncation.

        Args:
            texts: The texts (any iterable of str, but not a single str).
            max_length: As in :meth:`encode`.

        Returns:
            ``(ids, full_lengths)``; ``full_lengths[i] > len(ids[i])`` means text ``i`` was truncated.

        Raises:
            TypeError: If ``texts`` is a str or an item is not a str (the message names its index).
        """
        if isinstance(texts, (str, bytes)):
            raise TypeError("encode_batch expects a list of str, got a single string; use encode(text) or pass [text]")
        self._check_max_length(max_length)
        ids, lengths = [], []
        for i, text in enumerate(texts):
            row, full = self._encode_one(_check_text(text, i), max_length)
            ids.append(row)
            lengths.append(full)
        return ids, lengths

    def encode_pair(self, first: str, second: str, max_length: int | None = None) -> tuple[list[int], list[int]]:
        """Ids and token type ids of a text pair in the template's pair form (e.g. ``[CLS] A [SEP] B [SEP]``).

        Args:
            first: The first text (a query, for a reranker).
            second: The second text (a passage).
            max_length: Truncate to this many ids, special tokens included, cutting the longer text
                first as the Rust library's ``longest_first`` does; None keeps all.

        Returns:
            ``(ids, type_ids)``.

        Raises:
            TypeError: If a text is not a str.
            ValueError: If the tokenizer has no pair template, or ``max_length`` cannot hold the special tokens.

        >>> tok.encode_pair("a query", "a passage")  # doctest: +SKIP
        ([101, 1037, 23032, 102, 1037, 6019, 102], [0, 0, 0, 0, 1, 1, 1])
        """
        ids, types = self.encode_pair_batch([(first, second)], max_length)
        return ids[0], types[0]

    def encode_pair_batch(
        self, pairs: Iterable[tuple[str, str]], max_length: int | None = None
    ) -> tuple[list[list[int]], list[list[int]]]:
        """:meth:`encode_pair` over many pairs: ``(ids, type_ids)``, one row per pair (pad with :meth:`pad`)."""
        ids, types, _ = self.encode_pair_batch_full(pairs, max_length)
        return ids, types

    def encode_pair_batch_full(
        self, pairs: Iterable[tuple[str, str]], max_length: int | None = None
    ) -> tuple[list[list[int]], list[list[int]], list[int]]:
        """:meth:`encode_pair_batch` plus each pair's length before truncation (``full > len(ids)``: truncated)."""
        form = self._template.pair
        if form is None:
            raise ValueError("this tokenizer's post_processor has no pair template; encode_pair needs one (e.g. TemplateProcessing with 'pair')")
        if max_length is not None and (not isinstance(max_length, (int, np.integer)) or max_length < form.n_special):
            raise ValueError(f"max_length must be None or an int >= {form.n_special} (room for the pair's special tokens), got {max_length!r}")
        ids, types, full = [], [], []
        for i, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(f"pairs[{i}] is {type(pair).__name__}, expected a (str, str) pair")
            a = self._encode_body(_check_text(pair[0], i))
            b = self._encode_body(_check_text(pair[1], i))
            full.append(len(a) + len(b) + form.n_special)
            if max_length is not None:
                n1, n2 = truncate_pair(len(a), len(b), int(max_length) - form.n_special)
                a, b = a[:n1], b[:n2]
            row, row_types = form.build(a, b)
            ids.append(row)
            types.append(row_types)
        return ids, types, full

    def pad(
        self,
        ids_list: Sequence[Sequence[int]],
        input_names: Sequence[str] = INPUT_NAMES,
        type_ids: Sequence[Sequence[int]] | None = None,
    ) -> dict[str, npt.NDArray[np.int64]]:
        """Pad encoded sequences to the longest one, as int64 model inputs.

        Args:
            ids_list: Encoded sequences (from :meth:`encode_batch` or :meth:`encode_pair_batch`).
            input_names: Which of ``input_ids``, ``attention_mask``, ``token_type_ids`` to return.
            type_ids: Token type ids per sequence (from :meth:`encode_pair_batch`); None derives them
                from the single-sequence template.

        Returns:
            Arrays of shape ``(len(ids_list), longest)`` keyed by input name.

        Raises:
            ValueError: If an input name is unknown.
        """
        unknown = [n for n in input_names if n not in INPUT_NAMES]
        if unknown:
            raise ValueError(f"unknown input names {unknown}; the tokenizer provides {list(INPUT_NAMES)}")
        width = max((len(r) for r in ids_list), default=0)
        input_ids = np.full((len(ids_list), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(ids_list), width), dtype=np.int64)
        for i, row in enumerate(ids_list):
            input_ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        out = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": None}
        if "token_type_ids" in input_names:
            types = np.zeros((len(ids_list), width), dtype=np.int64)
            t = self._template
            if type_ids is not None:
                for i, row_types in enumerate(type_ids):
                    types[i, : len(row_types)] = row_types
            elif any(t.prefix_types) or any(t.suffix_types) or t.sequence_type:
                for i, row in enumerate(ids_list):
                    types[i, : len(row)] = t.type_ids(len(row))
            out["token_type_ids"] = types
        return {name: out[name] for name in input_names}  # type: ignore[misc]

    def __call__(
        self, texts: str | Iterable[str], max_length: int | None = 256, input_names: Sequence[str] = INPUT_NAMES
    ) -> dict[str, npt.NDArray[np.int64]]:
        """Encode, truncate and pad: ``pad(encode_batch(texts, max_length)[0], input_names)``.

        A single str is a batch of one.

        >>> tok(["a cat", "a small dog"])["input_ids"].shape  # doctest: +SKIP
        (2, 5)
        """
        batch = [texts] if isinstance(texts, str) else texts
        return self.pad(self.encode_batch(batch, max_length)[0], input_names)

    def __repr__(self) -> str:
        steps = list(self._normalizer.steps) if isinstance(self._normalizer, wp.Normalizer) else type(self._normalizer).__name__
        return f"Tokenizer({self._kind}, vocab_size={self._vocab_size}, normalizer={steps})"

    # ------------------------------------------------------------------ internals

    def _check_max_length(self, max_length: int | None) -> None:
        if max_length is not None and (not isinstance(max_length, (int, np.integer)) or max_length < self._template.n_special):
            raise ValueError(
                f"max_length must be None or an int >= {self._template.n_special} (room for the special tokens), got {max_length!r}"
            )

    def _encode_one(self, text: str, max_length: int | None) -> tuple[list[int], int]:
        body = self._encode_body(text)
        t = self._template
        full = len(body) + t.n_special
        if max_length is not None and full > max_length:
            body = body[: int(max_length) - t.n_special]
        return [*t.prefix, *body, *t.suffix], full

    def _encode_body(self, text: str) -> list[int]:
        if self._pipeline is not None:
            return self._pipeline.encode(text)
        ids: list[int] = []
        for token, segment in self._split_added(text):
            if token is not None:
                ids.append(token.id)
            elif self._norm_added_re is None:
                self._encode_raw(segment, ids)
            else:
                self._encode_normalized(segment, ids)
        return ids

    def _split_added(self, text: str) -> Iterator[tuple[AddedToken | None, str]]:
        if self._raw_added_re is None:
            yield None, text
        else:
            yield from find_added(text, self._raw_added_re, self._added)

    def _encode_raw(self, segment: str, out: list[int]) -> None:
        """Encode a segment without added tokens, chunk by chunk through the cache."""
        cache = self._cache
        chunks = segment.split() if segment.isascii() and segment.isprintable() else self._split_raw(segment)
        for chunk in chunks:
            ids = cache.get(chunk)
            if ids is None:
                if not chunk:
                    continue
                ids = self._remember(chunk, self._wordpieces(wp.split_words(self._normalizer(chunk), self._split_punctuation)))
            out += ids

    def _encode_normalized(self, segment: str, out: list[int]) -> None:
        """Encode a segment when some added tokens match normalized text: normalize it whole first."""
        for token, piece in find_added(self._normalizer(segment), self._norm_added_re, self._norm_added):
            if token is not None:
                out.append(token.id)
                continue
            for word in wp.split_words(piece, self._split_punctuation):
                key = "\x00" + word  # normalized words never contain NUL, raw chunks may: no clash with _encode_raw keys
                ids = self._cache.get(key)
                out += ids if ids is not None else self._remember(key, self._wordpieces([word]))

    def _wordpieces(self, words: Iterable[str]) -> tuple[int, ...]:
        vocab, unk, prefix, max_chars, max_piece = self._vocab, self._unk_id, self._prefix, self._max_chars, self._max_piece
        return tuple(i for w in words for i in wp.wordpiece(w, vocab, unk, prefix, max_chars, max_piece))

    def _remember(self, key: str, ids: tuple[int, ...]) -> tuple[int, ...]:
        cache = self._cache
        if len(cache) >= _CACHE_SIZE:
            try:  # evict the oldest entry; another thread may be evicting too
                del cache[next(iter(cache))]
            except (KeyError, RuntimeError, StopIteration):
                pass
        cache[key] = ids
        return ids


def _check_text(text: object, index: int | None) -> str:
    if not isinstance(text, str):
        where = "text" if index is None else f"texts[{index}]"
        raise TypeError(f"{where} is {type(text).__name__}, expected str")
    return text
