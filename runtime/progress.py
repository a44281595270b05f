"""Progress for ``encode(..., show_progress=...)``: a bar on stderr when it is a terminal, else INFO logs.

No dependency: the bar is one carriage-returned line, redrawn at most ten times a second.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Callable, TextIO, Union

__all__ = ["Progress", "progress_reporter"]

logger = logging.getLogger(__name__)

Progress = Union[bool, Callable[[int, int], None]]


def progress_reporter(progress: Progress, total: int, stream: TextIO | None = None) -> Callable[[int], None]:
    """A ``report(done)`` function; ``report(-1)`` ends the display (a newline after a bar).

    Args:
        progress: False (nothing), True (bar or logs), or a callable given ``(done, total)``.
        total: how many texts the work has.
        stream: where a bar goes (default ``sys.stderr``); a bar is drawn only on a terminal.
    """
    if callable(progress):
        return lambda done: progress(done, total) if done >= 0 else None
    if not progress:
        return lambda done: None
    out = stream if stream is not None else sys.stderr
    is_tty = bool(getattr(out, "isatty", lambda: False)())
    state = {"t": 0.0, "start": time.monotonic(), "drawn": False}

    def report(done: int) -> None:
        now = time.monotonic()
        if done < 0:
            if state["drawn"]:
                out.write("\n")
                out.flush()
            return
        if done != total and now - state["t"] < (0.1 if is_tty else 1.0):
            return
        state["t"] = now
        if not is_tty:
            logger.info("encoded %d/%d texts", done, total)
            return
        elapsed = max(now - state["start"], 1e-9)
        width = 30
        filled = int(width * done / max(total, 1))
        out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} texts {done / elapsed:,.0f}/s")
        out.flush()
        state["drawn"] = True

    return report
