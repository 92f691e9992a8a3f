"""How long gdb has held the world stopped: the supervisor's wall limit does not count that time.

Userspace keeps the clock (`HoldClock.set` at every stop and resume of the world) and reports it to
the supervisor at most every REPORT_S, from its timer, as one `Log(level="gdb-hold")` whose text is
`parse`d back: the total so far and, while held, since when (CLOCK_MONOTONIC, one clock for every
process on the machine). A message at every transition woke the supervisor twice per gdb stop, on the
path of the stop reply and of the resume. Pure: no sockets.
"""
from __future__ import annotations

import time

REPORT_S = 0.05
LEVEL = "gdb-hold"


class HoldClock:
    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.total = 0.0                 # seconds held, closed intervals
        self.since: float | None = None  # held since (monotonic), or None while running
        self.dirty = False
        self.sent_at = float("-inf")

    @property
    def held(self) -> bool:
        return self.since is not None

    def set(self, held: bool) -> None:
        if held == self.held:
            return
        now = self.clock()
        if held:
            self.since = now
        else:
            self.total += now - self.since
            self.since = None
        self.dirty = True

    def due_in(self) -> float | None:
        """Seconds until a report is due (0: now), or None when there is nothing new to report."""
        if not self.dirty:
            return None
        return max(0.0, self.sent_at + REPORT_S - self.clock())

    def report(self) -> str:
        """The text to send now (marks it sent)."""
        self.dirty = False
        self.sent_at = self.clock()
        return format_hold(self.total, self.since)


def format_hold(total: float, since: float | None) -> str:
    return f"{total:.6f} {'-' if since is None else f'{since:.6f}'}"


def parse(text: str) -> tuple[float, float | None]:
    """(total, since) from a report; ValueError if it is not one."""
    total, since = text.split()
    return float(total), None if since == "-" else float(since)
