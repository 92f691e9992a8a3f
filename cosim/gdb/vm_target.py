"""The GDB `Target` of a running scenario, on top of userspace's generic debugger
(cosim/userspace/debugger.py) and VM control (cosim/userspace/vm.py). All-stop, no I/O: the stub
(cosim/gdb/stub.py) owns the socket and the `GdbSession`; this module owns what a stop means.

World states:
- attached & stopped: every vCPU paused (or waiting in an exit) and `dbg.hold` set, so breakpoint
  changes go straight to guest RAM, the run pages stay valid, and anything the debugger decides for an
  exit that was in flight is deferred until the next resume.
- attached & running: gdb resumed some vCPUs (`resumed`), the ones it asked to step (`stepping`) run
  with KVM_SET_GUEST_DEBUG(SINGLESTEP). The first stop that belongs to gdb (a hit of a breakpoint or
  watchpoint gdb inserted, a step gdb asked for) stops the world: every other vCPU is paused and the stop
  is reported. Stops of other vCPUs that arrive while the world is stopped are kept (`pending`) and
  reported one per resume, if still meaningful then (gdbserver's rule: a breakpoint gdb has since
  removed, or a step gdb no longer asks for, is dropped and the vCPU just goes on).
- detached: gdb's `D` (or a lost connection) removed every breakpoint, restored guest code and let
  the scenario run to completion on its own.

Invariants:
- A vCPU stopped for gdb waits in its debug exit (`held`) until gdb resumes it: it then gets
  `Continue` (its flushes, its registers if gdb wrote them, its debug registers) and only then `Resume`
  (`continue` at the PC of its run page), in that order (messages to one vCPU arrive in order).
- Stops gdb does not own (the scripted debugger's breakpoints) go to the scripted debugger.
- Reports go to `outbox` (StopEvent, or Exited when every vCPU halted); the stub turns them into
  replies once gdb waits for one.

Latency (each message between processes costs three thread wake-ups): a stop costs no message of
its own (the vCPU already waits in its exit), a resume one per vCPU (its Continue travels inside its
Resume), KVM_SET_GUEST_DEBUG none (written into the run page, read at the vCPU's next exit). What is
left to do per stop and per resume comes after the reply or the message that gdb or the vCPU waits for.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass, replace

from .. import holdtime, wire
from ..holdtime import HoldClock
from ..isa import SPR, DebugStatus, Esr, Ivor, trap_taken
from ..machine.guest_ram import GuestMemoryError
from ..userspace.breakpoints import BreakpointError, Verdict
from ..userspace.debugger import Stop
from ..vcpu.runpage import State
from . import monitor as _monitor
from .spr_regs import SprWriteRefused, read_spr, spr_layout, write_msr, write_spr
from .target import (MSR, NUM_REGISTERS, PC, SIGINT, SIGTRAP, BreakpointKind, NotSupported, StopEvent,
                     TargetError)
from .target_xml import annexes
from .vm_info import VmInfo

WATCH_KINDS = {BreakpointKind.WRITE_WATCH: "watch", BreakpointKind.READ_WATCH: "rwatch",
               BreakpointKind.ACCESS_WATCH: "awatch"}
FLUSH_ALL_ABOVE = 256
"""A memory write touching more words than this flushes every translation instead of each word."""


@dataclass(frozen=True)
class Exited:
    """Every vCPU halted while gdb waited: the stub answers `W<code>`."""
    code: int


class VmTarget:
    def __init__(self, us, notify=lambda: None):
        """`us`: the UserspaceProcess (its vm, dbg, script, ep). `notify()` is called whenever a
        report lands in `outbox`."""
        self.us = us
        self.vm = us.vm
        self.dbg = us.dbg
        self.n = self.vm.vcpus
        self.notify = notify
        self.outbox: list[StopEvent | Exited] = []
        self.attached = False
        self.killed = False
        self.running = False
        self.resumed: set[int] = set()
        self.stepping: set[int] = set()
        self.held: dict[int, Stop] = {}
        self.pending: list[Stop] = []
        self.halted: dict[int, int] = {}
        self.dirty: set[int] = set()
        self.flush: dict[int, set[int]] = {i: set() for i in range(self.n)}
        self.flush_all: set[int] = set()
        self.sw: set[int] = set()
        self.hw: set[tuple[str, int]] = set()
        self.points_at_stop: set[tuple[str, int]] = set()   # gdb's points when the world last stopped
        self.refused: list[str] = []           # gdb's insertions refused, why (gdb shows no reason)
        self.monitor_cpu = 0                   # the monitor's current vCPU (HMP's `cpu N`)
        self.resets = 0                        # monitor system_reset
        self.interrupt_requested = False
        self.hold = HoldClock()                    # gdb's hold on the world, for the supervisor
        self.detaches = 0
        self.keep_guest_traps = bool(us.spec.get("debug", {}).get("keep_guest_traps", True))
        self.trap_due: dict[int, int] = {}   # vCPU -> address of the guest trap to deliver on resume
        self.dbg.on_stop = self.on_stop
        cpu = us.spec.get("cpu")
        self.sprs = spr_layout(cpu) if cpu else ()       # remote registers NUM_REGISTERS.. (SPRs)
        self.register_count = NUM_REGISTERS + len(self.sprs)
        self.annexes = annexes(cpu)

    # --- the world ----------------------------------------------------------------------------------
    def take_control(self, client: bool = True) -> None:
        """Stop the world for a new gdb connection (a no-op if it is already ours). `client=False`: the
        run starts stopped for a gdb that has not connected yet; until one does, the world is not gdb's
        hold and the wall limit counts (a CI scenario whose debugger never comes still ends)."""
        if self.attached:
            return
        self.vm.pause_all()
        self.dbg.hold = True
        self.attached = True
        self.killed = False
        self.running = False
        self._held(client)

    def client_connected(self) -> None:
        """A gdb connected to a world stopped before it came: from now on that is its hold."""
        if self.attached and not self.running:
            self._held(True)

    def _held(self, stopped: bool) -> None:
        """Whether gdb holds the world stopped (the supervisor's wall limit pauses then): kept here,
        told by `report_hold` from the stub's timer (cosim/holdtime.py), off the stop's path."""
        self.hold.set(stopped)

    def report_hold(self, force: bool = False) -> None:
        due = self.hold.due_in()
        if due is not None and (force or due == 0):
            self.us.ep.send("supervisor", wire.Log("userspace", holdtime.LEVEL, self.hold.report()))

    def _stop_world(self, event: StopEvent, stop: Stop | None = None) -> None:
        """Pause every vCPU that may be running (not one waiting in its exit for gdb, not a halted
        one, not one gdb left stopped), hold the world, report."""
        self.running = False
        self.interrupt_requested = False
        self.vm.pause_all([i for i in self.resumed if i not in self.held and i not in self.halted])
        self.dbg.hold = True
        self._report(event, stop)

    def _report(self, event, stop: Stop | None = None) -> None:
        if (stop is not None and "gdb" not in stop.credited and (
                stop.verdict is Verdict.SW or (stop.verdict is Verdict.HW and stop.status == DebugStatus.BREAKPOINT))):
            self.dbg.credit("gdb", stop.address)      # (its breakpoint was lifted when the exit came)
        self.running = False
        self.points_at_stop = self.points()
        self._held(True)
        self.outbox.append(event)
        self.notify()

    def after_reply(self) -> None:
        """gdb has its answer: write the KVM_SET_GUEST_DEBUG settings it changed (`Vm.push`)."""
        if not self.running and self.attached:
            self.vm.push()

    def service(self) -> None:
        """Work the session asked for that must wait until its reply went out (Ctrl-C)."""
        if self.interrupt_requested:
            self.interrupt_requested = False
            if self.running:
                live = sorted(i for i in self.resumed if i not in self.halted) or [0]
                self._stop_world(StopEvent(live[0] + 1, SIGINT))

    # --- stops from the debugger --------------------------------------------------------------------
    def on_stop(self, stop: Stop) -> None:
        """Debugger.on_stop: every debug exit the debugger owns."""
        if not self.attached or not (self._owns(stop) or self._lifted_at_stop(stop)):
            self._not_gdbs(stop)
            return
        self.held[stop.vcpu] = stop
        if self.running and stop.vcpu in self.resumed:
            self._stop_world(self._event(stop), stop)
        else:
            # all-stop: a stop of a thread gdb did not resume (an exit in flight when the world
            # stopped) stays pending until gdb resumes that thread; reporting it now would make gdb
            # see a thread stop that it believes is stopped already (infrun's trap_expected assertion)
            self.pending.append(stop)

    def points(self) -> set[tuple[str, int]]:
        """gdb's breakpoints and watchpoints in place now, as (kind, address)."""
        return {("sw", a) for a in self.sw} | set(self.hw)

    def _not_gdbs(self, stop: Stop) -> None:
        """A stop gdb does not own: the scenario's scripted debugger decides (or it goes on past it)."""
        script = self.us.script
        if script is not None:
            script.on_stop(stop)
        else:
            self.dbg.resume_over(stop)

    def _lifted_at_stop(self, stop: Stop) -> bool:
        """An exit that was in flight when the world stopped, of a vCPU gdb has not resumed since, on a
        breakpoint gdb had in place then and has lifted since (a stock gdb lifts them at every stop and
        plants them again before it resumes): gdb's, judged when gdb resumes that vCPU."""
        if self.running and stop.vcpu in self.resumed:
            return False
        if stop.verdict is Verdict.SW:
            return ("sw", stop.address) in self.points_at_stop
        return (stop.status == DebugStatus.BREAKPOINT
                and bool({("sw", stop.address), ("iac", stop.address)} & self.points_at_stop))

    def _owns(self, stop: Stop) -> bool:
        if stop.verdict is Verdict.STEP:
            return stop.vcpu in self.stepping
        if stop.verdict is Verdict.SW:
            return stop.address in self.sw
        if stop.status == DebugStatus.BREAKPOINT:
            return stop.address in self.sw or ("iac", stop.address) in self.hw
        return self._watch_point(stop.address) is not None

    def _watch_point(self, address: int):
        for p in self.dbg.state.dac:
            if (p is not None and p.address <= address < p.address + max(p.length, 1)
                    and (p.kind, p.address) in self.hw):
                return p
        return None

    def _event(self, stop: Stop) -> StopEvent:
        tid = stop.vcpu + 1
        if stop.verdict is Verdict.STEP:
            return StopEvent(tid, SIGTRAP)
        if stop.verdict is Verdict.SW or stop.address in self.sw:
            return StopEvent(tid, SIGTRAP, "swbreak")
        if stop.status == DebugStatus.BREAKPOINT:
            return StopEvent(tid, SIGTRAP, "hwbreak")
        p = self._watch_point(stop.address)
        return StopEvent(tid, SIGTRAP, (p.kind if p else "awatch", stop.address))

    def _still_valid(self, stop: Stop, action: str) -> bool:
        """Is a stop kept since the world stopped still worth reporting now?"""
        if stop.verdict is Verdict.STEP:
            return action == "s"
        if stop.verdict is Verdict.SW:
            return (stop.address in self.sw
                    and self.vm.read_code(stop.address) == self.dbg.state.debug_inst)
        return self._owns(stop)

    def on_halted(self, m: wire.Halted) -> None:
        i = m.vcpu
        self.halted[i] = m.code
        self.held.pop(i, None)
        self.pending = [s for s in self.pending if s.vcpu != i]
        if not self.running or any(j not in self.halted for j in self.resumed):
            return
        if len(self.halted) == self.n:
            self.running = False
            self.dbg.hold = True
            self._report(Exited(m.code & 0xFF))
        else:
            self._stop_world(StopEvent(i + 1, SIGTRAP))

    # --- Target: threads and registers --------------------------------------------------------------
    def threads(self) -> list[int]:
        return list(range(1, self.n + 1))

    def _vcpu(self, tid: int) -> int:
        if not 1 <= tid <= self.n:
            raise TargetError(errno.ESRCH, f"no thread {tid}")
        return tid - 1

    def thread_extra_info(self, tid: int) -> str:
        i = self._vcpu(tid)
        if i in self.halted:
            return f"vCPU {i} halted (exit code {self.halted[i]})"
        if i in self.held:
            return f"vCPU {i} stopped ({self.held[i].verdict.value})"
        state = State(int(self.vm.pages[i]["state"]))
        return f"vCPU {i} {state.name.lower().replace('_', ' ')}"

    def read_registers(self, tid: int) -> list[int]:
        regs = self.vm.registers(self._vcpu(tid))
        assert len(regs) == NUM_REGISTERS
        return regs

    def _control(self, i: int) -> int:
        """The KVM_SET_GUEST_DEBUG control vCPU i runs with once resumed (what its SPR rules follow)."""
        return self.dbg.state.control(singlestep=i in self.vm.singlestep)

    def read_register(self, tid: int, regno: int) -> int:
        """An SPR (regno >= NUM_REGISTERS, cosim/gdb/spr_regs.py), as the guest's mfspr reads it."""
        i = self._vcpu(tid)
        if regno < NUM_REGISTERS:
            return self.vm.registers(i)[regno]
        number = self.sprs[regno - NUM_REGISTERS][1]
        return read_spr(self.vm.pages[i]["spr"], number, self._control(i))

    def write_register(self, tid: int, regno: int, value: int) -> None:
        i = self._vcpu(tid)
        value &= 0xFFFFFFFF
        if regno >= NUM_REGISTERS:                # an SPR: the guest's mtspr rules
            number = self.sprs[regno - NUM_REGISTERS][1]
            try:
                write_spr(self.vm.pages[i]["spr"], number, value, self._control(i))
            except SprWriteRefused as e:
                raise TargetError(errno.EACCES, str(e)) from None
            self.dirty.add(i)                     # its Continue reloads the debug facility
            return
        if regno == PC:
            due = self.trap_due.pop(i, None)
            if self._skips_guest_trap(i, value, counted=due is not None):
                return
        if regno == MSR:
            value = write_msr(self.vm.registers(i)[MSR], value, self._control(i))
        self.vm.set_register(i, regno, value)
        self.dirty.add(i)

    def _skips_guest_trap(self, i: int, new_pc: int, counted: bool = False) -> bool:
        """gdb takes a tw/twi under a breakpoint for a permanent program breakpoint and steps over it
        by writing PC = site + 4. When the vCPU is stopped at a breakpoint on that site and the trap's
        condition holds for its registers, the guest's own trap would be lost: count it, and with
        `keep_guest_traps` deliver the guest's program interrupt (SRR0 = site, ESR[PTR]) at the resume
        instead of the PC write (`counted`: the same skip written again, G after P, is counted once).
        Returns True when the write is replaced by that delivery."""
        stop = self.held.get(i)
        if stop is None:
            return False
        regs = self.vm.registers(i)
        site = regs[PC]
        if stop.pc != site or new_pc != (site + 4) & 0xFFFFFFFF:
            return False
        saved = self.dbg.state.saved_word(site)
        word = saved if saved is not None else self.vm.read_code(site)
        if not trap_taken(word, regs[:32]):
            return False
        c = self.dbg.counters
        tally = c.traps_delivered if self.keep_guest_traps else c.traps_skipped
        if not counted:
            tally[site] = tally.get(site, 0) + 1
        if self.keep_guest_traps:
            self.trap_due[i] = site
        return self.keep_guest_traps

    def system_reset(self) -> str:
        """`monitor system_reset` (gdb holds the world): the image loaded into guest RAM again (the
        configured cfg_iterations kept), gdb's and the scenario's breakpoints planted again over it,
        every vCPU's registers and SPRs at reset (PC at the entry, MSR 0, PIR/PVR kept), its
        translations flushed; each vCPU starts there when gdb resumes it. What the vCPUs counted so far
        (instructions, exits) stays in the report."""
        if self.us.spec.get("board"):
            return ("system_reset: not yet on a board: the board's boot state (device tree, the boot "
                    "TLB1 entries, the spin table) and its devices are not reset here; restart the run\n")
        if self.halted:
            return (f"system_reset: vCPU {', '.join(str(i) for i in sorted(self.halted))} already halted "
                    "(its run is over): the machine cannot be reset\n")
        image, ram, st = self.us.image, self.vm.ram, self.dbg.state
        iterations = ram.read_word(image.symbol("cfg_iterations")) if "cfg_iterations" in image else None
        image.load_into(ram)
        if iterations is not None:
            ram.write_word(image.symbol("cfg_iterations"), iterations)
        led = self.vm.ledger
        owners = {e["address"]: e["owner"] for e in led.entries()} if led is not None else {}
        for a, bp in st.sw.items():
            bp.saved = ram.read_word(a)
            if led is not None:
                led.record(a, bp.saved, st.debug_inst, owners.get(a, "userspace"))
            ram.write_word(a, st.debug_inst)
        entry = self.us.spec["entry"]
        for i in range(self.n):
            for regno in range(NUM_REGISTERS):
                self.vm.set_register(i, regno, entry if regno == PC else 0)
            spr = self.vm.pages[i]["spr"]
            keep = {n: int(spr[SPR[n]]) for n in ("PIR", "PVR")}
            spr[:] = 0
            for n, v in keep.items():
                spr[SPR[n]] = v
            self.dirty.add(i)
            self.flush_all.add(i)
            stop = self.held.get(i)
            if stop is not None:          # its instruction is done with: never stepped over at the entry
                self.held[i] = replace(stop, pc=-1)
        self.pending = []
        self.trap_due.clear()
        self.resets += 1
        self.us.log("warn", f"gdb: monitor system_reset #{self.resets}: every vCPU restarted at {entry:#x}")
        return ""

    def sstep_flags(self) -> int:
        """QEMU's gdbstub single-step flags in force (qqemu.sstep)."""
        return self.vm.sstep_flags

    def set_sstep_flags(self, flags: int) -> None:
        """Qqemu.sstep=N: ENABLE|NOIRQ|NOTIMER for the next steps (the default holds interrupts and
        timers off during a step, as QEMU's gdbstub and x86 KVM's KVM_GUESTDBG_BLOCKIRQ)."""
        self.vm.sstep_flags = flags

    def monitor(self, command: str) -> str:
        """gdb's `monitor` (qRcmd): cosim/gdb/monitor.py over this scenario."""
        return _monitor.run(command, VmInfo(self))

    # --- Target: memory -----------------------------------------------------------------------------
    def _translated(self, addr: int, length: int) -> int:
        """A board with the guest MMU: the guest-physical address of [addr, addr + length) through the
        guest TLB in the monitor vCPU's data context (MSR[DS], PID from its run page), as QEMU's stub
        reads through the guest MMU; the range must stay in one page and map RAM (a device's registers
        are not read behind the guest's back: `monitor info mmio`). The bare machine: `addr`."""
        tlb = self.us.guest_tlb
        if tlb is None:
            return addr
        from ..isa import SPR, Msr
        cpu = self.monitor_cpu
        page = self.vm.pages[cpu]
        ts = 1 if int(page["msr"]) & Msr.DS else 0
        pa = tlb.translate(cpu, addr, ts, int(page["spr"][SPR["PID"]]))
        if pa is None:
            raise TargetError(errno.EFAULT, f"{addr:#x}: no guest TLB entry maps it (vCPU {cpu}, AS {ts})")
        if pa + length > self.vm.ram.size:
            raise TargetError(errno.EFAULT, f"{addr:#x} maps {pa:#x}, a device, not RAM (see monitor info mmio)")
        return pa

    def read_memory(self, addr: int, length: int) -> bytes:
        ram = self.vm.ram
        if self.us.guest_tlb is not None and (addr & 0xFFF) + length > 0x1000:   # page by page
            first = 0x1000 - (addr & 0xFFF)
            return self.read_memory(addr, first) + self.read_memory(addr + first, length - first)
        pa = self._translated(addr, length)
        try:
            data = bytearray(ram.read(pa, length))
        except GuestMemoryError as e:
            raise TargetError(errno.EFAULT, str(e)) from None
        inst = self.dbg.state.debug_inst
        for a, bp in self.dbg.state.sw.items():       # (breakpoints by virtual address, as gdb set them)
            if a + 4 > addr and a < addr + length and self.vm.read_code(a) == inst:
                for k, byte in enumerate(bp.saved.to_bytes(4, "big")):
                    if addr <= a + k < addr + length:
                        data[a + k - addr] = byte
        return bytes(data)

    def write_memory(self, addr: int, data: bytes) -> None:
        ram = self.vm.ram
        if addr < 0 or addr + len(data) > ram.size:
            raise TargetError(errno.EFAULT, f"write of {len(data)} bytes at {addr:#x} is outside RAM")
        buf = bytearray(data)
        keep = bytearray(ram.read(addr, len(data)))
        inst = self.dbg.state.debug_inst
        planted = {}
        for a, bp in self.dbg.state.sw.items():
            if a + 4 > addr and a < addr + len(data) and ram.read_word(a) == inst:
                planted[a] = bp
        for a, bp in planted.items():   # the planted word stays; its saved copy takes the new bytes
            saved = bytearray(bp.saved.to_bytes(4, "big"))
            for k in range(4):
                if addr <= a + k < addr + len(data):
                    saved[k] = buf[a + k - addr]
                    buf[a + k - addr] = keep[a + k - addr]
            bp.saved = int.from_bytes(saved, "big")
        ram.write(addr, bytes(buf))
        words = range(addr & ~3, addr + len(data), 4)
        if len(words) > FLUSH_ALL_ABOVE:
            self.dbg.pending_flush_all = True
        else:
            self.dbg.pending_flush.update(words)

    # --- Target: breakpoints ------------------------------------------------------------------------
    def insert_breakpoint(self, kind: int, addr: int, length: int) -> None:
        try:
            if kind == BreakpointKind.SOFTWARE:
                led = self.vm.ledger
                if addr not in self.sw and led is not None and led.full() and not led.holds(addr):
                    raise TargetError(errno.ENOSPC, f"too many breakpoints: {len(led.table)} planted words "
                                                    "is the most the breakpoint ledger holds")
                if addr not in self.sw:
                    self.dbg.insert(addr, owner="gdb")
                    self.sw.add(addr)
            elif kind == BreakpointKind.HARDWARE:
                if ("iac", addr) not in self.hw:
                    self.dbg.insert_hw("iac", addr, owner="gdb")
                    self.hw.add(("iac", addr))
            elif kind in WATCH_KINDS:
                what = WATCH_KINDS[kind]
                if length < 1:
                    raise BreakpointError(f"a watchpoint of {length} bytes at {addr:#x}")
                if (what, addr) not in self.hw:
                    self.dbg.insert_hw(what, addr, length, owner="gdb")
                    self.hw.add((what, addr))
            else:
                raise NotSupported
        except BreakpointError as e:
            # gdb shows only "too many hardware breakpoints/watchpoints": the reason is kept for
            # `monitor info breakpoints` and logged to the run's terminal
            self.refused.append(f"{WATCH_KINDS.get(kind, 'hbreak' if kind == BreakpointKind.HARDWARE else 'break')} "
                                f"{addr:#x} ({length} bytes): {e}")
            self.us.log("warn", f"gdb's request refused: {self.refused[-1]}")
            raise TargetError(errno.ENOSPC, str(e)) from None
        except GuestMemoryError as e:
            raise TargetError(errno.EFAULT, str(e)) from None

    def remove_breakpoint(self, kind: int, addr: int, length: int) -> None:
        try:
            if kind == BreakpointKind.SOFTWARE:
                if addr in self.sw:
                    self.sw.discard(addr)
                    self.dbg.remove(addr, owner="gdb")
            elif kind == BreakpointKind.HARDWARE:
                if ("iac", addr) in self.hw:
                    self.hw.discard(("iac", addr))
                    self.dbg.remove_hw("iac", addr, owner="gdb")
            elif kind in WATCH_KINDS:
                what = WATCH_KINDS[kind]
                if (what, addr) in self.hw:
                    self.hw.discard((what, addr))
                    self.dbg.remove_hw(what, addr, owner="gdb")
            else:
                raise NotSupported
        except BreakpointError as e:
            raise TargetError(errno.ENOENT, str(e)) from None
        except GuestMemoryError as e:
            raise TargetError(errno.EFAULT, str(e)) from None

    # --- Target: execution --------------------------------------------------------------------------
    def resume(self, actions: dict[int, str], default: str | None) -> None:
        plan = {}
        for i in range(self.n):
            a = actions.get(i + 1, default)
            if a is not None:
                plan[i] = a
        self.running = True
        self._held(False)
        self.resumed = set(plan)
        for stop in list(self.pending):          # one kept stop per resume, if still meaningful
            action = plan.get(stop.vcpu)
            if action is None:
                continue
            self.pending.remove(stop)
            if self._still_valid(stop, action):
                self._report(self._event(stop), stop)
                return
            if stop.verdict is not Verdict.STEP and self.held.get(stop.vcpu) is stop:
                del self.held[stop.vcpu]    # no longer gdb's: the scenario's (sent after its Continue)
                self._not_gdbs(stop)
        live = [i for i in plan if i not in self.halted]
        if not live:
            if len(self.halted) == self.n:
                self._report(Exited(next(iter(self.halted.values())) & 0xFF))
            else:
                self._report(StopEvent(min(plan) + 1, SIGTRAP))
            return
        self._spread_flushes()
        for i in live:
            (self.vm.singlestep.add if plan[i] == "s" else self.vm.singlestep.discard)(i)
        self.stepping = {i for i in live if plan[i] == "s"}
        self.vm.set_guest_debug(self.dbg.state, vcpus=live)
        self.dbg.hold = False
        for i in live:
            self._let_go(i)
        self.dbg.send_deferred(vcpus=set(live))

    def _spread_flushes(self) -> None:
        """Move the debugger's pending flushes to every vCPU's own list (a vCPU gdb keeps stopped
        gets its flushes when it is resumed)."""
        dbg = self.dbg
        if dbg.pending_flush_all:
            self.flush_all.update(range(self.n))
            dbg.pending_flush_all = False
        if dbg.pending_flush:
            for i in range(self.n):
                self.flush[i].update(dbg.pending_flush)
            dbg.pending_flush = set()

    def _let_go(self, i: int) -> None:
        """Continue (flushes, registers, debug registers), then Resume if it waits in an exit: one
        waiting in its exit gets its Continue inside the Resume (`go`): one message, one hop."""
        self.vm.settle()
        stop = self.held.pop(i, None)
        go = self._continue(i, send=stop is None)
        site = self.trap_due.pop(i, None)
        if stop is not None and site is not None:   # the guest's own trap, which gdb meant to skip
            self.vm.ep.send(f"vcpu{i}", wire.Resume(i, stop.seq, "inject", "userspace", ivor=Ivor.PROGRAM,
                                                    srr0=site, esr=Esr.PTR, go=go))
        elif stop is not None:
            pc = self.vm.pc(i)
            word = self._taken_under_other(stop, pc)
            if word is not None:
                self.vm.ep.send(f"vcpu{i}", wire.Resume(i, stop.seq, "step_over", "userspace", pc=pc,
                                                        word=word, held=True, go=go))
            else:
                self.vm.ep.send(f"vcpu{i}", wire.Resume(i, stop.seq, "continue", "userspace", pc=pc,
                                                        held=True, go=go))

    def _taken_under_other(self, stop: Stop, pc: int) -> int | None:
        """gdb resumes a vCPU at the breakpoint it stopped on, gdb's own breakpoint lifted (as gdb does
        to step over it) but the scenario's still there: this execution's hit was taken (and counted)
        already, so the original instruction runs out of line instead of hitting again. Returns that
        word, or None (resume in place)."""
        if pc != stop.pc or stop.verdict not in (Verdict.SW, Verdict.HW) or pc in self.sw:
            return None
        st = self.dbg.state
        saved = st.saved_word(pc)
        if saved is not None and self.vm.read_code(pc) == st.debug_inst:
            return saved
        if (stop.status == DebugStatus.BREAKPOINT and ("iac", pc) not in self.hw
                and any(p is not None and p.address == pc for p in st.iac)):
            return self.vm.read_code(pc)
        return None

    def _continue(self, i: int, send: bool = True) -> list:
        """vCPU i's Continue (flushes, registers, debug registers): sent, or returned as a Resume's `go`."""
        flush_all = i in self.flush_all
        flush = [] if flush_all else sorted(self.flush[i])
        self.flush_all.discard(i)
        self.flush[i] = set()
        go = [flush, flush_all, i in self.dirty, True]
        if send:
            self.vm.ep.send(f"vcpu{i}", wire.Continue(self.vm.next_seq(), *go))
        self.dirty.discard(i)
        return go

    def interrupt(self) -> None:
        self.interrupt_requested = True

    def detach(self) -> int:
        """Remove gdb's breakpoints and points (restoring the code under them), let every vCPU run
        free. The scenario's own scripted breakpoints stay: the scenario goes on as configured."""
        if not self.attached:
            return 0
        self.attached = False
        self.running = False
        self.pending = []
        script = self.us.script
        stepping_script = set(script.stepping) if script is not None else set()
        self.dbg.hold = True                      # the world is stopped: no pause, no release
        restored = 0
        for addr in sorted(self.sw):
            before = self.vm.read_code(addr)
            try:
                self.dbg.remove(addr, owner="gdb")
            except BreakpointError:
                continue
            restored += self.vm.read_code(addr) != before
        for kind, addr in sorted(self.hw):
            try:
                self.dbg.remove_hw(kind, addr, owner="gdb")
            except BreakpointError:
                pass
        self.sw.clear()
        self.hw.clear()
        for i in self.stepping - stepping_script:
            self.vm.singlestep.discard(i)
        self.stepping = set()
        self.vm.set_guest_debug(self.dbg.state)
        self._spread_flushes()
        if script is not None:      # a vCPU stopped on a scripted breakpoint: the hit is the script's
            for i, stop in sorted(self.held.items()):
                if stop.verdict is not Verdict.STEP and self._still_planted(stop):
                    del self.held[i]
                    script.on_stop(stop)          # decided now, sent (deferred) after its Continue
        self.dbg.hold = False
        for i in range(self.n):
            if i not in self.vm.gone:
                self._let_go(i)
        self.dbg.send_deferred()
        self._held(False)
        self.report_hold(force=True)
        self.detaches += 1
        return restored

    def _still_planted(self, stop: Stop) -> bool:
        """Is the breakpoint this stop hit still in place (after gdb's own were removed)?"""
        st = self.dbg.state
        if stop.address in st.sw:
            return True
        return any(p is not None and p.address == stop.address for p in st.iac)

    def close(self) -> None:
        """The stub goes away (end of the run): stops are no longer gdb's; the world is left as it
        is (the supervisor's own detach restores guest code)."""
        self._held(False)
        self.report_hold(force=True)
        self.attached = False
        self.running = False
        self.sw.clear()
        self.hw.clear()
        self.pending = []
        self.trap_due.clear()

    def kill(self) -> None:
        """End the scenario: the supervisor ends the run (outcome killed-by-debugger)."""
        self.killed = True
        self.running = False
        self.us.ep.send("supervisor", wire.Log("userspace", "gdb-kill", "gdb killed the scenario"))
