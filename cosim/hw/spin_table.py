"""The ePAPR spin table as QEMU 7.2's hw/ppc/ppce500_spin.c: QEMU playing the firmware that holds the
secondary CPUs (ppce500 maps it at 0xF_EF00_0000; each CPU node's ``cpu-release-addr`` points at its
entry).

32 entries of 32 bytes (big-endian), one per possible CPU:

    +0x00  addr     u64  entry point; reset value 1 (odd: "hold")
    +0x08  r3       u64  reset value: the CPU's index
    +0x10  resv     u32
    +0x14  pir      u32  reset value: the CPU's index
    +0x18  reserved u64

Reads of any entry return its bytes. A write to the entry of an existing secondary CPU (index 1 ..
cpus-1) stores its bytes, then, if ``addr`` is even, releases the CPU: QEMU's spin_kick, handed to
``on_release(release)`` as a ``SpinRelease``: PC = addr modulo 64 MiB, r3 from the entry, r4-r6, r8,
r9 = 0, r7 = 64 MiB, PIR written back into the entry, and TLB1 entry 1 mapping EA 0 to the 64 MiB
block of ``addr`` (SRWX|URWX, MAS2[M], no IPROT). As in QEMU, every further write to a released entry
whose addr stays even kicks it again. Writes to CPU 0's entry and to entries of CPUs that do not exist
are dropped (QEMU: "primary CPU doesn't spin"). An 8-byte access is two 4-byte ones (QEMU's default
``impl`` size), high word first.

Until released, a secondary vCPU stays halted (QEMU: ``start-powered-off``, then EXCP_HLT on reset).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Callable

from .device import Device, Window
from .tlb import MAS2_M, TlbEntry, page_size_to_tsize

__all__ = ["SpinTable", "SpinRelease", "ENTRY_SIZE", "MAX_CPUS", "SPIN_SIZE", "SPIN_MAP_SIZE"]

MAX_CPUS = 32
ENTRY_SIZE = 0x20
SPIN_SIZE = MAX_CPUS * ENTRY_SIZE
SPIN_MAP_SIZE = 64 << 20
OFF_ADDR, OFF_R3, OFF_PIR = 0x00, 0x08, 0x14


@dataclass(frozen=True)
class SpinRelease:
    """What spin_kick sets on the released vCPU (every other register keeps its reset value)."""

    cpu: int
    pc: int
    gprs: dict[int, int] = field(hash=False)    # r3..r9
    tlb1: TlbEntry
    entry_addr: int                              # the 64-bit addr the guest wrote

    @property
    def r3(self) -> int:
        return self.gprs[3]


class SpinTable(Device):
    size = SPIN_SIZE

    def __init__(self, cpus: int, on_release: Callable[[SpinRelease], None] | None = None,
                 pir: Callable[[int], int] | None = None, name: str = "spin"):
        """``cpus``: vCPUs on the board; ``pir(cpu)``: a vCPU's PIR (default: its index)."""
        self.name = name
        self.cpus = cpus
        self.on_release = on_release or (lambda release: None)
        self.pir = pir or (lambda cpu: cpu)
        self.releases: list[SpinRelease] = []
        super().__init__([Window("e500 spin pv device", 0, SPIN_SIZE, self._read, self._write)])
        self.reset()

    def reset(self) -> None:
        self.mem = bytearray(SPIN_SIZE)
        for i in range(MAX_CPUS):
            base = i * ENTRY_SIZE
            struct.pack_into(">Q", self.mem, base + OFF_ADDR, 1)
            struct.pack_into(">Q", self.mem, base + OFF_R3, i)
            struct.pack_into(">I", self.mem, base + OFF_PIR, i)

    def entry(self, cpu: int) -> dict[str, int]:
        base = cpu * ENTRY_SIZE
        addr, r3, resv, pir, reserved = struct.unpack_from(">QQIIQ", self.mem, base)
        return {"addr": addr, "r3": r3, "resv": resv, "pir": pir, "reserved": reserved}

    def _read(self, offset: int, size: int, cpu: int) -> int:
        return int.from_bytes(self.mem[offset:offset + size], "big")

    def _write(self, offset: int, size: int, value: int, cpu: int) -> None:
        idx = offset // ENTRY_SIZE
        if idx >= self.cpus or idx == 0:
            return
        self.mem[offset:offset + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "big")
        addr = struct.unpack_from(">Q", self.mem, idx * ENTRY_SIZE + OFF_ADDR)[0]
        if not addr & 1:
            self._kick(idx)

    def _kick(self, idx: int) -> None:
        base = idx * ENTRY_SIZE
        struct.pack_into(">I", self.mem, base + OFF_PIR, self.pir(idx) & 0xFFFFFFFF)
        addr, r3 = struct.unpack_from(">QQ", self.mem, base)
        map_start = addr & ~(SPIN_MAP_SIZE - 1)
        release = SpinRelease(
            cpu=idx, pc=addr & (SPIN_MAP_SIZE - 1) & 0xFFFFFFFF,
            gprs={3: r3 & 0xFFFFFFFF, 4: 0, 5: 0, 6: 0, 7: SPIN_MAP_SIZE, 8: 0, 9: 0},
            tlb1=TlbEntry.tlb1(esel=1, va=0, pa=map_start, tsize=page_size_to_tsize(SPIN_MAP_SIZE),
                               mas2_flags=MAS2_M),
            entry_addr=addr)
        self.releases.append(release)
        self.on_release(release)
