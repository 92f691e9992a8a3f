"""The execution engine: the only module that imports unicorn.

Unicorn's e500v2 core executes guest code out of the shared guest RAM, always in problem state
(MSR[PR]=1), so every privileged instruction, trap, syscall and undefined word raises an interrupt that
comes out of here as a `Stop`. The harness (cosim/vcpu/core.py) keeps the architected MSR and SPRs and
decides what each stop means. Measured facts this module relies on (../shared/reference/unicorn-ppc.md):
  - the interrupt hook sees PC = faulting instruction + 4; the hook must stop emulation;
  - a code hook that calls emu_stop() stops *before* the instruction executes (IAC semantics);
  - translated blocks go stale when another process patches code: `flush()` after every patch;
  - hooks and count= added after translation are ignored until the translation cache is flushed
    (so single-steps run out of line on a scratch page instead of with count=1);
  - emu_stop() from another thread makes emu_start return, but (measured, tests/test_kick.py) it can
    stop inside a block with the PC left at an instruction that already ran (a load then runs twice),
    and one issued between two emu_start calls is lost: a kick (`stop`) is a flag that the C block hook
    serves before the next guest block instead.
Instructions are counted by a C block hook (cosim/vcpu/_icount.c) into a uint64 the caller provides.

Speed (issue 7, measured on unicorn 2.1.4): the engine is an e500v2 (`UC_CPU_PPC32_E500V2_V22`; the
binding's default 32-bit model is a 7457A/G4). Address translation is unicorn's UC_TLB_VIRTUAL mode
with the C TLB-fill callback of _icount.c: identity mapping, execute permission only for pages that
have been fetched from, so stores to pure data pages take the softmmu fast path (with PPC real mode
every page is executable and every store took the ~35 ns slow path: 107 vs 1323 MIPS on a store loop).
The unmapped-memory hook covers only addresses outside RAM (a hook over RAM would count as a memory
hook there and force the slow path again), and `UNTIL` sits on a mapped page that is never executed
(an unmapped one costs a TLB fill per emu_start).
"""
from __future__ import annotations

import contextlib
import ctypes
import re
import struct
from dataclasses import dataclass, replace
from enum import Enum

import numpy as np

from unicorn import (UC_ARCH_PPC, UC_CTL_IO_WRITE, UC_ERR_EXCEPTION, UC_CTL_TB_REMOVE_CACHE, UC_CTL_TLB_FLUSH, UC_HOOK_BLOCK,
                     UC_HOOK_CODE, UC_HOOK_INTR, UC_HOOK_MEM_READ, UC_HOOK_MEM_UNMAPPED, UC_HOOK_MEM_WRITE,
                     UC_HOOK_TLB_FILL, UC_MODE_BIG_ENDIAN,
                     UC_MODE_PPC32, UC_PROT_ALL, UC_TLB_VIRTUAL, Uc, UcError)
from unicorn import ppc_const as P
from unicorn.unicorn_py3.unicorn import uc_hook_h, uclib

from .atomics import Atomics, is_atomic

try:
    from . import _icount
    from .. import _baton
except ImportError:  # pragma: no cover - the extensions are built by `pip install -e .`
    _icount = _baton = None

_CTL_TB_REMOVE_CACHE = (UC_CTL_IO_WRITE << 30) | (2 << 26) | UC_CTL_TB_REMOVE_CACHE   # uc_ctl codes:
_CTL_TLB_FLUSH = (UC_CTL_IO_WRITE << 30) | UC_CTL_TLB_FLUSH                        # (op, nargs, ctl)
SCRATCH = 0xFFFF0000        # private page for displaced execution (outside any guest RAM size)
UNTIL = SCRATCH + 0x1FFC    # its own mapped page, never executed: emu_start runs until a hook or a kick
RESERVED = (SCRATCH, SCRATCH + 0x1000)   # the step page: the TLB refuses it to the guest (the UNTIL
                                         # page cannot be refused: emu_start translates it once)
PAGE_BITS = 12
PAGE_MASK = (1 << PAGE_BITS) - 1
TLB_HEADER = 256            # cosim_tlb_state in _icount.c: 32 uint64 before the per-page bytes
# cosim_tlb_state's header words
(H_RAM, H_FILLS, H_RES_LO, H_RES_HI, H_RES_OPEN, H_MMU, H_TLB, H_TLB1_N, H_TLB0_SETS, H_TLB0_WAYS, H_PID,
 H_MSR, H_MISS_VADDR, H_MISS_TYPE, H_MISS_REASON, H_MMIO_BASE, H_MMIO_SLOTS, H_MMIO_USED,
 H_SLOT_PAGES) = range(19)
MISS_REASONS = {1: "tlb", 2: "permission", 3: "reserved", 4: "fetch-io", 5: "mmio-full"}
MMIO_BASE = 0xE0000000      # the engine-physical window where non-RAM guest pages are folded
MMIO_SLOTS = 4096           # distinct guest-physical MMIO pages (16 MiB of window)
MSR_PR = 0x4000
CONTEXT_MSR = 0x4030        # the MSR bits a translation depends on: PR, IS, DS
MSR_SPE = 0x02000000

GPR_IDS = [getattr(P, f"UC_PPC_REG_{n}") for n in range(32)]
REG_IDS = GPR_IDS + [P.UC_PPC_REG_PC, P.UC_PPC_REG_CR, P.UC_PPC_REG_LR, P.UC_PPC_REG_CTR,
                     P.UC_PPC_REG_XER]
REG_NAMES = [f"r{n}" for n in range(32)] + ["pc", "cr", "lr", "ctr", "xer"]


DISPLACED_TRIES = 1000


def reserved(addr: int) -> str | None:
    """Why `addr` can never be a guest PC (an address of the engine's own), or None."""
    if addr == UNTIL:
        return "the engine's stop address"
    if addr == 0xFFFFFFFC:
        return "the engine's former stop address (kept reserved)"
    if RESERVED[0] <= addr < RESERVED[1]:
        return "the engine's out-of-line step page"
    return None


class StopKind(str, Enum):
    INTERRUPT = "interrupt"  # an instruction raised an exception: intno, pc = faulting instruction
    IAC = "iac"              # instruction address compare matched before `pc` executed
    DAC = "dac"              # data address compare matched at access `addr` by instruction `pc`
    STEP = "step"            # one instruction completed in step mode; pc = next instruction
    KICK = "kick"            # stopped from outside (`stop`, or the budget): pc = next block to run
    MMU = "mmu"              # the guest TLB refused an access of `pc`: `addr`, `access` (fetch/read/
                             # write), `error` = why ("tlb": no entry, "permission")
    UNTIL = "until"          # reached the scenario's `guest.until` address (before executing it)
    FAULT = "fault"          # the core could not continue (unmapped memory, ...)


