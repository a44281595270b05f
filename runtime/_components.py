"""The parts of a ``tokenizer.json`` this tokenizer implements: added tokens, template, component parsing.

Each parser accepts exactly what it can reproduce bit for bit and raises ValueError naming the
component and the supported alternatives otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from . import _wordpiece as wp

SUPPORTED_NORMALIZERS = "BertNormalizer, or a Sequence of BertNormalizer / NFD / Lowercase / StripAccents"
SUPPORTED_PRE_TOKENIZERS = "BertPreTokenizer, WhitespaceSplit, or a Sequence of WhitespaceSplit then Punctuation"
SUPPORTED_POST_PROCESSORS = "TemplateProcessing, BertProcessing or null"
_WS_END_RE = re.compile(f"{wp.SPLIT_RE.pattern}$")
_WS_START_RE = re.compile(wp.SPLIT_RE.pattern)


@dataclass(frozen=True)
class AddedToken:
    """A token cut out of the text before normalization (or after it, if ``normalized``)."""

    content: str
    id: int
    single_word: bool = False
    lstrip: bool = False
    rstrip: bool = False
    normalized: bool = False
    special: bool = True


@dataclass(frozen=True)
class Template:
    """Where the post-processor puts special tokens around one sequence, with token type ids."""

    prefix: tuple[int, ...] = ()
    prefix_types: tuple[int, ...] = ()
    sequence_type: int = 0
    suffix: tuple[int, ...] = ()
    suffix_types: tuple[int, ...] = ()

    @property
    def n_special(self) -> int:
        """Number of special tokens added to a sequence."""
        return len(self.prefix) + len(self.suffix)

    def type_ids(self, length: int) -> list[int]:
        """Token type ids of an encoded sequence of ``length`` tokens (specials included)."""
        body = max(length - self.n_special, 0)
        return [*self.prefix_types, *([self.sequence_type] * body), *self.suffix_types][:length]



def alternation(contents: Iterable[str]) -> re.Pattern[str] | None:
    """A regex matching any of ``contents``, longest first (the reference's leftmost-longest matching)."""
    ordered = sorted(set(contents), key=lambda s: (-len(s), s))
    return re.compile("|".join(map(re.escape, ordered))) if ordered else None


def find_added(
    text: str, pattern: re.Pattern[str] | None, tokens: dict[str, AddedToken]
) -> Iterator[tuple[AddedToken | None, str]]:
    """Split ``text`` into added tokens and the stretches between them (tokenizers' ``find_matches``).

    ``single_word`` uses Python's ``\\w``, which differs from Rust's for combining marks; no BERT
    special token sets it.
    """
    if pattern is None:
        yield None, text
        return
    done = 0
    for m in pattern.finditer(text):
        token = tokens[m.group()]
        start, stop = m.span()
        if token.single_word and (
            (start > 0 and re.search(r"\w$", text[:start])) or (stop < len(text) and re.match(r"\w", text[stop:]))
        ):
            continue
        if token.lstrip:
            ws = _WS_END_RE.search(text, 0, start)
            start = max(ws.start() if ws else start, done)
        if token.rstrip:
            ws = _WS_START_RE.match(text, stop)
            stop = ws.end() if ws else stop
        if done < start:
            yield None, text[done:start]
        yield token, text[start:stop]
        done = stop
    if done < len(text):
        yield None, text[done:]


def parse_normalizer(config: dict[str, Any] | None, source: str) -> wp.Normalizer:
    """The normalizing chain of a ``normalizer`` entry (None: no normalization)."""
    if config is None:
        return wp.Normalizer(())
    kind = config.get("type")
    if kind == "BertNormalizer":
        return wp.bert_normalizer(
            clean=bool(config.get("clean_text", True)),
            handle_chinese_chars=bool(config.get("handle_chinese_chars", True)),
            strip_accents=config.get("strip_accents"),
            lowercase=bool(config.get("lowercase", True)),
        )
    simple = {"NFD": ("nfd",), "Lowercase": ("lowercase",), "StripAccents": ("strip_marks",)}
    if kind in simple:
        return wp.Normalizer(simple[kind])
    if kind == "Sequence":
        steps: tuple[str, ...] = ()
        for part in config.get("normalizers", []):
            steps += parse_normalizer(part, source).steps
        return wp.Normalizer(steps)
    raise ValueError(f"{source}: normalizer {kind!r} is not supported; supported: {SUPPORTED_NORMALIZERS}")


def parse_pre_tokenizer(config: dict[str, Any] | None, source: str) -> bool:
    """Whether punctuation is isolated (True for BertPreTokenizer); whitespace always splits."""
    kind = config.get("type") if config else None
    if kind == "BertPreTokenizer":
        return True
    if kind == "WhitespaceSplit":
        return False
    if kind == "Sequence":
        parts = config.get("pretokenizers", []) if config else []
        kinds = [(p.get("type"), p.get("behavior", "Isolated")) for p in parts]
        if kinds == [("WhitespaceSplit", "Isolated")]:
            return False
        if kinds in ([("WhitespaceSplit", "Isolated"), ("Punctuation", "Isolated")], [("BertPreTokenizer", "Isolated")]):
            return True
        kind = f"Sequence{[k for k, _ in kinds]}"
    raise ValueError(f"{source}: pre_tokenizer {kind!r} is not supported; supported: {SUPPORTED_PRE_TOKENIZERS}")


def parse_post_processor(config: dict[str, Any] | None, ids: dict[str, int], source: str) -> Template:
    """The single-sequence template of a ``post_processor`` entry; ``ids`` resolves special token names."""
    if config is None:
        return Template()
    kind = config.get("type")
    if kind == "BertProcessing":
        (_, cls_id), (_, sep_id) = config["cls"], config["sep"]
        return Template(prefix=(int(cls_id),), prefix_types=(0,), suffix=(int(sep_id),), suffix_types=(0,))
    if kind != "TemplateProcessing":
        raise ValueError(f"{source}: post_processor {kind!r} is not supported; supported: {SUPPORTED_POST_PROCESSORS}")
    specials = config.get("special_tokens", {})
    before: list[tuple[int, int]] = []
    after: list[tuple[int, int]] = []
    sequence_type = None
    for piece in config.get("single", []):
        if "Sequence" in piece:
            sequence_type = int(piece["Sequence"].get("type_id", 0))
            continue
        name, type_id = piece["SpecialToken"]["id"], int(piece["SpecialToken"].get("type_id", 0))
        if name in specials:
            special_ids = [int(i) for i in specials[name]["ids"]]
        elif name in ids:
            special_ids = [ids[name]]
        else:
            raise ValueError(f"{source}: template special token {name!r} has no id; add it to post_processor.special_tokens")
        (after if sequence_type is not None else before).extend((i, type_id) for i in special_ids)
    if sequence_type is None:
        raise ValueError(f"{source}: the single-sequence template has no Sequence 'A' item; expected e.g. [CLS] $A [SEP]")
    return Template(
        prefix=tuple(i for i, _ in before),
        prefix_types=tuple(t for _, t in before),
        sequence_type=sequence_type,
        suffix=tuple(i for i, _ in after),
        suffix_types=tuple(t for _, t in after),
    )
