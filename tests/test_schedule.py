"""The deterministic schedule's pure parts (issue 9), without processes: the seeded choices
(cosim/schedule.py), the Sync barrier a process answers (cosim/lockstep.py) over a fake endpoint, and
the seed lists of `cosim hunt`."""
from __future__ import annotations

import pytest

from cosim import wire
from cosim.hunt import parse_seeds
from cosim.lockstep import Barrier, Driver, Stuck, met
from cosim.schedule import NOMINAL_IPS, Deliver, Run, Schedule, to_seconds, to_vtime


def sequence(seed, n=200, runnable=(0, 1, 2, 3), held=(2,)):
    s = Schedule(seed, (10, 1000))
    return [s.next(runnable, held) for _ in range(n)]


def test_same_seed_same_choices_and_another_seed_others():
    assert sequence(7) == sequence(7)
    assert sequence(7) != sequence(8)


def test_choices_stay_within_what_is_possible():
    s = Schedule(3, (10, 1000))
    for _ in range(500):
        a = s.next([0, 3], [1])
        assert (isinstance(a, Run) and a.vcpu in (0, 3) and 10 <= a.instructions <= 1000) or a == Deliver(1)
    assert s.next([], []) is None
    assert all(s.next([], [2]) == Deliver(2) for _ in range(20))      # nothing else can go
    assert {type(s.next([1], [0])) for _ in range(200)} == {Run, Deliver}


def test_order_of_the_lists_does_not_matter():
    a, b = Schedule(5, (1, 99)), Schedule(5, (1, 99))
    assert [a.next([2, 0, 1], [3]) for _ in range(50)] == [b.next([0, 1, 2], [3]) for _ in range(50)]


@pytest.mark.parametrize("quantum", [(0, 5), (6, 5)])
def test_a_bad_quantum_is_refused(quantum):
    with pytest.raises(ValueError):
        Schedule(1, quantum)


def test_virtual_time_maps_milliseconds_onto_instructions():
    assert to_vtime(0.001) == NOMINAL_IPS // 1000
    assert to_seconds(to_vtime(2.5)) == 2.5


# --- the barrier ---------------------------------------------------------------------------------------
class FakeEp:
    name = "kernel"

    def __init__(self):
        self.got: dict[str, int] = {}
        self.to: dict[str, int] = {"vcpu0": 4}
        self.out: list = []

    def send(self, dest, msg):
        self.out.append((dest, msg))


def test_barrier_answers_once_every_named_message_was_taken_and_handled():
    ep = FakeEp()
    backlog = ["x"]
    instants = []
    b = Barrier(ep, idle=lambda: not backlog, at_instant=instants.append, next_due=lambda: 77)
    assert b.take(wire.Sync(5, {"vcpu0": 2, "userspace": 1}, 1234), "supervisor")
    assert ep.out == []                                   # nothing taken yet
    ep.got = {"vcpu0": 2}
    b.check()
    assert ep.out == [] and instants == []                # userspace's message not yet
    ep.got["userspace"] = 3
    b.check()
    assert ep.out == []                                   # taken, but not handled (backlog)
    backlog.clear()
    b.check()
    assert instants == [1234]
    assert ep.out == [("supervisor", wire.Synced("kernel", 5, {"vcpu0": 4}, 77))]
    b.check()
    assert len(ep.out) == 1 and instants == [1234]        # answered once


def test_barrier_refuses_a_malformed_after_and_ignores_other_messages():
    ep = FakeEp()
    b = Barrier(ep)
    assert not b.take(wire.Pause(1), "userspace")
    assert b.take(wire.Sync(1, {"vcpu0": -1}), "supervisor")
    assert b.take(wire.Sync(2, {"vcpu0": "3"}), "supervisor")
    assert [type(m) for _, m in ep.out] == [wire.Error, wire.Error] and b.waiting is None


def test_met():
    assert met({"a": 3}, {"a": 3}) and met({"a": 3, "b": 1}, {}) and not met({}, {"a": 1})


