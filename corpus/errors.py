"""The corpus job's errors: all are ValueErrors, so callers that catch bad arguments catch them too."""

from __future__ import annotations

__all__ = ["CorpusInputError", "CorpusMismatchError", "CorpusOutputError"]


class CorpusInputError(ValueError):
    """An input the job cannot embed: missing or unreadable file, empty file, missing column,
    a value that is not a string. The message names the file, and the row where it applies."""


class CorpusMismatchError(ValueError):
    """The output folder holds another job's shards (another model, variant, inputs or options)."""


class CorpusOutputError(ValueError):
    """The output folder cannot be written: it is a file, a parent is a file, or the folder (or the
    parent it would be created in) refuses writes (permission, read-only or immutable)."""
