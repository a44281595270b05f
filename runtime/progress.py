"""Progress on a terminal or in a log: one status line, redrawn in place on a terminal, one line per
update otherwise. The one display every command uses (``encode(show_progress=True)``, the build's and
the benchmark's bars, the corpus job's line).

No dependency: the line is carriage-returned and cleared, at most once per ``every`` seconds.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Callable, TextIO, Union

__all__ = ["LineDisplay", "Progress", "bar", "progress_reporter"]

logger = logging.getLogger(__name__)

Progress = Union[bool, Callable[[int, int], None]]


def bar(done: int, total: int, width: int = 30) -> str:
    """``[#####.....] done/total``."""
    filled = int(round(width * (done / total if total else 1.0)))
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"


class LineDisplay:
    """One status line on ``stream`` (default ``sys.stderr``): on a terminal redrawn in place, else
    written as a new line each time; at most one update per ``every`` seconds, except a ``final`` one.

    >>> show = LineDisplay(every=1.0)                    # doctest: +SKIP
    >>> show("3/10 shards"); show("10/10 shards", final=True)
    """

    def __init__(self, stream: TextIO | None = None, every: float = 0.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every
        self._last = float("-inf")
        self._open = False  # a terminal line drawn and not ended yet

    def __call__(self, line: str, final: bool = False) -> bool:
        """Show ``line``; returns False when skipped (too soon after the previous update)."""
        now = time.monotonic()
        if not final and now - self._last < self.every:
            return False
        self._last = now
        if self.tty:
            self.stream.write("\r\x1b[K" + line + ("\n" if final else ""))
            self._open = not final
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        return True

    def close(self) -> None:
        """End a line left open on a terminal."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False


def progress_reporter(progress: Progress, total: int, stream: TextIO | None = None) -> Callable[[int], None]:
    """A ``report(done)`` function for ``encode(..., show_progress=...)``; ``report(-1)`` ends the display.

    Args:
        progress: False (nothing), True (a bar on a terminal, else INFO logs), or a callable given
            ``(done, total)``.
        total: how many texts the work has.
        stream: where a bar goes (default ``sys.stderr``); a bar is drawn only on a terminal.
    """
    if callable(progress):
        return lambda done: progress(done, total) if done >= 0 else None
    if not progress:
        return lambda done: None
    display = LineDisplay(stream, every=0.1)
    start = time.monotonic()
    last_log = [float("-inf")]

    def report(done: int) -> None:
        if done < 0:
            display.close()
            return
        if not display.tty:
            now = time.monotonic()
            if done == total or now - last_log[0] >= 1.0:
                last_log[0] = now
                logger.info("encoded %d/%d texts", done, total)
            return
        rate = done / max(time.monotonic() - start, 1e-9)
        display(f"{bar(done, total)} texts {rate:,.0f}/s", final=done >= total)

    return report
