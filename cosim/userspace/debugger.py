"""Generic guest debugging in userspace (QEMU's kvm-all.c + target/ppc/kvm.c, with the strategy as
data): insert and remove breakpoints with every vCPU stopped, and decide each KVM_EXIT_DEBUG in QEMU's
order (single-step, hardware point, software breakpoint, else stale or re-inject).

Front ends (the scripted debugger of a config, the GDB stub) are told about hits through `on_stop` and
decide whether the vCPU goes on (`resume_*`) or stays stopped.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

from .. import wire
from ..isa import DebugStatus
from ..strategies import Match, Strategy
from .breakpoints import BreakpointError, DebugState, Verdict
from .vm import Vm, VmError


@dataclass
class Counters:
    hits: dict[int, int] = field(default_factory=dict)            # address -> debugger hits
    hits_by_vcpu: dict[int, int] = field(default_factory=dict)
    # front end ("script", "gdb") -> address -> hits of that front end's breakpoints: one execution of
    # an address two front ends break on is one hit of each (and one in `hits`)
    hits_by_owner: dict[str, dict[int, int]] = field(default_factory=dict)
    stale: dict[int, int] = field(default_factory=dict)           # address -> stale exits retried
    reinjected: dict[str, int] = field(default_factory=dict)      # event -> exits given back
    steps: int = 0
    watch: dict[int, int] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)   # software breakpoints on addresses nothing maps
    inserts: int = 0
    removes: int = 0
    # a debugger client moved PC past a tw/twi it was stopped at whose condition held (gdb's
    # permanent-breakpoint skip): the guest's trap went missing, or was delivered instead (gdb stub)
    traps_skipped: dict[int, int] = field(default_factory=dict)      # address -> count
    traps_delivered: dict[int, int] = field(default_factory=dict)    # address -> count
    # issue 20: every address a word was planted at (-> that word), and planted words the guest wrote
    # over before they were removed (-> the guest's word found there)
    patched: dict[int, int] = field(default_factory=dict)
    overwritten: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Stop:
    """A debug exit the debugger owns: the vCPU waits in its exit until resumed."""
    vcpu: int
    seq: int
    verdict: Verdict
    address: int
    status: int
    pc: int
    credited: tuple[str, ...] = ()   # the front ends this hit was counted for (hits_by_owner)


class Debugger:
    def __init__(self, vm: Vm, strategy: Strategy, debug_inst: int | None):
        self.vm = vm
        self.strategy = strategy
        self.state = DebugState(debug_inst)
        self.counters = Counters()
        self.on_stop = None                    # front end: callable(Stop) -> None
        self.hold = False                      # a front end keeps the world stopped (gdb all-stop)
        self._depth = 0
        self.pending_flush: set[int] = set()
        self.pending_flush_all = False
        self.deferred: list[wire.Resume] = []  # resumes decided while a front end held the world
        # (kind, address) -> front end -> uses: who asked for each breakpoint/point ("sw", "iac", or a
        # watch kind), so a hit is credited to the front ends that asked for it
        self.owners: dict[tuple[str, int], dict[str, int]] = {}

    def _own(self, kind: str, address: int, owner: str, delta: int) -> None:
        by = self.owners.setdefault((kind, address), {})
        by[owner] = by.get(owner, 0) + delta
        if by[owner] <= 0:
            del by[owner]
        if not by:
            del self.owners[(kind, address)]

    def owners_at(self, address: int) -> list[str]:
        """The front ends with an instruction breakpoint (planted word or IAC) at `address`."""
        return sorted(set(self.owners.get(("sw", address), {})) | set(self.owners.get(("iac", address), {})))

    # --- the world stopped -------------------------------------------------------------------------
    @contextmanager
    def stopped(self):
        """Every vCPU stopped for the duration (nested blocks stop once). While a front end holds the
        world stopped (gdb's all-stop), nothing is paused or resumed here: flushes wait for its resume."""
        outer = self._depth == 0 and not self.hold
        if outer:
            self.vm.pause_all()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if outer:
                self.release()

    def release(self) -> None:
        """Resume every vCPU, flushing every translation of a word patched while they were stopped."""
        flush, self.pending_flush = sorted(self.pending_flush), set()
        self.vm.resume_all(flush=flush, reload_debug=True, flush_all=self.pending_flush_all)
        self.pending_flush_all = False
        self.send_deferred()

    def send_deferred(self, vcpus=None) -> None:
        """Send the resumes decided while the world was held (of `vcpus`, default all)."""
        keep = []
        if self.deferred:
            self.vm.settle()
        for m in self.deferred:
            if vcpus is None or m.vcpu in vcpus:
                self.vm.ep.send(f"vcpu{m.vcpu}", m)
            else:
                keep.append(m)
        self.deferred = keep

    # --- breakpoints --------------------------------------------------------------------------------
    def insert(self, address: int, owner: str = "script") -> None:
        """A breakpoint by the strategy: a planted word, or an IAC slot for `hw`. `owner` (the front
        end) goes into the breakpoint ledger."""
        if self.strategy.match is Match.IAC:
            self.insert_hw("iac", address, owner=owner)
            return
        with self.stopped():
            patch = self.state.insert_sw(address, self.vm.read_code(address))
            if patch is not None:
                try:
                    self.vm.apply([patch], owner)
                except VmError as e:
                    del self.state.sw[address]
                    if "maps" in str(e):
                        self.counters.unmapped.append(str(e))
                    raise
                self.pending_flush.add(address)
                self.vm.update_table(insert=[address])
                self.vm.set_guest_debug(self.state)
                self.counters.patched[address] = patch.word
            self._own("sw", address, owner, +1)
            self.counters.inserts += 1

    def remove(self, address: int, owner: str = "script") -> None:
        if self.strategy.match is Match.IAC:
            self.remove_hw("iac", address, owner=owner)
            return
        with self.stopped():
            current = self.vm.read_code(address)
            patch = self.state.remove_sw(address, current)
            if patch is not None:
                self.vm.apply([patch])
                self.pending_flush.add(address)
            elif address not in self.state.sw:
                self.vm.forget(address)
                self.counters.overwritten[address] = current
            if address not in self.state.sw:
                self.vm.update_table(remove=[address])
                self.vm.set_guest_debug(self.state)
            self._own("sw", address, owner, -1)
            self.counters.removes += 1

    def insert_hw(self, kind: str, address: int, length: int = 4, owner: str = "script") -> None:
        try:
            self.state.insert_hw(kind, address, length)
        except BreakpointError as e:
            self.counters.refused.append(str(e))
            raise
        with self.stopped():
            self.vm.set_guest_debug(self.state)
            self._own(kind, address, owner, +1)
            self.counters.inserts += 1

    def remove_hw(self, kind: str, address: int, owner: str = "script") -> None:
        self.state.remove_hw(kind, address)
        self._own(kind, address, owner, -1)
        with self.stopped():
            self.vm.set_guest_debug(self.state)
            self.counters.removes += 1

    def detach(self) -> int:
        """Remove every breakpoint and point, restore guest code; returns words restored."""
        restored = 0
        with self.stopped():
            for address in list(self.state.sw):
                self.state.sw[address].uses = 1
                current = self.vm.read_code(address)
                patch = self.state.remove_sw(address, current)
                if patch is not None:
                    self.vm.apply([patch])
                    restored += 1
                else:
                    self.vm.forget(address)
                    self.counters.overwritten[address] = current
                self.vm.update_table(remove=[address])
            self.state.iac = [None] * len(self.state.iac)
            self.state.dac = [None] * len(self.state.dac)
            self.owners.clear()
            self.vm.singlestep.clear()
            self.vm.set_guest_debug(self.state)
            self.pending_flush_all = True
        return restored

    def set_singlestep(self, vcpu: int, on: bool) -> None:
        """KVM_SET_GUEST_DEBUG(SINGLESTEP) for one stopped vCPU."""
        (self.vm.singlestep.add if on else self.vm.singlestep.discard)(vcpu)
        self.vm.set_guest_debug(self.state, vcpus=[vcpu])
        self.vm.continue_vcpu(vcpu, reload_debug=True)

    # --- KVM_EXIT_DEBUG -----------------------------------------------------------------------------
    def on_debug_exit(self, m: wire.DebugExit) -> None:
        current = self.vm.read_code(m.pc)
        verdict = self.state.verdict(m.address, m.status, m.word, current,
                                     stepping=m.vcpu in self.vm.singlestep, event=m.event,
                                     displaced=m.displaced)
        c = self.counters
        if verdict is Verdict.STALE:
            c.stale[m.address] = c.stale.get(m.address, 0) + 1
            self.resume(m.vcpu, m.seq, "continue", pc=m.pc)
            return
        if verdict is Verdict.REINJECT:
            c.reinjected[m.event] = c.reinjected.get(m.event, 0) + 1
            self.resume(m.vcpu, m.seq, "reflect")
            return
        credited: tuple[str, ...] = ()      # (breakpoint hits only: not steps, not watchpoints)
        if verdict is Verdict.STEP:
            c.steps += 1
        elif verdict is Verdict.HW and m.status in (DebugStatus.WATCH_READ, DebugStatus.WATCH_WRITE):
            c.watch[m.address] = c.watch.get(m.address, 0) + 1
        else:
            c.hits[m.address] = c.hits.get(m.address, 0) + 1
            c.hits_by_vcpu[m.vcpu] = c.hits_by_vcpu.get(m.vcpu, 0) + 1
            credited = tuple(self.owners_at(m.address))
            for owner in credited:
                self.credit(owner, m.address)
        self.on_stop(Stop(m.vcpu, m.seq, verdict, m.address, m.status, m.pc, credited))

    def credit(self, owner: str, address: int) -> None:
        """One hit of `owner`'s breakpoint at `address` (a front end that takes a hit it did not have
        in place at the exit, gdb's lifted at a stop, credits itself when it reports it)."""
        by = self.counters.hits_by_owner.setdefault(owner, {})
        by[address] = by.get(address, 0) + 1

    # --- leaving a stop -----------------------------------------------------------------------------
    def resume(self, vcpu: int, seq: int, how: str, **kw) -> None:
        """Let a vCPU leave its exit. While a front end holds the world stopped (gdb), the vCPU stays
        in its exit (registers on its run page stay valid) and the resume goes out at release."""
        if self.hold:
            self.deferred.append(wire.Resume(vcpu, seq, how, "userspace", held=True, **kw))
        else:
            self.vm.settle()
            self.vm.ep.send(f"vcpu{vcpu}", wire.Resume(vcpu, seq, how, "userspace", **kw))

    def resume_over(self, stop: Stop) -> None:
        """Go on past a stop: execute the original instruction under a breakpoint out of line (the
        planted word stays for the other vCPUs), or simply continue where nothing is planted."""
        saved = self.state.saved_word(stop.pc)
        if saved is not None and self.vm.read_code(stop.pc) == self.state.debug_inst:
            self.resume(stop.vcpu, stop.seq, "step_over", pc=stop.pc, word=saved)
        elif stop.verdict is Verdict.HW:   # IAC or DAC: the instruction must not trigger again
            self.resume(stop.vcpu, stop.seq, "step_over", pc=stop.pc, word=self.vm.read_code(stop.pc))
        else:
            self.resume(stop.vcpu, stop.seq, "continue", pc=stop.pc)
