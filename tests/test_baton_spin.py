"""The baton's hand-over in C (cosim/_baton.c, issue 22): a vCPU waiting for its turn spins on the shared
`turn` word for a bounded time; the passer wakes it through its FIFO only when it is not spinning, and
no turn is ever left unseen (the waiter sees it, or the passer is told to wake it). Two processes on
a real shared block (cosim/baton.py), no sockets."""
import contextlib
import multiprocessing as mp
import select
import tempfile
import time

import pytest

from cosim import baton as baton_mod
from cosim.baton import NONE, Baton

pytestmark = pytest.mark.skipif(baton_mod._baton is None, reason="the C extension is built by ./setup.sh")


@contextlib.contextmanager
def batons(*spin_ns: int):
    """The supervisor's side, and one vCPU side per entry of `spin_ns` (vCPU i spins up to spin_ns[i])."""
    with tempfile.TemporaryDirectory() as d:
        sup = Baton.create(len(spin_ns), d)
        sides = []
        try:
            sides = [Baton.attach(sup.name, len(spin_ns), d, i, ns) for i, ns in enumerate(spin_ns)]
            yield sup, sides
        finally:
            for x in sides:
                x.close()
            sup.close()


def test_a_waiter_sees_a_turn_passed_while_it_spins_and_the_passer_need_not_wake_it():
    with batons(0, 2_000_000_000) as (sup, (a, b)):
        sup.start(1, [(0, 100), (1, 100)], 0, [0, 0], None, 0)
        assert a.mine() is not None and b.mine() is None
        ctx = mp.get_context("fork")
        seen = ctx.Value("i", -1)

        def wait():                              # vCPU 1: spins (2 s at most) for its turn
            seen.value = int(b.wait_mine())
        p = ctx.Process(target=wait)
        p.start()
        deadline = time.monotonic() + 10
        while int(b.spinning[1]) == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert int(b.spinning[1]) == 1                      # it announced itself
        a.drain()
        assert a.done(100, 100, clean=True)                 # vCPU 0 passes the turn on
        p.join(10)
        assert seen.value == 1                              # seen while spinning
        assert not _readable(b)                             # ... and none was written: it was spinning
        assert int(b.spinning[1]) == 0


def test_a_waiter_that_gave_up_is_woken_through_its_fifo():
    with batons(0, 1_000_000) as (sup, (a, b)):                 # vCPU 1 spins 1 ms
        sup.start(1, [(0, 100), (1, 100)], 0, [0, 0], None, 0)
        t0 = time.monotonic()
        assert not b.wait_mine()                   # nobody passes: it stops spinning, turn not seen
        assert time.monotonic() - t0 < 5 and int(b.spinning[1]) == 0
        a.drain()
        assert a.done(100, 100, clean=True)
        assert _readable(b)                        # asleep: the passer wrote its FIFO byte
        assert b.wait_mine() and b.mine() is not None


def test_no_spinning_while_no_turn_is_out_or_spin_is_off():
    with batons(0, 10_000_000_000) as (sup, (off, b)):
        assert int(sup.header["turn"][0]) == NONE
        t0 = time.monotonic()
        assert not b.wait_mine()                   # the supervisor settles: nothing to spin for
        sup.start(1, [(1, 100)], 0, [0, 0], None, 0)
        assert not off.wait_mine()                 # spin off: straight to the poll
        assert time.monotonic() - t0 < 5


def _readable(b: Baton) -> bool:
    return bool(select.select([b._fds[b.own]], [], [], 0)[0])
