"""The Book E vCPU: architected state, privileged-instruction emulation, interrupt delivery and the
debug facilities, on top of the execution engine.

Invariants:
  - The architected MSR and SPR file live in the run page; unicorn always runs in problem state.
  - Every exception is classified from the faulting word (cosim.isa.classify), turned into an `Event`,
    and routed by the CPU model's table: NATIVE/LOCAL are emulated here, GUEST is delivered straight to
    the guest vector, KERNEL comes out of `run()` as an `Exit` for the kernel process.
  - Debug facilities are owned by the host while the kernel has KVM_GUESTDBG_ENABLE set in the run page
    (guest writes to IAC/DAC/DBCR/DBSR ignored, MSR[DE] frozen, DBCR0[EDM] visible), else by the guest
    (DBCR0[IDM] and MSR[DE]).
"""
from __future__ import annotations

import os
from dataclasses import replace
from time import perf_counter_ns

import numpy as np

from .. import mutation
from ..cpu_models import CpuModel, Event, Route
from ..exit_rate import ExitRate
from ..isa import (DAC_R_BITS, DAC_W_BITS, DBELL, DBELL_CRIT, DOORBELL_KINDS, IAC_BITS, IVOR_SPR, PRIVILEGED_KINDS,
                   SPR, Dbcr0, Dbsr, DebugStatus, Esr, GuestDebug, Ivor, Kind, Msr, classify, doorbell_message,
                   interrupt_vector)
from ..strategies import STRATEGIES
from ..vmexit import IDLE, Exit, Fault, Until
from .engine import Engine, Stop, StopKind
from .mmu import Mmu
from .runpage import DAC_RANGE, EVENTS, LEVELS
from .timers import Timers

S = SPR
READ_ONLY_SPRS = frozenset({S["PIR"], S["PVR"], S["TLB0CFG"], S["TLB1CFG"], S["MMUCFG"], S["L1CFG0"],
                            S["L1CFG1"], S["SVR"]})
NATIVE_SPRS = frozenset({S["USPRG0"], S["SPRG3"], S["SPRG4"], S["SPRG5"], S["SPRG6"], S["SPRG7"]})  # user-readable
L1CSR_KEEP = 0x00010001            # L1CSRn: CPE and the enable bit stay; invalidate/lock-clear bits read 0
MMU_KINDS = frozenset({Kind.TLBWE, Kind.TLBRE, Kind.TLBSX, Kind.TLBIVAX, Kind.TLBILX})
DEBUG_SPRS = frozenset({S["DBCR0"], S["DBCR1"], S["DBCR2"], S["DBSR"], S["IAC1"], S["IAC2"],
                        S["IAC3"], S["IAC4"], S["DAC1"], S["DAC2"]})
EVENT_INDEX = {name: i for i, name in enumerate(EVENTS)}
SPR_NAMES = {n: name for name, n in reversed(list(SPR.items()))}
PLANTED_WORDS = frozenset(s.word for s in STRATEGIES.values() if s.word is not None)
LEVEL_INDEX = {name: i for i, name in enumerate(LEVELS)}
LOCAL_SAMPLES = 50_000
_FAST_TRAP = os.environ.get("COSIM_FAST_TRAP", "1") != "0"   # 0: every one stops the run
# the words Core.fast_trap emulates in the engine's hook: mfmsr, wrtee, wrteei (every register, both E)
_FAST_KINDS = {d.word: d for d in (classify(w) for w in
                                   [0x7C0000A6 | r << 21 for r in range(32)] + [0x7C000106 | r << 21 for r in range(32)]
                                   + [0x7C000146, 0x7C008146])}
_LOSE_TIMER_IRQ = mutation.active("lose-timer-irq")


class GuestFault(Exception):
    pass


