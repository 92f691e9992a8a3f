"""The vCPU process: a thin loop around the core (cosim/vcpu/core.py).

Two threads. The main thread runs guest code (unicorn releases the GIL) and handles messages whenever
the core is out of the guest. The kick thread blocks on the kick line; on a kick it asks the engine to
stop (`Engine.stop`: a flag the engine's block hook serves before the guest's next block, kept if the
main thread is out of the guest at that moment). Every exit that crosses to the kernel is sent as
`ExitMsg` and the vCPU waits for the matching `Resume`, from the kernel or from userspace.
"""
from __future__ import annotations

import operator
import os
import threading
import time
from dataclasses import fields

import numpy as np

from .. import wire
from ..cpu_models import Event, cpu_model
from ..exit_rate import ExitRate
from ..isa import IVOR_NAME
from ..lockstep import vcpu_gate
from ..machine.guest_ram import GuestRAM
from ..machine.image import GuestImage
from ..machine.ledger import Ledger
from ..record import ExitLog
from ..trace import flow_id, open_trace
from ..transport import Endpoint, process_alive
from ..vmexit import IDLE, Exit, Fault, Until
from .core import Core
from .idle import POLL_MS, Idle
from ..machine.guest_tlb import GuestTlb, TlbGeometry
from .engine import Engine, reserved
from .mmu import Mmu
from .runpage import RunPages, State

LATENCY_SAMPLES = 50_000
MAX_IPS = 200_000_000       # instructions per second the budget watch assumes at most
EXIT_FIELDS = tuple(f.name for f in fields(Exit))   # event first; the rest, in order, as in ExitMsg
assert wire.ExitMsg._fields[3:] == EXIT_FIELDS[1:], "ExitMsg carries Exit's fields in Exit's order"
_exit_values = operator.attrgetter(*EXIT_FIELDS[1:])
EVENT_CODES = {e: i for i, e in enumerate(Event)}


