"""Added tokens and post-processor templates of a ``tokenizer.json`` (single and pair forms, truncation).

Each parser accepts exactly what it can reproduce bit for bit and raises ValueError naming the
component and the supported alternatives otherwise. Normalizers, pre-tokenizers and models live in
``_normalizers``, ``_pretokenizers`` and ``_models``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import _wordpiece as wp

SUPPORTED_POST_PROCESSORS = "TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, a Sequence of those, or null"
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
class PairTemplate:
    """Where the post-processor puts special tokens around a pair: ``prefix A middle B suffix``."""

    prefix: tuple[tuple[int, int], ...] = ()
    a_type: int = 0
    middle: tuple[tuple[int, int], ...] = ()
    b_type: int = 1
    suffix: tuple[tuple[int, int], ...] = ()

    @property
    def n_special(self) -> int:
        """Number of special tokens added to a pair."""
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    def build(self, a: Sequence[int], b: Sequence[int]) -> tuple[list[int], list[int]]:
        """Ids and token type ids of the pair ``a``, ``b`` (already truncated)."""
        ids = [*(i for i, _ in self.prefix), *a, *(i for i, _ in self.middle), *b, *(i for i, _ in self.suffix)]
        types = [
            *(t for _, t in self.prefix), *([self.a_type] * len(a)),
            *(t for _, t in self.middle), *([self.b_type] * len(b)), *(t for _, t in self.suffix),
        ]
        return ids, types


@dataclass(frozen=True)
class Template:
    """Where the post-processor puts special tokens around one sequence (and a pair), with token type ids."""

    prefix: tuple[int, ...] = ()
    prefix_types: tuple[int, ...] = ()
    sequence_type: int = 0
    suffix: tuple[int, ...] = ()
    suffix_types: tuple[int, ...] = ()
    pair: PairTemplate | None = PairTemplate()

    @property
    def n_special(self) -> int:
        """Number of special tokens added to a sequence."""
        return len(self.prefix) + len(self.suffix)

    def type_ids(self, length: int) -> list[int]:
        """Token type ids of an encoded sequence of ``length`` tokens (specials included)."""
        body = max(length - self.n_special, 0)
        return [*self.prefix_types, *([self.sequence_type] * body), *self.suffix_types][:length]



def parse_added_tokens(entries: list[dict[str, Any]] | None) -> list[AddedToken]:
    """The ``added_tokens`` entries (``normalized`` defaults to not ``special``, as in the library)."""
    return [
        AddedToken(
            content=t["content"],
            id=int(t["id"]),
            single_word=bool(t.get("single_word", False)),
            lstrip=bool(t.get("lstrip", False)),
            rstrip=bool(t.get("rstrip", False)),
            normalized=bool(t.get("normalized", not t.get("special", False))),
            special=bool(t.get("special", False)),
        )
        for t in entries or []
    ]


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


def bert_split_punctuation(config: dict[str, Any] | None) -> bool | None:
    """For the WordPiece fast path: whether a ``pre_tokenizer`` entry isolates punctuation after splitting
    on whitespace (True), only splits on whitespace (False), or is something else (None)."""
    kind = config.get("type") if config else None
    if kind == "Sequence":
        parts = config.get("pretokenizers", []) if config else []
        kinds = [(p.get("type"), p.get("behavior", "Isolated")) for p in parts]
        if kinds == [("WhitespaceSplit", "Isolated")]:
            return False
        if kinds in ([("WhitespaceSplit", "Isolated"), ("Punctuation", "Isolated")], [("BertPreTokenizer", "Isolated")]):
            return True
        return None
    return {"BertPreTokenizer": True, "WhitespaceSplit": False}.get(kind)  # type: ignore[arg-type]


def truncate_pair(n1: int, n2: int, max_length: int) -> tuple[int, int]:
    """Lengths to keep of a pair under ``longest_first`` (``truncate_encodings`` of the Rust library)."""
    if n1 + n2 <= max_length:
        return n1, n2
    swap = n1 > n2
    if swap:
        n1, n2 = n2, n1
    n2 = n1 if n1 > max_length else max(n1, max_length - n1)
    if n1 + n2 > max_length:
        n1 = max_length // 2
        n2 = n1 + max_length % 2
    return (n2, n1) if swap else (n1, n2)


def _special(name: str, specials: dict[str, Any], ids: dict[str, int], source: str) -> list[int]:
    if name in specials:
        return [int(i) for i in specials[name]["ids"]]
    if name in ids:
        return [ids[name]]
    raise ValueError(f"{source}: template special token {name!r} has no id; add it to post_processor.special_tokens")


def _parse_template(items: list[dict[str, Any]], specials: dict[str, Any], ids: dict[str, int], source: str) -> list[Any]:
    """Template items as ``(id, type)`` tuples and ``"A"``/``"B"`` markers with their type."""
    out: list[Any] = []
    for item in items:
        if "Sequence" in item:
            out.append((item["Sequence"]["id"], int(item["Sequence"].get("type_id", 0))))
        else:
            type_id = int(item["SpecialToken"].get("type_id", 0))
            out += [(i, type_id) for i in _special(item["SpecialToken"]["id"], specials, ids, source)]
    return out


def _template_of(single: list[Any], pair: list[Any] | None, source: str) -> Template:
    marks = [x for x, _ in single if isinstance(x, str)]
    if marks != ["A"]:
        raise ValueError(f"{source}: the single-sequence template must hold $A once, found {marks}; expected e.g. [CLS] $A [SEP]")
    at = next(k for k, (x, _) in enumerate(single) if isinstance(x, str))
    before, after = single[:at], single[at + 1 :]
    template = Template(
        prefix=tuple(i for i, _ in before), prefix_types=tuple(t for _, t in before), sequence_type=single[at][1],
        suffix=tuple(i for i, _ in after), suffix_types=tuple(t for _, t in after), pair=None,
    )
    if pair is None:
        return template
    marks = [x for x, _ in pair if isinstance(x, str)]
    if marks != ["A", "B"]:
        raise ValueError(f"{source}: the pair template must hold $A then $B once each, found {marks}")
    a = next(k for k, (x, _) in enumerate(pair) if x == "A")
    b = next(k for k, (x, _) in enumerate(pair) if x == "B")
    form = PairTemplate(tuple(pair[:a]), pair[a][1], tuple(pair[a + 1 : b]), pair[b][1], tuple(pair[b + 1 :]))
    return Template(template.prefix, template.prefix_types, template.sequence_type, template.suffix, template.suffix_types, form)


def parse_post_processor(config: dict[str, Any] | None, ids: dict[str, int], source: str) -> Template:
    """The single and pair templates of a ``post_processor`` entry; ``ids`` resolves special token names."""
    kind = config.get("type") if config is not None else None
    if config is None or kind == "ByteLevel":
        return Template()
    if kind in ("BertProcessing", "RobertaProcessing"):
        cls, sep = (int(config["cls"][1]), 0), (int(config["sep"][1]), 0)
        if kind == "BertProcessing":
            return _template_of([cls, ("A", 0), sep], [cls, ("A", 0), sep, ("B", 1), (sep[0], 1)], source)
        return _template_of([cls, ("A", 0), sep], [cls, ("A", 0), sep, sep, ("B", 0), sep], source)
    if kind == "TemplateProcessing":
        specials = config.get("special_tokens", {})
        single = _parse_template(config.get("single", []), specials, ids, source)
        pair = _parse_template(config["pair"], specials, ids, source) if config.get("pair") else None
        return _template_of(single, pair, source)
    if kind == "Sequence":
        parts = [parse_post_processor(p, ids, source) for p in config.get("processors") or []]
        adding = [p for p in parts if p != Template()]
        if len(adding) > 1:
            raise ValueError(f"{source}: a post_processor Sequence with {len(adding)} processors that add tokens is not supported")
        return adding[0] if adding else Template()
    raise ValueError(f"{source}: post_processor {kind!r} is not supported; supported: {SUPPORTED_POST_PROCESSORS}")
