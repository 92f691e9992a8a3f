"""The guest's Book E TLBs in shared memory, as KVM shares them with QEMU (KVM_CAP_SW_TLB).

One shared block per VM holds, per vCPU, the entries of TLB1 (fully associative, variable page size,
IPROT) followed by those of TLB0 (4 KiB pages, set associative), each entry in the MAS form that
KVM_CAP_SW_TLB and QEMU's `ppcmas_tlb_t` use: MAS1 (V, IPROT, TID, TS, TSIZE), MAS2 (EPN, WIMGE),
MAS3 (RPN low, U0-3, permissions), MAS7 (RPN bits 32-35). The vCPU (the silicon) writes it; the engine's
C TLB-fill callback (cosim/vcpu/_icount.c) walks it on every host TLB miss; userspace and the gdb stub
read it to translate guest virtual addresses (`translate`). The layout here and the C walk agree
field for field (tests/test_guest_tlb.py checks both against the same cases).

Pure: NumPy over a buffer, no unicorn, no I/O. References: Power ISA 2.06 Book III-E ch. 6, QEMU's
target/ppc/mmu_helper.c (booke206), Linux's arch/powerpc/kvm/e500_mmu.c.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .shm import SharedBlock

ENTRY = np.dtype([("mas1", "<u4"), ("mas2", "<u4"), ("mas3", "<u4"), ("mas7", "<u4")])

MAS1_V = 0x80000000
MAS1_IPROT = 0x40000000
MAS1_TID_SHIFT = 16
MAS1_TID_MASK = 0x3FFF0000
MAS1_TS = 0x00001000
MAS1_TSIZE_SHIFT = 7
MAS1_TSIZE_MASK = 0x00000F80
MAS2_EPN = 0xFFFFF000
MAS3_RPN = 0xFFFFF000
# MAS3 permission bits
UX, SX, UW, SW, UR, SR = 0x20, 0x10, 0x08, 0x04, 0x02, 0x01

FETCH, READ, WRITE = 0, 1, 2      # access kinds


@dataclass(frozen=True)
class TlbGeometry:
    """What TLB0CFG/TLB1CFG report: entries and associativity of each array (QEMU's values)."""
    tlb1_entries: int
    tlb0_entries: int = 512
    tlb0_ways: int = 4

    @property
    def tlb0_sets(self) -> int:
        return self.tlb0_entries // self.tlb0_ways

    @property
    def entries(self) -> int:
        return self.tlb1_entries + self.tlb0_entries

    def tlbncfg(self, n: int) -> int:
        """TLBnCFG: ASSOC[0:7] MINSIZE[8:11] MAXSIZE[12:15] IPROT[16] AVAIL[17] NENTRY[20:31] (as
        QEMU's gen_tlbncfg: TLB0 4 KiB only; TLB1 4 KiB..4 GiB, IPROT, variable size)."""
        if n == 0:
            return (self.tlb0_ways << 24) | (1 << 20) | (1 << 16) | self.tlb0_entries
        return (self.tlb1_entries << 24) | (1 << 20) | (12 << 16) | 0xC000 | self.tlb1_entries


def page_size(mas1: int) -> int:
    """Bytes mapped by an entry: 1 KiB << TSIZE (QEMU's booke206_tlb_to_page_size)."""
    return 1024 << ((mas1 & MAS1_TSIZE_MASK) >> MAS1_TSIZE_SHIFT)


def physical(entry, vaddr: int) -> int:
    """The 36-bit physical address `vaddr` maps to through `entry` (which must match it)."""
    mask = page_size(int(entry["mas1"])) - 1
    rpn = (int(entry["mas7"]) & 0xF) << 32 | (int(entry["mas3"]) & MAS3_RPN)
    return (rpn & ~mask) | (vaddr & mask)


def matches(entry, vaddr: int, ts: int, pid: int) -> bool:
    mas1 = int(entry["mas1"])
    if not mas1 & MAS1_V or bool(mas1 & MAS1_TS) != bool(ts):
        return False
    tid = (mas1 & MAS1_TID_MASK) >> MAS1_TID_SHIFT
    if tid and tid != pid:
        return False
    mask = ~(page_size(mas1) - 1) & 0xFFFFFFFF
    return (vaddr & mask) == (int(entry["mas2"]) & mask)


def allowed(entry, access: int, user: bool) -> bool:
    mas3 = int(entry["mas3"])
    bit = ((UX, UR, UW) if user else (SX, SR, SW))[access]
    return bool(mas3 & bit)


class GuestTlb:
    """The TLBs of every vCPU of a VM: `tlb(i)` is vCPU i's entry array, TLB1 first, then TLB0 by
    set (set s, way w at tlb1_entries + s * ways + w)."""

    def __init__(self, block: SharedBlock | None, geometry: TlbGeometry, vcpus: int):
        self.block = block
        self.geometry = geometry
        self.vcpus = vcpus
        n = geometry.entries * vcpus
        if block is None:                          # a private TLB (tests, tools)
            self.entries = np.zeros(n, ENTRY)
        else:
            self.entries = np.frombuffer(block.buf, ENTRY, count=n)

    @classmethod
    def create(cls, geometry: TlbGeometry, vcpus: int) -> "GuestTlb":
        block = SharedBlock.create(ENTRY.itemsize * geometry.entries * vcpus, prefix="cosim-tlb")
        t = cls(block, geometry, vcpus)
        t.entries[:] = 0
        return t

    @classmethod
    def attach(cls, name: str, geometry: TlbGeometry, vcpus: int) -> "GuestTlb":
        return cls(SharedBlock.attach(name), geometry, vcpus)

    @property
    def name(self) -> str:
        return self.block.name if self.block is not None else ""

    def tlb(self, vcpu: int) -> np.ndarray:
        n = self.geometry.entries
        return self.entries[vcpu * n:(vcpu + 1) * n]

    def close(self) -> None:
        self.entries = None
        if self.block is not None:
            self.block.close()

    # --- lookup (the same walk as the C fill callback) --------------------------------------------
    def lookup(self, vcpu: int, vaddr: int, ts: int, pid: int) -> int | None:
        """Index of the entry of vCPU `vcpu` that maps `vaddr` in address space `ts` for `pid`: TLB1
        first, then TLB0's set; None on a miss."""
        g = self.geometry
        t = self.tlb(vcpu)
        for i in range(g.tlb1_entries):
            if int(t[i]["mas1"]) & MAS1_V and matches(t[i], vaddr, ts, pid):
                return i
        base = g.tlb1_entries + ((vaddr >> 12) % g.tlb0_sets) * g.tlb0_ways
        for i in range(base, base + g.tlb0_ways):
            if int(t[i]["mas1"]) & MAS1_V and matches(t[i], vaddr, ts, pid):
                return i
        return None

    def translate(self, vcpu: int, vaddr: int, ts: int, pid: int) -> int | None:
        """The 36-bit physical address of `vaddr`, or None when no entry maps it."""
        i = self.lookup(vcpu, vaddr & 0xFFFFFFFF, ts, pid)
        return None if i is None else physical(self.tlb(vcpu)[i], vaddr & 0xFFFFFFFF)

    def valid_entries(self, vcpu: int) -> list[tuple[int, int, int, int, int, int]]:
        """(index, tlb, mas1, mas2, mas3, mas7) of every valid entry (`info tlb`)."""
        g = self.geometry
        out = []
        for i, e in enumerate(self.tlb(vcpu)):
            if int(e["mas1"]) & MAS1_V:
                out.append((i if i < g.tlb1_entries else i - g.tlb1_entries, 1 if i < g.tlb1_entries else 0,
                            int(e["mas1"]), int(e["mas2"]), int(e["mas3"]), int(e["mas7"])))
        return out


def describe(tlb: int, index: int, mas1: int, mas2: int, mas3: int, mas7: int) -> str:
    """One line of `info tlb`, as QEMU's mmubooke206_dump_one_tlb shows an entry."""
    size = page_size(mas1)
    unit = "G" if size >= 1 << 30 else "M" if size >= 1 << 20 else "K"
    shift = 30 if unit == "G" else 20 if unit == "M" else 10
    ea = mas2 & ~(size - 1) & 0xFFFFFFFF
    pa = ((mas7 & 0xF) << 32 | (mas3 & MAS3_RPN)) & ~(size - 1)
    sup = "".join(c if mas3 & b else "-" for c, b in (("R", SR), ("W", SW), ("X", SX)))
    usr = "".join(c if mas3 & b else "-" for c, b in (("R", UR), ("W", UW), ("X", UX)))
    tid = (mas1 & MAS1_TID_MASK) >> MAS1_TID_SHIFT
    return (f"TLB{tlb}[{index:2d}] {ea:#010x} -> {pa:#011x} {size >> shift:4d}{unit} "
            f"TS{1 if mas1 & MAS1_TS else 0} TID {tid:3d} S:{sup} U:{usr}"
            f"{' IPROT' if mas1 & MAS1_IPROT else ''}")
