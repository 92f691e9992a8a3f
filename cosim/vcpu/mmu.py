"""The Book E MMU instructions of the e500 cores (the silicon's side): tlbwe, tlbre, tlbsx, tlbivax,
tlbilx, MMUCSR0 flash invalidation, and the MAS registers a TLB miss preloads.

The entries live in the VM's shared guest TLB (cosim/machine/guest_tlb.py); translation itself is done
by the engine's C fill callback on host TLB misses. Here every change that can invalidate a host
translation tells the engine to drop its translations (`flush`), and only then: writing an invalid slot
(U-Boot's first sweep over TLB1) or reading costs nothing. Semantics follow QEMU's
target/ppc/mmu_helper.c (booke206_tlbwe / tlbsx / tlbivax / tlbilx, booke206_update_mas_tlb_miss) and
Linux's arch/powerpc/kvm/e500_mmu.c.
"""
from __future__ import annotations

from ..isa import SPR
from ..machine.guest_tlb import (FETCH, MAS1_IPROT, MAS1_TID_MASK, MAS1_TS, MAS1_TSIZE_MASK, MAS1_TSIZE_SHIFT,
                                 MAS1_V, TlbGeometry, matches, page_size)

MAS0, MAS1, MAS2, MAS3, MAS4, MAS6, MAS7 = (SPR[n] for n in ("MAS0", "MAS1", "MAS2", "MAS3", "MAS4", "MAS6",
                                                             "MAS7"))
MAS0_TLBSEL_SHIFT = 28
MAS0_ESEL_SHIFT = 16
MAS0_ESEL_MASK = 0x0FFF0000
MAS2_ATTRS = 0x1F                  # WIMGE
MAS4_TLBSELD_MASK = 0x30000000
MAS4_TSIZED_MASK = 0x00000F80
MAS6_SPID_MASK = 0x3FFF0000
MAS6_SAS = 0x1
MMUCSR0_TLB0FI = 0x4
MMUCSR0_TLB1FI = 0x2
TSIZE_4K = 2