class VcpuProcess:
    held = False              # a secondary vCPU of a board, waiting in the spin table until released
    idle: Idle | None = None  # MSR[WE]/wait as a halt (cosim/vcpu/idle.py): several vCPUs running free only

    def __init__(self, spec: dict):
        self.index = spec["index"]
        self.name = f"vcpu{self.index}"
        self.ep = Endpoint(self.name, spec["transport"], spec["run_dir"], kick=True,
                           credentials=spec.get("credentials"), on_notice=self._notice)
        self.ep.set_peers({"supervisor": spec["supervisor"]})
        self.ram = GuestRAM.attach(spec["ram_name"], spec["ram_size"])
        self.pages = RunPages.attach(spec["runpages_name"], spec["vcpus"])
        self.page = self.pages[self.index]
        rec = self.pages.record(self.index)
        self.state = rec["state"]
        self.exit_info = (rec["exit_event"], rec["exit_pc"], rec["exit_word"])
        self._dbg_views = tuple(rec[n] for n in ("dbg_control", "dbg_table_gen", "dbg_active",
                                                  "dbg_table_gen_active"))
        self.model = cpu_model(spec["cpu"])
        self.max_instructions = spec.get("max_instructions", 0)
        self.gate = vcpu_gate(spec, self)   # free-running, or the deterministic schedule's (lockstep.py)
        self._gate_fds = self.gate.fds()
        self.guest_tlb = None
        tlb_spec = None
        if spec.get("tlb_name"):             # a board with the Book E MMU: the shared guest TLB
            geometry = TlbGeometry(spec["tlb1_entries"])
            self.guest_tlb = GuestTlb.attach(spec["tlb_name"], geometry, spec["vcpus"])
            tlb_spec = (self.guest_tlb.tlb(self.index), geometry)
        self.deferred: list = []             # messages that came while an MMIO exit waited
        self.mmio_seq = 0
        self.mmio_ns: list[int] = []
        self.mmio_total_ns = [0, 0]          # MMIO exits answered, their round trips summed (ns)
        self.mmio_posted = 0                 # stores sent without waiting (coalesced ranges)
        self.coalesced = [tuple(r) for r in spec.get("coalesced_mmio", [])]
        self.engine = Engine(self.ram.address, self.ram.size,
                             self.pages.address_of(self.index, "instructions"),
                             budget=bool(self.max_instructions) or self.gate.deterministic,
                             guest_tlb=tlb_spec, mmio=self.mmio_exit,
                             clock_address=self.pages.clock_address if self.pages.shares_clock else None,
                             cache_line=self.model.cache_line)
        if self.max_instructions and self.engine.has_budget:   # exact: the engine stops there itself
            self.engine.set_budget(self.max_instructions)
        if self.gate.deterministic and not self.engine.has_budget:
            raise RuntimeError("the deterministic schedule needs the engine's C extension (cosim/vcpu/"
                               "_icount.c: run ./setup.sh)")
        image = GuestImage.load(spec["image"])
        pristine = {}             # addr -> word as loaded, for every code word
        for base, data in image.code_bytes():
            words = np.frombuffer(data[:len(data) & ~3], ">u4")
            pristine.update(zip(range(base, base + 4 * len(words), 4), words.tolist()))
        self._warnings = [] if self.engine._env_spr else [
            "unicorn's SPR array was not found: the guest reads its time base as 0 (cosim/vcpu/engine.py, "
            "_find_env_spr)"]
        if not self.engine.cache_line_set:
            self._warnings.append(f"dcbz clears 32 bytes, not {self.model.name}'s {self.model.cache_line}: "
                                  "unicorn's line size was not found (cosim/vcpu/engine.py, _find_dcache_line_size)")
        mmu = None
        if tlb_spec is not None:
            mmu = Mmu(tlb_spec[0], tlb_spec[1], rec["spr"][0], self.engine.flush_tlb)
        self.core = Core(self.engine, self.pages.record(self.index), self.model, self.ram.words, pristine,
                         rate=ExitRate(spec.get("start_ns")), mmu=mmu)   # bins from the run's start
        self.core.reset(spec["entry"], pir=self.index)
        if self.pages.shares_clock and not self.gate.deterministic and self.engine.counting \
                and os.environ.get("COSIM_IDLE", "1") != "0":      # (0: spin, for comparisons)
            self.idle = Idle(self.pages.idle_state, self.pages.idle_deadline, self.index,
                             self.pages.clock_address)
            self.core.can_idle = True
            if spec.get("spin_yield", True):          # (COSIM_SPIN_YIELD=0: spin on, for comparisons)
                self.engine.yield_when_spinning()
        if self.pages.shares_clock and self.gate.deterministic:
            self.engine.exact_clock()             # (the time base independent of where runs were cut)
        boot = (spec.get("boot") or [None] * (self.index + 1))[self.index]
        self.held = bool(boot and boot.get("halted"))   # a secondary waiting in the spin table
        if self.held and self.idle is not None:
            self.idle.gone()
        if boot is not None:                 # the board's boot state (registers; its TLB is in place)
            for n, v in enumerate(boot["gprs"]):
                self.engine.set_gpr(n, v)
            self.core.pc = boot["pc"]
            self.core.msr = boot["msr"]
        self.core.until = spec.get("until")
        self.core.dep = spec.get("msrp_dep", True)
        # issue 20: the breakpoint ledger tells a planted word from the guest's own copy of it
        self.ledger = Ledger.attach(spec["ledger_name"]) if spec.get("ledger_name") else None
        self.core.planted_at = self.ledger.planted_at if self.ledger is not None else None
        self.core.mmio_read = lambda paddr, size: self.mmio_exit(paddr, size, False, 0)
        self.core.send_doorbell = self._send_doorbell
        self.count_reads = bool(spec.get("debug", {}).get("count_planted_reads", True))
        self.planted_reads: dict[int, int] = {}   # addr -> guest loads of the planted word there
        self._watched: dict[int, int] = {}        # addr -> planted word, as the ledger last said
        self.overwritten_exec: dict[int, int] = {}   # addr -> executions of the guest's word over a planted one
        self.engine.set_until(self.core.until)
        self.started = False
        self.paused = False
        self.steered = False      # userspace has paused or continued this vCPU (see Start)
        self.halted = False
        self.pending: Exit | None = None
        self.seq = 0
        self.exit_t0 = 0
        self.latency = {"kernel": [], "userspace": []}
        self.kick_pending = False
        self.debug_due = False
        self.in_guest = False
        self._kicked = False
        self.stopping = False
        self.supervisor_pid = spec.get("supervisor_pid")
        self.trace = open_trace(spec, self.name)
        self.gate.bind_engine()              # (after the core and the tracer: it asks both)
        self.exits = ExitLog(spec, self.name)      # the run's record (cosim/record.py)
        self._trace_exit_t0 = 0
        self._trace_resume: tuple | None = None

    # --- kick thread -------------------------------------------------------------------------------
    def kick_loop(self):
        while not self.stopping:
            if not self.ep.wait_kick(self._budget_wait_ms()):
                if self.in_guest and self._over_budget():
                    self.engine.stop()                       # run_guest then halts at the limit
                elif not process_alive(self.supervisor_pid):   # orphaned: stop the guest and go
                    self.stopping = True
                    self.engine.stop()
                continue
            self.kick_pending = True
            self.engine.stop()              # (sticky until the guest's next block: never lost)

    # --- main loop ---------------------------------------------------------------------------------
    def serve(self):
        self.ep.send("supervisor", wire.Hello(self.name, os.getpid(), self.ep.inbox_addr, self.ep.kick_addr))
        for w in self._warnings:
            self.log("warn", w)
        kicker = threading.Thread(target=self.kick_loop, name=f"{self.name}-kick", daemon=True)
        kicker.start()
        try:
            while not self.stopping:
                if self.runnable():
                    self.run_guest()
                    self.kick_pending = False
                    if self.drain(wait_ms=50 if self.kicked_without_message() else 0) and self.idle is not None \
                            and self.idle.idle:
                        self.idle.leave()        # (it halted in that run: what came since may wake it)
                else:
                    idle = self.idle is not None and self.idle.idle
                    # (the baton coming from another vCPU: spun for, not slept for; cosim/baton.py)
                    r = None if self.gate.await_turn() else self._recv(POLL_MS if idle else 200)
                    if r is not None:
                        self.handle(r)
                    self.kick_pending = False
                    # (a message taken by the drain wakes a halted vCPU as well: one that came just
                    # after the poll timed out, a doorbell or an IPI, was left pending until the next
                    # timer tick, and forever without one)
                    got = self.drain(0) > 0 or r is not None
                    if idle and self.idle.idle:
                        self._idle_wait(got)
                self.gate.poll()
        finally:
            self.stopping = True
            kicker.join(1)
            self.close()

    def runnable(self) -> bool:
        return (self.started and not self.paused and self.pending is None and not self.halted
                and not self.held and not (self.idle is not None and self.idle.idle) and self.gate.may_run())

    def _idle_wait(self, got_message: bool) -> None:
        """Halted until an interrupt (cosim/vcpu/idle.py): run again (the core takes what is due, or
        halts again) after any message (an interrupt line, a pause...) or once the clock reached this
        vCPU's timer deadline, which the vCPU itself moves forward when every vCPU is idle."""
        if not got_message and not self.engine.deadline_due:
            self.idle.warp()
        if got_message or self.engine.deadline_due:
            self.idle.leave()

    def kicked_without_message(self) -> bool:
        return self._kicked and not self.ep.pending()

    def run_guest(self):
        why = reserved(self.core.pc)
        if why is not None:          # e.g. `entry` at the engine's own addresses: never run there
            self.fault(Fault(self.core.pc, f"pc {self.core.pc:#010x} is {why}, not guest memory"))
            return
        self._kicked = False
        self.in_guest = True
        try:
            out = self.core.run(kicked=self._check_kick)
        finally:
            self.in_guest = False
        if out is None:
            if self._over_budget():
                self._check_budget()
            elif self.gate.may_run():           # (else the turn went on: nothing was kicked)
                self._kicked = True
        elif isinstance(out, Fault):
            self.fault(out)
        elif isinstance(out, Until):
            self.halt(0, "reached until", out.pc, State.HALTED)
        elif out is IDLE:
            self.idle.enter(self.engine.deadline_clock)
        else:
            self.exit_to_kernel(out)

    def _check_kick(self) -> bool:
        # (not may_run: the engine's block hook passed the turn to another vCPU; cosim/baton.h)
        return self.kick_pending or self.stopping or self._over_budget() or not self.gate.may_run()

    def _at_limit(self) -> bool:
        return bool(self.max_instructions) and int(self.page["instructions"]) >= self.max_instructions

    def _over_budget(self) -> bool:
        """At the instruction limit, or at the end of the schedule's grant (deterministic mode)."""
        return self._at_limit() or (self.gate.may_run() and self.engine.budget_done)

    def _budget_wait_ms(self) -> int:
        """How long the kick thread may sleep: a guest that never exits never returns from the core by
        itself, so the instruction budget is watched from here, more often as it nears (assuming at
        most MAX_IPS: the overshoot stays around a millisecond of guest time, the polling cost nil)."""
        page = self.page
        if not self.max_instructions or page is None or self.engine.has_budget:
            return 100
        left = self.max_instructions - int(page["instructions"])
        return int(min(100, max(1, left * 1000 // MAX_IPS)))

    def _check_budget(self):
        if self._at_limit() and not self.halted:
            self.halt(0, "instruction limit", self.core.pc, State.HALTED)

    def drain(self, wait_ms: int) -> int:
        """Handle what has arrived (waiting up to `wait_ms` for the first); how many messages."""
        n = 0
        r = self._recv(wait_ms)
        while r is not None:
            self.handle(r)
            n += 1
            r = self._recv(0)
        return n

    def _recv(self, wait_ms: int):
        if self.deferred:
            return self.deferred.pop(0)
        if wait_ms and self._gate_fds:       # the baton's wake-ups too (None back: see gate.poll)
            return self.ep.recv(wait_ms, self._gate_fds)
        return self.ep.recv(wait_ms)

    def release(self, m: wire.ReleaseVcpu) -> None:
        """The spin table let this held secondary go: its TLB1 entries, registers and PC, then run
        (QEMU's spin_kick does the same on the target vCPU's thread)."""
        if not self.held or self.guest_tlb is None:
            self.log("warn", "release of a vCPU that is not held in the spin table: ignored")
            return
        tlb = self.guest_tlb.tlb(self.index)
        for mas0, mas1, mas2, mas3, mas7 in m.tlb1:
            i = ((mas0 >> 16) & 0xFFF) % self.guest_tlb.geometry.tlb1_entries
            tlb[i]["mas1"], tlb[i]["mas2"], tlb[i]["mas3"], tlb[i]["mas7"] = mas1, mas2, mas3, mas7
        self.engine.flush_tlb()
        for n, v in m.gprs.items():
            if str(n).isdigit() and int(n) < 32 and type(v) is int and 0 <= v <= 0xFFFFFFFF:
                self.engine.set_gpr(int(n), v)
        self.core.msr = 0
        self.core.pc = m.pc
        self.held = False
        if self.idle is not None:
            self.idle.leave()
        self.log("info", f"released by the spin table at {m.pc:#010x}")

    # --- MMIO exits ----------------------------------------------------------------------------------
    def mmio_exit(self, paddr: int, size: int, write: bool, value: int) -> int:
        """A load or store to no memory slot (called by the engine inside guest code): KVM decides
        that on the vCPU's thread, so it goes straight to userspace, and the vCPU waits for the device
        model's answer; other messages that arrive meanwhile are kept for the main loop."""
        self.mmio_seq += 1
        seq = self.mmio_seq
        if write and any(lo <= paddr < hi for lo, hi in self.coalesced):
            self.ep.send("userspace", wire.MmioExit(self.index, seq, paddr, size, write, value & 0xFFFFFFFF, True))
            self.core.count("mmio", "userspace")
            self.mmio_posted += 1
            return 0
        t0 = time.perf_counter_ns()
        self.ep.send("userspace", wire.MmioExit(self.index, seq, paddr, size, write, value & 0xFFFFFFFF))
        while not self.stopping:
            r = self.ep.recv(200)
            if r is None:
                if not process_alive(self.supervisor_pid):
                    self.stopping = True
                continue
            if r.error is None and isinstance(r.msg, wire.MmioDone) and r.msg.seq == seq:
                dt = time.perf_counter_ns() - t0
                self.mmio_total_ns[0] += 1
                self.mmio_total_ns[1] += dt
                if len(self.mmio_ns) < LATENCY_SAMPLES:
                    self.mmio_ns.append(dt)
                self.core.count("mmio", "userspace")
                return r.msg.value
            if r.error is None and isinstance(r.msg, wire.Shutdown):
                self.stopping = True
                self.engine.stop()
            if r.error is None and self._irq_input(r.msg, r.sender):
                continue                     # (the access that raised it is not done yet: applied now)
            if r.error is None and isinstance(r.msg, wire.PowerOff):
                self.kick_pending = True     # (this access powered off: out of the guest before its
                self.engine.stop()           # next block, as a kick would, whenever the kick comes)
            self.deferred.append(r)
        self.engine.stop()
        return 0

    def _send_doorbell(self, kind: int, broadcast: bool, pir: int) -> None:
        """The guest's msgsnd reaches the other vCPUs it addresses (PIR = vCPU index here), each kicked
        out of its run as KVM's kvm_vcpu_kick does; this vCPU took its own copy in the core."""
        for j in range(self.pages.count):
            if j != self.index and (broadcast or pir == j):
                self.ep.send(f"vcpu{j}", wire.Doorbell(self.index, kind, broadcast, pir))
                self.ep.kick(f"vcpu{j}")

    def _irq_input(self, m, sender: str) -> bool:
        """The interrupt controller's inputs to this CPU (IrqLine, IrqProxy from userspace) and other
        vCPUs' doorbells: applied, True; anything else, False."""
        if isinstance(m, wire.Doorbell):
            self.core.receive_doorbell(m.kind, m.broadcast, m.pir)
            return True
        if sender != "userspace":
            return False
        if isinstance(m, wire.IrqLine):
            self.core.set_irq_line(m.line, m.level)
        elif isinstance(m, wire.IrqProxy):
            self.core.set_irq_proxy(m.iack if m.enabled else None)
        else:
            return False
        return True

    # --- exits -------------------------------------------------------------------------------------
    def exit_to_kernel(self, ex: Exit):
        self.core.save_regs()
        self.seq += 1
        self.pending = ex
        self.state[0] = State.IN_EXIT
        for view, value in zip(self.exit_info, (EVENT_CODES[ex.event], ex.pc, ex.word)):
            view[0] = value
        self.exit_t0 = time.perf_counter_ns()
        self.exits.exit(self.seq, ex.event.value, ex.pc, int(self.page["instructions"]))
        if self.trace.enabled:
            self._trace_resumed()        # a step over that exits again ends its resume here
            self._trace_exit_t0 = self.trace.now()
        msg = wire.ExitMsg(self.index, self.seq, ex.event.value, *_exit_values(ex))
        if not self.gate.hold(msg):          # (deterministic: sent when the schedule delivers it)
            self.ep.send("kernel", msg)

    def on_resume(self, m: wire.Resume, sender: str = "kernel"):
        if m.go is not None:                  # a Continue that travels with the Resume
            go = [m.seq, *m.go]
            if not (wire.Continue.REQUIRED <= len(go) <= len(wire.Continue.FIELDS)) or wire.Continue.CHECK(go):
                # refused whole (the exit stays pending, nothing of it applied), and the sender told
                self.log("error", f"resume {m.seq}: bad go {m.go!r}")
                self.ep.send(sender, wire.Error(m.TAG, f"resume {m.seq}: go: expected the fields of "
                                                       f"continue after its seq, got {m.go!r}"[:300]))
                return
            self.on_continue(wire.Continue(*go))
        ex = self.pending
        if ex is None or m.seq != self.seq:
            self.log("warn", f"stale resume seq {m.seq} (expected {self.seq if ex else 'none'})")
            return
        lat = self.latency.get(m.level)
        if lat is not None and len(lat) < LATENCY_SAMPLES and not m.held:   # held: gdb's time
            lat.append(time.perf_counter_ns() - self.exit_t0)
        self.core.count(ex.event.value, m.level)
        self.exits.resume(m.level, m.how)
        if self.trace.enabled:
            self.trace.receive(self.page)
            self._trace_exit(ex, m)
        self.pending = None
        if self.debug_due:
            self.activate_debug()
        self.state[0] = State.RUNNING
        core = self.core
        if m.how == "reflect":
            core.reflect(ex)
            core.completed()
        elif m.how == "inject":
            core.deliver(m.ivor, m.srr0, m.esr)
            core.completed()
        elif m.how in ("emulate", "continue"):
            core.pc = m.pc
            if m.r3 is not None:
                self.engine.set_gpr(3, m.r3)
            if m.how == "emulate":          # the kernel completed the instruction (a hypercall)
                core.completed()
        elif m.how == "step_over":
            core.pc = m.pc
            out = core.step_over(m.word)
            if isinstance(out, Fault):
                self.fault(out)
            elif out is not None:
                self.exit_to_kernel(out)
        elif m.how == "halt":
            self.halt(m.code, "guest halted", ex.pc, State.HALTED)
        else:
            self.log("error", f"unknown resume {m.how!r}")
        self._trace_resumed()

    def _trace_exit(self, ex: Exit, m: wire.Resume):
        tr = self.trace
        t = tr.now()
        fid = flow_id(self.index, m.seq)
        tr.slice(f"exit {ex.event.value}", self._trace_exit_t0, t, flow_out=fid,
                 args={"pc": f"{ex.pc:#010x}", "seq": m.seq, "level": m.level})
        tr.counter("instructions", int(self.page["instructions"]))
        self._trace_resume = (t, m.how, fid)

    def _trace_resumed(self):
        if self._trace_resume is not None:
            t0, how, fid = self._trace_resume
            self._trace_resume = None
            self.trace.slice(f"resume {how}", t0, flow_in=fid)

    def halt(self, code: int, reason: str, pc: int, state: State):
        self.core.save_regs()
        self.halted = True
        if self.idle is not None:
            self.idle.gone()
        self.state[0] = state
        self.page["exit_code"] = code & 0xFFFFFFFF
        msg = wire.Halted(self.index, code, reason, pc)
        self.ep.send("supervisor", msg)
        if "userspace" in self.ep.inboxes:
            self.ep.send("userspace", msg)

    def fault(self, f: Fault):
        self.core.count("fault", "vcpu")
        self.halt(-1, f"guest fault at {f.pc:#010x}: {f.reason}", f.pc, State.FAULTED)

    # --- messages ----------------------------------------------------------------------------------
    def handle(self, r):
        if r.error is not None:
            self.ep.answer_malformed(r)       # noted once per kind by the transport
            return
        m = r.msg
        if self.gate.take(m, r.sender):
            return
        if isinstance(m, wire.Resume):
            self.on_resume(m, r.sender)
        elif isinstance(m, wire.Pause):
            self.paused = True
            self.steered = True
            self.trace.instant("stop", {"seq": m.seq})
            if self.pending is None and not self.halted:
                self.core.save_regs()
                self.state[0] = State.PAUSED
            self.ep.send(r.sender, wire.Paused(self.index, m.seq, int(self.state[0]), self.core.pc))
        elif isinstance(m, wire.Continue):
            self.on_continue(m)
        elif isinstance(m, wire.Peers) and r.sender == "supervisor":
            self.ep.set_peers(m.inboxes, m.kicks)
            self.ep.send("supervisor", wire.Ack(0, m.TAG))
        elif isinstance(m, wire.Start):
            # Userspace's first Pause or Continue comes over another connection and can overtake the
            # supervisor's Start (both wait in this process's socket buffers when it is starved):
            # then userspace's word stands, or a vCPU it already released would wait forever.
            self.started = True
            if not self.steered:
                self.paused = m.paused
            if self.paused:
                self.core.save_regs()
            self.state[0] = State.PAUSED if self.paused else State.RUNNING
        elif isinstance(m, wire.Shutdown):
            self.ep.send("supervisor", wire.Stats(self.name, self.stats()))
            self.stopping = True
        elif self._irq_input(m, r.sender):
            pass
        elif isinstance(m, wire.ReleaseVcpu) and r.sender == "userspace":
            self.release(m)
        elif isinstance(m, wire.PowerOff):
            if not self.halted:
                self.halt(m.code, m.reason, self.core.pc, State.HALTED)
        elif isinstance(m, wire.Error):
            self.log("warn", f"{r.sender} rejected our {m.tag}: {m.reason}")
        else:
            self.ep.send(r.sender, wire.Error(m.TAG, f"{self.name} does not take {m.TAG}"))

    def on_continue(self, m: wire.Continue):
        if self.trace.enabled and (m.flush_all or m.flush):
            self.trace.instant("flush", {"all": m.flush_all, "addresses": [f"{a:#x}" for a in m.flush]})
        if m.flush_all:
            self.engine.flush()
        elif m.flush:
            self.engine.flush(m.flush)
        if (m.flush_all or m.flush) and self.ledger is not None:
            self._watch_planted()
        if m.reload_regs:
            self.core.load_regs()
            self.core.load_timer_sprs()
        if m.reload_debug:
            self.core.apply_debug()
            if self.pending is None:   # (in an exit: once it is answered, see on_resume)
                self.activate_debug()
            else:
                self.debug_due = True
        self.paused = False
        self.steered = True
        if self.pending is None and not self.halted:
            self.state[0] = State.RUNNING

    def activate_debug(self):
        """The settings this run goes with (KVM_RUN): the kernel judges exits by these, so an exit in
        flight while userspace changed them meets the ones it ran with."""
        self.debug_due = False
        control, table_gen, active, table_gen_active = self._dbg_views
        active[0], table_gen_active[0] = control[0], table_gen[0]

    def _watch_planted(self) -> None:
        """issue 20: the ledger's planted words, watched by the engine while there are any: guest
        loads of them (patched-code-visible; a read hook costs every load the slow path, so only with
        debug.count_planted_reads) and executions of a word the guest wrote over one
        (breakpoint-overwritten)."""
        entries = self.ledger.entries()
        self._watched = {e["address"]: e["planted"] for e in entries}
        if self.count_reads:   # (hooked at the physical word: what unicorn's memory hooks see)
            self.engine.watch_reads({e["paddr"]: e["address"] for e in entries}, self._planted_read)
        self.engine.watch_exec(self._watched, self._planted_exec)

    def _planted_exec(self, addr: int) -> None:
        if self.core.word_at(addr) != self._watched.get(addr):     # the guest wrote over the planted word
            self.overwritten_exec[addr] = self.overwritten_exec.get(addr, 0) + 1

    def _planted_read(self, addr: int) -> None:
        if self.core.word_at(addr) == self._watched.get(addr):
            self.planted_reads[addr] = self.planted_reads.get(addr, 0) + 1

    def stats(self) -> dict:
        return {
            "instructions": int(self.page["instructions"]),
            "exits": self.page["exits"].tolist(),
            "exits_over_time": self.core.rate.snapshot(),
            "latency_ns": {"vcpu": self.core.local_ns["vcpu"], **self.latency},
            "inprocess_kernel_ns": self.core.local_ns["kernel"],
            "inprocess_kernel_total": self.core.local_total["kernel"],
            "cost_by_kind": self.core.cost_by_kind,
            "mmio_total_ns": self.mmio_total_ns,
            "planted_exec": {f"{k:#x}": v for k, v in self.core.planted.items()},
            "host_iac": {f"{k:#x}": v for k, v in self.core.host_iac.items()},
            "handler_instructions": {str(k): v for k, v in self.core.handler_instructions.items()},
            "host_debug_missed": {kind: {f"{k:#x}": v for k, v in m.items()}
                                  for kind, m in self.core.missed.items()},
            "interrupts": _by_kind(self.core.delivered),
            "guest_debug_lost": {f"{k:#x}": v for k, v in self.core.guest_debug_lost.items()},
            "guest_debug_armed": self.core.guest_armed,
            "planted_reads": {f"{k:#x}": v for k, v in self.planted_reads.items()},
            "overwritten_exec": {f"{k:#x}": v for k, v in self.overwritten_exec.items()},
            "state": int(self.state[0]),
            "exit_code": int(np.int32(np.uint32(self.page["exit_code"]))),
            "pc": self.core.pc,
            "mmio_ns": self.mmio_ns,
            "mmio_posted": self.mmio_posted,
            "idle": ({"naps": self.core.naps, **self.idle.stats(), "spin_yields": self.engine.spin_yields}
                     if self.idle is not None else None),
            "mmu": self._mmu_stats(),
            "baton": self.engine.baton_stats if self.gate.deterministic else None,
            "timers": {"fired": self.core.timers.fired, "delivered": self.core.async_delivered,
                       "merged": self.core.timers.merged,
                       "pending": self.core.timers.pending_at_end(),
                       "timebase": self.engine.timebase},
            "messages": dict(self.ep.sent),
            "transport": self.ep.counters(),
        }

    def _mmu_stats(self) -> dict:
        mmu = self.core.mmu
        if mmu is None:
            return {}
        return {"tlb_writes": mmu.writes, "misses": mmu.misses, "host_tlb_flushes": self.engine.tlb_flushes,
                "host_tlb_fills": self.engine.tlb_fills}

    def log(self, level: str, text: str):
        try:
            self.ep.send("supervisor", wire.Log(self.name, level, text))
        except Exception:
            pass

    def _notice(self, text: str):
        self.log("warn", text)

    def close(self):
        self.trace.close()
        self.exits.close()
        self.gate.close()
        self.core = None
        self.engine = None
        self.page = None
        self.pages.close()
        self.ram.close()
        if self.guest_tlb is not None:
            self.guest_tlb.close()
        if getattr(self, "ledger", None) is not None:
            self.ledger.close()
        self.ep.close()


def _by_kind(delivered: dict[tuple[int, int], int]) -> dict[str, dict[str, int]]:
    """{(IVOR, SRR0): n} as {kind: {"0x...": n}} (kinds named as in isa.IVOR_NAME)."""
    out: dict[str, dict[str, int]] = {}
    for (ivor, srr0), n in sorted(delivered.items()):
        out.setdefault(IVOR_NAME.get(ivor, f"ivor{ivor}"), {})[f"{srr0:#x}"] = n
    return out


def main(spec: dict) -> None:
    VcpuProcess(spec).serve()
