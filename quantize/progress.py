"""A progress line for long judging: ``quint8_avx2: judged 4,096 / 21,166 sentences, 3 min 10 s, ~12 min left``.

Judging an int8 file in exact int8 arithmetic (a file for another CPU, :func:`onnxembed.quantize.reference.make_session`)
can take an hour on a base-size model; the build says how far it is at most once per :data:`EVERY` seconds.
"""

from __future__ import annotations

import time
from typing import Callable

__all__ = ["EVERY", "JudgeProgress", "format_duration"]

EVERY = 30.0  # seconds between two progress lines


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min 10 s``, ``1 h 02 min``."""
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class JudgeProgress:
    """Counts the texts judged so far and says so through ``say`` at most once per ``every`` seconds.

    Args:
        label: what is judged, e.g. the variant ``quint8_avx2``.
        total: how many texts the judging embeds in all.
        say: where a line goes (the build's ``progress`` callback).
        unit: ``sentences`` or ``pairs``.
        every: seconds between two lines (the first comes ``every`` seconds after the start).
        clock: a monotonic clock in seconds (injected by tests).

    >>> p = JudgeProgress("quint8_avx2", 21166, print)  # doctest: +SKIP
    >>> p.add(32)  # after each batch
    """

    def __init__(self, label: str, total: int, say: Callable[[str], None], *, unit: str = "sentences", every: float = EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.total, self.say, self.unit, self.every, self.clock = label, total, say, unit, every, clock
        self.done = 0
        self.started = self._last = clock()

    def add(self, n: int) -> None:
        """``n`` more texts judged; a line when ``every`` seconds passed since the last one."""
        self.done += n
        now = self.clock()
        if now - self._last < self.every:
            return
        self._last = now
        elapsed = now - self.started
        left = elapsed * (self.total - self.done) / self.done if 0 < self.done < self.total else 0.0
        minutes = int(round(left / 60))  # the estimate is rough: whole minutes once past one
        eta = f"~{format_duration(left)}" if left < 60 else f"~{minutes} min" if minutes < 60 else f"~{format_duration(left)}"
        self.say(f"{self.label}: judged {self.done:,} / {self.total:,} {self.unit}, {format_duration(elapsed)}, {eta} left")
