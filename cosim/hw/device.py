"""The device interface of the userspace models (QEMU's ``hw/``): pure register files, no I/O.

A device is a span of guest-physical space (``name``, ``size``) with ``read(offset, size, cpu=0) ->
int``, ``write(offset, size, value, cpu=0)`` and ``reset()``. Values are what a big-endian guest sees:
a 4-byte load of a register returns the register, a 1-byte load at offset+0 its most significant
byte. ``cpu`` is the index of the accessing vCPU, for the few registers that depend on it (the MPIC's
per-CPU aliases, GUTS's PVR); everything else ignores it.

Inside its span a device answers only in its *windows*, QEMU's ``MemoryRegionOps``: an offset, a
size, the two handlers and the access sizes the handlers implement (``impl_min``/``impl_max``) and
the register file's byte order. ``read``/``write`` adapt an access to the window the way QEMU's
``access_with_adjusted_size`` does (a 1-byte load from a 4-byte-only window reads 4 bytes *at that
address* and keeps the top byte; an 8-byte access to a 4-byte window is two accesses, high word
first) and byte-swap for little-endian windows. An offset outside every window is a hole, and an
access QEMU's ``memory_region_access_valid`` refuses (unaligned, or a size outside the window's valid
range) reads 0 there: neither is claimed (``claims`` is False) and the bus counts both as unassigned.

Subclasses list their windows in ``windows`` and usually declare registers as tables (offset ->
handler), not if-chains.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

__all__ = ["Device", "Window", "bswap"]

ReadFn = Callable[[int, int, int], int]            # (offset in window, size, cpu) -> value
WriteFn = Callable[[int, int, int, int], None]     # (offset in window, size, value, cpu)


def bswap(value: int, size: int) -> int:
    return int.from_bytes((value & ((1 << (8 * size)) - 1)).to_bytes(size, "big"), "little")


@dataclass(frozen=True)
class Window:
    """One MemoryRegionOps of a device, at ``offset`` within it."""

    name: str
    offset: int
    size: int
    read: ReadFn
    write: WriteFn
    impl_min: int = 1
    impl_max: int = 4
    little_endian: bool = False
    valid_min: int = 1
    valid_max: int = 0               # 0: any size is valid (QEMU's "compatibility" rule)

    def contains(self, offset: int) -> bool:
        return self.offset <= offset < self.offset + self.size

    def valid(self, offset: int, size: int) -> bool:
        """QEMU's memory_region_access_valid: naturally aligned, and within valid_min..valid_max."""
        if offset & (size - 1):
            return False
        return not self.valid_max or self.valid_min <= size <= self.valid_max


class Device:
    """Base class: subclasses set ``name``, ``size`` and build ``windows`` (call ``super().__init__``)."""

    name: str = "device"
    size: int = 0

    def __init__(self, windows: tuple[Window, ...] | list[Window]):
        self.windows = tuple(sorted(windows, key=lambda w: w.offset))
        for a, b in zip(self.windows, self.windows[1:], strict=False):
            if a.offset + a.size > b.offset:
                raise ValueError(f"{self.name}: windows {a.name} and {b.name} overlap")
        if self.windows and self.windows[-1].offset + self.windows[-1].size > self.size:
            raise ValueError(f"{self.name}: window {self.windows[-1].name} beyond the device's size")

    def reset(self) -> None:
        """Back to the power-on state (subclasses override)."""

    def window(self, offset: int) -> Window | None:
        for w in self.windows:
            if w.offset <= offset < w.offset + w.size:
                return w
        return None

    def claims(self, offset: int, size: int = 1) -> bool:
        """True when a window answers an access of ``size`` at ``offset``; False for a hole and for an
        access QEMU finds invalid (unaligned, or a size the window refuses), which reads 0 there."""
        w = self.window(offset)
        return w is not None and w.valid(offset, size)

    # -- QEMU's access_with_adjusted_size, for one window ------------------------------------------
    def read(self, offset: int, size: int, cpu: int = 0) -> int:
        w = self.window(offset)
        if w is None or not w.valid(offset, size):
            return 0
        if w.impl_min <= size <= w.impl_max and not w.little_endian:      # the common case: one call
            return w.read(offset - w.offset, size, cpu) & ((1 << (8 * size)) - 1)
        step = max(min(size, w.impl_max), w.impl_min)
        mask = (1 << (8 * step)) - 1
        value = 0
        for i in range(0, size, step):
            v = w.read(offset + i - w.offset, step, cpu) & mask
            shift = i * 8 if w.little_endian else (size - step - i) * 8
            value |= (v << shift) if shift >= 0 else (v >> -shift)
        value &= (1 << (8 * size)) - 1
        return bswap(value, size) if w.little_endian else value

    def write(self, offset: int, size: int, value: int, cpu: int = 0) -> None:
        w = self.window(offset)
        if w is None or not w.valid(offset, size):
            return
        value &= (1 << (8 * size)) - 1
        if w.impl_min <= size <= w.impl_max and not w.little_endian:
            w.write(offset - w.offset, size, value, cpu)
            return
        if w.little_endian:
            value = bswap(value, size)
        step = max(min(size, w.impl_max), w.impl_min)
        mask = (1 << (8 * step)) - 1
        for i in range(0, size, step):
            shift = i * 8 if w.little_endian else (size - step - i) * 8
            v = (value >> shift) if shift >= 0 else (value << -shift)
            w.write(offset + i - w.offset, step, v & mask, cpu)
