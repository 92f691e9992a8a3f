"""The MPC8544 global utilities block as QEMU 7.2's hw/ppc/mpc8544_guts.c (4 KiB, big-endian, 32-bit).

    0xA0  PVR    read: the accessing CPU's PVR
    0xA4  SVR    read: the accessing CPU's SVR (0 under QEMU: POWERPC_SVR_E500 with the E500 flag
                 bit removed, which is also why U-Boot prints "CPU: Unknown, Version: 0.0")
    0xB0  RSTCR  write with bit 0x2 (HRESET_REQ): ``on_reset()``, QEMU's guest reset request

Every other register reads 0 and ignores writes (QEMU logs them as guest errors); the window is the
whole 4 KiB. QEMU accepts only aligned 4-byte accesses (``valid`` 4..4): any other is a decode error
that reads 0, which the bus counts as unassigned.
"""
from __future__ import annotations

from typing import Callable

from .device import Device, Window

__all__ = ["Guts", "GUTS_SIZE", "RSTCR_RESET"]

GUTS_SIZE = 0x1000
PVR, SVR, RSTCR = 0xA0, 0xA4, 0xB0
RSTCR_RESET = 0x02


class Guts(Device):
    size = GUTS_SIZE

    def __init__(self, pvr: int | Callable[[int], int], svr: int | Callable[[int], int] = 0,
                 on_reset: Callable[[], None] | None = None, name: str = "guts"):
        """``pvr``/``svr``: a value, or a function of the accessing CPU's index."""
        self.name = name
        self.pvr = pvr if callable(pvr) else (lambda cpu, v=pvr: v)
        self.svr = svr if callable(svr) else (lambda cpu, v=svr: v)
        self.on_reset = on_reset or (lambda: None)
        self.reset_requests = 0
        self._reads: dict[int, Callable[[int], int]] = {PVR: self.pvr, SVR: self.svr}
        self._writes: dict[int, Callable[[int], None]] = {RSTCR: self._write_rstcr}
        super().__init__([Window("mpc8544.guts", 0, GUTS_SIZE, self._read, self._write, 4, 4,
                                 valid_min=4, valid_max=4)])

    def _read(self, offset: int, size: int, cpu: int) -> int:
        handler = self._reads.get(offset & (GUTS_SIZE - 1))
        return handler(cpu) & 0xFFFFFFFF if handler else 0

    def _write(self, offset: int, size: int, value: int, cpu: int) -> None:
        handler = self._writes.get(offset & (GUTS_SIZE - 1))
        if handler:
            handler(value)

    def _write_rstcr(self, value: int) -> None:
        if value & RSTCR_RESET:
            self.reset_requests += 1
            self.on_reset()
