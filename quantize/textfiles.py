"""Reading the int8 build's text files: plain text, JSON lines (``.jsonl``, ``.jsonl.gz``), parquet and
labelled STS pairs (``.tsv``). Lines are decoded and JSON rows parsed by the runtime's one reader
(``onnxembed._files``), so every file error names the file and line the same way everywhere."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path
from typing import Any, Iterable

from .._files import json_object, read_lines, sha256_file

__all__ = ["Pair", "read_texts"]

Pair = tuple[float, str, str]


def _sha256_file(path: Path) -> str:
    return sha256_file(path)


def _kind(path: Path) -> str:
    name = path.name.lower()
    for suffix, kind in ((".jsonl.gz", "jsonl"), (".jsonl", "jsonl"), (".parquet", "parquet"), (".tsv", "tsv"), (".tsv.gz", "tsv")):
        if name.endswith(suffix):
            return kind
    return "txt"


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")  # type: ignore[return-value]
    return open(path, encoding="utf-8", newline="")  # type: ignore[return-value]


def _records(path: Path, rows: Iterable[dict[str, Any]], text_field: str) -> tuple[list[str], list[Pair]]:
    """Texts and labelled pairs from dict rows: ``text_field``, or ``sentence1``/``sentence2`` (+ ``score``)."""
    texts: list[str] = []
    pairs: list[Pair] = []
    for i, row in enumerate(rows, 1):
        if text_field in row:
            value = row[text_field]
            if not isinstance(value, str):
                raise ValueError(f"{path}: row {i}: field {text_field!r} is {type(value).__name__}; expected a string")
            texts.append(value)
        elif "sentence1" in row and "sentence2" in row:
            a, b = row["sentence1"], row["sentence2"]
            if not isinstance(a, str) or not isinstance(b, str):
                raise ValueError(f"{path}: row {i}: sentence1/sentence2 must be strings")
            texts += [a, b]
            if row.get("score") is not None:
                pairs.append((float(row["score"]), a, b))
        else:
            raise ValueError(
                f"{path}: row {i} has fields {sorted(row)}; expected a {text_field!r} field (or sentence1, sentence2 and score)"
            )
    if pairs and len(pairs) * 2 != len(texts):
        pairs = []  # mixed rows: use the texts, not a partial pair set
    return texts, pairs


def _read_jsonl(path: Path, text_field: str) -> tuple[list[str], list[Pair]]:
    def rows() -> Iterable[dict[str, Any]]:
        for i, line in read_lines(path):
            if line.strip():
                yield json_object(line, f"{path}:{i}", text_field)

    return _records(path, rows(), text_field)


def _read_parquet(path: Path, text_field: str) -> tuple[list[str], list[Pair]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        from onnxembed.extras import install_hint

        raise ImportError(f"{install_hint('parquet')}  (reading parquet calibration or gate files needs the parquet extra: pyarrow)") from e
    table = pq.read_table(path)
    cols = set(table.column_names)
    if text_field in cols:
        return _records(path, ({text_field: t} for t in table.column(text_field).to_pylist()), text_field)
    if {"sentence1", "sentence2"} <= cols:
        names = [c for c in ("sentence1", "sentence2", "score") if c in cols]
        data = {c: table.column(c).to_pylist() for c in names}
        return _records(path, (dict(zip(names, vals)) for vals in zip(*data.values())), text_field)
    raise ValueError(f"{path}: parquet columns {sorted(cols)}; expected a {text_field!r} column (or sentence1, sentence2 and score)")


def _read_tsv(path: Path) -> tuple[list[str], list[Pair]]:
    with _open_text(path) as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header != ["score", "sentence1", "sentence2"]:
            raise ValueError(f"{path}: header {header}; expected 'score<TAB>sentence1<TAB>sentence2' (labelled pairs, no quoting)")
        pairs = []
        for i, r in enumerate(reader, 2):
            if len(r) != 3:
                raise ValueError(f"{path}: line {i} has {len(r)} TAB-separated fields; expected 3 (score, sentence1, sentence2)")
            try:
                pairs.append((float(r[0]), r[1], r[2]))
            except ValueError as e:
                raise ValueError(f"{path}: line {i}: score {r[0]!r} is not a number") from e
    return [t for _, a, b in pairs for t in (a, b)], pairs


def read_texts(path: str | Path, *, text_field: str = "text") -> tuple[list[str], list[Pair]]:
    """Texts (and labelled pairs, if any) from a file, by its extension.

    - ``.txt`` (or anything else): one text per line; blank lines skipped.
    - ``.jsonl`` / ``.jsonl.gz``: one JSON object per line with a ``text`` field (or ``sentence1``,
      ``sentence2`` and ``score``: labelled pairs).
    - ``.parquet``: a ``text`` column (or ``sentence1``, ``sentence2``, ``score``); needs ``pyarrow``.
    - ``.tsv``: labelled pairs, header ``score<TAB>sentence1<TAB>sentence2``, no quoting.

    Returns:
        ``(texts, pairs)``: the texts in file order (duplicates kept), and the ``(score, s1, s2)`` rows
        (empty unless every row is a labelled pair).

    >>> texts, pairs = read_texts("corpus.txt")  # doctest: +SKIP
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file; expected a .txt (one text per line), .jsonl or .parquet file, or a .tsv of labelled pairs")
    kind = _kind(p)
    if kind == "jsonl":
        texts, pairs = _read_jsonl(p, text_field)
    elif kind == "parquet":
        texts, pairs = _read_parquet(p, text_field)
    elif kind == "tsv":
        texts, pairs = _read_tsv(p)
    else:
        texts, pairs = [line for _, line in read_lines(p)], []
    if not any(t.strip() for t in texts):
        raise ValueError(f"{p}: no texts found; expected at least one non-blank text")
    return texts, pairs
