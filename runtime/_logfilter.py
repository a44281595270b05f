"""Silencing known third-party notices, one logger and one message start at a time, so that every
other record still shows. Used by the command line (export noise) and the corpus job (Ray's notices)."""

from __future__ import annotations

import logging

__all__ = ["drop_messages"]


class _DropMessages(logging.Filter):
    def __init__(self, starts: tuple[str, ...]) -> None:
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.starts)


def drop_messages(logger_name: str, starts: tuple[str, ...]) -> None:
    """Drop the records of ``logger_name`` whose message starts with one of ``starts`` (added once)."""
    log = logging.getLogger(logger_name)
    if not any(isinstance(f, _DropMessages) for f in log.filters):
        log.addFilter(_DropMessages(starts))
