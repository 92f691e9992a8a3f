"""The scripted debugger of a config: breakpoints by symbol or address with an action each (count,
log registers, remove after N hits, single-step K), random insert/remove toggles for stress runs, and
the forced stale-exit race. A front end of cosim/userspace/debugger.py.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass

from ..isa import DebugStatus
from .breakpoints import BreakpointError, Verdict
from .debugger import Debugger, Stop
from .vm import VmError

REGISTER_LOG_LIMIT = 200


@dataclass
class Planned:
    name: str
    address: int
    action: str = "count"
    hits: int | None = None
    steps: int | None = None
    inserted: bool = False
    arm_on: str | None = None


class ScriptedDebugger:
    def __init__(self, dbg: Debugger, debug_cfg: dict, resolve, symbol_at=None,
                 clock=time.monotonic, wall: bool = True):
        """`clock`: seconds, for the stress toggles' times; `wall` False when it is virtual (the
        deterministic schedule's: only `tick` at the instants it names, never on a timeout)."""
        self.clock = clock
        self.wall = wall
        self.dbg = dbg
        self.resolve = resolve
        self.symbol_at = symbol_at or (lambda a: None)
        self.plan: dict[int, Planned] = {}
        for bp in debug_cfg.get("breakpoints", []):
            addr = resolve(bp["at"])
            self.plan[addr] = Planned(str(bp["at"]), addr, bp.get("action", "count"), bp.get("hits"),
                                      bp.get("steps"), arm_on=bp.get("arm_on"))
        stress = debug_cfg.get("stress") or None
        self.toggle_addrs = [resolve(a) for a in stress["toggle"]] if stress else []
        self.toggles_left = stress["toggles"] if stress else 0
        self.interval = tuple(stress["interval_ms"]) if stress else (1.0, 1.0)
        self.rng = random.Random(stress["seed"] if stress else 0)
        self.next_toggle = None
        race = debug_cfg.get("race") or None
        self.race_addr = resolve(race["at"]) if race else None
        self.race_after = race["after_hits"] if race else 0
        self.race_forced = 0
        self.stepping: dict[int, int] = {}
        self.register_log: list[dict] = []
        self.register_log_dropped = 0
        self.toggles_done = 0
        self.dbg.on_stop = self.on_stop

    # --- start --------------------------------------------------------------------------------------
    def start(self) -> None:
        with self.dbg.stopped():
            for p in self.plan.values():
                if p.arm_on is not None:
                    continue                  # planted when the console shows its text (`arm`)
                try:
                    self.dbg.insert(p.address)
                    p.inserted = True
                except (BreakpointError, VmError):
                    pass   # recorded in counters.refused / unmapped, reported as a finding
        if self.toggle_addrs:
            self._schedule()

    @property
    def waiting_to_arm(self) -> bool:
        return any(p.arm_on is not None and not p.inserted for p in self.plan.values())

    def arm(self, transcript: str) -> None:
        """Plant the breakpoints whose `arm_on` text the serial console has shown."""
        ready = [p for p in self.plan.values() if p.arm_on is not None and not p.inserted and p.arm_on in transcript]
        if not ready:
            return
        with self.dbg.stopped():
            for p in ready:
                try:
                    self.dbg.insert(p.address)
                    p.inserted = True
                except (BreakpointError, VmError):
                    p.arm_on = None           # refused (recorded in counters.refused): not tried again

    def _schedule(self) -> None:
        lo, hi = self.interval
        self.next_toggle = self.clock() + self.rng.uniform(lo, hi) / 1000.0

    # --- timers -------------------------------------------------------------------------------------
    def timeout(self) -> float | None:
        """Seconds until the scripted debugger wants `tick`, or None."""
        if self.next_toggle is None or not self.wall:
            return None
        return max(0.0, self.next_toggle - self.clock())

    def due(self) -> bool:
        return self.next_toggle is not None and self.clock() >= self.next_toggle

    def tick(self) -> None:
        if not self.due():
            return
        addr = self.rng.choice(self.toggle_addrs)
        p = self.plan[addr]
        try:
            if p.inserted:
                self.dbg.remove(addr)
            else:
                self.dbg.insert(addr)
            p.inserted = not p.inserted
        except BreakpointError:
            pass
        self.toggles_done += 1
        self.toggles_left -= 1
        if self.toggles_left > 0:
            self._schedule()
        else:
            self.next_toggle = None

    def stop_toggling(self) -> None:
        self.next_toggle = None

    # --- the forced stale-exit race ---------------------------------------------------------------
    def intercept(self, m) -> bool:
        """On the configured hit, remove the breakpoint while its exit is held in flight, then let the
        exit be processed (it must come out stale and be retried at the same PC)."""
        if self.race_addr is None or m.address != self.race_addr or m.status != DebugStatus.SOFTWARE:
            return False
        p = self.plan.get(m.address)
        if p is None or not p.inserted:
            return False
        seen = self.dbg.counters.hits.get(m.address, 0) + 1
        if seen != self.race_after:
            return False
        self.dbg.remove(m.address)
        p.inserted = False
        self.race_forced += 1
        self.race_addr = None
        return False   # processed now, after the removal: stale

    # --- stops --------------------------------------------------------------------------------------
    def on_stop(self, stop: Stop) -> None:
        dbg = self.dbg
        if stop.verdict is Verdict.STEP:
            left = self.stepping.get(stop.vcpu, 0) - 1
            self._log(stop, "step")
            if left <= 0:
                self.stepping.pop(stop.vcpu, None)
                dbg.set_singlestep(stop.vcpu, False)
            else:
                self.stepping[stop.vcpu] = left
            dbg.resume(stop.vcpu, stop.seq, "continue", pc=stop.pc)
            return
        p = self.plan.get(stop.address)
        action = p.action if p else "count"
        if action == "log-registers":
            self._log(stop, "hit")
        elif action == "remove-after" and dbg.counters.hits.get(stop.address, 0) >= (p.hits or 1):
            if p.inserted:
                dbg.remove(stop.address)
                p.inserted = False
            if stop.pc == stop.address and dbg.vm.ram.read_word(stop.pc) != dbg.state.debug_inst:
                dbg.resume(stop.vcpu, stop.seq, "continue", pc=stop.pc)
                return
        elif action == "single-step":
            self.stepping[stop.vcpu] = p.steps or 1
            dbg.set_singlestep(stop.vcpu, True)
        dbg.resume_over(stop)

    def _log(self, stop: Stop, what: str) -> None:
        if len(self.register_log) >= REGISTER_LOG_LIMIT:
            self.register_log_dropped += 1
            return
        regs = self.dbg.vm.registers(stop.vcpu)
        self.register_log.append({"vcpu": stop.vcpu, "what": what, "pc": stop.pc,
                                  "symbol": self.symbol_at(stop.pc), "regs": regs})

    def stats(self) -> dict:
        return {"register_log": self.register_log, "register_log_dropped": self.register_log_dropped,
                "toggles": self.toggles_done,
                "race_forced": self.race_forced,
                "planned": {f"{p.address:#x}": p.name for p in self.plan.values()}}
