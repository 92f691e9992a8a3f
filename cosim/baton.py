"""The baton: a run of the deterministic schedule's quanta that the vCPUs hand to each other directly,
without a supervisor round trip per quantum (issue 22).

The supervisor's Driver (cosim/lockstep.py) asks the schedule ahead for the quanta it would grant if
every vCPU stayed runnable and nothing happened: a *plan*, [(vcpu, instructions), ...]. It writes the
plan here and wakes the first vCPU. A vCPU whose turn it is runs its quantum, then:

- if the quantum ended clean (its budget reached, no message sent to any process of the run, no timer
  of userspace due at the new virtual instant), it passes the turn to the plan's next vCPU (itself:
  no wake-up at all), exactly as the supervisor would have after settling a step that changed nothing;
- otherwise, or at the end of the plan, the run ends: the vCPU answers the supervisor with one Ran
  naming how many steps were taken and every vCPU's instruction count, and the supervisor rewinds the
  schedule to that step (it replays its choices from the plan's start: same seed, same answers).

So a run of clean quanta costs one hand-over per change of vCPU and one Ran at the end, instead of a
RunFor and a Ran each. Most of a plan does not even reach Python: the vCPU's block hook ends a clean
quantum itself, begins the next if it is its own, or passes the turn and waits inside the hook for it to
come back (cosim/vcpu/_icount.c cosim_baton_next; the protocol in cosim/baton.h, reached through
`link`), and hands whatever it cannot decide to the Python steps below. A vCPU waiting while another
holds the turn spins on `turn` for up to SPIN_NS (a quantum is ~25 us of guest code, a process wake-up
through the FIFO a good part of that), when the host has a CPU for each vCPU (more spinners than CPUs
would take the running vCPU's); then it sleeps: in its poll (a passer writes its FIFO byte) or, inside
the hook, on a futex (a passer wakes it). Every
choice the seed makes, every instant userspace's timers run at, and what each process has taken when
the next step starts are the same (tests/test_schedule.py compares the two drivers' grants; tests/test_deterministic.py
the digests).

Invariants: only the vCPU whose turn it is writes the header (and its own count); the supervisor writes
only while no turn is out (turn = -1). The header's `turn` is written last. The FIFO carries no data:
its bytes only wake the poll, the baton says whose turn it is.

Layout of the shared block: the header (HEADER), then `counts` (u64 per vCPU: instruction counts as
the run goes), `spinning` (i32 per vCPU, padded to 8 bytes: how that vCPU waits for its turn,
cosim/baton.h), then the plan (PLAN_STEP x MAX_STEPS).
"""
from __future__ import annotations

import ctypes
import os
from typing import NamedTuple

import numpy as np

from .machine.shm import SharedBlock

try:
    from . import _baton
except ImportError:  # pragma: no cover - the extension is built by ./setup.sh
    _baton = None

MAX_STEPS = 8192
NONE = -1
SPIN_NS = 100_000     # how long a vCPU spins for its turn before it sleeps in its poll (the default)

HEADER = np.dtype([("seq", "<u8"), ("vtime", "<u8"), ("next_due", "<i8"), ("due_synced", "<i8"),
                   ("length", "<u4"), ("index", "<u4"), ("turn", "<i4"), ("pad", "<u4")])
PLAN_STEP = np.dtype([("vcpu", "<u4"), ("instructions", "<u4")])
FIFO = "baton-vcpu{}"
LINK_FIFOS = _baton.MAX_VCPUS if _baton is not None else 0   # baton.h BATON_MAX_VCPUS


class Link(ctypes.Structure):
    """baton.h baton_link: one vCPU's view of the block, for the C side."""
    _fields_ = [("header", ctypes.c_void_p), ("counts", ctypes.c_void_p), ("spinning", ctypes.c_void_p),
                ("plan", ctypes.c_void_p), ("own", ctypes.c_int64), ("vcpus", ctypes.c_int64),
                ("spin_ns", ctypes.c_uint64), ("fifo", ctypes.c_int64 * LINK_FIFOS)]


