"""Userspace's handle on the VM (the model of QEMU's kvm-all.c plumbing): stop every vCPU, patch guest
code, flush every vCPU's translations, run KVM_SET_GUEST_DEBUG on every vCPU, resume.

Synchronous requests wait for their reply in a nested receive loop; anything else that arrives in the
meantime (a KVM_EXIT_DEBUG in flight, say) is kept, in order, for the main loop. That is exactly where a
breakpoint can be removed while its exit is in flight: the exit is then handled later as stale.

Hops (one ZeroMQ message between two processes, ~40-70 us here; a plain socket ~6-12 us) per gdb
operation, one vCPU, all-stop, gdb stopped at a breakpoint. Real KVM + QEMU cross no process boundary
for any of these; the model keeps exactly the crossings the design requires (every breakpoint, trap or
debug exit goes vCPU -> kernel, and KVM_EXIT_DEBUG kernel -> userspace) plus the resume:

    operation                         hops  (before issue 8)
    stop at a breakpoint                 2  (2)  Exit vCPU->kernel, DebugExit kernel->userspace
    `g`, `p`, `m`, `M`, `P`, `?`, `qC`   0  (0)  run pages and guest RAM
    `Z0`/`z0` (and Z1..Z4/z1..z4)        0  (2: SetGuestDebug/TableUpdate -> Ack, at the next resume)
                                                 guest RAM, the ledger, the run page's debug-settings
                                                 block; flushes travel with the next resume
    `vCont;s` -> stop                    3  (3 + 1 message + Acks)  Resume carrying the Continue (`go`),
                                                 then the step's Exit and DebugExit
    `vCont;c` (a vCPU in its exit)       1  (1 + 1 message + Acks)  Resume carrying the Continue
    step over a breakpoint (z0, s, Z0)   3  (5-7)
    raw bp cycle (c, z0, s, Z0)          6  (8-10; 6 when the kernel round trips overlapped gdb's work)
    stop all / resume all (N vCPUs)      2 / 1 in parallel (Pause+kick -> Paused; Continue), batched

KVM_SET_GUEST_DEBUG and trap-kernel's table travel like KVM_RUN's settings: userspace writes them
(vCPU stopped) into the run page's debug-settings block and the ledger (bumping `dbg_table_gen`); the
kernel reads them at the vCPU's next exit, the vCPU loads its debug registers with its next Continue.
"""
from __future__ import annotations

import collections
import time

from .. import wire
from ..isa import SstepFlags
from ..machine.guest_ram import GuestRAM
from ..machine.ledger import Ledger, LedgerFull
from ..trace import NULL
from ..transport import Endpoint
from ..vcpu.runpage import RunPages
from .breakpoints import DebugState, Patch

REPLY_TIMEOUT_S = 10.0


class VmError(RuntimeError):
    pass


