"""gdb's hold on the world (cosim/holdtime.py), without processes: the total held, reported at most
every REPORT_S (not at every stop and resume), and parsed back exactly by the supervisor."""
import pytest

from cosim import holdtime
from cosim.holdtime import REPORT_S, HoldClock, parse


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_total_and_since_follow_stops_and_resumes():
    c = Clock()
    h = HoldClock(c)
    assert h.due_in() is None                     # nothing to report yet
    h.set(True)
    c.t += 2.0
    h.set(False)
    c.t += 1.0
    h.set(True)
    h.set(True)                                   # no change: not a transition
    assert h.total == pytest.approx(2.0) and h.since == pytest.approx(103.0)
    total, since = parse(h.report())
    assert total == pytest.approx(2.0) and since == pytest.approx(103.0)


def test_reports_are_rate_limited_and_only_when_something_changed():
    c = Clock()
    h = HoldClock(c)
    h.set(True)
    assert h.due_in() == 0
    h.report()
    assert h.due_in() is None                     # nothing new
    for _ in range(31):                           # a burst of gdb stops and resumes, 1 ms apart
        c.t += 0.001
        h.set(not h.held)
    assert 0 < h.due_in() <= REPORT_S             # one report after the interval, not 31
    c.t += REPORT_S
    assert h.due_in() == 0
    total, since = parse(h.report())
    assert since is None and total == pytest.approx(0.016)


@pytest.mark.parametrize("text", ["", "1.0", "x -", "1.0 2.0 3.0"])
def test_an_unreadable_report_is_refused(text):
    with pytest.raises(ValueError):
        holdtime.parse(text)