@pytest.mark.parametrize("seed", [0, 1, 7, 2**40 + 3])
def test_runs_asked_at_once_are_the_choices_asked_one_by_one(seed):
    """Schedule.runs (a plan's steps in one call) draws exactly what next() would with nothing held."""
    for runnable, quantum in (([0, 1], (500, 20000)), ([3, 1, 2, 7], (1, 1)), ([5], (50, 2000))):
        one, many = Schedule(seed, quantum), Schedule(seed, quantum)
        assert [one.next(runnable, []) for _ in range(3000)] == many.runs(runnable, 3000)
        assert one.steps == many.steps and one.next(runnable, [1]) == many.next(runnable, [1])


# --- the driver, against scripted processes -------------------------------------------------------------
class Scripted:
    """Answers the driver as processes would: vCPU i runs its quanta; an exit every `exit_every`
    instructions is held, delivered, and answered by the kernel with one Resume."""

    def __init__(self, vcpus, halt_at=3000, exit_every=700):
        self.n = vcpus
        self.count = [0] * vcpus
        self.halt_at = halt_at
        self.exit_every = exit_every
        self.held = [False] * vcpus
        self.to = {f"vcpu{i}": {} for i in range(vcpus)} | {"kernel": {}, "userspace": {}}
        self.log: list = []
        self.queue: list = []
        self.grants: list = []       # (vcpu, instructions, vtime) of every quantum granted
        self.plans: list[int] = []   # the length of every plan handed out as a baton

    def bump(self, src, dest):
        self.to[src][dest] = self.to[src].get(dest, 0) + 1

    def send(self, dest, msg):
        self.log.append((dest, type(msg).__name__))
        if isinstance(msg, wire.Sync):
            self.queue.append(wire.Synced(dest, msg.seq, dict(self.to[dest])))
            return
        i = int(dest[4:])
        if isinstance(msg, wire.RunFor):
            self.grants.append((i, msg.instructions, msg.vtime))
        if isinstance(msg, wire.Deliver):
            self.held[i] = False
            self.bump(dest, "kernel")       # the exit, then the kernel's resume
            self.bump("kernel", dest)
            self.queue.append(wire.Ran(i, msg.seq, "delivered", self.count[i], dict(self.to[dest])))
            return
        if self.held[i]:
            why = "exit"
        elif self.count[i] >= self.halt_at:
            why = "halted"
        else:
            nxt = (self.count[i] // self.exit_every + 1) * self.exit_every
            end = min(self.count[i] + msg.instructions, self.halt_at)
            if nxt <= end:
                self.count[i], self.held[i], why = nxt, True, "exit"
            else:
                self.count[i], why = end, "budget"
        self.queue.append(wire.Ran(i, msg.seq, why, self.count[i], dict(self.to[dest])))

    def wait(self, pred, timeout_ms=None):
        if self.pending is not None:
            if timeout_ms is not None:
                return None                 # (vCPUs slower than the driver: it extends the plan meanwhile)
            self.run_plan(*self.pending)
            self.pending = None
        m = self.queue.pop(0)
        assert pred(m), m
        return m

    pending = None

    def baton(self, *plan):
        self.pending = [plan[0], list(plan[1]), *plan[2:]]

    def extend(self, steps):
        self.pending[1] += steps

    def run_plan(self, seq, steps, vtime, counts, next_due, due_synced):
        """The vCPUs handing a plan on (cosim/baton.py): each step a RunFor of its own; the run ends
        at the first step that does not end clean (or at a due timer), as VcpuGate's does."""
        assert counts == self.count
        self.plans.append(len(steps))
        for k, (i, n) in enumerate(steps):
            before = self.count[i]
            self.log.append((f"vcpu{i}", "Step"))
            self.send(f"vcpu{i}", wire.RunFor(seq, n, {}, vtime))
            ran = self.queue.pop()
            vtime += self.count[i] - before
            due = next_due is not None and vtime >= next_due and vtime != due_synced
            if ran.why != "budget" or due or k == len(steps) - 1:
                self.queue.append(ran._replace(steps=k + 1, counts=list(self.count)))
                return


def drive(seed, vcpus=3):
    s = Scripted(vcpus)
    d = Driver(Schedule(seed, (100, 900)), vcpus, ["kernel", "userspace"], s.send)
    d.run(s.wait)
    return s, d


def test_driver_runs_every_vcpu_to_its_end_and_settles_each_exit():
    s, d = drive(11)
    assert s.count == [3000, 3000, 3000] and d.status == ["halted"] * 3
    assert d.vtime == 9000
    deliveries = [k for k, (_, kind) in enumerate(s.log) if kind == "Deliver"]
    assert len(deliveries) == 3 * (3000 // 700)
    for k in deliveries:                # the kernel and then the vCPU confirm before anything else
        assert s.log[k + 1] == ("kernel", "Sync") and s.log[k + 2][1] == "Sync"


def drive_baton(seed, vcpus=3):
    s = Scripted(vcpus)
    d = Driver(Schedule(seed, (100, 900)), vcpus, ["kernel", "userspace"], s.send, s.baton, s.extend)
    d.run(s.wait)
    return s, d


@pytest.mark.parametrize("seed", range(1, 30))
def test_the_baton_grants_what_the_supervisor_would(seed):
    """Issue 22: plans handed on by the vCPUs grant the same quanta, in the same order, at the same
    virtual instants, with the same deliveries and settling, as a round trip per quantum."""
    classic, dc = drive(seed)
    baton, db = drive_baton(seed)
    assert baton.grants == classic.grants and baton.count == classic.count
    settling = [e for e in classic.log if e[1] != "RunFor"]          # deliveries and Syncs
    assert [e for e in baton.log if e[1] not in ("Step", "RunFor")] == settling
    assert db.schedule.steps == dc.schedule.steps and db.actions["runs"] == dc.actions["runs"]
    assert db.actions["batons"] <= dc.actions["runs"]


def test_a_plan_runs_whole_when_nothing_happens():
    s = Scripted(2, halt_at=200_000, exit_every=10**9)
    d = Driver(Schedule(3, (100, 900)), 2, ["kernel", "userspace"], s.send, s.baton, s.extend)
    d.run(s.wait)
    assert s.count == [200_000, 200_000]
    assert d.actions["batons"] * 20 < d.actions["runs"], dict(d.actions)   # plans grow while they run whole


def test_a_long_plan_cut_short_never_asks_for_more_than_the_baton_holds():
    """Plans grown to MAX_STEPS, then one cut after more than half of it (an exit every ~1,200 quanta:
    Linux's boot on one vCPU met it): the next plan is still at most MAX_STEPS long (it once asked for
    twice the steps taken, and the baton refused it)."""
    from cosim.baton import MAX_STEPS
    every = MAX_STEPS * 500 * 117 // 100              # (quanta of 500 on average: ~1.17 x MAX_STEPS)
    s = Scripted(1, halt_at=5 * every, exit_every=every)
    d = Driver(Schedule(2, (100, 900)), 1, ["kernel", "userspace"], s.send, s.baton, s.extend)
    d.run(s.wait)
    assert s.count == [5 * every]
    assert max(s.plans) == MAX_STEPS and all(n <= MAX_STEPS for n in s.plans), s.plans


def test_driver_is_a_function_of_its_seed():
    assert drive(4)[0].log == drive(4)[0].log
    assert drive(4)[0].log != drive(5)[0].log


def test_driver_says_when_no_vcpu_can_run():
    s = Scripted(2)
    d = Driver(Schedule(1, (100, 900)), 2, [], s.send)

    def wait(pred, timeout_ms=None):
        m = s.queue.pop(0)
        return m._replace(why="paused") if isinstance(m, wire.Ran) else m
    with pytest.raises(Stuck, match="no vCPU can run: vcpu0 \\(blocked\\), vcpu1 \\(blocked\\)"):
        d.run(wait)


# --- seeds ---------------------------------------------------------------------------------------------
def test_seed_lists():
    assert parse_seeds("1-5") == [1, 2, 3, 4, 5]
    assert parse_seeds("7, 1-3,2") == [7, 1, 2, 3]
    for bad in ("", "5-1", "a", "1-", "-3", "1-2000000"):
        with pytest.raises(ValueError):
            parse_seeds(bad)