class Vm:
    def __init__(self, ep: Endpoint, ram: GuestRAM, pages: RunPages, vcpus: int, table_in_kernel: bool,
                 ledger: Ledger | None = None):
        self.ep = ep
        self.ledger = ledger                 # shared record of patched words (cosim/machine/ledger.py)
        self.ram = ram
        self.pages = pages
        self.vcpus = vcpus
        self.table_in_kernel = table_in_kernel
        self.backlog: collections.deque = collections.deque()
        self.seq = 0
        self.gone: set[int] = set()          # vCPU processes that no longer answer (shut down)
        self.singlestep: set[int] = set()
        self.sstep_flags = SstepFlags.DEFAULT           # gdb's Qqemu.sstep (QEMU's gdbstub default)
        self.guest_debug_sent: dict[int, tuple] = {}   # vCPU -> last KVM_SET_GUEST_DEBUG setting
        self.outstanding: set[int] = set()             # seqs of kernel requests not yet acked
        self.table_gen = 0                             # generation of trap-kernel's table (ledger)
        self._debug_state: DebugState | None = None     # set_guest_debug not yet sent (see push)
        self._debug_dirty: set[int] = set()
        self._views: dict[int, tuple] = {}
        self._debug_views: dict[int, tuple] = {}
        self.trace = NULL                    # the process's timeline tracer (cosim/trace.py)
        self.guest_tlb = None                # a board's guest TLB: breakpoints name virtual addresses
        self.serve_now = None                # (sender, msg) -> bool: served while waiting (MMIO exits:
                                             # a vCPU waiting for a device would never pause otherwise)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def names(self):
        return [i for i in range(self.vcpus) if i not in self.gone]

    # --- waiting ------------------------------------------------------------------------------------
    def wait_for(self, match, count: int = 1, what: str = "reply") -> list:
        got = []
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while len(got) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise VmError(f"timed out waiting for {what} ({len(got)}/{count})")
            r = self.ep.recv(int(left * 1000) + 1)
            if r is None:
                continue
            if r.msg is not None and match(r.msg):
                got.append(r.msg)
            elif self.serve_now is not None and r.msg is not None and self.serve_now(r.sender, r.msg):
                pass
            elif isinstance(r.msg, wire.Shutdown):   # the run is over (a peer may be dead): stop waiting
                self.backlog.appendleft(r)
                raise VmError(f"shut down while waiting for {what} ({len(got)}/{count})")
            else:
                self.backlog.append(r)
        return got

    def call_kernel(self, msg, reply_type):
        self.ep.send("kernel", msg)
        return self.wait_for(lambda m: isinstance(m, reply_type) and m.seq == msg.seq,
                             what=f"kernel {reply_type.__name__}")[0]

    # --- stop the world -----------------------------------------------------------------------------
    def pause_all(self, vcpus=None) -> None:
        """Pause every vCPU (or those of `vcpus`) and wait until each one answered."""
        targets = self.names() if vcpus is None else [i for i in vcpus if i not in self.gone]
        if not targets:               # (every vCPU already waits in its exit: the usual gdb stop)
            return
        seq = self.next_seq()
        t0 = self.trace.now()
        for i in targets:
            self.ep.send(f"vcpu{i}", wire.Pause(seq))
            self.ep.kick(f"vcpu{i}")
        self.wait_for(lambda m: isinstance(m, wire.Paused) and m.seq == seq, len(targets),
                      what="vCPUs to pause")
        self.trace.slice("stop-all", t0, args={"vcpus": len(targets)})

    def resume_all(self, flush=(), reload_debug=False, flush_all=False) -> None:
        self.settle()
        seq = self.next_seq()
        for i in self.names():
            self.ep.send(f"vcpu{i}", wire.Continue(seq, list(flush), flush_all, False, reload_debug))

    def continue_vcpu(self, i: int, reload_regs=False, reload_debug=False, flush=()) -> None:
        self.settle()
        self.ep.send(f"vcpu{i}", wire.Continue(self.next_seq(), list(flush), False, reload_regs,
                                               reload_debug))

    # --- guest memory and debug registers (all vCPUs stopped) --------------------------------------
    def phys(self, address: int) -> int:
        """The guest-physical word a virtual `address` names now: through vCPU 0's guest TLB in its
        current instruction context (MSR[IS], PID; every vCPU stopped), as QEMU+KVM plant through the
        guest MMU; the same address on the bare machine. VmError when nothing maps it to RAM."""
        if self.guest_tlb is None:
            return address
        from ..isa import SPR, Msr
        page = self.pages[0]
        ts = 1 if int(page["msr"]) & Msr.IS else 0
        pa = self.guest_tlb.translate(0, address, ts, int(page["spr"][SPR["PID"]]))
        if pa is None:
            raise VmError(f"{address:#x}: no guest TLB entry maps it now (AS {ts}); a breakpoint can be "
                          "planted once the guest maps it")
        if pa + 4 > self.ram.size:
            raise VmError(f"{address:#x} maps {pa:#x}, which is not RAM: no code to plant a breakpoint in")
        return pa

    def read_code(self, address: int) -> int:
        """The instruction word at virtual `address` (0 where nothing maps it: the verdict then sees no
        planted word)."""
        try:
            return self.ram.read_word(self.phys(address))
        except (VmError, ValueError):
            return 0

    def apply(self, patches: list[Patch], owner: str = "userspace") -> None:
        """Write code patches. A patch at an address the ledger holds restores its saved word (the entry
        is cleared after the write); any other plants a word (the entry is recorded before the write),
        so whoever outlives us can put guest code back."""
        led = self.ledger
        for p in patches:
            if self.trace.enabled:
                self.trace.instant("patch", {"address": f"{p.address:#010x}", "word": f"{p.word:#010x}"})
            if led is not None and led.holds(p.address):
                # restored where it was planted, whatever the guest maps there now
                self.ram.write_word(led.paddr_of(p.address), p.word)
                led.clear(p.address)
                continue
            pa = self.phys(p.address)
            if led is not None:
                try:
                    led.record(p.address, self.ram.read_word(pa), p.word, owner, paddr=pa)
                except LedgerFull as e:
                    raise VmError(str(e)) from None
            self.ram.write_word(pa, p.word)

    def forget(self, address: int) -> None:
        """A planted word given up without writing (the guest rewrote it): drop its ledger entry."""
        if self.ledger is not None:
            self.ledger.clear(address)

    def set_guest_debug(self, state: DebugState, vcpus=None) -> None:
        """KVM_SET_GUEST_DEBUG on `vcpus` (default every vCPU). Lazy: recorded here, written by `push()`
        (at the latest by `settle()`, before any vCPU is let go), and only for a vCPU whose setting
        changed."""
        self._debug_state = state
        self._debug_dirty.update(self.names() if vcpus is None else vcpus)

    def push(self) -> None:
        """Write the recorded KVM_SET_GUEST_DEBUG settings now."""
        if not self._debug_dirty:
            return
        state, dirty, self._debug_dirty = self._debug_state, sorted(self._debug_dirty), set()
        self.send_guest_debug(state, dirty, self.singlestep)

    def send_guest_debug(self, state: DebugState, vcpus, singlestep) -> None:
        """KVM_SET_GUEST_DEBUG(`state`, SINGLESTEP for the vCPUs in `singlestep`) for each of `vcpus`
        (stopped) whose setting differs from the last one written. No message: the setting goes into
        the vCPU's debug-settings block on its run page, which the kernel's exit handler reads at the
        vCPU's next exit and the vCPU loads with its next Continue(reload_debug) -- as in KVM, where
        the setting travels with the next KVM_RUN."""
        fields = state.guest_debug_fields()
        base = state.control()
        sent = self.guest_debug_sent
        for i in vcpus:
            control = state.control(singlestep=True, sstep=self.sstep_flags) if i in singlestep else base
            last = sent.get(i)
            if last == (control, fields):
                continue
            sent[i] = (control, fields)
            # (a step switched on or off changes the control word only)
            self.write_guest_debug(i, control, fields if last is None or last[1] != fields else None)

    DEBUG_FIELDS = ("dbg_iac", "dbg_iac_on", "dbg_dac", "dbg_dac_rw")

    def write_guest_debug(self, i: int, control: int, fields: tuple | None) -> None:
        """`fields`: DebugState.guest_debug_fields() (iac, iac_on, dac, dac_rw), two slots each, or
        None to leave the hardware points as they are."""
        views = self._debug_views.get(i)
        if views is None:
            rec = self.pages.record(i)
            views = self._debug_views[i] = ([rec[n][0] for n in self.DEBUG_FIELDS], rec["dbg_control"])
        arrays, control_view = views
        if fields is not None:
            for view, values in zip(arrays, fields):
                view[:] = (int(values[0]) if values else 0, int(values[1]) if len(values) > 1 else 0)
        control_view[0] = control      # last: the kernel reads the control word

    def update_table(self, insert=(), remove=()) -> None:
        """trap-kernel's in-kernel table of patched addresses. With a breakpoint ledger (every run
        has one) the table IS the ledger, already written by `apply`/`forget`: bump its generation
        on every run page and the kernel rereads it at the next exit. Without one, TableUpdate."""
        if not self.table_in_kernel:
            return
        if self.ledger is not None:
            self.table_gen += 1
            self.pages.pages["dbg_table_gen"] = self.table_gen & 0xFFFFFFFF
        else:
            self._kernel_async(wire.TableUpdate(self.next_seq(), list(insert), list(remove)))

    def _kernel_async(self, msg) -> None:
        self.ep.send("kernel", msg)
        self.outstanding.add(msg.seq)

    def settle(self) -> None:
        """Before any message that lets a vCPU run: write the pending debug settings, and wait for
        the kernel's Ack of every pipelined request (only TableUpdate without a ledger)."""
        self.push()
        if self.outstanding:   # (Acks that reach the main loop instead are discarded there)
            pending = self.outstanding
            self.wait_for(lambda m: isinstance(m, wire.Ack) and m.seq in pending, len(pending),
                          what="kernel Acks")
            self.outstanding = set()

    def get_one_reg(self, reg: str):
        return self.call_kernel(wire.GetOneReg(self.next_seq(), reg), wire.OneReg).value

    # --- registers (run page of a stopped vCPU) ----------------------------------------------------
    REG_FIELDS = ("pc", "msr", "cr", "lr", "ctr", "xer")

    def drop_views(self) -> None:
        """Forget guest RAM and run-page views (before they are closed)."""
        self._views = {}
        self._debug_views = {}
        self.ram = None

    def _reg_views(self, i: int):
        """Field views of vCPU i's registers on its run page (a view indexes in well under a
        microsecond where a structured scalar takes several)."""
        views = self._views.get(i)
        if views is None:
            rec = self.pages.record(i)
            views = self._views[i] = (rec["gpr"][0], [rec[n] for n in self.REG_FIELDS])
        return views

    def registers(self, i: int) -> list[int]:
        """r0..r31, pc, msr, cr, lr, ctr, xer of a stopped vCPU."""
        gpr, scalars = self._reg_views(i)
        return gpr.tolist() + [int(v[0]) for v in scalars]

    def pc(self, i: int) -> int:
        """The pc of a stopped vCPU."""
        return int(self._reg_views(i)[1][0][0])

    def set_register(self, i: int, regno: int, value: int) -> None:
        gpr, scalars = self._reg_views(i)
        if regno < 32:
            gpr[regno] = value
        else:
            scalars[regno - 32][0] = value