@dataclass(frozen=True, slots=True)
class Stop:
    kind: StopKind
    pc: int
    intno: int = 0
    slot: int = 0
    addr: int = 0
    write: bool = False
    error: str = ""
    access: str = ""


class Engine:
    """One unicorn instance mapped over guest RAM at physical address 0."""

    def __init__(self, ram_address: int, ram_size: int, icount_address: int | None = None,
                 budget: bool = False, guest_tlb=None, mmio=None, clock_address: int | None = None,
                 cache_line: int = 32):
        """`guest_tlb`: (entries array of this vCPU, TlbGeometry) for a board with the Book E MMU, None
        for the bare identity-mapped machine. `mmio(paddr, size, is_write, value) -> int` serves
        accesses to guest-physical addresses outside RAM (an MMIO exit). `clock_address`: the VM's
        shared virtual clock (a uint64 every vCPU's retired instructions advance), which the time base
        and the timers then follow instead of this vCPU's own count (a machine of several vCPUs).
        `cache_line`: the bytes `dcbz` clears (the CPU model's; `cache_line_set` says whether it took)."""
        self.uc = Uc(UC_ARCH_PPC, UC_MODE_PPC32 | UC_MODE_BIG_ENDIAN)
        self.uc.ctl_set_cpu_model(P.UC_CPU_PPC32_E500V2_V22)   # before anything creates the CPU
        self.ram_size = ram_size
        self.atomics = self._atomics_hook(ram_address, ram_size)   # (before the TLB fill hook)
        self._tlb_fill_hook(ram_size)
        self.mmio = mmio
        self._guest_tlb = None
        if guest_tlb is not None:
            self._enable_mmu(*guest_tlb)
        self.uc.mem_map_ptr(0, ram_size, UC_PROT_ALL, ram_address)
        self.uc.mem_map(SCRATCH, 0x2000, UC_PROT_ALL)    # the step page and the UNTIL page
        self.uc.reg_write(P.UC_PPC_REG_MSR, MSR_PR)
        self._batch()
        self._event: Stop | None = None
        self._fault: tuple[int, int, bool] | None = None
        self._iac_hooks: list[int] = []
        self._dac_hooks: list[int] = []
        self._iac: tuple[int, ...] = ()
        self._dac: tuple[tuple[int, bool, bool], ...] = ()
        self._dac_placed: tuple | None = None   # where each compare is hooked (physical), see _arm_dac
        self._dac_suppressed = False      # while re-executing the instruction that hit a DAC
        self._dac_undo = None             # what the instruction that hit a DAC changed, to undo
        self._scratch_probe: int | None = None   # the word last written on the step page
        self.uc.hook_add(UC_HOOK_INTR, self._on_interrupt)
        self.uc.hook_add(UC_HOOK_MEM_UNMAPPED, self._on_unmapped, begin=ram_size, end=0xFFFFFFFF)
        self._env_spr = _find_env_spr(self)      # unicorn's SPR array: the time base the guest reads
        self.fast_trap = None                    # pc -> bool: a program interrupt emulated in the hook
                                                 # (Core.fast_trap), unicorn then goes on
        self._dcache_line = 0                    # where unicorn keeps dcbz's size (set_cache_line)
        self.cache_line_set = self.set_cache_line(cache_line)   # (probed before the counting hook exists)
        self._gate: _Gate | None = None   # the C block hook's state: count, budget, kick
        self._budget: _Gate | None = None
        self._budget_hit = False          # run stopped before a block that would pass the budget
        self._budget_exact = True
        self._budget_start = 0
        if icount_address is not None and _icount is not None:
            handle = uc_hook_h()
            self._gate = _Gate(ctypes.c_void_p(icount_address), 2**64 - 1, 2**64 - 1, SCRATCH, 0,
                               ctypes.cast(uclib.uc_emu_stop, ctypes.c_void_p), 0, 0, None, 0)
            self._budget = self._gate    # budgets (deterministic schedules, limits) and timer deadlines
            err = uclib.uc_hook_add(self.uc._uch, ctypes.byref(handle), UC_HOOK_BLOCK,
                                    ctypes.c_void_p(_icount.block_hook_address()),
                                    ctypes.c_void_p(ctypes.addressof(self._gate)),
                                    ctypes.c_uint64(1), ctypes.c_uint64(0))
            if err:
                raise UcError(err)
        self.counting = icount_address is not None and _icount is not None
        if self._gate is not None and self._env_spr:
            self._gate.tb = self._env_spr + 4 * 268
        self._clock = None                # the shared clock (a ctypes uint64), or None: this vCPU's count
        if self._gate is not None and clock_address is not None:
            self._gate.clock = clock_address
            self._gate.clock_batch = _icount.CLOCK_BATCH     # (free-running; exact_clock: 1)
            self._clock = ctypes.c_uint64.from_address(clock_address)
        self._user_budget = 2**64 - 1
        self._deadline = 2**64 - 1        # as an instruction count of this vCPU
        self._deadline_clock = 2**64 - 1  # as the clock says (the same without a shared clock)
        self._baton_link = 0              # nonzero: the block hook runs a deterministic plan's quanta
        if self._gate is not None:
            self._gate.until = 2**64 - 1
        self._apply_budget()

    def set_cache_line(self, size: int) -> bool:
        """The data cache line `dcbz` clears (the CPU model's: 64 bytes on e500mc); False when unicorn's
        field was not found (dcbz then clears 32)."""
        if size == 32:
            return True
        if not self._dcache_line:
            self._dcache_line = _find_dcache_line_size(self)
        if not self._dcache_line:
            return False
        ctypes.c_int32.from_address(self._dcache_line).value = size
        return True

    # --- the guest MMU (a Book E board) -------------------------------------------------------------
    def _enable_mmu(self, entries: np.ndarray, geometry) -> None:
        h = self._tlb_header
        self._guest_tlb = entries                     # (kept alive: the C walk reads it)
        self._slot_pages = np.zeros(MMIO_SLOTS, np.uint64)
        h[H_MMU] = 1
        h[H_TLB] = entries.ctypes.data
        h[H_TLB1_N] = geometry.tlb1_entries
        h[H_TLB0_SETS] = geometry.tlb0_sets
        h[H_TLB0_WAYS] = geometry.tlb0_ways
        h[H_MMIO_BASE] = MMIO_BASE
        h[H_MMIO_SLOTS] = MMIO_SLOTS
        h[H_SLOT_PAGES] = self._slot_pages.ctypes.data
        h[H_MSR] = 0
        self.uc.mmio_map(MMIO_BASE, MMIO_SLOTS << PAGE_BITS, self._mmio_read, None, self._mmio_write, None)

    @property
    def has_mmu(self) -> bool:
        return self._guest_tlb is not None

    def translate(self, vaddr: int, access: int = 0) -> int | None:
        """Guest-physical address of `vaddr` in the current context (access 0 fetch, 1 read, 2 write),
        None when the guest TLB has no entry: identity on the bare machine."""
        if self._guest_tlb is None:
            return vaddr & 0xFFFFFFFF
        pa = _icount.translate(self._tlb_state.ctypes.data, vaddr, access)
        return None if pa < 0 else pa

    def set_context(self, msr: int, pid: int) -> None:
        """The architected context translations depend on (MSR[PR,IS,DS], PID): host translations made
        under another context are dropped."""
        h = self._tlb_header
        msr &= CONTEXT_MSR
        if int(h[H_MSR]) != msr or int(h[H_PID]) != pid:
            h[H_MSR] = msr
            h[H_PID] = pid
            if self._guest_tlb is not None:
                self.flush_tlb()

    def flush_tlb(self) -> None:
        """Drop every host translation (a guest TLB entry that may have been used was invalidated or
        replaced; unicorn has no per-page flush in its API). Data compares follow the new mapping."""
        self.tlb_flushes += 1
        uclib.uc_ctl(self.uc._uch, _CTL_TLB_FLUSH)
        if self._dac and self._guest_tlb is not None:
            self._arm_dac()

    tlb_flushes = 0

    def _mmio_paddr(self, offset: int) -> int:
        return (int(self._slot_pages[offset >> PAGE_BITS]) << PAGE_BITS) | (offset & 0xFFF)

    def _mmio_read(self, uc, offset, size, _ud):
        if self._gate is not None:
            self._gate.chain = 0          # (an MMIO exit: the quantum does not end clean)
        return self.mmio(self._mmio_paddr(offset), size, False, 0) if self.mmio else 0

    def _mmio_write(self, uc, offset, size, value, _ud):
        if self._gate is not None:
            self._gate.chain = 0
        if self.mmio:
            self.mmio(self._mmio_paddr(offset), size, True, value)

    # --- unicorn's own SPRs that the guest reads natively -------------------------------------------
    def set_native_spr(self, spr: int, value: int) -> None:
        """Set what a problem-state `mfspr` of `spr` reads inside unicorn (USPRG0, SPRG3-7 through
        their user numbers: unicorn reads them from its SPR array without an exit)."""
        if self._env_spr:
            ctypes.c_uint32.from_address(self._env_spr + 4 * (spr & 0x3FF)).value = value & 0xFFFFFFFF

    def set_timebase(self, tb: int) -> None:
        """The time base reads `tb` now and advances one tick per guest instruction (of any vCPU, with
        a shared clock)."""
        if self._gate is not None:
            self._gate.tb_offset = (tb - self.clock) & (2**64 - 1)
            _set_tb_now(self)

    @property
    def shares_clock(self) -> bool:
        """One clock for the machine (several vCPUs): every time base reads it."""
        return self._clock is not None

    @property
    def timebase(self) -> int:
        return (self.clock + (self._gate.tb_offset if self._gate is not None else 0)) & (2**64 - 1)

    def _flush_clock(self) -> None:
        """The instructions this run retired and had not yet added to the shared clock (the block hook
        adds them in batches, _icount.c CLOCK_BATCH): added now, as the run ends."""
        if self._clock is not None:
            _icount.flush_clock(ctypes.addressof(self._gate))

    @property
    def clock(self) -> int:
        """Virtual time in instructions: the VM's shared clock, or this vCPU's own count."""
        return self._clock.value if self._clock is not None else self.instructions

    @property
    def instructions(self) -> int:
        if self._gate is None:
            return 0
        return ctypes.c_uint64.from_address(self._gate.count).value

    # --- issue 20: lwarx/stwcx. as host atomics on shared RAM (cosim/vcpu/atomics.py, _atomics.c) -----
    def _atomics_hook(self, ram_address: int, ram_size: int) -> Atomics | None:
        """Its TLB-fill callback finds the lwarx/stwcx. sites of each page first fetched and hooks
        them; it never maps (returns false), so it is registered before the engine's own fill."""
        if not Atomics.available:
            return None         # pragma: no cover - without the C module: unicorn's own (not SMP-safe)
        fn = {k: ctypes.cast(getattr(uclib, f"uc_{k}"), ctypes.c_void_p).value
              for k in ("reg_read", "reg_write", "hook_add")}
        atomics = Atomics(self.uc._uch, ram_address, ram_size, fn,
                          {"gpr0": P.UC_PPC_REG_0, "pc": P.UC_PPC_REG_PC, "cr": P.UC_PPC_REG_CR,
                           "xer": P.UC_PPC_REG_XER})
        handle = uc_hook_h()
        err = uclib.uc_hook_add(self.uc._uch, ctypes.byref(handle), UC_HOOK_TLB_FILL,
                                ctypes.c_void_p(atomics.fill_address), ctypes.c_void_p(atomics.user_data),
                                ctypes.c_uint64(1), ctypes.c_uint64(0))
        if err:
            raise UcError(err)
        self._until_addr: int | None = None
        return atomics

    def run_spe(self, pc: int, word: int) -> Stop:
        """An SPE instruction the guest may run (its MSR[SPE] = 1): out of line, with unicorn's own
        MSR[SPE] set for that one instruction (it is otherwise 0, so every SPE instruction stops)."""
        self.uc.reg_write(P.UC_PPC_REG_MSR, MSR_PR | MSR_SPE)
        try:
            return self.displaced(pc, word)
        finally:
            self.uc.reg_write(P.UC_PPC_REG_MSR, MSR_PR)

    def watch_exec(self, addresses, on_exec) -> None:
        """Call `on_exec(address)` before each instruction run at one of `addresses` (planted words:
        a code hook at an address costs nothing elsewhere; only the new addresses' translations are
        dropped, and a deleted hook is skipped by the translations that still call it)."""
        addresses = tuple(sorted(set(addresses)))
        old = getattr(self, "_exec_watch", ())
        if addresses == old:
            return
        for h in getattr(self, "_exec_hooks", ()):
            self.uc.hook_del(h)
        self._exec_hooks = [self.uc.hook_add(UC_HOOK_CODE, lambda uc, addr, size, a: on_exec(a), a,
                                             begin=a, end=a) for a in addresses]
        self._exec_watch = addresses
        for a in set(addresses) - set(old):
            self._remove_cache(a, a + 4)

    def watch_reads(self, addresses, on_read) -> None:
        """Call `on_read(address)` when a guest load touches a word at one of `addresses` (planted
        breakpoint words: patched-code-visible). Any read hook sends every load to unicorn's slow
        path (2-4x on the loop benchmark), so hooks exist only while there are addresses. The hooks
        see physical addresses (under the guest MMU too): `addresses` maps each physical word hooked to
        the address `on_read` is told (the ledger's paddr -> address)."""
        names = dict(addresses)
        addresses = tuple(sorted(names))
        old = getattr(self, "_read_watch", ())
        if addresses == old:
            return
        for h in getattr(self, "_read_hooks", ()):
            self.uc.hook_del(h)

        def hook(uc, access, addr, size, value, word):
            if addr < word + 4 and addr + size > word:
                on_read(names[word])
        self._read_hooks = [self.uc.hook_add(UC_HOOK_MEM_READ, hook, a, begin=max(a - 3, 0), end=a + 3)
                            for a in addresses]
        self._read_watch = addresses
        if bool(old) != bool(addresses):   # loads are translated for the slow path or not: all of them
            self.uc.ctl_flush_tb()         # (between two watched sets the hooks' ranges apply as they run)

    def lose_reservation(self) -> None:
        """An interrupt was delivered to the guest: its lwarx reservation is gone."""
        if self.atomics is not None:
            self.atomics.lose()
    # --- end of issue 20's block -------------------------------------------------------------------

    def _tlb_fill_hook(self, ram_size: int) -> None:
        """UC_TLB_VIRTUAL with the C fill callback (see the module docstring). Its state is a buffer
        owned here: RAM size, a fill counter, one 'fetched from' byte per page."""
        pages = (ram_size + (1 << PAGE_BITS) - 1) >> PAGE_BITS
        self._tlb_state = np.zeros(TLB_HEADER + pages, np.uint8)
        self._tlb_header = self._tlb_state[:TLB_HEADER].view("<u8")
        self._tlb_header[0] = ram_size
        self._tlb_header[2:4] = RESERVED
        self.uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
        if _icount is None or not hasattr(_icount, "tlb_fill_address"):
            self.uc.hook_add(UC_HOOK_TLB_FILL, self._py_tlb_fill)
            return
        handle = uc_hook_h()
        err = uclib.uc_hook_add(self.uc._uch, ctypes.byref(handle), UC_HOOK_TLB_FILL,
                                ctypes.c_void_p(_icount.tlb_fill_address()),
                                ctypes.c_void_p(self._tlb_state.ctypes.data),
                                ctypes.c_uint64(1), ctypes.c_uint64(0))
        if err:
            raise UcError(err)

    def _py_tlb_fill(self, uc, vaddr, access, entry, _ud):   # pragma: no cover - without the C module
        vaddr &= 0xFFFFFFFF
        executed = self._tlb_state[TLB_HEADER:]
        entry.paddr = vaddr & ~((1 << PAGE_BITS) - 1)
        if RESERVED[0] <= vaddr < RESERVED[1] and not self._tlb_header[H_RES_OPEN]:
            return False
        if vaddr >= self.ram_size:
            entry.perms = 7
        elif access == 18:   # UC_MEM_FETCH
            executed[vaddr >> PAGE_BITS] = 1
            entry.perms = 7
        else:
            entry.perms = 7 if executed[vaddr >> PAGE_BITS] else 3
        return True

    @property
    def tlb_fills(self) -> int:
        """TLB fills so far (each is a C call; a steady-state guest makes almost none)."""
        return int(self._tlb_header[1])

    # --- hooks (called by unicorn on the emulating thread) ------------------------------------------
    def _on_interrupt(self, uc, intno, _ud):
        pc = (uc.reg_read(P.UC_PPC_REG_PC) - 4) & 0xFFFFFFFF
        if intno == 6 and pc < SCRATCH and self.fast_trap is not None and self._event is None:
            try:
                if self.fast_trap(pc):
                    return                  # emulated here: unicorn goes on at the next instruction
            except Exception:               # (never out of a unicorn callback: the ordinary path decides)
                pass
        self._event = Stop(StopKind.INTERRUPT, pc, intno)
        uc.emu_stop()

    def _on_unmapped(self, uc, access, address, size, value, _ud):
        self._fault = (access, address, size)
        return False

    def _on_iac(self, uc, address, size, slot):
        if self._event is None:
            self._event = Stop(StopKind.IAC, address, slot=slot)
            uc.emu_stop()

    def _on_dac(self, uc, access, address, size, value, slot):
        if self._event is None and not self._dac_suppressed:
            write = access == 17  # UC_MEM_WRITE
            ea = self._dac[slot][0] + address - self._dac_placed[slot]   # (the hook sees the physical word)
            self._event = Stop(StopKind.DAC, uc.reg_read(P.UC_PPC_REG_PC), slot=slot, addr=ea & 0xFFFFFFFF,
                               write=write)
            # Book E takes a DAC event *before* the access; unicorn finishes the instruction after
            # emu_stop(). Keep what it is about to change (memory, and registers for update forms and
            # loads) so `_undo_dac` can put it back and the instruction runs exactly once on resume.
            self._dac_undo = (address, bytes(uc.mem_read(address, size)) if write else None,
                              self.read_regs().copy())
            uc.emu_stop()

    def _undo_dac(self) -> None:
        address, old, regs = self._dac_undo
        self._dac_undo = None
        if old is not None:
            self.uc.mem_write(address, old)
        for reg_id, value in zip(REG_IDS[:33], regs[:33]):   # GPRs and PC: what a load/store changes
            self.uc.reg_write(reg_id, int(value))

    # --- registers ----------------------------------------------------------------------------------
    def gpr(self, n: int) -> int:
        return self.uc.reg_read(GPR_IDS[n]) & 0xFFFFFFFF

    def set_gpr(self, n: int, value: int) -> None:
        self.uc.reg_write(GPR_IDS[n], value & 0xFFFFFFFF)

    @property
    def pc(self) -> int:
        # uc_reg_read called directly (the binding's reg_read builds its argument per call: 3 -> 1.6 us)
        err = uclib.uc_reg_read(self.uc._uch, P.UC_PPC_REG_PC, self._pc_ref)
        if err:
            raise UcError(err)
        return self._pc_buf.value & 0xFFFFFFFF

    @pc.setter
    def pc(self, value: int) -> None:
        self._pc_buf.value = value & 0xFFFFFFFF
        err = uclib.uc_reg_write(self.uc._uch, P.UC_PPC_REG_PC, self._pc_ref)
        if err:
            raise UcError(err)

    def _batch(self):
        """One C call for all registers (the binding's reg_read_batch costs ~2 us per register)."""
        n = len(REG_IDS)
        self._regbuf = np.zeros(n, np.uint64)
        self._pc_buf = ctypes.c_uint64(0)
        self._pc_ref = ctypes.byref(self._pc_buf)
        self._ids = (ctypes.c_int * n)(*REG_IDS)
        self._ptrs = (ctypes.c_void_p * n)(*(self._regbuf.ctypes.data + 8 * i for i in range(n)))

    def read_regs(self) -> np.ndarray:
        """r0..r31, pc, cr, lr, ctr, xer (a uint64 array owned by the engine: copy what you keep)."""
        err = uclib.uc_reg_read_batch(self.uc._uch, self._ids, self._ptrs, len(REG_IDS))
        if err:
            raise UcError(err)
        self._regbuf &= 0xFFFFFFFF            # (what a 4-byte register write left above it: gone)
        return self._regbuf

    def write_regs(self, values) -> None:
        self._regbuf[:] = [int(v) & 0xFFFFFFFF for v in values]
        err = uclib.uc_reg_write_batch(self.uc._uch, self._ids, self._ptrs, len(REG_IDS))
        if err:
            raise UcError(err)

    # --- debug facilities modelled by hooks ---------------------------------------------------------
    def set_iac(self, addresses: tuple[int, ...]) -> None:
        """Arm instruction-address compares (slot i at addresses[i]; None = off)."""
        addresses = tuple(addresses)
        if addresses == self._iac:
            return
        for h in self._iac_hooks:
            self.uc.hook_del(h)
        self._iac_hooks = [self.uc.hook_add(UC_HOOK_CODE, self._on_iac, slot, begin=a, end=a)
                           for slot, a in enumerate(addresses) if a is not None]
        self._iac = addresses
        if self.atomics is not None:       # issue 20: an IAC stops before a lwarx/stwcx. there
            self.atomics.set_skip([*addresses, self._until_addr])
        self.uc.ctl_flush_tb()

    def set_dac(self, points: tuple[tuple[int, bool, bool] | tuple[int, bool, bool, int] | None, ...]) -> None:
        """Arm data-address compares: per slot (address, on_read, on_write[, length in bytes, default 4:
        DBCR2[DAC12M]'s range mode is one slot of that length]) or None."""
        points = tuple(points)
        if points == self._dac:
            return
        self._dac = points
        self._dac_placed = None
        self._arm_dac()
        if self.atomics is not None:       # issue 20: a lwarx/stwcx. on a DAC is left to unicorn
            self.atomics.set_dac([p[0] for p in points if p is not None])

    def _arm_dac(self) -> None:
        """Hook the words the compares name. Unicorn's memory hooks see guest-physical addresses under
        the guest MMU (UC_TLB_VIRTUAL): a compare on an effective address is hooked at the physical
        address it maps to in the current data context, again whenever the mapping may change (an EA
        mapped nowhere now is hooked once it is; another alias of the same word matches too)."""
        placed = tuple(None if p is None else self.translate(p[0], 1) for p in self._dac)
        if placed == self._dac_placed:
            return
        for h in self._dac_hooks:
            self.uc.hook_del(h)
        self._dac_hooks = []
        for slot, (p, pa) in enumerate(zip(self._dac, placed)):
            if p is None or pa is None:
                continue
            addr, on_read, on_write = p[:3]
            length = p[3] if len(p) > 3 else 4
            kinds = (UC_HOOK_MEM_READ if on_read else 0) | (UC_HOOK_MEM_WRITE if on_write else 0)
            if kinds:
                self._dac_hooks.append(self.uc.hook_add(kinds, self._on_dac, slot, begin=pa,
                                                        end=pa + max(1, length) - 1))
        self._dac_placed = placed
        self.uc.ctl_flush_tb()

    def set_until(self, addr: int | None) -> None:
        """Stop before the instruction at `addr` (the scenario's end address); None = no such stop.
        Set before the guest runs (a hook added after translation needs a flush: done here)."""
        if addr is not None:
            if self._gate is not None:
                self._gate.until = addr
            if self.atomics is not None:   # issue 20: stop before a lwarx/stwcx. there
                self._until_addr = addr
                self.atomics.set_skip([*self._iac, addr])
            self.uc.hook_add(UC_HOOK_CODE, self._on_until, begin=addr, end=addr)
            self.uc.ctl_flush_tb()

    def _on_until(self, uc, address, size, _ud):
        if self._event is None:
            self._event = Stop(StopKind.UNTIL, address)
            uc.emu_stop()

    # --- execution ----------------------------------------------------------------------------------
    def run(self, pc: int, chain: bool = False) -> Stop:
        """Run from `pc` until an event or a kick. `chain` (with a baton: `follow_baton`): the core has
        nothing to do between two quanta, so the block hook may run the plan's next ones itself."""
        self._event = None
        self._fault = None
        gate = self._gate
        stops = gate.stops if gate is not None else 0
        self._tlb_header[H_MISS_REASON] = 0
        if self._clock is not None and self._deadline_clock != 2**64 - 1 and not self._budget_hit:
            local = self._local_deadline()         # other vCPUs moved the clock since
            if local != self._deadline:
                self._deadline = local
                self._apply_budget()
        if self._baton_link:
            gate.chain = 1 if chain and not self._budget_exact else 0
        try:
            self.uc.emu_start(pc, UNTIL, count=0)
        except UcError as e:
            return self._refused(e)
        finally:
            self._flush_clock()
            if self._baton_link:                   # the quanta the hook began: their budgets
                self._user_budget, self._budget_start, self._deadline = \
                    gate.user_budget, gate.budget_start, gate.deadline
        if gate is not None and gate.stops != stops:
            self._budget_hit = True
        if self._event is not None:
            if self._dac_undo is not None:
                self._undo_dac()
            return self._event
        return Stop(StopKind.KICK, self.pc)

    def step(self, pc: int, word: int) -> Stop:
        """Execute exactly one instruction, `word` at `pc` (single-step). An armed IAC at `pc` matches
        first. Done out of line like `displaced`: unicorn's count=1 would need every translation
        flushed on entering and on leaving step mode, and the whole guest retranslated after."""
        for slot, addr in enumerate(self._iac):
            if addr == pc:
                return Stop(StopKind.IAC, pc, slot=slot)
        return self.displaced(pc, word, suppress_dac=False)

    def _refused(self, e: UcError) -> Stop:
        """A UcError out of emu_start: the guest TLB refused an access (an MMU stop, PC = the faulting
        instruction, restored by unicorn before the fill callback), or a fault."""
        h = self._tlb_header
        reason = MISS_REASONS.get(int(h[H_MISS_REASON]))
        if e.errno == UC_ERR_EXCEPTION and reason in ("tlb", "permission"):
            access = {18: "fetch", 17: "write"}.get(int(h[H_MISS_TYPE]), "read")
            addr = int(h[H_MISS_VADDR])
            pc = self.pc
            if access == "fetch":
                # unicorn fills for code with the page's address: the instruction is the one at the PC
                # when that is on the page (a new block), else the page's first (a block crossing into it)
                if (pc ^ addr) & ~PAGE_MASK:
                    pc = addr
                addr = pc
            return Stop(StopKind.MMU, pc, addr=addr, write=access == "write", error=reason, access=access)
        if reason == "fetch-io":
            addr = int(h[H_MISS_VADDR])
            return Stop(StopKind.FAULT, addr, error=f"instruction fetch at {addr:#010x} from a guest-physical "
                                                    f"address that is not RAM (no execution from devices)")
        if reason == "mmio-full":
            return Stop(StopKind.FAULT, self.pc, error=f"more than {MMIO_SLOTS} distinct device pages touched")
        return self._fault_stop(str(e))

    def _fault_stop(self, error: str) -> Stop:
        pc = self.pc
        if self._fault is not None:
            access, address, size = self._fault
            kind = {19: "read", 20: "write", 21: "fetch"}.get(access, f"access {access}")
            error = f"{error}: unmapped {kind} at {address:#010x} ({size} bytes)"
            if access == 21:
                pc = address
        elif (why := reserved(pc)) is not None:
            error = f"{error}: pc {pc:#010x} is {why}, not guest memory"
        else:
            error = (f"{error} (an access refused by the TLB: the engine's reserved pages "
                     f"{RESERVED[0]:#010x}-{RESERVED[1] - 1:#010x} are not guest memory)")
        return Stop(StopKind.FAULT, pc, error=error)

    def displaced(self, pc: int, word: int, suppress_dac: bool = True) -> Stop:
        """Execute `word` as if it sat at `pc` (the original instruction under a breakpoint), out of
        line on the private scratch page. PC-relative branches are re-targeted. Returns the stop as if
        the instruction had run in place: STEP with the next pc, or the event it raised at `pc`."""
        if self.atomics is not None and is_atomic(word) and self.atomics.execute(pc, word):
            return Stop(StopKind.STEP, pc + 4)       # issue 20: lwarx/stwcx. on shared RAM
        op = word >> 26
        restore = None
        if op == 18:   # b/bl/ba: reached through a branch to scratch+8
            target = _branch_target(pc, word, 26)
            probe = (word & ~0x03FFFFFC & ~2) | 8
        elif op == 16:  # bc: taken -> scratch+8, fall through -> scratch+4
            target = _branch_target(pc, word, 16)
            probe = (word & ~0xFFFC & ~2) | 8
        elif op == 19 and (word >> 1) & 0x3FF in (16, 528):  # bclr/bcctr: aim the register at scratch+8
            reg = P.UC_PPC_REG_LR if (word >> 1) & 0x3FF == 16 else P.UC_PPC_REG_CTR
            saved = self.uc.reg_read(reg)
            self.uc.reg_write(reg, SCRATCH + 8)
            target = saved & 0xFFFFFFFC
            restore = (reg, saved)
            probe = word
        else:
            target = None
            probe = word
        if probe != self._scratch_probe:      # (the same instruction stepped again: its translation stays)
            self.uc.mem_write(SCRATCH, probe.to_bytes(4, "big") + bytes(8))
            self._remove_cache(SCRATCH, SCRATCH + 12)
            self._scratch_probe = probe
        self._dac_suppressed = suppress_dac
        self._tlb_header[H_RES_OPEN] = 1        # the engine's own page: open for this one instruction
        self._tlb_header[H_MISS_REASON] = 0
        try:
            for _ in range(DISPLACED_TRIES):
                self._event = None
                self._fault = None
                self.uc.emu_start(SCRATCH, SCRATCH + 4, count=0)
                if self._event is not None or self.pc != SCRATCH:
                    break                       # it ran (a kick that lands first leaves pc = SCRATCH)
            else:
                self.pc = pc                    # never a guest-visible pc on the engine's page
                return Stop(StopKind.FAULT, pc, error=f"the instruction at {pc:#010x} could not be run "
                                                      f"out of line ({DISPLACED_TRIES} kicks in a row)")
        except UcError as e:
            stop = self._refused(e)           # the faulting instruction is the one at `pc`
            return replace(stop, pc=pc if SCRATCH <= stop.pc < SCRATCH + 12 else stop.pc)
        finally:
            self._flush_clock()
            self._dac_suppressed = False
            self._tlb_header[H_RES_OPEN] = 0
            uclib.uc_ctl(self.uc._uch, _CTL_TLB_FLUSH)   # closed again: a guest jump there faults
        ev = self._event
        if self._dac_undo is not None:
            self._undo_dac()
        if ev is not None and not (ev.kind is StopKind.INTERRUPT and ev.pc in (SCRATCH + 4, SCRATCH + 8)):
            # the original instruction itself raised something: report it at its real address
            return Stop(ev.kind, pc if SCRATCH <= ev.pc < SCRATCH + 12 else ev.pc, ev.intno, ev.slot,
                        ev.addr, ev.write, ev.error)
        landed = ev.pc if ev is not None else self.pc
        if restore is not None:
            self.uc.reg_write(*restore)
        if word & 1 and target is not None:
            self.uc.reg_write(P.UC_PPC_REG_LR, pc + 4)
        if landed == SCRATCH + 8 and target is not None:
            nxt = target
        elif landed in (SCRATCH + 4, SCRATCH + 8):
            nxt = pc + 4
        else:
            nxt = landed
        self.pc = nxt
        return Stop(StopKind.STEP, nxt)

    def flush(self, addresses=None) -> None:
        """Drop translations: of the words at `addresses`, or all of them (icbi + isync + IPI)."""
        if addresses is None:
            self.uc.ctl_flush_tb()
        else:
            for a in addresses:
                self._remove_cache(a, a + 4)

    def _remove_cache(self, begin: int, end: int) -> None:
        """Drop the translations of [begin, end): uc_ctl called directly (the binding's
        ctl_remove_cache builds its arguments through generators: 5.6 against 2.2 us)."""
        err = uclib.uc_ctl(self.uc._uch, _CTL_TB_REMOVE_CACHE, ctypes.c_uint64(begin), ctypes.c_uint64(end))
        if err:
            raise UcError(err)

    def stop(self) -> None:
        """Make `run` return a KICK stop (called from the vCPU's kick thread): before the next guest
        block, by the C block hook, or at once if no `run` is under way when it starts. Not
        uc_emu_stop() from this thread: that can stop inside a block with the PC left at an instruction
        that already ran (see _icount.c), and is lost if it lands between two emu_start calls."""
        if self._gate is not None:
            gate = self._gate
            gate.kick = 1                      # (in this order: see cosim_gate_reset_limit)
            gate.limit = 0
            if self._baton_link:               # (asleep in the block hook, waiting for its turn)
                _baton.nudge(self._baton_link)
        else:                                  # pragma: no cover - without the C module
            self.uc.emu_stop()

    @property
    def kicks(self) -> int:
        """Runs ended by `stop` (at a block boundary)."""
        return self._gate.kicks if self._gate is not None else 0

    def exact_clock(self) -> None:
        """Add to the shared clock at every block, not _icount.CLOCK_BATCH instructions at a time: for a
        deterministic schedule (one vCPU at a time), where the time base the guest reads must not
        depend on where its runs were cut (_icount.c)."""
        if self._gate is not None:
            self._gate.clock_batch = 1

    def follow_baton(self, link_address: int, max_count: int) -> None:
        """Run a deterministic plan's quanta in the block hook (cosim/baton.h, _icount.c
        cosim_baton_next): `link_address` is the vCPU's baton link, `max_count` the run's instruction
        limit (0: none; its last, exact quantum stays Python's)."""
        if self._gate is not None and link_address:
            self._gate.baton = link_address
            self._gate.max_count = max_count
            self._baton_link = link_address

    @property
    def in_quantum(self) -> bool:
        """False once the block hook passed this vCPU's quantum on to another vCPU (until a budget is set
        again): the turn is not this vCPU's."""
        return self._gate is None or bool(self._gate.in_step)

    @property
    def quantum_start(self) -> int:
        """The instruction count where the current budget was set (by `set_budget` or the hook)."""
        return self._budget_start

    @property
    def baton_stats(self) -> dict[str, int]:
        """Quanta the block hook began: after one of its own, after the turn came back; turns passed."""
        g = self._gate
        return {"chained": g.chained, "resumed": g.resumed, "passes": g.passes} if g is not None else {}

    def yield_when_spinning(self) -> None:
        """Give the host CPU up when the guest spins while no other vCPU moves the shared clock
        (_icount.c SPIN_BLOCKS): for several vCPUs running free."""
        if self._gate is not None and self._gate.clock:
            self._gate.spin_yield = 1

    @property
    def spin_yields(self) -> int:
        """Times the vCPU gave its host CPU up while spinning with no other vCPU moving the clock
        (_icount.c SPIN_BLOCKS; several vCPUs only)."""
        return self._gate.spin_yields if self._gate is not None else 0

    def set_budget(self, total: int, exact: bool = True) -> None:
        """`run` stops before any block that would take the instruction count past `total`; it returns
        a KICK stop there. Exact: the caller finishes with `step` (one instruction each, never stopped
        by the budget) up to exactly `total` (see `budget_due`). Not exact: the budget is done at that
        block boundary, unless no instruction ran since this call (a block larger than what was left),
        when it is finished by steps as well."""
        self._user_budget = total
        self._budget_hit = False
        self._budget_exact = exact
        self._budget_start = self._count()
        self._apply_budget()
        if self._gate is not None:
            self._gate.in_step = 1

    def set_deadline(self, count: int | None) -> None:
        """A timer event due when the clock reaches `count` (None: none): `run` stops exactly there (as
        an exact budget), and `deadline_due` tells the caller. With a shared clock, other vCPUs move it
        too: this vCPU stops when its own instructions alone would have taken the clock there (at or
        after the instant: exact when one vCPU runs at a time, as under a deterministic schedule), and
        each `run` re-reckons that from the clock."""
        self._deadline_clock = 2**64 - 1 if count is None else count
        self._deadline = self._local_deadline()
        self._budget_hit = False      # a stop short of the old target is over: the next run stops again
        self._apply_budget()

    @property
    def deadline_clock(self) -> int | None:
        """The clock instant of the next timer event (None: none armed)."""
        return None if self._deadline_clock == 2**64 - 1 else self._deadline_clock

    def _local_deadline(self) -> int:
        if self._clock is None or self._deadline_clock == 2**64 - 1:
            return self._deadline_clock
        return self._count() + max(0, self._deadline_clock - self._clock.value)

    def _apply_budget(self) -> None:
        gate = self._gate
        if gate is not None:
            gate.budget = min(self._user_budget, self._deadline)
            gate.user_budget, gate.budget_start, gate.deadline = self._user_budget, self._budget_start, self._deadline
            gate.deadline_clock = self._deadline_clock
            _icount.reset_limit(ctypes.addressof(gate))

    def _count(self) -> int:
        return ctypes.c_uint64.from_address(self._budget.count).value if self._budget is not None else 0

    @property
    def has_budget(self) -> bool:
        return self._budget is not None

    @property
    def deadline_due(self) -> bool:
        if self._clock is not None:
            return self._budget is not None and self._clock.value >= self._deadline_clock
        return self._budget is not None and self._count() >= self._deadline

    @property
    def budget_done(self) -> bool:
        """The budget is reached: exactly, or (not exact) at a block boundary short of it."""
        if self._budget is None:
            return False
        n = self._count()
        return n >= self._user_budget or (self._budget_hit and not self._budget_exact and n > self._budget_start
                                          and self._user_budget <= self._deadline)

    @property
    def budget_due(self) -> bool:
        """True after `run` stopped short of its target (the budget or a timer deadline), until single
        steps have reached it: the caller steps instead of running while this holds."""
        if not self._budget_hit or self._budget is None:
            return False
        n = self._count()
        if self._deadline <= self._user_budget:
            return n < self._deadline
        return not self.budget_done

    @property
    def budget_stops(self) -> int:
        return self._budget.stops if self._budget is not None else 0


