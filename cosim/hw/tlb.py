"""Book E 2.06 (booke206) TLB entries as MAS register values: what QEMU's board code writes straight
into a vCPU's TLB1 (e500.c's and ppce500_spin.c's ``mmubooke_create_initial_mapping``).

MAS1[TSIZE] uses QEMU's encoding, MAV 2.0: bits 7..11 hold log2(page size / 1 KiB), so 64 MiB is 16
(0x800 in MAS1). On e500v2 (MAV 1.0, TSIZE bits 8..11, size 4^TSIZE KiB) the same bits mean the same
size for the even values QEMU uses (it rounds odd sizes up for that reason).
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TlbEntry", "page_size_to_tsize", "tsize_to_page_size", "MAS0_TLBSEL1", "MAS1_VALID",
           "MAS1_IPROT", "MAS2_M", "MAS3_PERM_ALL"]

MAS0_TLBSEL1 = 1 << 28
MAS0_ESEL_SHIFT = 16
MAS1_VALID, MAS1_IPROT = 0x80000000, 0x40000000
MAS1_TSIZE_SHIFT = 7
MAS2_M = 0x04
MAS3_UX, MAS3_SX, MAS3_UW, MAS3_SW, MAS3_UR, MAS3_SR = 0x20, 0x10, 0x08, 0x04, 0x02, 0x01
MAS3_PERM_ALL = MAS3_UX | MAS3_SX | MAS3_UW | MAS3_SW | MAS3_UR | MAS3_SR
PAGE_MASK = ~0xFFF


def page_size_to_tsize(size: int) -> int:
    """QEMU's booke206_page_size_to_tlb: log2(size / 1 KiB), rounded down."""
    return (size // 1024).bit_length() - 1


def tsize_to_page_size(tsize: int) -> int:
    return 1024 << tsize


@dataclass(frozen=True)
class TlbEntry:
    """One TLB entry as the MAS values a ``tlbwe`` would take (MAS0 selects TLB1 and the entry)."""

    mas0: int
    mas1: int
    mas2: int
    mas3: int
    mas7: int = 0

    @classmethod
    def tlb1(cls, esel: int, va: int, pa: int, tsize: int, mas2_flags: int = 0,
             perms: int = MAS3_PERM_ALL, iprot: bool = False, tid: int = 0, ts: int = 0) -> "TlbEntry":
        return cls(mas0=MAS0_TLBSEL1 | (esel << MAS0_ESEL_SHIFT),
                   mas1=MAS1_VALID | (MAS1_IPROT if iprot else 0) | ((tid & 0xFF) << 16) | (ts << 12)
                   | (tsize << MAS1_TSIZE_SHIFT),
                   mas2=(va & PAGE_MASK & 0xFFFFFFFF) | mas2_flags,
                   mas3=(pa & PAGE_MASK & 0xFFFFFFFF) | perms,
                   mas7=pa >> 32)

    @property
    def esel(self) -> int:
        return (self.mas0 >> MAS0_ESEL_SHIFT) & 0xFFF

    @property
    def tsize(self) -> int:
        return (self.mas1 >> MAS1_TSIZE_SHIFT) & 0x1F

    @property
    def size(self) -> int:
        return tsize_to_page_size(self.tsize)

    @property
    def va(self) -> int:
        return self.mas2 & PAGE_MASK & 0xFFFFFFFF

    @property
    def pa(self) -> int:
        return (self.mas7 << 32) | (self.mas3 & PAGE_MASK & 0xFFFFFFFF)

    @property
    def valid(self) -> bool:
        return bool(self.mas1 & MAS1_VALID)

    @property
    def iprot(self) -> bool:
        return bool(self.mas1 & MAS1_IPROT)

    @property
    def perms(self) -> int:
        return self.mas3 & MAS3_PERM_ALL