class Core:
    def __init__(self, engine: Engine, rec: np.ndarray, model: CpuModel, ram_words: np.ndarray,
                 pristine: dict[int, int] | None = None, rate: ExitRate | None = None, mmu: Mmu | None = None):
        """`rec` is this vCPU's run page as a one-record structured array (RunPages.record(i)): its
        field views index in well under a microsecond, where a structured scalar takes ~2 us. `rate`
        counts the exits per time bin (cosim/exit_rate.py; default: bins from now)."""
        self.engine = engine
        self.page = rec[0]
        self.model = model
        self.words = ram_words            # guest RAM as big-endian 32-bit words
        self.spr = rec["spr"][0]          # views into the run page
        self.exits = rec["exits"][0]
        self.rate = rate if rate is not None else ExitRate()
        self.gprs = rec["gpr"][0]
        self._msr = rec["msr"]
        self._ctl = rec["dbg_control"]
        self._dbg = tuple(rec[n][0] for n in ("dbg_iac", "dbg_iac_on", "dbg_dac", "dbg_dac_rw"))
        self._scalars = [rec[n] for n in ("pc", "cr", "lr", "ctr", "xer")]
        self.pc = 0
        self._handler_entry: dict[int, tuple[int, int]] = {}   # save SPR -> (ivor, icount)
        self.handler_instructions: dict[int, list[int]] = {}    # ivor -> [returns, instructions]
        self.can_idle = False        # MSR[WE]/wait halt the vCPU (the process sets it: cosim/vcpu/idle.py)
        self.idle = False            # halted until an interrupt
        self.naps = 0                # times the guest halted so
        self.step = False                 # single-stepping (guest IC or host SINGLESTEP)
        self.step_due = False             # stepping, and the instruction completed through an
                                          # emulation or an interrupt: the step event is due now
        self._exit_stepping = False       # stepping was on when the last exception was raised
        self._dbg_key = None
        self.pristine = pristine or {}    # addr -> code word as loaded (ground truth for the report)
        self.planted: dict[int, int] = {}  # addr -> executions of a word that is not the loaded one
        self.host_iac: dict[int, int] = {}  # addr -> host IAC events
        # handling time of events handled without leaving the vCPU process, by the level counted:
        # "vcpu" (native, or straight to a guest vector) and "kernel" (KVM PR emulation done in-process)
        self.local_ns: dict[str, list[int]] = {"vcpu": [], "kernel": []}
        self.local_total = {"vcpu": 0, "kernel": 0}    # all of them (local_ns keeps LOCAL_SAMPLES)
        self._last_level = "vcpu"
        self._last_kind = ""               # what the last event handled in-process was (cost_by_kind)
        self.cost_by_kind: dict[str, list[int]] = {}   # kind -> [events, ns] handled in this process
        self._retried: int | None = None   # pc re-run once after a flush (stale translation check)
        self.until: int | None = None      # guest.until: the run ends before this instruction
        self.quiet = _never                # the process: nothing sent since the quantum began (lockstep.py)
        self.dep = True                    # E.HV MSRP[DEP]; False: the guest's MSR[DE] gates host debug
        self.missed: dict[str, dict[int, int]] = {"iac": {}, "dac": {}, "step": {}}  # gated host events
        self.delivered: dict[tuple[int, int], int] = {}   # (IVOR, SRR0) -> interrupts given the guest
        self.mmu = mmu                     # the Book E MMU (a board with one), None: identity-mapped
        self._priv_level = "vcpu" if model.route(Event.PRIV) is Route.NATIVE else "kernel"
        self.timers = Timers(self.spr, lambda: engine.clock, lambda: engine.timebase,
                             lambda tb: engine.set_timebase(tb))
        t = self.timers
        self._spr_read = {S["DEC"]: t.read_dec, S["TSR"]: t.read_tsr,
                          S["TBL_R"]: lambda: engine.timebase & 0xFFFFFFFF,
                          S["TBU_R"]: lambda: engine.timebase >> 32}
        self._dec_shown = 0                # DEC as the run page showed it at the last stop (load_timer_sprs)
        self._spr_write = {S["DEC"]: self._timer_write(self._write_dec), S["TSR"]: t.write_tsr,
                           S["TCR"]: self._timer_write(t.write_tcr),
                           # several vCPUs share one time base, as the cores of a KVM guest share the host's:
                           # their writes are ignored, as KVM ignores them (kvmppc_emulate_mtspr: "All guest
                           # timebase writes are ignored"). Honoured, Linux's software time-base sync
                           # (smp-tbsync.c) set each secondary's own offset from a contest whose result
                           # depends on host scheduling: under load the cores disagreed by ~7,000 ticks,
                           # time ran backwards from one core to the other, and a 2-vCPU boot stalled with
                           # jiffies stopped. One vCPU: QEMU's per-CPU write (cpu_ppc_store_tbl).
                           S["TBL"]: (lambda v: None) if engine.shares_clock else self._timer_write(t.write_tbl),
                           S["TBU"]: (lambda v: None) if engine.shares_clock else self._timer_write(t.write_tbu),
                           S["L1CSR0"]: self._masked(S["L1CSR0"], L1CSR_KEEP),
                           S["L1CSR1"]: self._masked(S["L1CSR1"], L1CSR_KEEP),
                           S["PID"]: self._write_pid, S["MMUCSR0"]: self._write_mmucsr0}
        for n in NATIVE_SPRS:
            self._spr_write[n] = self._native(n)
        self.async_delivered = {"decrementer": 0, "fit": 0, "watchdog": 0, "external": 0, "critical": 0,
                                "doorbell": 0, "doorbell_critical": 0}
        self.doorbells = 0                 # pending doorbells: bit DBELL, bit DBELL_CRIT (e500mc)
        self.send_doorbell = None          # (type, broadcast, pir) -> None: msgsnd's delivery (the process)
        self.irq_lines = [False] * 5       # the interrupt controller's outputs to this CPU (wire.IrqLine)
        self.irq_iack: int | None = None   # external proxy mode: where to read the vector on delivery
        self.mmio_read = None              # (paddr, size) -> value: a load the device models answer
        self.planted_at = None             # the breakpoint ledger's planted_at (word planted at an address)
        # issue 20: the guest's own debug set-up while the host owns the facility (its writes do not
        # reach the registers) and the events it would have taken: addr -> count (guest-debug-lost)
        self.guest_shadow: dict[int, int] = {}
        self.guest_debug_lost: dict[int, int] = {}
        self.guest_armed: tuple[int, int] | None = None   # (DBCR0 written with IDM, DBCR0 read then)
        if _FAST_TRAP:
            engine.fast_trap = self.fast_trap

    # --- state -------------------------------------------------------------------------------------
    def reset(self, entry: int, pir: int) -> None:
        self._msr[0] = 0
        self.spr[S["PIR"]] = pir
        self.spr[S["PVR"]] = self.model.pvr
        if self.mmu is not None:
            self.spr[S["TLB0CFG"]] = self.mmu.g.tlbncfg(0)
            self.spr[S["TLB1CFG"]] = self.mmu.g.tlbncfg(1)
        self.spr[S["L1CFG0"]] = self.spr[S["L1CFG1"]] = self.model.l1cfg
        self.pc = entry
        self.engine.set_timebase(0)
        self._sync_context()
        self.apply_debug()

    # --- SPRs with side effects, the MMU context, time ----------------------------------------------
    def _sync_context(self) -> None:
        self.engine.set_context(int(self._msr[0]), int(self.spr[S["PID"]]))

    def _timer_write(self, write):
        def go(value: int) -> None:
            write(value)
            self.engine.set_deadline(self.timers.deadline())
        return go

    def _write_dec(self, value: int) -> None:
        self.timers.write_dec(value)
        self._dec_shown = int(self.spr[S["DEC"]])

    def load_timer_sprs(self) -> None:
        """After a debugger wrote SPRs while the vCPU was stopped (KVM_SET_SREGS / ONE_REG): a DEC that
        differs from the live value `save_regs` showed is its write of DEC (mtspr's effect: the count
        restarts from it); TCR/DECAR it wrote in place; the next deadline follows them."""
        dec = int(self.spr[S["DEC"]])
        if dec != self._dec_shown:
            self._write_dec(dec)
        self.engine.set_deadline(self.timers.deadline())

    def _masked(self, spr: int, keep: int):
        def go(value: int) -> None:
            self.spr[spr] = value & keep
        return go

    def _native(self, spr: int):
        def go(value: int) -> None:
            self.spr[spr] = value
            self.engine.set_native_spr(spr, value)
        return go

    def _write_pid(self, value: int) -> None:
        self.spr[S["PID"]] = value & 0x3FFF
        self._sync_context()

    def _write_mmucsr0(self, value: int) -> None:
        if self.mmu is not None:
            self.mmu.mmucsr0(value)
        self.spr[S["MMUCSR0"]] = 0

    def timer_tick(self) -> Fault | None:
        """The clock reached the timers' deadline: update their status, arm the next one."""
        what = self.timers.advance()
        self.engine.set_deadline(self.timers.deadline())
        if what == "reset":
            return Fault(self.pc, f"watchdog reset requested (TCR[WRC]) at {self.pc:#010x}")
        return None

    def set_irq_line(self, line: int, level: bool) -> None:
        self.irq_lines[line] = bool(level)

    def set_irq_proxy(self, iack: int | None) -> None:
        self.irq_iack = iack

    def take_async(self) -> bool:
        """Deliver the highest-priority asynchronous interrupt the guest has enabled, if any: critical
        input and the watchdog (MSR[CE]), then external input, the decrementer and the FIT (MSR[EE]),
        QEMU's order. SRR0 = the next instruction. Returns whether one was delivered. External and
        critical inputs are levels: the interrupt controller lowers them (an IACK read, an EOI)."""
        dec, fit, wdt = self.timers.pending()
        msr = self.msr
        lines = self.irq_lines
        if lines[1] and msr & Msr.CE:
            ivor, name = Ivor.CRITICAL, "critical"
        elif wdt and msr & Msr.CE:
            ivor, name = 12, "watchdog"
        elif self.doorbells & (1 << DBELL_CRIT) and msr & Msr.CE:
            ivor, name = Ivor.DOORBELL_CRITICAL, "doorbell_critical"
        elif lines[0] and msr & Msr.EE:
            ivor, name = Ivor.EXTERNAL, "external"
        elif dec and msr & Msr.EE:
            ivor, name = Ivor.DECREMENTER, "decrementer"
        elif fit and msr & Msr.EE:
            ivor, name = 11, "fit"
        elif self.doorbells & (1 << DBELL) and msr & Msr.EE:
            ivor, name = Ivor.DOORBELL, "doorbell"
        else:
            return False
        if ivor in (Ivor.DOORBELL, Ivor.DOORBELL_CRITICAL):
            self.doorbells &= ~(1 << (DBELL if ivor == Ivor.DOORBELL else DBELL_CRIT))   # taken: no longer pending
        if ivor == Ivor.EXTERNAL and self.irq_iack is not None and self.mmio_read is not None:
            # proxy mode: the CPU acknowledges as it takes the interrupt (QEMU's powerpc_excp_booke);
            # the controller lowers the line before the read completes
            self.spr[S["EPR"]] = self.mmio_read(self.irq_iack, 4) & 0xFFFFFFFF
        self.deliver(ivor, self.pc)
        self.async_delivered[name] += 1
        if name == "decrementer":
            self.timers.owed["dec"] = False
        # (a doorbell is an IPI KVM injects, counted with the external inputs, not as a timer)
        event = Event.EXTERNAL if name in ("external", "critical", "doorbell", "doorbell_critical") else Event.TIMER
        route = self.model.route(event)
        self._last_level = "vcpu" if route in (Route.GUEST, Route.NATIVE) else "kernel"
        self.count(event.value, self._last_level)
        return True

    def read_word(self, vaddr: int) -> int:
        """The instruction word at guest virtual address `vaddr` (0 where nothing maps it)."""
        pa = self.engine.translate(vaddr, 0)
        return int(self.words[pa >> 2]) if pa is not None and 0 <= pa < self.engine.ram_size else 0

    def physical(self, vaddr: int) -> int | None:
        return self.engine.translate(vaddr, 0)

    @property
    def msr(self) -> int:
        return int(self._msr[0])

    @msr.setter
    def msr(self, value: int) -> None:
        if self.host_debug and self.dep:   # MSRP[DEP]: the guest cannot change MSR[DE] while the host debugs
            value = (value & ~Msr.DE) | (int(self._msr[0]) & Msr.DE)
        self._msr[0] = value & self.model.msr_mask
        self._sync_context()

    @property
    def host_debug(self) -> bool:
        return bool(int(self._ctl[0]) & GuestDebug.ENABLE)

    @property
    def host_gated(self) -> bool:
        """MSRP[DEP] = 0 and the guest's MSR[DE] = 0: the host's debug events do not happen."""
        return not self.dep and not self.msr & Msr.DE and self.host_debug

    def word_at(self, addr: int) -> int:
        if self.mmu is not None:
            return self.read_word(addr)
        return int(self.words[addr >> 2]) if 0 <= addr < self.engine.ram_size else 0

    def save_regs(self) -> None:
        """Write unicorn's registers back to the run page (at every stop)."""
        regs = self.engine.read_regs()
        self.gprs[:] = regs[:32]
        regs[32] = self.pc
        for view, value in zip(self._scalars, regs[32:]):
            view[0] = value
        tb = self.engine.timebase                   # the time base as the guest would read it now
        self.page["tb_offset"] = (tb - self.engine.clock) & (2**64 - 1)
        self.spr[S["TBL_R"]] = tb & 0xFFFFFFFF
        self.spr[S["TBU_R"]] = tb >> 32
        self.spr[S["DEC"]] = self._dec_shown = self.timers.read_dec()   # ... and DEC and TSR (gdb's decr, tsr)
        self.timers.read_tsr()

    def load_regs(self) -> None:
        """Take registers from the run page (after kernel/userspace wrote them, KVM_SET_REGS)."""
        self.engine.write_regs([*self.gprs, *(v[0] for v in self._scalars)])
        self.pc = int(self._scalars[0][0])

    def count(self, event: str, level: str) -> None:
        self.exits[EVENT_INDEX[event], LEVEL_INDEX[level]] += 1
        self.rate.tick()

    # --- interrupts ---------------------------------------------------------------------------------
    def deliver(self, ivor: int, srr0: int, esr: int | None = None, dbsr: int = 0) -> None:
        """Book E interrupt delivery: save PC/MSR in the class's save/restore pair, new MSR, vector."""
        key = (ivor, srr0 & 0xFFFFFFFF)
        self.delivered[key] = self.delivered.get(key, 0) + 1
        self.engine.lose_reservation()     # an interrupt clears the lwarx reservation (issue 20)
        msr = self.msr
        if ivor == Ivor.DEBUG:
            save0, save1 = self.model.debug_srr
            new_msr = msr & Msr.ME
            self.spr[S["DBSR"]] |= dbsr
        elif ivor in (Ivor.CRITICAL, 12, Ivor.DOORBELL_CRITICAL):
            save0, save1 = S["CSRR0"], S["CSRR1"]
            new_msr = msr & Msr.ME
        elif ivor == Ivor.MACHINE_CHECK:
            save0, save1 = S["MCSRR0"], S["MCSRR1"]
            new_msr = 0
        else:
            save0, save1 = S["SRR0"], S["SRR1"]
            new_msr = msr & (Msr.CE | Msr.ME | Msr.DE)
        self.idle = False                    # an interrupt ends a halt (MSR[WE] is not in the new MSR)
        self.spr[save0] = srr0 & 0xFFFFFFFF
        self.spr[save1] = msr
        self._handler_entry[save0] = (ivor, int(self.page["instructions"]))
        if esr is not None:
            self.spr[S["ESR"]] = esr
        self._msr[0] = new_msr if not (self.host_debug and self.dep) else (new_msr & ~Msr.DE) | (msr & Msr.DE)
        self.pc = interrupt_vector(int(self.spr[S["IVPR"]]), int(self.spr[IVOR_SPR[ivor]]))
        self._sync_context()
        self.apply_debug()

    # --- privileged instructions --------------------------------------------------------------------
    def _sleep(self) -> None:
        """MSR[WE] or `wait`: halted until an interrupt, where the process lets the vCPU halt."""
        if self.can_idle:
            self.idle = True
            self.naps += 1

    def emulate(self, d) -> None:
        """Emulate one privileged instruction at self.pc (guest supervisor state)."""
        eng = self.engine
        k = d.kind
        nxt = self.pc + 4
        if k is Kind.MFMSR:
            eng.set_gpr(d.reg, self.msr)
        elif k is Kind.MTMSR:
            self.msr = eng.gpr(d.reg)
            self.apply_debug()
            if self.msr & Msr.WE:        # e500v2 doze/nap (Linux's idle loop): halted until an interrupt,
                self._sleep()            # which clears MSR[WE]
        elif k is Kind.WAIT:
            self._sleep()
        elif k in DOORBELL_KINDS:
            kind, broadcast, pir = doorbell_message(eng.gpr(d.rb))
            if kind in (DBELL, DBELL_CRIT):            # (a guest's G_DBELL* types do nothing, as in KVM)
                if k is Kind.MSGCLR:
                    self.doorbells &= ~(1 << kind)
                else:
                    self.receive_doorbell(kind, broadcast, pir)
                    if self.send_doorbell is not None:
                        self.send_doorbell(kind, broadcast, pir)
        elif k is Kind.WRTEE:
            self.msr = (self.msr & ~Msr.EE) | (eng.gpr(d.reg) & Msr.EE)
        elif k is Kind.WRTEEI:
            self.msr = (self.msr & ~Msr.EE) | (Msr.EE if d.e else 0)
        elif k is Kind.MFSPR:
            eng.set_gpr(d.reg, self.read_spr(d.spr))
        elif k is Kind.MTSPR:
            self.write_spr(d.spr, eng.gpr(d.reg))
        elif k in MMU_KINDS:
            ea = ((eng.gpr(d.ra) if d.ra else 0) + eng.gpr(d.rb)) & 0xFFFFFFFF
            mmu = self.mmu
            if k is Kind.TLBWE:
                mmu.tlbwe()
            elif k is Kind.TLBRE:
                mmu.tlbre()
            elif k is Kind.TLBSX:
                mmu.tlbsx(ea)
            elif k is Kind.TLBIVAX:
                mmu.tlbivax(ea)
            else:
                mmu.tlbilx(d.reg & 3, ea)
        elif k in (Kind.RFI, Kind.RFCI, Kind.RFDI, Kind.RFMCI):
            pair = {Kind.RFI: ("SRR0", "SRR1"), Kind.RFCI: ("CSRR0", "CSRR1"),
                    Kind.RFDI: ("DSRR0", "DSRR1"), Kind.RFMCI: ("MCSRR0", "MCSRR1")}[k]
            nxt = int(self.spr[S[pair[0]]])
            self.msr = int(self.spr[S[pair[1]]])
            self.apply_debug()
            self._handler_done(S[pair[0]])
        self.pc = nxt

    def receive_doorbell(self, kind: int, broadcast: bool, pir: int) -> None:
        """A msgsnd's message reached this processor: pending if it is addressed here (KVM's
        kvmppc_e500_emul_msgsnd: BRDCAST, or PIRTAG = this vCPU's PIR)."""
        if broadcast or pir == int(self.spr[S["PIR"]]):
            self.doorbells |= 1 << kind

    def _handler_done(self, save0: int) -> None:
        """An rfi-class return: charge the guest instructions since the matching delivery to its IVOR
        (`handler_instructions[ivor] = [returns, instructions]`; exact to one translated block)."""
        entry = self._handler_entry.pop(save0, None)
        if entry is not None:
            ivor, start = entry
            acc = self.handler_instructions.setdefault(ivor, [0, 0])
            acc[0] += 1
            acc[1] += int(self.page["instructions"]) - start

    def read_spr(self, spr: int) -> int:
        hook = self._spr_read.get(spr & 0x3FF)
        if hook is not None:
            return hook()
        value = int(self.spr[spr & 0x3FF])
        if spr == S["DBCR0"] and self.host_debug:
            value |= Dbcr0.EDM
        return value

    def write_spr(self, spr: int, value: int) -> None:
        spr &= 0x3FF
        if spr in READ_ONLY_SPRS:
            return
        if spr in DEBUG_SPRS:
            if self.host_debug:                     # the external debugger owns the facility: the write
                if spr == S["DBCR0"]:               # is lost, kept aside only to count what the guest
                    value &= ~(Dbcr0.RST | Dbcr0.EDM)   # loses by it (guest-debug-lost)
                    if value & Dbcr0.IDM:           # and what it reads back instead, for the report
                        self.guest_armed = (value, self.read_spr(spr))
                self.guest_shadow[spr] = value
                self.apply_debug()
                return
            if spr == S["DBSR"]:                    # write one to clear
                self.spr[spr] &= ~value & 0xFFFFFFFF
                return
            if spr == S["DBCR0"]:
                value &= ~(Dbcr0.RST | Dbcr0.EDM)   # never reset the core; EDM is read-only
            self.spr[spr] = value
            self.apply_debug()
            return
        hook = self._spr_write.get(spr)
        if hook is not None:
            hook(value)
            return
        self.spr[spr] = value

    # --- debug facilities ---------------------------------------------------------------------------
    def apply_debug(self) -> None:
        """Arm the engine's IAC/DAC hooks and step mode from whoever owns the debug facility."""
        control = int(self._ctl[0])
        if control & GuestDebug.ENABLE:
            if control & GuestDebug.USE_HW_BP:
                iac_a, iac_on, dac_a, dac_rw = (v.tolist() for v in self._dbg)
                iac = tuple(a if on else None for a, on in zip(iac_a, iac_on))
                dac = tuple((a, bool(rw & 1), bool(rw & 2)) if rw else None for a, rw in zip(dac_a, dac_rw))
                if dac_rw[0] & DAC_RANGE:    # DBCR2[DAC12M] range: DAC1 <= EA < DAC2
                    dac = ((dac_a[0], bool(dac_rw[0] & 1), bool(dac_rw[0] & 2), dac_a[1] - dac_a[0]), None)
            else:
                iac = dac = (None, None)
            step = bool(control & GuestDebug.SINGLESTEP)
            gated = self.host_gated          # MSRP[DEP]=0, MSR[DE]=0: a host step never happens
            iac = tuple(iac) + self._lost_iac()   # slots past the CPU's: the guest's own, only counted
            key = ("host", iac, dac, step, gated)
            if step and gated:
                if key != self._dbg_key:     # counted once per step request that goes missing
                    self.missed["step"][self.pc] = self.missed["step"].get(self.pc, 0) + 1
                step = False
        else:
            dbcr0 = int(self.spr[S["DBCR0"]])
            on = bool(self.msr & Msr.DE) and bool(dbcr0 & Dbcr0.IDM)
            iac = tuple(int(self.spr[S["IAC1"] + i]) if on and dbcr0 & IAC_BITS[i] else None
                        for i in range(self.model.iac_slots))
            dac = tuple((int(self.spr[S["DAC1"] + i]), bool(dbcr0 & DAC_R_BITS[i]), bool(dbcr0 & DAC_W_BITS[i]))
                        if on and dbcr0 & (DAC_R_BITS[i] | DAC_W_BITS[i]) else None
                        for i in range(self.model.dac_slots))
            step = on and bool(dbcr0 & Dbcr0.IC)
            key = ("guest", iac, dac, step)
        if key == self._dbg_key:
            return
        self._dbg_key = key
        self.engine.set_iac(tuple(a for a in iac))
        self.engine.set_dac(dac)
        self.step = step

    def _lost_iac(self) -> tuple[int | None, ...]:
        """IACs the guest armed for itself (DBCR0[IDM] and its IACn bits) while the host owns the
        facility: watched in engine slots after the CPU's own, to count the events it does not get."""
        sh = self.guest_shadow
        dbcr0 = sh.get(S["DBCR0"], 0)
        if not dbcr0 & Dbcr0.IDM:
            return ()
        return tuple(sh.get(S["IAC1"] + i) if dbcr0 & IAC_BITS[i] else None for i in range(self.model.iac_slots))

    def _guest_event_lost(self, stop: Stop) -> Exit | Fault | Until | None:
        """The guest's own IAC matched while the host owns the debug facility: it does not happen
        (KVM's model); count it and run the instruction as if nothing matched."""
        self.guest_debug_lost[stop.pc] = self.guest_debug_lost.get(stop.pc, 0) + 1
        self.pc = stop.pc
        nxt = self.engine.displaced(stop.pc, self.word_at(stop.pc), suppress_dac=True)
        if nxt.kind is StopKind.STEP and not self.step:
            self.pc = nxt.pc
            return None
        return self.on_stop(nxt)

    # --- running ------------------------------------------------------------------------------------
    def run(self, kicked=lambda: False) -> Exit | Fault | Until | None:
        """Run the guest until an event must cross to the kernel (Exit), the guest faults (Fault), or
        a kick asks the vCPU to come out (None). Native and guest-routed events are handled here."""
        engine = self.engine
        while True:
            control = int(self._ctl[0])
            stepping = self.step and control & GuestDebug.SINGLESTEP
            if stepping and _LOSE_TIMER_IRQ and int(self.spr[S["TSR"]]) & 0x08000000:
                self.spr[S["TSR"]] = int(self.spr[S["TSR"]]) & ~0x08000000    # (test-only mutation)
            if engine.deadline_due and not (stepping and control & GuestDebug.NOTIMER):
                fault = self.timer_tick()
                if fault is not None:
                    return fault
            if (self.timers.dec_value or int(self.spr[S["TSR"]]) or self.irq_lines[0] or self.irq_lines[1]
                    or self.doorbells) \
                    and not (stepping and control & GuestDebug.BLOCKIRQ):
                if self.take_async() and stepping:
                    self.step_due = False    # the interrupt is the step's event: stop at the vector's
                    return self._step_event(self.pc)   # first instruction (QEMU with Qqemu.sstep=0x1)
            if self.idle:                    # halted (MSR[WE], wait) and nothing to take yet
                return IDLE
            if self.pc == self.until:        # (reached by a step or a resume; the engine's hook
                return Until(self.pc)        # stops a free run there)
            if self.step_due:
                self.step_due = False
                if self.step:                # one instruction done (emulated, or it interrupted)
                    return self._stepped(self.pc)
            stop = self.engine.step(self.pc, self.word_at(self.pc)) \
                if self.step or self.engine.budget_due \
                else self.engine.run(self.pc, self.quiet() and self._settled())
            t0 = perf_counter_ns()
            out = self.on_stop(stop)
            if out is not None:
                return out
            if stop.kind is StopKind.INTERRUPT or stop.kind is StopKind.MMU:
                # handled in this process: what each kind costs
                self._charge(perf_counter_ns() - t0, stop.kind is StopKind.INTERRUPT)
            if kicked():
                return None

    def _settled(self) -> bool:
        """Nothing for this loop to do before the next instruction but run it: no interrupt pending
        (the timer status, the input lines, doorbells), not halted or stepping. With `quiet` (nothing
        sent to another process since the quantum began) a deterministic plan's next quantum may then
        begin inside the engine's block hook: what could change this meanwhile stops the run (a timer
        deadline, a privileged instruction) or disarms the hook (an MMIO access); fast_trap declines
        what would let an interrupt in; a quantum that would begin at `until` is left to this loop."""
        return not (self.step or self.step_due or self.idle or self.doorbells
                    or int(self.spr[S["TSR"]]) or self.irq_lines[0] or self.irq_lines[1])

    def fast_trap(self, pc: int) -> bool:
        """The engine's interrupt hook offers a program interrupt at `pc` here first: `mfmsr`, `wrtee`
        and `wrteei` in supervisor state (Linux masks interrupts with them: ~350k per boot) are
        emulated inside the hook, and unicorn goes on at the next instruction without the run
        stopping and starting again (~13 us each that way). Not when stepping, and not for a
        wrtee/wrteei that enables MSR[EE] while an interrupt or a timer deadline waits: those take the
        ordinary path, which delivers it at the next instruction. Counted as the ordinary path counts."""
        t0 = perf_counter_ns()
        if self.step or self._msr[0] & Msr.PR:
            return False
        d = _FAST_KINDS.get(self.word_at(pc))
        if d is None:
            return False
        eng = self.engine
        k = d.kind
        if k is Kind.MFMSR:
            eng.set_gpr(d.reg, int(self._msr[0]))
        else:
            ee = (eng.gpr(d.reg) if k is Kind.WRTEE else d.e << 15) & Msr.EE
            msr = int(self._msr[0])
            # (what MSR[EE] would let in at the next instruction: a timer status bit up, the external
            # input, a doorbell, or a timer event due now; an armed decrementer that has not expired is
            # none of them: declining for it sent almost every enabling wrtee the slow way, 19 us each)
            if ee and not msr & Msr.EE and (int(self.spr[S["TSR"]]) or self.irq_lines[0] or self.doorbells
                                            or eng.deadline_due):
                return False
            self.msr = (msr & ~Msr.EE) | ee
        self.pc = (pc + 4) & 0xFFFFFFFF
        level = self._priv_level
        self._last_kind, self._last_level = k.value, level
        self.count(Event.PRIV.value, level)
        self._charge(perf_counter_ns() - t0, True)
        return True

    def _charge(self, dt: int, exit_sample: bool) -> None:
        """`dt` ns of host time spent on the event just handled in this process (self._last_kind at
        self._last_level): to its kind's cost, and (`exit_sample`, an exit rather than an MMU stop) to
        the level's in-process count and latency samples."""
        c = self.cost_by_kind.get(self._last_kind)
        if c is None:
            self.cost_by_kind[self._last_kind] = [1, dt]
        else:
            c[0] += 1
            c[1] += dt
        if exit_sample:
            self.local_total[self._last_level] += 1
            samples = self.local_ns[self._last_level]
            if len(samples) < LOCAL_SAMPLES:
                samples.append(dt)

    def on_stop(self, stop: Stop) -> Exit | Fault | None:
        kind = stop.kind
        if kind is StopKind.KICK:
            self.pc = stop.pc
            return None
        if kind is StopKind.FAULT:
            self.pc = stop.pc
            return Fault(stop.pc, stop.error)
        if kind is StopKind.UNTIL:
            self.pc = stop.pc
            return Until(stop.pc)
        if kind is StopKind.STEP:
            self.pc = stop.pc
            return self._stepped(stop.pc) if self.step else None
        if kind is StopKind.MMU:
            return self._storage(stop)
        if kind is StopKind.IAC and stop.slot >= self.model.iac_slots:
            return self._guest_event_lost(stop)
        if kind in (StopKind.IAC, StopKind.DAC) and self.host_gated:
            return self._gated(stop)
        if kind is StopKind.IAC:
            self.pc = stop.pc
            if self.host_debug:
                self.host_iac[stop.pc] = self.host_iac.get(stop.pc, 0) + 1
            return self._debug_event(stop.pc, IAC_BITS[stop.slot], stop.pc, DebugStatus.BREAKPOINT,
                                     addr=stop.pc)
        if kind is StopKind.DAC:
            self.pc = stop.pc
            bit = (DAC_W_BITS if stop.write else DAC_R_BITS)[stop.slot]
            status = DebugStatus.WATCH_WRITE if stop.write else DebugStatus.WATCH_READ
            return self._debug_event(stop.pc, bit, stop.pc, status, addr=stop.addr)
        return self._exception(stop)

    def _gated(self, stop: Stop) -> Exit | Fault | Until | None:
        """A host IAC/DAC event while the guest's MSR[DE] = 0 under MSRP[DEP] = 0: it does not happen.
        Count it and run the instruction (out of line, past the compare) as if nothing matched."""
        kind = stop.kind.value
        self.missed[kind][stop.pc] = self.missed[kind].get(stop.pc, 0) + 1
        self.pc = stop.pc
        nxt = self.engine.displaced(stop.pc, self.word_at(stop.pc), suppress_dac=True)
        if nxt.kind is StopKind.STEP and not self.step:
            self.pc = nxt.pc
            return None
        return self.on_stop(nxt)

    def _storage(self, stop: Stop) -> Fault | None:
        """The guest TLB refused an access: a TLB miss (MAS registers preloaded) or a storage
        interrupt, delivered to the guest's own vector (DEAR and ESR[ST] for data)."""
        self.pc = stop.pc
        self._exit_stepping = self.step
        if self.mmu is None:
            return Fault(stop.pc, f"an access at {stop.addr:#010x} refused by a TLB on a machine without one")
        fetch = stop.access == "fetch"
        msr = self.msr
        ts = 1 if msr & (Msr.IS if fetch else Msr.DS) else 0
        if stop.error == "tlb":
            self.mmu.on_miss(stop.addr, 0 if fetch else (2 if stop.write else 1), int(self.spr[S["PID"]]), ts)
            ivor, event = (Ivor.ITLB_MISS if fetch else Ivor.DTLB_MISS), Event.TLB_MISS
        else:
            self.mmu.misses["isi" if fetch else "dsi"] += 1
            ivor, event = (Ivor.ISI if fetch else Ivor.DSI), Event.STORAGE
        if not int(self.spr[IVOR_SPR[ivor]]) and not int(self.spr[S["IVPR"]]):
            return Fault(stop.pc, f"{event.value} at {stop.addr:#010x} ({stop.access}, pc {stop.pc:#010x}) "
                                  f"with no interrupt vector set (IVPR and IVOR{ivor} are 0)")
        if not fetch:
            self.spr[S["DEAR"]] = stop.addr
        self.deliver(ivor, stop.pc, None if fetch else (Esr.ST if stop.write else 0))
        self.completed()
        self._last_kind = f"{event.value} ({stop.access})"
        route = self.model.route(event)
        self._last_level = "vcpu" if route in (Route.GUEST, Route.NATIVE) else "kernel"
        self.count(event.value, self._last_level)
        return None

    def _stepped(self, next_pc: int) -> Exit | Fault:
        """The stop after a stepped instruction. Unless the host's step holds timers off (NOTIMER), an
        expiry during that instruction is in TSR at the stop, as on the silicon (gdb's $tsr, $decr = 0);
        its interrupt is taken before the next instruction (the next step, or the resume)."""
        control = int(self._ctl[0])
        if self.engine.deadline_due and not (control & GuestDebug.SINGLESTEP and control & GuestDebug.NOTIMER):
            fault = self.timer_tick()
            if fault is not None:
                return fault
        return self._step_event(next_pc)

    def _step_event(self, next_pc: int) -> Exit:
        return self._debug_event(next_pc, Dbsr.IC, next_pc, DebugStatus.SOFTWARE, addr=next_pc)

    def _debug_event(self, pc: int, dbsr_bit: int, srr0: int, status: int, addr: int) -> Exit:
        self._exit_stepping = False          # a debug event completes no instruction
        host = self.host_debug
        if not host:
            self.spr[S["DBSR"]] |= dbsr_bit          # the hardware records the guest's event
        return Exit(Event.DEBUG, pc, self.word_at(pc), Ivor.DEBUG, srr0, dbsr=dbsr_bit, addr=addr,
                    host=host, status=status)

    def _exception(self, stop: Stop, word: int | None = None) -> Exit | Fault | None:
        pc = stop.pc
        self.pc = pc
        self._exit_stepping = self.step      # the step state the instruction ran under (an rfci
                                             # that sets MSR[DE] completes no step)
        from_ram = word is None
        if from_ram:
            word = self.word_at(pc)
        d = classify(word)
        k = d.kind
        if from_ram and self._stale_translation(pc, stop.intno, word, k):
            self.engine.flush([pc])
            self._retried = pc
            return None                      # run the word that is really there now
        self._retried = None
        ppc = pc if self.mmu is None else self.physical(pc)
        if from_ram and ((word in PLANTED_WORDS and self.pristine.get(ppc, word) != word)
                         or self._planted_over_itself(pc, word)):
            # (a breakpoint word where the image has another: a word the guest patched into its own
            # code, as Linux's feature fixups do, is the guest's code, not a breakpoint)
            self.planted[pc] = self.planted.get(pc, 0) + 1
        if stop.intno == 32:                 # SPE unavailable: unicorn's own MSR[SPE] is always 0
            spe = self._spe(pc, word, from_ram)
            if spe is not True:
                return spe
        elif stop.intno not in (6, 8, 96):
            return Fault(pc, f"unhandled core exception {stop.intno} at {pc:#010x} (word {word:#010x})")
        if k in DOORBELL_KINDS and not self.model.has_doorbell:
            k = Kind.ILLEGAL                 # (e500v2: no processor control instructions)
        if k in PRIVILEGED_KINDS:
            if not self.msr & Msr.PR and k is not Kind.PRIV_OTHER and (self.mmu is not None or k not in MMU_KINDS):
                # (msgsnd/msgclr are hypervisor-privileged under E.HV: KVM emulates them, in-kernel)
                route = Route.LOCAL if k in DOORBELL_KINDS else self.model.route(Event.PRIV)
                if route in (Route.NATIVE, Route.LOCAL):
                    self._last_kind = (f"{k.value} {SPR_NAMES.get(d.spr & 0x3FF, d.spr & 0x3FF)}"
                                       if k is Kind.MTSPR or k is Kind.MFSPR else k.value)
                    self.emulate(d)
                    self.completed()
                    self._last_level = "vcpu" if route is Route.NATIVE else "kernel"
                    self.count(Event.PRIV.value, self._last_level)
                    return None
                return Exit(Event.PRIV, pc, word, Ivor.PROGRAM, pc, Esr.PPR)
            ev = Exit(Event.PRIV_FAULT, pc, word, Ivor.PROGRAM, pc, Esr.PPR)
        elif k is Kind.TRAP:
            ev = Exit(Event.TRAP, pc, word, Ivor.PROGRAM, pc, Esr.PTR)
        elif k is Kind.SYSCALL:
            event = Event.HCALL if d.lev == 1 else Event.SYSCALL
            ev = Exit(event, pc, word, Ivor.SYSCALL, pc + 4, lev=d.lev,
                      r3=self.engine.gpr(3), r11=self.engine.gpr(11))
        elif k is Kind.EHPRIV and self.model.has_ehpriv:
            ev = Exit(Event.EHPRIV, pc, word, Ivor.PROGRAM, pc, Esr.PIL, oc=d.oc)
        else:
            ev = Exit(Event.ILLEGAL, pc, word, Ivor.PROGRAM, pc, Esr.PIL)
        if not from_ram:
            ev = replace(ev, displaced=True)
        route = self.model.route(ev.event)
        if route is Route.GUEST:
            self.deliver(ev.ivor, ev.srr0, ev.esr if ev.ivor == Ivor.PROGRAM else None)
            self.completed()
            self._last_kind = ev.event.value
            self._last_level = "vcpu"
            self.count(ev.event.value, "vcpu")
            return None
        return ev

    def _spe(self, pc: int, word: int, from_ram: bool) -> Exit | Fault | None | bool:
        """An SPE instruction (issue 20). e500v2: with the guest's MSR[SPE] = 0 it takes the SPE
        unavailable interrupt (IVOR32, ESR[SPV]); with MSR[SPE] = 1 it runs. e500mc has no SPE: True,
        handled as the illegal instruction it is there (a program interrupt, ESR[PIL])."""
        if not self.model.has_spe:
            return True
        if not self.msr & Msr.SPE:
            self.deliver(Ivor.SPE_UNAVAILABLE, pc, Esr.SPV)
            self.completed()
            return None
        stop = self.engine.run_spe(pc, word)
        if stop.kind is StopKind.STEP and not self.step:
            self.pc = stop.pc
            return None
        return self.on_stop(stop) if stop.kind is not StopKind.INTERRUPT else self._exception(stop, word)

    def _planted_over_itself(self, pc: int, word: int) -> bool:
        """A breakpoint planted over the guest's own copy of the planted word (issue 20: the guest's
        own 0x00dddd00 under `illegal`): the ledger says a breakpoint holds `pc`."""
        return word in PLANTED_WORDS and self.planted_at is not None and self.planted_at(pc) == word

    def _stale_translation(self, pc: int, intno: int, word: int, kind: Kind) -> bool:
        """Did unicorn raise this for an instruction that is no longer in RAM (patched without a
        flush)? Then the word in RAM cannot explain the exception; retry it once after a flush."""
        if self._retried == pc:
            return False
        if intno == 6:
            return kind is not Kind.TRAP and kind not in PRIVILEGED_KINDS
        if intno == 8:
            return kind is not Kind.SYSCALL
        # an undefined word that is also the loaded one may be a restored breakpoint: check once
        return intno == 96 and kind is Kind.ILLEGAL and self.pristine.get(pc) == word

    # --- resuming after an exit (decided by kernel or userspace) -----------------------------------
    def completed(self) -> None:
        """The instruction at the old PC is done: emulated, or it took an interrupt now delivered (PC
        at the handler's first instruction). If it ran single-stepped, that is one step: the step
        event comes before anything else runs (never at handler+4 or after a second instruction)."""
        if self._exit_stepping:
            self.step_due = True

    def reflect(self, ev: Exit) -> None:
        """Deliver the exit's natural interrupt to the guest."""
        esr = ev.esr if ev.ivor == Ivor.PROGRAM else None
        self.deliver(ev.ivor, ev.srr0, esr, dbsr=ev.dbsr if not ev.host else 0)

    def step_over(self, word: int) -> Exit | Fault | None:
        """Execute `word` (the original instruction under a breakpoint) as if at self.pc."""
        stop = self.engine.displaced(self.pc, word)
        if stop.kind is StopKind.INTERRUPT:
            # the original instruction raises something itself: handle it as if it ran in place,
            # classified from `word` rather than from the planted breakpoint in RAM
            return self._exception(stop, word)
        if stop.kind is StopKind.STEP and not self.step:
            self.pc = stop.pc
            return None
        return self.on_stop(stop)


def _never() -> bool:
    return False
