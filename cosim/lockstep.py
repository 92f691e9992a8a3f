"""Lockstep: how the processes run a deterministic schedule (cosim/schedule.py) over asynchronous
sockets. Three sides, each a narrow object its process calls:

- `Driver` (supervisor): asks the schedule for the next action, sends it (RunFor or Deliver to one
  vCPU), waits for the vCPU's Ran, then *settles*: every process whose inputs changed is sent Sync and
  answers Synced once it has taken and handled them. Only then is the next action chosen, so every
  consequence of an action (the kernel's decision, userspace's stop-all, patches and flushes, the
  resume) is applied before the next guest instruction runs anywhere.
- `VcpuGate` (vCPU): runs guest code only inside a RunFor, up to an exact instruction count (the
  engine's budget stop); holds an exit instead of sending it (the schedule delivers it later: other
  vCPUs may run meanwhile, as when a breakpoint is removed while its exit is in flight); answers Sync.
  `FreeRun` is the free-running mode's gate: it never holds anything.
- `Barrier` (kernel, userspace): answers Sync. Userspace runs its timers (stress toggles) there, at the
  virtual instant the Sync names, and nowhere else.

"Taken and handled" is made exact by counting: every endpoint counts the messages it sends to each
destination and takes from each sender (cosim/transport.py `to`, `got`). A Sync, RunFor or Deliver
names, per peer, how many messages the supervisor knows that peer has sent to the receiver (from the
peers' own Ran/Synced answers); the receiver first takes that many. ZeroMQ keeps each sender's order,
so nothing sent before is missed, whichever socket it travelled on.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Callable

from . import wire
from .baton import MAX_STEPS, SPIN_NS, Baton, Step
from .schedule import Deliver, Run, Schedule

MAX_SETTLE_ROUNDS = 100


def met(got: dict[str, int], after: dict) -> bool:
    return all(got.get(p, 0) >= n for p, n in after.items())


def valid_after(after: dict) -> bool:
    return all(type(p) is str and type(n) is int and n >= 0 for p, n in after.items())


class Barrier:
    """A process's answer to Sync. `idle()`: nothing taken is waiting to be handled (userspace keeps a
    backlog); `at_instant(vtime)`: run once the Sync is met, before answering (userspace's timers);
    `next_due()`: the virtual instant of the next timer, or None."""

    def __init__(self, ep, idle: Callable[[], bool] = lambda: True,
                 at_instant: Callable[[int], None] | None = None,
                 next_due: Callable[[], int | None] = lambda: None):
        self.ep = ep
        self.idle = idle
        self.at_instant = at_instant
        self.next_due = next_due
        self.waiting: tuple[wire.Sync, str] | None = None
        self._instant_done = False

    def take(self, m, sender: str) -> bool:
        """True if `m` was a Sync (taken here)."""
        if not isinstance(m, wire.Sync):
            return False
        if not valid_after(m.after):
            self.ep.send(sender, wire.Error("sync", "after: expected {peer: count >= 0}"))
            return True
        self.waiting = (m, sender)
        self._instant_done = False
        self.check()
        return True

    def check(self) -> None:
        """Call after handling each message: answers the Sync once it is met."""
        w = self.waiting
        if w is None or not self.idle() or not met(self.ep.got, w[0].after):
            return
        m, sender = w
        if self.at_instant is not None and not self._instant_done:
            self._instant_done = True
            self.at_instant(m.vtime)
            if not self.idle():
                return                   # what the timers took is handled first
        self.waiting = None
        self.ep.send(sender, wire.Synced(self.ep.name, m.seq, dict(self.ep.to), self.next_due()))


class FreeRun:
    """The free-running mode's gate: the vCPU runs whenever it can, exits go at once."""
    deterministic = False

    def may_run(self) -> bool:
        return True

    def hold(self, msg) -> bool:
        return False

    def take(self, m, sender: str) -> bool:
        return False

    def poll(self) -> None:
        pass

    def await_turn(self) -> bool:
        return False

    def bind_engine(self) -> None:
        pass

    def fds(self) -> tuple[int, ...]:
        return ()

    def close(self) -> None:
        pass


class VcpuGate:
    """A vCPU's side of the deterministic schedule. Uses of the vCPU process `p`: its endpoint `ep`,
    run page `page` (instruction count), `engine` (budget), `index`, `max_instructions`, its state
    flags `halted`, `paused`, `pending`, `exit_t0` (when the exit in flight was sent), and its tracer
    `trace` (whose virtual clock follows the grants)."""
    deterministic = True

    def __init__(self, p, baton: Baton | None = None, hook: bool = True) -> None:
        self.p = p
        self.hook = hook                  # the engine's block hook may run the baton's quanta (bind_engine)
        self.barrier = Barrier(p.ep)
        self.grant: wire.RunFor | Step | None = None
        self.running = False              # the grant's `after` is met and it has not ended
        self.delivery: wire.Deliver | None = None
        self.held: wire.ExitMsg | None = None
        self.baton = baton                # runs of quanta handed on between vCPUs (cosim/baton.py)
        self._sent: dict[str, int] = {}   # what this vCPU had sent when a baton step started
        self._spun = False                # the turn came while spinning for it (no FIFO byte to read)

    def await_turn(self) -> bool:
        """Before the vCPU sleeps in its poll: if another vCPU holds the baton, spin briefly for the
        turn to come here (cosim/baton.py SPIN_NS). True when it is this vCPU's: take it at once."""
        p = self.p
        if self.baton is None or self.grant is not None or p.halted or p.pending is not None or p.paused:
            return False
        self._spun = self.baton.wait_mine()
        return self._spun

    def bind_engine(self) -> None:
        """Once the vCPU's engine exists: its block hook runs the plan's quanta that need nothing from
        Python (cosim/baton.h). Not while tracing: the tracer follows each quantum from here."""
        p = self.p
        if self.baton is not None and self.baton.link_address and self.hook and not p.trace.enabled:
            p.engine.follow_baton(self.baton.link_address, p.max_instructions)
            p.core.quiet = self.quiet

    def quiet(self) -> bool:
        """A baton quantum is running and this vCPU has sent nothing to another process since it began:
        if it ended now it would end clean (the block hook may then run the next)."""
        return isinstance(self.grant, Step) and _quiet(self._sent, self.p.ep.to)

    def fds(self) -> tuple[int, ...]:
        """What the vCPU's idle wait also watches: the baton's wake-ups."""
        return self.baton.fds() if self.baton is not None else ()

    def close(self) -> None:
        if self.baton is not None:
            self.baton.close()

    def count(self) -> int:
        return int(self.p.page["instructions"])

    def may_run(self) -> bool:
        # (in_quantum: False once the engine's block hook passed this quantum's turn on)
        return self.running and self.p.engine.in_quantum

    def hold(self, msg) -> bool:
        self.held = msg
        return True

    def take(self, m, sender: str) -> bool:
        if self.barrier.take(m, sender):
            return True
        if isinstance(m, (wire.RunFor, wire.Deliver)):
            tag = "run_for" if isinstance(m, wire.RunFor) else "deliver"
            if not valid_after(m.after) or (isinstance(m, wire.RunFor) and m.instructions < 1):
                self.p.ep.send(sender, wire.Error(tag, "after: expected {peer: count >= 0}, "
                                                       "instructions >= 1"))
            elif self.grant is not None or self.delivery is not None:
                self.p.ep.send(sender, wire.Error(tag, "one RunFor or Deliver at a time"))
            elif isinstance(m, wire.RunFor):
                self.grant = m
            else:
                self.delivery = m
            return True
        return False

    def poll(self) -> None:
        """Once per turn of the vCPU's loop: start, end or refuse the grant; deliver; answer Sync."""
        self.barrier.check()
        got = self.p.ep.got
        d = self.delivery
        if d is not None and met(got, d.after):
            self.delivery = None
            sent = self.held is not None
            if self.held is not None:
                self.p.trace.see(d.vtime)
                self.p.trace.handoff(self.p.page)
                self.p.ep.send("kernel", self.held)
                self.p.exit_t0 = time.perf_counter_ns()    # its round trip starts now, not at the hold
                self.held = None
            self._ran(d.seq, "delivered" if sent else "nothing")
        while self._step():
            pass

    def _step(self) -> bool:
        """Start, end or refuse the grant (or the baton's step). True when a baton step ended clean
        and the turn stayed with this vCPU: the next one starts at once."""
        g = self.grant
        if g is not None and self.running and isinstance(g, Step) and not self.p.engine.in_quantum:
            g = self.grant = None         # the block hook ended the quantum and passed the turn on
            self.running = False
        if g is None and self.baton is not None:
            if not self._spun:
                self.baton.drain()
            self._spun = False
            g = self.grant = self.baton.mine()
            if g is not None:
                self._sent = dict(self.p.ep.to)
        if g is None:
            return False
        p = self.p
        if not self.running:
            if isinstance(g, wire.RunFor) and not met(p.ep.got, g.after):
                return False
            self.running = True
            p.trace.follow(g.vtime, self.count(), self.count)
            target = self.count() + g.instructions
            exact = False        # a quantum ends at the last block boundary within it (no steps)
            if p.max_instructions and p.max_instructions <= target:
                target, exact = p.max_instructions, True           # the limit is exact
            p.engine.set_budget(target, exact)
        why: str | None = None
        if p.halted:
            why = "halted"
        elif self.held is not None:
            why = "exit"
        elif p.pending is not None:
            why = "in-exit"
        elif p.paused:
            why = "paused"
        elif p.held:                 # a secondary in the spin table: blocked until userspace releases it
            why = "paused"
        elif p.engine.budget_done:
            why = "budget"
        if why is None:
            return False
        self.grant = None
        self.running = False
        if not isinstance(g, Step):
            self._ran(g.seq, why)
            return False
        assert self.baton is not None
        n = self.count()
        clean = why == "budget" and _quiet(self._sent, p.ep.to)
        if self.baton.done(n - p.engine.quantum_start, n, clean):   # (a quantum the hook began, too)
            return self.baton.mine() is not None
        steps, counts = self.baton.taken()
        p.ep.send("supervisor", wire.Ran(p.index, g.seq, why, n, dict(p.ep.to), steps, counts))
        return False

    def _ran(self, seq: int, why: str) -> None:
        p = self.p
        p.ep.send("supervisor", wire.Ran(p.index, seq, why, self.count(), dict(p.ep.to)))


def _quiet(before: dict[str, int], now: dict[str, int]) -> bool:
    """Nothing sent to a process of the run since `before` (the supervisor's Log lines aside)."""
    return all(n == before.get(d, 0) for d, n in now.items() if d != "supervisor")


def vcpu_gate(spec: dict, p) -> FreeRun | VcpuGate:
    if spec.get("schedule", {}).get("mode") != "deterministic":
        return FreeRun()
    name = spec.get("baton_name")
    return VcpuGate(p, Baton.attach(name, spec["vcpus"], spec["run_dir"], p.index, spec.get("baton_spin_ns", SPIN_NS))
                    if name else None, spec.get("baton_hook", True))


def _not_running(pred, timeout_ms=None):
    raise RuntimeError("Driver.wait before Driver.run")


class Stuck(RuntimeError):
    """No vCPU can run and none holds an exit, yet not all halted."""


class Driver:
    """The supervisor's side. `send(dest, msg)`; `run(wait)`, `wait(pred, timeout_ms=None) -> msg` (None
    once timeout_ms passed with nothing that matches: timeout_ms 0 takes only what is there): the supervisor's
    receive loop (it handles every other message, and raises to end the run on a death or the wall
    limit)."""
    BLOCKED = ("paused", "in-exit")

    PLAN_MIN = 4
    FIRST = 16                        # steps of a plan asked before it is handed out; the rest are asked,
    MORE = 256                        # MORE at a time, while the vCPUs run it (`extend`)

    def __init__(self, schedule: Schedule, vcpus: int, services: list[str], send, baton=None, extend=None):
        self.schedule = schedule
        self.baton = baton            # baton(seq, steps, vtime, counts, next_due, due_synced): hand a plan out
        self.extend = extend          # extend(steps): more steps at the end of the plan being run
        self.plan_len = 16            # how far ahead the next plan asks (grows while plans run whole)
        self.n = vcpus
        self.vcpus = [f"vcpu{i}" for i in range(vcpus)]
        self.names = list(services) + self.vcpus
        self.send = send
        self.wait: Callable = _not_running
        self.sent: dict[str, dict[str, int]] = {n: {} for n in self.names}
        self.synced: dict[str, dict | None] = {n: None for n in self.names}
        self.instructions = [0] * vcpus
        self.status = ["ready"] * vcpus      # ready | held | blocked | halted
        self.blocked_at: dict[int, dict] = {}
        self.next_due: int | None = None
        self._due_synced = -1                 # the instant userspace last ran its timers at
        self.seq = 0
        self.actions: Counter = Counter()    # runs, deliveries, syncs: what determinism costs

    @property
    def vtime(self) -> int:
        return sum(self.instructions)

    def after(self, name: str) -> dict[str, int]:
        return {p: c[name] for p, c in self.sent.items() if c.get(name)}

    def run(self, wait) -> None:
        """Until every vCPU halted."""
        self.wait = wait
        self.settle(force=True)
        while True:
            for i, at in list(self.blocked_at.items()):     # inputs changed since: try again
                if self.after(self.vcpus[i]) != at:
                    del self.blocked_at[i]
                    self.status[i] = "ready"
            ready = [i for i, s in enumerate(self.status) if s == "ready"]
            held = [i for i, s in enumerate(self.status) if s == "held"]
            action = self.schedule.next(ready, held)
            if action is None:
                stuck = [f"vcpu{i} ({self.status[i]})" for i in range(self.n) if self.status[i] != "halted"]
                if stuck:
                    raise Stuck(f"deterministic schedule: no vCPU can run: {', '.join(stuck)}")
                return
            if isinstance(action, Run) and self.baton is not None:
                self._plan(action, ready, held)
                continue
            name = self.vcpus[action.vcpu]
            self.seq += 1
            after = self.after(name)
            if isinstance(action, Run):
                self.actions["runs"] += 1
                self.send(name, wire.RunFor(self.seq, action.instructions, after, self.vtime))
            else:
                assert isinstance(action, Deliver)
                self.actions["deliveries"] += 1
                self.send(name, wire.Deliver(self.seq, after, self.vtime))
            seq = self.seq
            ran = self.wait(lambda m, seq=seq: isinstance(m, wire.Ran) and m.seq == seq)
            self.synced[name] = after
            self._ran(ran)
            self.settle()

    def _plan(self, first: Run, ready: list[int], held: list[int]) -> None:
        """Ask the schedule ahead for the runs it would grant if each ended clean (nothing sent, no
        timer due: then nothing changes between them), hand them out as one baton (cosim/baton.py),
        and come back to the step the vCPUs stopped at: the choices after it are asked again. Only
        the first steps are asked before the baton goes out; the rest (up to plan_len) while the
        vCPUs run it, so that asking (~3 us a step) is not added to every quantum's cost."""
        mark = self.schedule.save()                        # (after `first`)
        plan = [first]
        cut = False

        def ask(upto: int) -> list[Run]:
            nonlocal cut
            if not held:                                    # (only runs: asked in one call)
                more = self.schedule.runs(ready, upto - len(plan))
                plan.extend(more)
                return more
            more = []
            while not cut and len(plan) + len(more) < upto:
                a = self.schedule.next(ready, held)
                if not isinstance(a, Run):
                    cut = True                              # a delivery comes next: the plan ends
                    break
                more.append(a)
            plan.extend(more)
            return more

        ask(self.plan_len if self.extend is None else min(self.plan_len, self.FIRST))
        self.seq += 1
        seq = self.seq
        self.baton(seq, [(a.vcpu, a.instructions) for a in plan], self.vtime, list(self.instructions),
                   self.next_due, self._due_synced)

        def done(m) -> bool:
            return isinstance(m, wire.Ran) and m.seq == seq
        ran = None
        while self.extend is not None and not cut and len(plan) < self.plan_len:
            ran = self.wait(done, 0)
            if ran is not None:
                break
            more = ask(min(self.plan_len, len(plan) + self.MORE))
            if more:
                self.extend([(a.vcpu, a.instructions) for a in more])
        if ran is None:
            ran = self.wait(done)
        taken = ran.steps
        if not 1 <= taken <= len(plan) or len(ran.counts) != self.n or plan[taken - 1].vcpu != ran.vcpu:
            raise Stuck(f"deterministic schedule: baton of {len(plan)} step(s) answered with {taken} "
                        f"step(s) and {len(ran.counts)} count(s)")
        if taken < len(plan) or cut:         # (ran whole and nothing asked beyond: already there)
            self.schedule.restore(mark)
            if not held:
                self.schedule.runs(ready, taken - 1)
            else:
                for _ in range(taken - 1):
                    self.schedule.next(ready, held)
        if (taken == len(plan) and not cut) or ran.why == "budget":
            # (ran whole; or its last quantum ended clean: it ran out of the steps asked so far, or met
            # a timer instant, and the next plan goes on from there)
            self.plan_len = min(MAX_STEPS, 2 * self.plan_len)
        elif taken < len(plan):
            self.plan_len = min(MAX_STEPS, max(self.PLAN_MIN, 2 * taken))   # (a long run cut short: the
                                                                            # baton holds MAX_STEPS at most)
        self.actions["runs"] += taken
        self.actions["batons"] += 1
        self.instructions = list(ran.counts)
        last = self.vcpus[ran.vcpu]
        self.synced[last] = self.after(last)
        self._ran(ran)
        self.settle()

    def _ran(self, m: wire.Ran) -> None:
        i = m.vcpu
        self.sent[self.vcpus[i]] = m.sent
        self.instructions[i] = m.instructions
        if m.why == "halted":
            self.status[i] = "halted"
        elif m.why == "exit":
            self.status[i] = "held"
        elif m.why in self.BLOCKED:
            self.status[i] = "blocked"
            self.blocked_at[i] = self.after(self.vcpus[i])
        else:
            self.status[i] = "ready"

    def settle(self, force: bool = False) -> None:
        """Sync every process whose inputs changed (and userspace when a timer is due), until none did."""
        for _ in range(MAX_SETTLE_ROUNDS):
            moved = False
            for name in self.names:
                need = self.after(name)
                due = (name == "userspace" and self.next_due is not None and self.vtime >= self.next_due
                       and self.vtime != self._due_synced)
                if force or due or need != self.synced[name]:
                    self._sync(name, need)
                    moved = True
            force = False
            if not moved:
                return
        raise Stuck(f"deterministic schedule: no quiescence after {MAX_SETTLE_ROUNDS} rounds of Sync")

    def _sync(self, name: str, need: dict[str, int]) -> None:
        self.seq += 1
        seq = self.seq
        self.actions["syncs"] += 1
        self.send(name, wire.Sync(seq, need, self.vtime))
        m = self.wait(lambda m: isinstance(m, wire.Synced) and m.seq == seq)
        self.sent[name] = m.sent
        self.synced[name] = need
        if name == "userspace":
            self.next_due = m.next_due
            self._due_synced = self.vtime

    def summary(self) -> dict:
        return {**self.schedule.describe(), "steps": self.schedule.steps, "vtime": self.vtime,
                **dict(self.actions)}
