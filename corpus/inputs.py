"""Inputs: find the files, check them, cut them into deterministic shards, and read one shard back.

Formats: parquet (a string column of texts, optionally an id column), jsonl (one JSON object per line
with the same fields) and plain text (one text per line). Blank lines of text and jsonl files are
skipped; they still count for line numbers, so ``FILE:LINE`` ids point at the real line.

A shard is a file and a row range (line files: a line range and its byte range, so reading a shard
never scans the lines before it). Shards depend only on the files and ``shard_rows``, so a rerun cuts
the same shards and can skip the finished ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, replace
from typing import Any, Iterator, Sequence

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from onnxembed._files import decode_line, json_object, sha256_stream

from .errors import CorpusInputError
from .storage import Location, locate

__all__ = ["InputFile", "Shard", "plan_inputs", "read_shard", "FORMATS"]

logger = logging.getLogger(__name__)

FORMATS = ("parquet", "jsonl", "text")
_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".txt": "text", ".text": "text", ".tsv": "text"}
_CHUNK = 1 << 20


@dataclass(frozen=True)
class InputFile:
    """One input file as planned: what the job manifest records to detect a changed input."""

    path: str
    format: str
    size: int
    sha256: str
    texts: int
    empty_texts: int = 0
    duplicate_ids: int = 0


@dataclass(frozen=True)
class Shard:
    """Rows ``[start, stop)`` of one input: parquet row numbers, or 1-based line numbers of a line
    file whose bytes ``[offset, offset + length)`` hold exactly those lines. ``path`` is the input as
    the user named it (for ids and messages), ``uri`` where a worker opens it (absolute)."""

    index: int
    path: str
    uri: str
    format: str
    start: int
    stop: int
    offset: int
    length: int
    texts: int
    file_size: int

    @property
    def name(self) -> str:
        """The output file of this shard."""
        return f"part-{self.index:05d}.parquet"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Columns:
    """Where the text and the id are: column names (parquet) or field names (jsonl)."""

    text: str = "text"
    id: str | None = None


# ------------------------------------------------------------------------------------- planning


class _Tally:
    """Empty texts (empty or whitespace only) and ids seen before, counted over every input; with
    ``strict`` the first of either is an error naming where it is."""

    def __init__(self, strict: bool, check_ids: bool) -> None:
        self.strict = strict
        self.ids: set[str] | None = set() if check_ids else None
        self.empty = 0
        self.duplicates = 0

    def row(self, where: str, id_: str | None, text: str) -> None:
        if not text.strip():
            self.empty += 1
            if self.strict:
                raise CorpusInputError(f"{where}: the text is empty{' (whitespace only)' if text else ''}; remove it, or run without --strict to embed it")
        if self.ids is not None and id_ is not None:
            if id_ in self.ids:
                self.duplicates += 1
                if self.strict:
                    raise CorpusInputError(f"{where}: id {id_!r:.80} appears again; ids must be unique, or run without --strict")
            else:
                self.ids.add(id_)


def plan_inputs(
    paths: Sequence[str], columns: Columns, shard_rows: int, input_format: str = "auto", *, strict: bool = False
) -> tuple[list[InputFile], list[Shard]]:
    """Check every input and cut it into shards of at most ``shard_rows`` texts.

    Each file is read once: hashed (sha256) and checked. Line files are decoded and, for jsonl,
    parsed line by line, so a bad row is reported before anything is written; parquet files are
    checked from their schema and statistics, and their text (and id) columns are read to count
    empty texts and duplicate ids. Each :class:`InputFile` carries those counts (duplicates of an id
    column, across every input; the ``FILE:LINE`` ids are unique by construction).

    Raises:
        CorpusInputError: a missing, unreadable or empty file, a missing column, a value that is not
            a string; with ``strict``, an empty text or a repeated id. The message names the file
            (and the row or line).
    """
    if not paths:
        raise CorpusInputError("no inputs given; pass files or folders of .parquet, .jsonl or .txt files")
    files: list[InputFile] = []
    shards: list[Shard] = []
    tally = _Tally(strict, columns.id is not None)
    for loc, fmt in _expand(paths, input_format):
        empty, dup = tally.empty, tally.duplicates
        planned, cuts = (_plan_parquet if fmt == "parquet" else _plan_lines)(loc, fmt, columns, shard_rows, tally)
        planned = replace(planned, empty_texts=tally.empty - empty, duplicate_ids=tally.duplicates - dup)
        files.append(planned)
        for start, stop, offset, length, n in cuts:
            shards.append(Shard(len(shards), str(loc), loc.uri, fmt, start, stop, offset, length, n, planned.size))
    return files, shards


def _expand(paths: Sequence[str], input_format: str) -> list[tuple[Location, str]]:
    """Files in the order given; a folder contributes its files with a known suffix, sorted."""
    if input_format != "auto" and input_format not in FORMATS:
        raise ValueError(f"input_format must be 'auto' or one of {FORMATS}, found {input_format!r}")
    out: list[tuple[Location, str]] = []
    for p in paths:
        loc = locate(p)
        info = _info(loc)
        if info.type == pafs.FileType.Directory:
            sel = loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=True))
            found = sorted(i.path for i in sel if i.type == pafs.FileType.File and not i.base_name.startswith((".", "_")))
            kept = [f for f in found if input_format != "auto" or _suffix_format(f)]
            if not kept:
                raise CorpusInputError(f"{loc}: the folder holds no .parquet, .jsonl or .txt files")
            for f in kept:
                child = Location(loc.fs, f, f"{str(loc).rstrip('/')}/{f[len(loc.path):].lstrip('/')}")
                out.append((child, input_format if input_format != "auto" else _suffix_format(f) or "text"))
        elif info.type == pafs.FileType.File:
            out.append((loc, input_format if input_format != "auto" else _suffix_format(loc.path) or "text"))
        else:
            raise CorpusInputError(f"{loc}: no such file or folder")
    return out


def _info(loc: Location) -> pafs.FileInfo:
    try:
        return loc.info()
    except OSError as e:
        raise CorpusInputError(f"{loc}: cannot read it ({e})") from e


def _suffix_format(path: str) -> str | None:
    name = path.rsplit("/", 1)[-1].lower()
    return next((fmt for suf, fmt in _SUFFIXES.items() if name.endswith(suf)), None)


def _open(loc: Location) -> Any:
    try:
        return loc.fs.open_input_file(loc.path)
    except OSError as e:  # PermissionError, FileNotFoundError and pyarrow's IOError are OSErrors
        raise CorpusInputError(f"{loc}: cannot read it ({e})") from e


def _hash(loc: Location) -> tuple[str, int]:
    with _open(loc) as f:
        return sha256_stream(f, _CHUNK)


def _lines(f: Any, h: Any) -> Iterator[bytes]:
    """Raw lines with their newline, hashing the bytes as they are read."""
    rest = b""
    while chunk := f.read(_CHUNK):
        h.update(chunk)
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        for part in parts:
            yield part + b"\n"
    if rest:
        yield rest


def _plan_lines(loc: Location, fmt: str, columns: Columns, shard_rows: int, tally: _Tally) -> tuple[InputFile, list[tuple[int, ...]]]:
    h = hashlib.sha256()
    cuts: list[tuple[int, ...]] = []
    start_line, start_byte, n, pos, line_no = 1, 0, 0, 0, 0
    with _open(loc) as f:
        for line_no, raw in enumerate(_lines(f, h), 1):
            pos += len(raw)
            row = _row(loc, fmt, columns, raw, line_no)
            if row is None:
                continue
            tally.row(f"{loc}:{line_no}", row[0], row[1])
            n += 1
            if n == shard_rows:
                cuts.append((start_line, line_no + 1, start_byte, pos - start_byte, n))
                start_line, start_byte, n = line_no + 1, pos, 0
    if n:
        cuts.append((start_line, line_no + 1, start_byte, pos - start_byte, n))
    total = sum(c[4] for c in cuts)
    if not total:
        what = "is empty" if pos == 0 else "has only blank lines"
        raise CorpusInputError(f"{loc}: no texts (the file {what}); remove it from the inputs")
    return InputFile(str(loc), fmt, pos, h.hexdigest(), total), cuts


def _row(loc: Location | str, fmt: str, columns: Columns, raw: bytes, line_no: int) -> tuple[str | None, str] | None:
    """``(id or None, text)`` of one line, None for a blank line; raises naming ``file:line``."""
    line = decode_line(raw, f"{loc}:{line_no}", CorpusInputError)
    if not line.strip():
        return None
    if fmt == "text":
        return None, line
    obj = json_object(line, f"{loc}:{line_no}", columns.text, CorpusInputError)
    if columns.text not in obj:
        raise CorpusInputError(
            f"{loc}:{line_no}: no field {columns.text!r} (fields: {sorted(obj)[:10]}); pass --text-column to name the text field"
        )
    text = obj[columns.text]
    if not isinstance(text, str):
        raise CorpusInputError(f"{loc}:{line_no}: field {columns.text!r} is {_json_type(text)} {json.dumps(text)[:60]}, expected a string")
    if columns.id is None:
        return None, text
    if columns.id not in obj:
        raise CorpusInputError(f"{loc}:{line_no}: no field {columns.id!r} for the id (fields: {sorted(obj)[:10]}); pass the right --id-column")
    return _id_value(obj[columns.id], f"{loc}:{line_no}: field {columns.id!r}"), text


def _json_type(value: Any) -> str:
    return {type(None): "null", bool: "a boolean", int: "a number", float: "a number", list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


def _id_value(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise CorpusInputError(f"{where} is {_json_type(value)} {value!r:.60}, expected a string or an integer id")


def _plan_parquet(loc: Location, fmt: str, columns: Columns, shard_rows: int, tally: _Tally) -> tuple[InputFile, list[tuple[int, ...]]]:
    digest, size = _hash(loc)
    pf = _parquet_file(loc)
    schema = pf.schema_arrow
    _check_column(loc, schema, columns.text, "text", pa.types.is_string, pa.types.is_large_string, _is_string_view)
    if columns.id is not None:
        _check_column(loc, schema, columns.id, "id", pa.types.is_string, pa.types.is_large_string, _is_string_view, pa.types.is_integer)
    rows = pf.metadata.num_rows
    if rows == 0:
        raise CorpusInputError(f"{loc}: no rows (the parquet file is empty); remove it from the inputs")
    _check_nulls(loc, pf, columns)
    _tally_parquet(loc, pf, columns, tally)
    cuts = [(s, min(s + shard_rows, rows), 0, 0, min(s + shard_rows, rows) - s) for s in range(0, rows, shard_rows)]
    return InputFile(str(loc), fmt, size, digest, rows), cuts


def _is_string_view(t: pa.DataType) -> bool:
    return str(t) == "string_view"


def _parquet_file(loc: Location) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(_open(loc))
    except (pa.ArrowInvalid, OSError) as e:
        raise CorpusInputError(f"{loc}: not a readable parquet file ({e})") from e


def _check_column(loc: Location, schema: pa.Schema, name: str, role: str, *kinds: Any) -> None:
    flag = "--text-column" if role == "text" else "--id-column"
    if name not in schema.names:
        raise CorpusInputError(f"{loc}: no column {name!r} for the {role} (columns: {schema.names}); pass {flag} to name it")
    t = schema.field(name).type
    if not any(k(t) for k in kinds):
        want = "strings" if role == "text" else "strings or integers"
        raise CorpusInputError(f"{loc}: column {name!r} holds {t}, expected {want} for the {role}")


def _check_nulls(loc: Location, pf: pq.ParquetFile, columns: Columns) -> None:
    """A null text or id is reported with its row, from the statistics (read only where they say so)."""
    names = [columns.text] + ([columns.id] if columns.id else [])
    row = 0
    for g in range(pf.num_row_groups):
        meta = pf.metadata.row_group(g)
        for name in names:
            col = meta.column(pf.schema_arrow.get_field_index(name))
            stats = col.statistics
            if stats is None or not stats.has_null_count or stats.null_count:
                values = pf.read_row_group(g, columns=[name]).column(0)
                if values.null_count:
                    first = next(i for i, v in enumerate(values.is_null().to_pylist()) if v)
                    raise CorpusInputError(f"{loc}: row {row + first}: column {name!r} is null, expected a string")
        row += meta.num_rows


def _tally_parquet(loc: Location, pf: pq.ParquetFile, columns: Columns, tally: _Tally) -> None:
    """Empty texts and repeated ids of a parquet file, one row group at a time."""
    names = [columns.text] + ([columns.id] if columns.id else [])
    row = 0
    for g in range(pf.num_row_groups):
        table = pf.read_row_group(g, columns=names)
        texts = table.column(columns.text).to_pylist()
        ids = table.column(columns.id).to_pylist() if columns.id else [None] * len(texts)
        for i, (id_, text) in enumerate(zip(ids, texts)):
            tally.row(f"{loc}: row {row + i}", None if id_ is None else str(id_), text)
        row += len(texts)


# -------------------------------------------------------------------------------------- reading


def read_shard(shard: Shard, columns: Columns) -> tuple[list[str], list[str]]:
    """``(ids, texts)`` of one shard. Ids are the id column's values as strings, else ``FILE:LINE``
    (line files, 1-based) or ``FILE:ROW`` (parquet, from 0).

    Raises:
        CorpusInputError: the rows do not match the plan (the file changed during the job), or a
            value is not a string; the message names the file and row.
    """
    loc = locate(shard.uri)
    loc = Location(loc.fs, loc.path, shard.path)
    size = _info(loc).size
    if size != shard.file_size:
        raise CorpusInputError(
            f"{shard.path}: the file changed while the job ran ({shard.file_size} bytes when planned, {size} now); "
            "rerun with overwrite to embed it as it is now"
        )
    ids, texts = (_read_parquet if shard.format == "parquet" else _read_lines)(loc, shard, columns)
    if len(texts) != shard.texts:
        raise CorpusInputError(
            f"{shard.path}: rows {shard.start}..{shard.stop - 1} hold {len(texts)} texts, the job's plan counted "
            f"{shard.texts}; the file changed while the job ran: rerun with overwrite"
        )
    return ids, texts


def _read_lines(loc: Location, shard: Shard, columns: Columns) -> tuple[list[str], list[str]]:
    with _open(loc) as f:
        data = f.read_at(shard.length, shard.offset)
    ids: list[str] = []
    texts: list[str] = []
    raws = data.split(b"\n")
    if raws and raws[-1] == b"":
        raws.pop()
    for line_no, raw in enumerate(raws, shard.start):
        row = _row(loc, shard.format, columns, raw, line_no)
        if row is None:
            continue
        ids.append(row[0] if row[0] is not None else f"{shard.path}:{line_no}")
        texts.append(row[1])
    return ids, texts


def _read_parquet(loc: Location, shard: Shard, columns: Columns) -> tuple[list[str], list[str]]:
    pf = _parquet_file(loc)
    names = [columns.text] + ([columns.id] if columns.id else [])
    parts = []
    row = 0
    for g in range(pf.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        lo, hi = max(row, shard.start), min(row + n, shard.stop)
        if lo < hi:
            parts.append(pf.read_row_group(g, columns=names).slice(lo - row, hi - lo))
        row += n
        if row >= shard.stop:
            break
    table = pa.concat_tables(parts) if parts else pa.table({n: pa.array([], pa.string()) for n in names})
    texts = table.column(columns.text).to_pylist()
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise CorpusInputError(f"{loc}: row {shard.start + i}: column {columns.text!r} is {t!r:.60}, expected a string")
    if columns.id:
        ids = [_id_value(v, f"{loc}: row {shard.start + i}: column {columns.id!r}") for i, v in enumerate(table.column(columns.id).to_pylist())]
    else:
        ids = [f"{shard.path}:{shard.start + i}" for i in range(len(texts))]
    return ids, texts
