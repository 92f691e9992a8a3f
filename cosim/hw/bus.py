"""The system bus: 36-bit guest-physical ranges mapped to devices, as QEMU's flat view of
``address_space_memory`` (RAM is not on it: the vCPU reaches RAM itself; only MMIO exits come here).

``add(base, device)`` maps ``device`` over [base, base + device.size) and refuses an overlap.
``read(paddr, size, cpu=0)`` / ``write(paddr, size, value, cpu=0)`` dispatch to the device at that
address with the offset inside it. An access no device claims (outside every device, or in a hole
between a device's windows) reads 0 and drops the write, as QEMU's unassigned accesses do, and is
counted by address in ``unassigned`` so a report can list every one: nothing is silent. So is an
access the device's window refuses (unaligned, or a size QEMU's ``valid`` rule rejects).

Counters: ``accesses[name] -> [reads, writes]`` per device, ``unassigned[(paddr, size, is_write)] ->
count``. ``summary()`` renders both. An access that straddles the end of a device is served by that
device (QEMU would split it; no guest of ours does it) and counted as ``straddling``.
"""
from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass

from .device import Device

__all__ = ["SystemBus", "Mapping", "BusError", "PHYS_BITS"]

PHYS_BITS = 36
PHYS_LIMIT = 1 << PHYS_BITS


class BusError(ValueError):
    """A mapping the bus refuses (overlap, outside the 36-bit space)."""


@dataclass(frozen=True)
class Mapping:
    base: int
    device: Device

    @property
    def end(self) -> int:
        return self.base + self.device.size


class SystemBus:
    def __init__(self) -> None:
        self._maps: list[Mapping] = []          # sorted by base
        self._bases: list[int] = []
        self.accesses: dict[str, list[int]] = {}
        self.unassigned: Counter[tuple[int, int, bool]] = Counter()
        self.straddling = 0

    def add(self, base: int, device: Device) -> Device:
        end = base + device.size
        if device.size <= 0 or base < 0 or end > PHYS_LIMIT:
            raise BusError(f"{device.name}: [{base:#x}, {end:#x}) is not inside the {PHYS_BITS}-bit space")
        if device.name in self.accesses:
            raise BusError(f"a device named {device.name!r} is already mapped")
        i = bisect.bisect_left(self._bases, base)
        for m in self._maps[max(i - 1, 0):i + 1]:
            if m.base < end and base < m.end:
                raise BusError(f"{device.name} at [{base:#x}, {end:#x}) overlaps {m.device.name} at "
                               f"[{m.base:#x}, {m.end:#x})")
        self._maps.insert(i, Mapping(base, device))
        self._bases.insert(i, base)
        self.accesses[device.name] = [0, 0]
        return device

    @property
    def mappings(self) -> tuple[Mapping, ...]:
        return tuple(self._maps)

    def find(self, paddr: int) -> tuple[Device, int] | None:
        """The device at ``paddr`` and the offset inside it, or None. A hole between a device's
        windows is still that device's here (``device.claims(offset)`` tells)."""
        i = bisect.bisect_right(self._bases, paddr) - 1
        if i >= 0:
            m = self._maps[i]
            if paddr < m.end:
                return m.device, paddr - m.base
        return None

    def device(self, name: str) -> Device:
        for m in self._maps:
            if m.device.name == name:
                return m.device
        raise KeyError(name)

    def base_of(self, name: str) -> int:
        for m in self._maps:
            if m.device.name == name:
                return m.base
        raise KeyError(name)

    def _claimed(self, paddr: int, size: int, is_write: bool) -> tuple[Device, int] | None:
        hit = self.find(paddr)
        if hit is None or not hit[0].claims(hit[1], size):
            self.unassigned[(paddr, size, is_write)] += 1
            return None
        dev, off = hit
        if off + size > dev.size:
            self.straddling += 1
        self.accesses[dev.name][is_write] += 1
        return hit

    def read(self, paddr: int, size: int, cpu: int = 0) -> int:
        hit = self._claimed(paddr, size, False)
        if hit is None:
            return 0
        return hit[0].read(hit[1], size, cpu)

    def write(self, paddr: int, size: int, value: int, cpu: int = 0) -> None:
        hit = self._claimed(paddr, size, True)
        if hit is not None:
            hit[0].write(hit[1], size, value, cpu)

    def reset(self) -> None:
        """Reset every device (counters are kept: they describe the run)."""
        for m in self._maps:
            m.device.reset()

    # -- report ------------------------------------------------------------------------------------
    def unassigned_by_address(self) -> list[dict]:
        """One row per (address, size, direction), most frequent first: for the JSON report."""
        return [{"paddr": p, "size": s, "write": w, "count": n}
                for (p, s, w), n in sorted(self.unassigned.items(), key=lambda kv: (-kv[1], kv[0]))]

    def summary(self) -> str:
        lines = ["device            base          size       reads   writes"]
        for m in self._maps:
            r, w = self.accesses[m.device.name]
            lines.append(f"{m.device.name:<16}  {m.base:#011x}  {m.device.size:#9x}  {r:>6}  {w:>7}")
        total = sum(self.unassigned.values())
        lines.append(f"unassigned: {total} access(es) at {len(self.unassigned)} address(es)")
        for row in self.unassigned_by_address():
            kind = "write" if row["write"] else "read"
            lines.append(f"  {row['paddr']:#011x}  {row['size']}-byte {kind:<5}  x{row['count']}")
        if self.straddling:
            lines.append(f"straddling a device's end: {self.straddling}")
        return "\n".join(lines)