class _Gate(ctypes.Structure):
    """cosim_gate of _icount.c."""
    _fields_ = [("count", ctypes.c_void_p), ("limit", ctypes.c_uint64), ("budget", ctypes.c_uint64),
                ("exempt_from", ctypes.c_uint64), ("stops", ctypes.c_uint64), ("emu_stop", ctypes.c_void_p),
                ("kick", ctypes.c_uint64), ("kicks", ctypes.c_uint64), ("tb", ctypes.c_void_p),
                ("tb_offset", ctypes.c_uint64), ("clock", ctypes.c_void_p), ("unshared", ctypes.c_uint64),
                ("spin_pc", ctypes.c_uint64 * 2), ("spin_blocks", ctypes.c_uint64), ("spin_clock", ctypes.c_uint64),
                ("spin_count", ctypes.c_uint64), ("spin_yields", ctypes.c_uint64), ("spin_yield", ctypes.c_uint64),
                ("clock_batch", ctypes.c_uint64), ("baton", ctypes.c_void_p), ("chain", ctypes.c_uint64),
                ("user_budget", ctypes.c_uint64), ("budget_start", ctypes.c_uint64), ("deadline", ctypes.c_uint64),
                ("deadline_clock", ctypes.c_uint64), ("max_count", ctypes.c_uint64), ("until", ctypes.c_uint64),
                ("in_step", ctypes.c_uint64),
                ("chained", ctypes.c_uint64), ("passes", ctypes.c_uint64), ("resumed", ctypes.c_uint64)]