if _baton is not None and ctypes.sizeof(Link) != _baton.LINK_SIZE:   # (the mirror out of step with C)
    raise ImportError(f"cosim.baton.Link is {ctypes.sizeof(Link)} bytes, baton.h's baton_link {_baton.LINK_SIZE}")


class Step(NamedTuple):
    """A step taken from the baton: as a RunFor (no `after`: the run starts settled)."""
    seq: int
    instructions: int
    vtime: int


class Baton:
    """Both sides: `create` (supervisor: the block and one FIFO per vCPU in the run directory) and
    `attach` (a vCPU)."""

    def __init__(self, block: SharedBlock, vcpus: int, run_dir: str, own: int | None, spin_ns: int = 0):
        self.block = block
        self.vcpus = vcpus
        self.run_dir = run_dir
        buf = block.buf
        self.header = np.frombuffer(buf, HEADER, count=1)
        off = HEADER.itemsize
        self.counts = np.frombuffer(buf, "<u8", count=vcpus, offset=off)
        off += 8 * vcpus
        self.spinning = np.frombuffer(buf, "<i4", count=vcpus, offset=off)
        off += _spinning_size(vcpus)
        self.plan = np.frombuffer(buf, PLAN_STEP, count=MAX_STEPS, offset=off)
        self._plan_vcpu, self._plan_n = self.plan["vcpu"], self.plan["instructions"]
        self._h = {n: self.header[n] for n in HEADER.names}
        self.own = own
        self.spin_ns = spin_ns if _baton is not None and vcpus <= (os.cpu_count() or 1) else 0
        self._fds: dict[int, int] = {}           # vcpu -> our descriptor of its FIFO
        self.link: Link | None = None            # a vCPU's, for the C side (None without _baton)
        self.link_address = 0
        if own is not None:
            for i in range(vcpus):
                self._fds[i] = os.open(self._fifo(i), os.O_RDWR | os.O_NONBLOCK)
            if _baton is not None and vcpus <= LINK_FIFOS:
                fifos = [self._fds[i] for i in range(vcpus)] + [-1] * (LINK_FIFOS - vcpus)
                self.link = Link(self.header.ctypes.data, self.counts.ctypes.data, self.spinning.ctypes.data,
                                 self.plan.ctypes.data, own, vcpus, self.spin_ns, (ctypes.c_int64 * LINK_FIFOS)(*fifos))
                self.link_address = ctypes.addressof(self.link)

    @staticmethod
    def size(vcpus: int) -> int:
        return HEADER.itemsize + 8 * vcpus + _spinning_size(vcpus) + PLAN_STEP.itemsize * MAX_STEPS

    @classmethod
    def create(cls, vcpus: int, run_dir: str) -> "Baton":
        b = cls(SharedBlock.create(cls.size(vcpus), prefix="cosim-baton"), vcpus, run_dir, None)
        b.header[0] = np.zeros(1, HEADER)[0]
        b._h["turn"][0] = NONE
        for i in range(vcpus):
            os.mkfifo(b._fifo(i), 0o600)
        return b

    @classmethod
    def attach(cls, name: str, vcpus: int, run_dir: str, own: int, spin_ns: int = 0) -> "Baton":
        """A vCPU's side; it spins up to `spin_ns` for its turn (0: never; cosim/_baton.c)."""
        return cls(SharedBlock.attach(name), vcpus, run_dir, own, spin_ns)

    @property
    def name(self) -> str:
        return self.block.name

    def _fifo(self, i: int) -> str:
        return os.path.join(self.run_dir, FIFO.format(i))

    def wake(self, vcpu: int) -> None:
        fd = self._fds.get(vcpu)
        if fd is None:
            fd = self._fds[vcpu] = os.open(self._fifo(vcpu), os.O_RDWR | os.O_NONBLOCK)
        try:
            os.write(fd, b"t")
        except BlockingIOError:           # 64 KiB of wake-ups unread: it is awake anyway
            pass

    # --- supervisor --------------------------------------------------------------------------------
    def start(self, seq: int, steps: list[tuple[int, int]], vtime: int, counts: list[int],
              next_due: int | None, due_synced: int) -> None:
        """Hand out a plan (at most MAX_STEPS steps, each vCPU runnable, nothing in flight)."""
        h = self._h
        assert h["turn"][0] == NONE and 0 < len(steps) <= MAX_STEPS
        n = len(steps)
        self._plan_vcpu[:n] = [v for v, _ in steps]
        self._plan_n[:n] = [q for _, q in steps]
        self.counts[:] = counts
        h["seq"][0], h["vtime"][0] = seq, vtime
        h["next_due"][0] = NONE if next_due is None else next_due
        h["due_synced"][0] = due_synced
        h["length"][0], h["index"][0] = n, 0
        first = steps[0][0]
        h["turn"][0] = first                       # last: the turn is out
        self.wake(first)

    def extend(self, steps: list[tuple[int, int]]) -> None:
        """More steps at the end of the plan being run (the Driver asks the schedule while the vCPUs
        run): written past `length`, which no vCPU reads beyond, then `length` moved (x86 keeps the
        stores' order; a vCPU that reached the old end first ended the run there: nothing changes but
        where the next plan starts)."""
        h = self._h
        n = int(h["length"][0])
        assert n + len(steps) <= MAX_STEPS
        self._plan_vcpu[n:n + len(steps)] = [v for v, _ in steps]
        self._plan_n[n:n + len(steps)] = [q for _, q in steps]
        h["length"][0] = n + len(steps)

    # --- vCPU ----------------------------------------------------------------------------------------
    def fds(self) -> tuple[int, ...]:
        return (self._fds[self.own],) if self.own is not None else ()

    def drain(self) -> None:
        try:
            while os.read(self._fds[self.own], 4096):
                pass
        except BlockingIOError:
            pass

    def wait_mine(self) -> bool:
        """While another vCPU holds the turn: spin up to `spin_ns` for it to come to this vCPU. True if
        it did (the caller takes its step without polling). Not while no turn is out (the supervisor
        settles: a round trip, too long to spin through)."""
        turn = int(self._h["turn"][0])
        if turn == self.own:
            return True
        if turn == NONE or not self.spin_ns or not self.link_address:
            return False
        return _baton.wait_turn(self.link_address)

    def mine(self) -> Step | None:
        """The step to run now if the turn is this vCPU's."""
        h = self._h
        if h["turn"][0] != self.own:
            return None
        i = int(h["index"][0])
        return Step(int(h["seq"][0]), int(self._plan_n[i]), int(h["vtime"][0]))

    def done(self, ran: int, count: int, clean: bool) -> bool:
        """This vCPU's step is over: `ran` instructions (its count now `count`). Clean: pass the turn on
        if the plan goes on and no timer is due. Returns True if the turn went on (to this vCPU too),
        False if the run ends here (the caller answers the supervisor; the turn is then none's)."""
        h = self._h
        vtime = int(h["vtime"][0]) + ran
        index = int(h["index"][0]) + 1
        h["vtime"][0], h["index"][0] = vtime, index
        self.counts[self.own] = count
        due = int(h["next_due"][0])
        if (clean and index < int(h["length"][0])
                and not (due != NONE and vtime >= due and vtime != int(h["due_synced"][0]))):
            nxt = int(self._plan_vcpu[index])
            if nxt == self.own:
                h["turn"][0] = nxt
            elif not self.link_address:
                h["turn"][0] = nxt
                self.wake(nxt)
            elif _baton.pass_turn(self.link_address, nxt):
                self.wake(nxt)                     # (asleep in its poll, not watching the turn)
            return True
        if self.link_address:
            _baton.end_run(self.link_address)      # (and every vCPU asleep in its hook wakes)
        else:
            h["turn"][0] = NONE
        return False

    def taken(self) -> tuple[int, list[int]]:
        """(steps taken, every vCPU's instruction count): for the Ran that ends the run."""
        return int(self._h["index"][0]), [int(c) for c in self.counts]

    def close(self) -> None:
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()
        self.link, self.link_address = None, 0
        self.header = self.counts = self.spinning = self.plan = self._plan_vcpu = self._plan_n = None
        self._h = {}
        self.block.close()


def _spinning_size(vcpus: int) -> int:
    return (4 * vcpus + 7) & ~7
