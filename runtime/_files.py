"""Reading text files and writing files atomically, with the standard library only: the one reader
and the one writer that every stage uses (the corpus job reads and writes through pyarrow's
filesystems, and uses the line and JSON rules from here).

- :func:`decode_line` and :func:`json_object`: one line of a text or JSON-lines file, with errors
  that name the file and line (``FILE:LINE: not UTF-8 (byte 0xe9 at column 4); ...``);
- :func:`read_lines`: the lines of a local file (``.gz`` decompressed), decoded one by one;
- :func:`sha256_file`, :func:`sha256_stream`: a file's hash, read in chunks;
- :func:`write_atomic`: write under a hidden temporary name beside the target, then rename.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

__all__ = ["decode_line", "json_object", "read_lines", "sha256_file", "sha256_stream", "temp_name", "write_atomic"]

CHUNK = 1 << 20


def decode_line(raw: bytes, where: str, error: type[Exception] = ValueError) -> str:
    """``raw`` as UTF-8 text, its line ending removed; ``error`` names ``where`` (``FILE:LINE``), the
    byte and its column otherwise."""
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise error(
            f"{where}: not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); convert the file first, "
            "e.g. iconv -f latin1 -t utf-8"
        ) from None


def json_object(line: str, where: str, field: str, error: type[Exception] = ValueError, *, strings: bool = False) -> Any:
    """One JSON-lines row: an object (or, with ``strings``, also a bare string); ``error`` names
    ``where`` and what was expected otherwise."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise error(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
    if isinstance(obj, dict) or (strings and isinstance(obj, str)):
        return obj
    what = f"a JSON string or an object with a string {field!r} field" if strings else f"a JSON object with a {field!r} field"
    raise error(f"{where}: expected {what}, found {line.strip()[:80]!r}")


def read_lines(path: str | os.PathLike[str] | BinaryIO, name: str | None = None, error: type[Exception] = ValueError) -> Iterator[tuple[int, str]]:
    """``(line number from 1, text)`` of every line (blank ones too), decoded one by one so an error
    names the exact line. ``path`` may be an open binary file; a ``.gz`` name is decompressed."""
    if hasattr(path, "read"):
        f: Any = path
        shown = name or "<stdin>"
        for n, raw in enumerate(f, 1):
            yield n, decode_line(raw, f"{shown}:{n}", error)
        return
    p = Path(path)  # type: ignore[arg-type]
    shown = name or str(p)
    try:
        f = gzip.open(p, "rb") if p.name.lower().endswith(".gz") else open(p, "rb")
    except OSError as e:
        raise error(f"{shown}: cannot read it ({e.strerror or e})") from None
    with f:
        for n, raw in enumerate(f, 1):
            yield n, decode_line(raw, f"{shown}:{n}", error)


def sha256_stream(f: Any, chunk: int = CHUNK) -> tuple[str, int]:
    """``(hex sha256, size)`` of what ``f.read`` returns until the end."""
    h = hashlib.sha256()
    size = 0
    while block := f.read(chunk):
        h.update(block)
        size += len(block)
    return h.hexdigest(), size


def sha256_file(path: str | os.PathLike[str], chunk: int = CHUNK) -> str:
    """Hex sha256 of a file, read in chunks."""
    with open(path, "rb") as f:
        return sha256_stream(f, chunk)[0]


def temp_name(name: str) -> str:
    """A hidden, unique name for a file being written: ``.NAME.tmp-PID-RANDOM``."""
    return f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def write_atomic(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` into a temporary file beside ``path``, then rename it to ``path`` (atomic on one
    filesystem): a reader sees the old file or the whole new one, never half of it.

    >>> write_atomic("out.txt", lambda tmp: tmp.write_text("done"))  # doctest: +SKIP
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(temp_name(target.name))
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