def _branch_target(pc: int, word: int, bits: int) -> int:
    mask = (1 << bits) - 4
    disp = word & mask
    if disp & (1 << (bits - 1)):
        disp -= 1 << bits
    if word & 2:   # AA: absolute
        return disp & 0xFFFFFFFF
    return (pc + disp) & 0xFFFFFFFF


@contextlib.contextmanager
def _probing(engine: Engine, at: int, size: int, gprs: range):
    """Probe code run on the engine's scratch page (the unicorn fields found at start-up): the page
    opened, and after, [at, at + size) zeroed with its translations dropped, the page closed again,
    the GPRs in `gprs` and MSR (problem state) as they were."""
    uc = engine.uc
    h = engine._tlb_header
    saved = [uc.reg_read(GPR_IDS[n]) for n in gprs]
    h[H_RES_OPEN] = 1
    try:
        yield
    finally:
        h[H_RES_OPEN] = 0
        uc.mem_write(at, bytes(size))
        engine._remove_cache(at, at + size)
        uclib.uc_ctl(uc._uch, _CTL_TLB_FLUSH)
        for n, v in zip(gprs, saved):
            uc.reg_write(GPR_IDS[n], v)
        uc.reg_write(P.UC_PPC_REG_MSR, MSR_PR)


_MAGIC = (0x5AC3E1F0, 0x6BD4F201, 0x7CE50312, 0x8DF61423)


