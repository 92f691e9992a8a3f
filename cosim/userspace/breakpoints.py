"""Userspace's generic guest-debug state (the model of QEMU's kvm-all.c breakpoint list), pure.

One list per VM: software breakpoints by address with their saved word and a use count; hardware
points (IAC and DAC slots) global, shared by all vCPUs as in QEMU. Insert/remove return what must be
written to guest memory; the caller does the writing with every vCPU stopped and flushes every vCPU's
translations. `verdict()` is QEMU's KVM_EXIT_DEBUG decision, in QEMU's order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ..isa import DebugStatus, GuestDebug, SstepFlags
from ..mutation import active
from ..vcpu.runpage import DAC_RANGE

NO_STALE_CHECK = active("no-stale-check")   # test-only (cosim/mutation.py)


class BreakpointError(Exception):
    """A request the debug state cannot honour (the message says why, for a person)."""


@dataclass
class SwBreakpoint:
    address: int
    saved: int          # the original word
    uses: int = 1


@dataclass
class HwPoint:
    kind: str           # "iac" | "watch" | "rwatch" | "awatch"
    address: int
    length: int = 4
    uses: int = 1

    @property
    def dac_rw(self) -> int:
        return {"watch": 2, "rwatch": 1, "awatch": 3}.get(self.kind, 0)


@dataclass(frozen=True)
class Patch:
    address: int
    word: int


class Verdict(str, Enum):
    STEP = "step"            # the vCPU was single-stepping for the debugger
    HW = "hw"                # one of our hardware points
    SW = "sw"                # one of our software breakpoints
    STALE = "stale"          # its breakpoint was removed while the exit was in flight: retry same PC
    REINJECT = "reinject"    # not ours: give the guest its own trap back


@dataclass
class DebugState:
    debug_inst: int | None
    iac_slots: int = 2
    dac_slots: int = 2
    sw: dict[int, SwBreakpoint] = field(default_factory=dict)
    iac: list[HwPoint | None] = field(default_factory=list)
    dac: list[HwPoint | None] = field(default_factory=list)

    def __post_init__(self):
        self.iac = [None] * self.iac_slots
        self.dac = [None] * self.dac_slots

    # --- software breakpoints ----------------------------------------------------------------------
    def insert_sw(self, address: int, current_word: int) -> Patch | None:
        if address & 3:
            raise BreakpointError(f"breakpoint address {address:#x} is not word-aligned")
        if self.debug_inst is None:
            raise BreakpointError("this strategy plants no software breakpoints (use hardware points)")
        bp = self.sw.get(address)
        if bp is not None:
            bp.uses += 1
            return None
        self.sw[address] = SwBreakpoint(address, current_word)
        return Patch(address, self.debug_inst)

    def remove_sw(self, address: int, current_word: int) -> Patch | None:
        bp = self.sw.get(address)
        if bp is None:
            raise BreakpointError(f"no software breakpoint at {address:#x}")
        bp.uses -= 1
        if bp.uses > 0:
            return None
        del self.sw[address]
        if current_word != self.debug_inst:
            # someone (the guest) rewrote the word: leave it, as QEMU does
            return None
        return Patch(address, bp.saved)

    def saved_word(self, address: int) -> int | None:
        bp = self.sw.get(address)
        return bp.saved if bp else None

    # --- hardware points ---------------------------------------------------------------------------
    def insert_hw(self, kind: str, address: int, length: int = 4) -> None:
        """An IAC, or a watchpoint: up to 4 bytes in one DAC slot; longer, the two DACs as one range
        (DBCR2[DAC12M] range mode, DAC1 <= EA < DAC2), which needs both slots free."""
        slots = self.iac if kind == "iac" else self.dac
        for p in slots:
            if p is not None and p.kind == kind and p.address == address and (kind == "iac" or p.length == length):
                p.uses += 1
                return
        if kind != "iac" and length > 4:
            if any(slots):
                raise BreakpointError(
                    f"a {length}-byte watchpoint at {address:#x} needs both DAC slots as one range "
                    f"(DBCR2[DAC12M], DAC1 <= EA < DAC2): in use at " + self._in_use(slots))
            p = HwPoint(kind, address, length)
            slots[0] = slots[1] = p            # one point in both slots
            return
        for i, p in enumerate(slots):
            if p is None:
                slots[i] = HwPoint(kind, address, length)
                return
        what = "instruction (IAC)" if kind == "iac" else "data (DAC)"
        raise BreakpointError(
            f"no free {what} slot for {address:#x}: e500 has {len(slots)}, in use at " + self._in_use(slots))

    @staticmethod
    def _in_use(slots) -> str:
        points = list({id(p): p for p in slots if p is not None}.values())
        return ", ".join(f"{p.address:#x}" + (f" ({p.length} bytes, both slots)" if p.length > 4 else "")
                         for p in points)

    def remove_hw(self, kind: str, address: int) -> None:
        slots = self.iac if kind == "iac" else self.dac
        for i, p in enumerate(slots):
            if p is not None and p.kind == kind and p.address == address:
                p.uses -= 1
                if p.uses <= 0:
                    for j, q in enumerate(slots):     # (a range holds both slots)
                        if q is p:
                            slots[j] = None
                return
        raise BreakpointError(f"no {kind} point at {address:#x}")

    # --- KVM_SET_GUEST_DEBUG -----------------------------------------------------------------------
    def control(self, singlestep: bool = False, sstep: int = SstepFlags.DEFAULT) -> int:
        """KVM_SET_GUEST_DEBUG's control word; a single step also carries `sstep`'s NOIRQ/NOTIMER."""
        flags = 0
        if self.sw:
            flags |= GuestDebug.USE_SW_BP
        if any(self.iac) or any(self.dac):
            flags |= GuestDebug.USE_HW_BP
        if singlestep:
            flags |= GuestDebug.SINGLESTEP
            if sstep & SstepFlags.NOIRQ:
                flags |= GuestDebug.BLOCKIRQ
            if sstep & SstepFlags.NOTIMER:
                flags |= GuestDebug.NOTIMER
        return flags | GuestDebug.ENABLE if flags else 0

    def guest_debug_fields(self) -> tuple[tuple[int, ...], ...]:
        """KVM_SET_GUEST_DEBUG's hardware points: (IAC addresses, IAC enables, DAC addresses, DAC
        read/write bits), one entry per slot (also the key userspace compares settings by)."""
        iac, dac = self.iac, self.dac
        if len(dac) == 2 and dac[0] is not None and dac[0] is dac[1]:      # DBCR2[DAC12M] range
            p = dac[0]
            dac_fields: tuple[tuple[int, ...], tuple[int, ...]] = (
                (p.address, (p.address + p.length) & 0xFFFFFFFF), (p.dac_rw | DAC_RANGE, 0))
        else:
            dac_fields = (tuple(p.address if p else 0 for p in dac), tuple(p.dac_rw if p else 0 for p in dac))
        return (tuple(p.address if p else 0 for p in iac), tuple(int(p is not None) for p in iac), *dac_fields)

    def snapshot(self) -> "DebugState":
        """A copy whose breakpoint tables can change independently (the records themselves are
        shared: read them only)."""
        c = object.__new__(DebugState)
        c.__dict__.update(self.__dict__)
        c.sw, c.iac, c.dac = dict(self.sw), list(self.iac), list(self.dac)
        return c

    # --- KVM_EXIT_DEBUG ----------------------------------------------------------------------------
    def verdict(self, address: int, status: int, word: int, current_word: int, stepping: bool,
                event: str, displaced: bool = False) -> Verdict:
        """QEMU's order: single-stepping; a hardware status; a known software breakpoint; else the
        exit is not ours. A not-ours exit whose word is gone from memory is stale (its breakpoint was
        removed while the exit was in flight) and must be retried, never delivered to the guest. An
        exit `displaced` (raised by the original instruction under a breakpoint while it was being
        stepped over) is never a hit: the breakpoint was this execution's hit already."""
        if status == DebugStatus.SOFTWARE and event == "debug":
            # a host single-step (only host debug events reach userspace): ours while stepping, else
            # a step that was cancelled (detach, say) while its exit was in flight: never the guest's
            return Verdict.STEP if stepping else Verdict.STALE
        if status != DebugStatus.SOFTWARE:
            kind = "iac" if status == DebugStatus.BREAKPOINT else None
            for p in (self.iac if kind else self.dac):
                if p is not None and p.address <= address < p.address + max(p.length, 1):
                    return Verdict.HW
            return Verdict.STALE   # a point removed while its event was in flight
        if displaced:
            return Verdict.REINJECT
        if address in self.sw:
            return Verdict.SW
        if current_word != word and word == self.debug_inst and not NO_STALE_CHECK:
            return Verdict.STALE
        return Verdict.REINJECT
