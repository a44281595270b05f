"""Reading a ``tokenizer.json`` from its bytes, a large Unigram vocabulary in chunks.

``json.loads`` of multilingual-e5-small's 17 MB file holds the whole text as UCS-4 (one astral piece
is enough: 68 MB) while it builds 250,002 ``[piece, score]`` lists and score strings beside it; the
pieces kept afterwards are scattered among those freed objects, so the parser's memory stays pinned.
Here the vocabulary array is cut out of the bytes and parsed about a megabyte at a time, each chunk's
pieces and scores taken out at once (scores read as ``serde_json`` reads them): the text is never
decoded whole and the per-item lists are reused chunk after chunk.

Anything unexpected (no Unigram vocabulary, a cut that is not at an item boundary, a vocabulary key
elsewhere) falls back to plain ``json.loads``: the result is the same, only slower.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ._models import UnigramVocab, serde_f64_all

_VOCAB_START_RE = re.compile(rb'"vocab"\s*:\s*(\[)\s*\[')
_ITEM_BOUNDARY_RE = re.compile(rb"\]\s*,\s*\[")
_SENTINEL = "\x00onnxembed: vocabulary read apart"
CHUNK = 1 << 20


def loads(raw: bytes) -> Any:
    """``json.loads(raw, parse_float=str)``, except that a Unigram ``model.vocab`` is a :class:`UnigramVocab`.

    Raises:
        UnicodeDecodeError: If ``raw`` is not UTF-8.
        json.JSONDecodeError: If it is not JSON.
    """
    found = _VOCAB_START_RE.search(raw)
    if found is not None:
        config = _loads_apart(raw, found.start(1))
        if config is not None:
            return config
    return json.loads(raw.decode("utf-8"), parse_float=str)


def _loads_apart(raw: bytes, array_start: int) -> dict[str, Any] | None:
    pieces: list[str] = []
    scores: list[float] = []

    def take(items: list[Any]) -> bool:
        if set(map(type, items)) != {list} or set(map(len, items)) != {2}:
            return False
        chunk = [p for p, _ in items]
        if set(map(type, chunk)) != {str}:
            return False
        pieces.extend(chunk)
        scores.extend(serde_f64_all([s if type(s) is str else repr(float(s)) for _, s in items]))
        return True

    start = array_start + 1  # first item's "["
    start = raw.index(b"[", start)
    decoder = json.JSONDecoder(parse_float=str)
    while True:
        boundary = _ITEM_BOUNDARY_RE.search(raw, start + CHUNK)
        if boundary is None:
            break
        try:
            items = json.loads(b"".join((b"[", raw[start : boundary.start() + 1], b"]")).decode("utf-8"), parse_float=str)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None  # the cut fell inside a string: read the file whole
        if not take(items):
            return None
        start = boundary.end() - 1
    tail = "[" + raw[start:].decode("utf-8")
    try:
        items, end = decoder.raw_decode(tail)
    except json.JSONDecodeError:
        return None
    if not take(items):
        return None
    text = raw[:array_start].decode("utf-8") + json.dumps(_SENTINEL) + tail[end:]
    config = json.loads(text, parse_float=str)
    model = config.get("model") if isinstance(config, dict) else None
    if not isinstance(model, dict) or model.get("vocab") != _SENTINEL:
        return None  # the key found was not the model's vocabulary
    model["vocab"] = UnigramVocab(pieces, scores)
    return config