def _find_env_spr(engine: Engine) -> int:
    """Address of unicorn's SPR array (CPUPPCState.spr, 1024 x uint32) inside this process, or 0.

    The time base is read natively by the guest (`mfspr rD,268` is not privileged, and unicorn 2.1.4
    implements it as a plain load from that array, which nothing updates), so the engine writes the
    array itself. Unicorn's API offers no SPR access, so the array is found as QEMU's own gdbstub would
    not need to: SPRG0-3 are set to four magic words by `mtspr` run in supervisor state on the engine's
    scratch page, the private writable mappings of the process are searched for them, and the
    candidate whose [268] a problem-state `mfspr 268` then reads back is the array (measured: two
    copies of SPRG0-3 exist, only one is read by the translated code). 0 when nothing verified (the
    time base then reads 0, as before)."""
    uc = engine.uc
    code = b"".join(struct.pack(">I", 0x7C0003A6 | (3 + i) << 21 | ((272 + i) & 0x1F) << 16
                                | ((272 + i) >> 5) << 11) for i in range(4))
    mfspr268 = struct.pack(">I", 0x7C0002A6 | 3 << 21 | (268 & 0x1F) << 16 | (268 >> 5) << 11)
    with _probing(engine, SCRATCH, 16, range(3, 7)):
        uc.mem_write(SCRATCH, code)
        for i, m in enumerate(_MAGIC):
            uc.reg_write(GPR_IDS[3 + i], m)
        uc.reg_write(P.UC_PPC_REG_MSR, 0)
        uc.emu_start(SCRATCH, SCRATCH + 16)
        uc.reg_write(P.UC_PPC_REG_MSR, MSR_PR)
        pattern = struct.pack("<4I", *_MAGIC)
        candidates = []
        with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
            for line in maps:
                m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+)", line)
                if m is None or m[3] != "rw-p":
                    continue
                lo, hi = int(m[1], 16), int(m[2], 16)
                try:
                    mem.seek(lo)
                    buf = mem.read(hi - lo)
                except (OSError, OverflowError, ValueError):
                    continue
                i = buf.find(pattern)
                while i >= 0:
                    if i % 4 == 0:
                        candidates.append(lo + i - 4 * 272)
                    i = buf.find(pattern, i + 1)
        uc.mem_write(SCRATCH, mfspr268)
        engine._remove_cache(SCRATCH, SCRATCH + 16)
        for base in candidates:
            cell = ctypes.c_uint32.from_address(base + 4 * 268)
            old = cell.value
            cell.value = 0x1234ABCD
            uc.emu_start(SCRATCH, SCRATCH + 4)
            if uc.reg_read(GPR_IDS[3]) & 0xFFFFFFFF == 0x1234ABCD:
                cell.value = 0
                return base
            cell.value = old
        return 0


