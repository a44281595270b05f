"""Paths on any filesystem pyarrow opens (local, ``s3://``, ``gs://``, ``hdfs://``), and atomic writes.

A file appears under its final name only when complete: it is written under a hidden temporary name
in the same folder, then moved. On a local disk the move is a rename (atomic); on object stores a
single object is visible only once fully uploaded, and the move copies it whole.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyarrow.fs as pafs

from onnxembed._files import temp_name

from .errors import CorpusOutputError

__all__ = ["Location", "locate"]


@dataclass(frozen=True)
class Location:
    """A filesystem and a path on it (``str(loc)`` is what the user wrote, for messages)."""

    fs: pafs.FileSystem
    path: str
    shown: str

    def __str__(self) -> str:
        return self.shown

    @property
    def uri(self) -> str:
        """An absolute name that :func:`locate` opens from any process: the URI, or the absolute local path."""
        return self.shown if "://" in self.shown else self.path

    def child(self, name: str) -> Location:
        return Location(self.fs, f"{self.path.rstrip('/')}/{name}", f"{self.shown.rstrip('/')}/{name}")

    def info(self) -> pafs.FileInfo:
        return self.fs.get_file_info(self.path)

    def exists(self) -> bool:
        return self.info().type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        return self.info().type == pafs.FileType.Directory

    def listdir(self) -> list[str]:
        """Names in this folder (not recursive); empty when it does not exist."""
        if not self.is_dir():
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        return sorted(i.base_name for i in infos)

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as f:
            return f.read()

    def write_atomic(self, write: Callable[[Location], None]) -> None:
        """``write(tmp)`` to a temporary name beside this file, then move it into place."""
        tmp = self.temp_sibling()
        try:
            write(tmp)
            self.fs.move(tmp.path, self.path)
        finally:
            tmp.remove()

    def write_bytes_atomic(self, data: bytes) -> None:
        """``data`` written atomically (see :meth:`write_atomic`)."""

        def write(tmp: Location) -> None:
            with self.fs.open_output_stream(tmp.path) as f:
                f.write(data)

        self.write_atomic(write)

    def temp_sibling(self) -> Location:
        """A hidden, unique name in the same folder (``.NAME.tmp-PID-RANDOM``, as the runtime's writer)."""
        parent, _, name = self.path.rpartition("/")
        tag = temp_name(name)
        return Location(self.fs, f"{parent}/{tag}", tag)

    def remove(self) -> None:
        """Delete this file if it exists."""
        try:
            if self.info().type == pafs.FileType.File:
                self.fs.delete_file(self.path)
        except FileNotFoundError:  # pragma: no cover (raced with another remover)
            pass

    def makedirs(self) -> None:
        self.fs.create_dir(self.path, recursive=True)

    def check_writable(self) -> None:
        """Raise :class:`CorpusOutputError` (one line: the path and the cause) if this folder cannot
        be created or written; creates nothing. Local paths are probed with a temporary file in the
        folder, or in its nearest existing parent; other filesystems are only checked not to be a file."""
        if not isinstance(self.fs, pafs.LocalFileSystem):
            if self.info().type == pafs.FileType.File:
                raise CorpusOutputError(f"{self}: cannot write the output folder: it is a file, not a folder; choose a folder path")
            return
        target = Path(self.path)
        existing = target
        while not os.path.lexists(existing) and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            where = "it is a file" if existing == target else f"{existing} is a file"
            raise CorpusOutputError(f"{self}: cannot write the output folder: {where}, not a folder; choose a folder path")
        try:
            fd, probe = tempfile.mkstemp(prefix=".onnxembed-write-check-", dir=existing)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            where = "" if existing == target else f" (in {existing}, where it would be created)"
            raise CorpusOutputError(
                f"{self}: cannot write the output folder: {e.strerror or e}{where}; choose a folder you can write"
            ) from None


def locate(path: str | os.PathLike[str]) -> Location:
    """A :class:`Location` for a local path or a URI (``s3://bucket/key``, ``gs://...``, ``file:///...``).

    Raises:
        ValueError: a URI whose scheme pyarrow does not know.
    """
    shown = os.fspath(path)
    if "://" in shown:
        try:
            fs, p = pafs.FileSystem.from_uri(shown)
        except ValueError as e:  # pyarrow's ArrowInvalid is a ValueError
            raise ValueError(f"{shown}: pyarrow cannot open this URI ({e}); use a local path or s3://, gs://, hdfs://") from e
        return Location(fs, p.rstrip("/") or p, shown)
    return Location(pafs.LocalFileSystem(), os.path.abspath(shown), shown)