class Mmu:
    """The TLB operations of one vCPU. `tlb` is its entry array (TLB1 then TLB0 by set), `spr` its
    architected SPR file, `flush()` drops the engine's host translations."""

    def __init__(self, tlb, geometry: TlbGeometry, spr, flush):
        self.tlb = tlb
        self.g = geometry
        self.spr = spr
        self.flush = flush
        self.last_way = 0            # TLB0's next victim (QEMU's env->last_way, KVM's gtlb_nv[0])
        self.writes = 0
        self.misses = {"itlb": 0, "dtlb": 0, "isi": 0, "dsi": 0}

    # --- addressing --------------------------------------------------------------------------------
    def _index(self, tlbsel: int, esel: int, epn: int) -> int | None:
        g = self.g
        if tlbsel == 1:
            return esel % g.tlb1_entries
        if tlbsel == 0:
            return g.tlb1_entries + ((epn >> 12) % g.tlb0_sets) * g.tlb0_ways + (esel & (g.tlb0_ways - 1))
        return None

    def _tlbsel_esel(self, index: int) -> tuple[int, int]:
        if index < self.g.tlb1_entries:
            return 1, index
        return 0, (index - self.g.tlb1_entries) % self.g.tlb0_ways

    def _victim(self) -> int:
        """MAS0's ESEL and NV fields after a miss: the next victim way, and the counter moved on
        (QEMU's booke206_update_mas_tlb_miss "next victim logic", KVM's gtlb0_get_next_victim). A miss
        handler that leaves MAS0 alone (Linux's) so writes each miss's entry to the next way of its
        set; writing every one to way 0 made an instruction and the data it stores evict each other
        forever when their pages share a set (init's code at 0x1000024c and its stack at 0xbfc00000 on
        a 2-vCPU boot: 2.7M TLB misses, no progress)."""
        way = self.last_way
        self.last_way = (way + 1) & (self.g.tlb0_ways - 1)
        return (way << MAS0_ESEL_SHIFT) | self.last_way

    # --- instructions ------------------------------------------------------------------------------
    def tlbwe(self) -> None:
        spr = self.spr
        mas0 = int(spr[MAS0])
        tlbsel = (mas0 >> MAS0_TLBSEL_SHIFT) & 3
        esel = (mas0 & MAS0_ESEL_MASK) >> MAS0_ESEL_SHIFT
        i = self._index(tlbsel, esel, int(spr[MAS2]))
        if i is None:
            return                              # no such TLB: ignored (QEMU: "invalid TLBSEL")
        mas1 = int(spr[MAS1])
        if tlbsel == 0:                          # TLB0 has 4 KiB pages only
            mas1 = (mas1 & ~MAS1_TSIZE_MASK) | (TSIZE_4K << MAS1_TSIZE_SHIFT)
        mask = ~(page_size(mas1) - 1) & 0xFFFFFFFF
        e = self.tlb[i]
        was_valid = bool(int(e["mas1"]) & MAS1_V)
        e["mas1"] = mas1
        e["mas2"] = int(spr[MAS2]) & (mask | MAS2_ATTRS)
        e["mas3"] = int(spr[MAS3])
        e["mas7"] = int(spr[MAS7]) & 0xF
        self.writes += 1
        if was_valid:
            self.flush()                         # host pages of the entry replaced

    def tlbre(self) -> None:
        spr = self.spr
        mas0 = int(spr[MAS0])
        tlbsel = (mas0 >> MAS0_TLBSEL_SHIFT) & 3
        i = self._index(tlbsel, (mas0 & MAS0_ESEL_MASK) >> MAS0_ESEL_SHIFT, int(spr[MAS2]))
        if i is None:
            return
        e = self.tlb[i]
        spr[MAS1] = int(e["mas1"])
        spr[MAS2] = int(e["mas2"])
        spr[MAS3] = int(e["mas3"])
        spr[MAS7] = int(e["mas7"])
        if tlbsel == 0:
            spr[MAS0] = (mas0 & ~0xFFF) | self.last_way

    def tlbsx(self, ea: int) -> None:
        """Search for `ea` with MAS6's PID and address space: hit -> MAS0-3,7 describe the entry;
        miss -> MAS registers loaded with the defaults of MAS4 (as a TLB miss would)."""
        spr = self.spr
        mas6 = int(spr[MAS6])
        pid = (mas6 & MAS6_SPID_MASK) >> 16
        ts = mas6 & MAS6_SAS
        for i in range(self.g.entries):
            e = self.tlb[i]
            if int(e["mas1"]) & MAS1_V and matches(e, ea, ts, pid):
                tlbsel, esel = self._tlbsel_esel(i)
                spr[MAS0] = (tlbsel << MAS0_TLBSEL_SHIFT) | (esel << MAS0_ESEL_SHIFT) | self.last_way
                spr[MAS1] = int(e["mas1"])
                spr[MAS2] = int(e["mas2"])
                spr[MAS3] = int(e["mas3"])
                spr[MAS7] = int(e["mas7"])
                return
        self._preload_miss(ea, pid, ts)
        spr[MAS1] &= ~MAS1_V & 0xFFFFFFFF

    def tlbivax(self, ea: int) -> None:
        """Invalidate the entries mapping `ea` (any PID/AS) of TLB0 or TLB1 (EA bit 0x8), or all of
        that TLB (EA bit 0x4), except IPROT entries."""
        tlb1 = bool(ea & 0x8)
        lo, hi = (0, self.g.tlb1_entries) if tlb1 else (self.g.tlb1_entries, self.g.entries)
        everything = bool(ea & 0x4)
        self._invalidate(lo, hi, lambda e: everything or _covers(e, ea))

    def tlbilx(self, t: int, ea: int) -> None:
        """e500mc: T=0 all entries, T=1 those of MAS6[SPID], T=3 the one of MAS6's PID/AS mapping `ea`;
        IPROT entries are kept in each case, as QEMU's helper_booke206_tlbilx0/1/3 keep them (Linux's
        _tlbil_all is a `tlbilx 0` on e500mc and relies on its pinned kernel CAMs surviving it)."""
        mas6 = int(self.spr[MAS6])
        pid = (mas6 & MAS6_SPID_MASK) >> 16
        ts = mas6 & MAS6_SAS
        if t == 0:
            self._invalidate(0, self.g.entries, lambda e: True)
        elif t == 1:
            self._invalidate(0, self.g.entries, lambda e: (int(e["mas1"]) & MAS1_TID_MASK) >> 16 == pid)
        elif t == 3:
            self._invalidate(0, self.g.entries, lambda e: matches(e, ea, ts, pid))

    def mmucsr0(self, value: int) -> None:
        """Flash invalidation (non-IPROT entries); the bits read back 0: done at once."""
        if value & MMUCSR0_TLB1FI:
            self._invalidate(0, self.g.tlb1_entries, lambda e: True)
        if value & MMUCSR0_TLB0FI:
            self._invalidate(self.g.tlb1_entries, self.g.entries, lambda e: True)

    def _invalidate(self, lo: int, hi: int, which) -> None:
        dropped = 0
        for i in range(lo, hi):
            e = self.tlb[i]
            mas1 = int(e["mas1"])
            if mas1 & MAS1_V and not mas1 & MAS1_IPROT and which(e):
                e["mas1"] = mas1 & ~MAS1_V
                dropped += 1
        if dropped:
            self.flush()

    # --- misses ------------------------------------------------------------------------------------
    def _preload_miss(self, ea: int, pid: int, ts: int) -> None:
        """MAS registers after a miss (booke206_update_mas_tlb_miss): TLBSELD, NV; V=0... the PID and
        address space searched, TSIZED; EPN with MAS4's default WIMGE; RPN and permissions 0."""
        spr = self.spr
        mas4 = int(spr[MAS4])
        tlbsel = (mas4 & MAS4_TLBSELD_MASK) >> MAS0_TLBSEL_SHIFT
        spr[MAS0] = (tlbsel << MAS0_TLBSEL_SHIFT) | self._victim()
        spr[MAS1] = MAS1_V | (pid << 16 & MAS1_TID_MASK) | (MAS1_TS if ts else 0) | (mas4 & MAS4_TSIZED_MASK)
        spr[MAS2] = (ea & 0xFFFFF000) | (mas4 & MAS2_ATTRS)
        spr[MAS3] = 0
        spr[MAS7] = 0
        spr[MAS6] = (int(spr[MAS6]) & ~(MAS6_SPID_MASK | MAS6_SAS)) | (pid << 16 & MAS6_SPID_MASK) | ts

    def on_miss(self, ea: int, access: int, pid: int, ts: int) -> None:
        """An instruction or data TLB miss: preload the MAS registers as the e500 does."""
        self._preload_miss(ea, pid, ts)
        self.misses["itlb" if access == FETCH else "dtlb"] += 1


def _covers(e, ea: int) -> bool:
    mask = ~(page_size(int(e["mas1"])) - 1) & 0xFFFFFFFF
    return (ea & mask) == (int(e["mas2"]) & mask)