def _find_dcache_line_size(engine: Engine) -> int:
    """Address of unicorn's CPUPPCState.dcache_line_size (an int, 32 on its e500v2 core), or 0.

    `dcbz` zeroes that many bytes (QEMU's helper_dcbz reads it at run time). The e500mc's lines are 64
    bytes, and a kernel built for it clears pages with one `dcbz` per 64 bytes (L1_CACHE_BYTES): on a
    32-byte core half of every page stays as it was (seen: Linux's kernfs read a stale pointer). QEMU 5's
    layout puts dcache_line_size and icache_line_size (both 32) after the SPR callbacks that follow the
    SPR array; each such pair in the 256 KiB after the array is tried: set to 64, a `dcbz` at the second
    half of a 64-byte block must clear its first half."""
    if not engine._env_spr:
        return 0
    uc = engine.uc
    start = engine._env_spr + 4 * 1024
    try:
        with open("/proc/self/mem", "rb", 0) as mem:
            mem.seek(start)
            buf = mem.read(256 << 10)
    except (OSError, OverflowError, ValueError):
        return 0
    words = np.frombuffer(buf[:len(buf) & ~7], np.int32)
    hits = np.flatnonzero((words[:-1] == 32) & (words[1:] == 32))
    code, data = SCRATCH + 0x100, SCRATCH + 0x400
    dcbz = struct.pack(">I", 0x7C0007EC | 3 << 11)          # dcbz 0, r3
    with _probing(engine, code, data + 64 - code, range(3, 4)):
        uc.mem_write(code, dcbz)
        uc.reg_write(P.UC_PPC_REG_MSR, 0)
        for i in hits.tolist():
            cell = ctypes.c_int32.from_address(start + 4 * i)
            cell.value = 64
            uc.mem_write(data, b"\xff" * 64)
            uc.reg_write(GPR_IDS[3], data + 32)
            uc.emu_start(code, code + 4)
            if uc.mem_read(data, 64) == bytes(64):
                return start + 4 * i
            cell.value = 32
        return 0


def _set_tb_now(engine: Engine) -> None:
    """Write the time base into unicorn at once (the block hook refreshes it before every block)."""
    if engine._env_spr:
        tb = engine.timebase
        ctypes.c_uint32.from_address(engine._env_spr + 4 * 268).value = tb & 0xFFFFFFFF
        ctypes.c_uint32.from_address(engine._env_spr + 4 * 269).value = tb >> 32
