"""The MPC8xxx GPIO block as QEMU 7.2's hw/gpio/mpc8xxx.c (4 KiB, big-endian, 32-bit registers).

    0x00  GPDIR  direction (1: output)          0x0C  GPIER  interrupt events (write 1 to clear)
    0x04  GPODR  open drain                     0x10  GPIMR  interrupt mask
    0x08  GPDAT  data                           0x14  GPICR  interrupt control

Pin ``i`` is bit ``0x80000000 >> i``. A GPDAT write drives each *output* pin whose bit changed to its
new level (``on_output(pin, level)``); a GPDIR write drives nothing, as QEMU's. On ppce500 pin 0 is
the board's power-off line: QEMU shuts the machine down when it goes high (Linux's gpio-poweroff
driver sets it as an output, then drives it low and high). Accesses of any size but 4 are ignored and
read 0, as QEMU's. No input pins are driven from outside, so GPIER never sets and the GPIO interrupt
(MPIC source 47) stays low.
"""
from __future__ import annotations

from typing import Callable

from .device import Device, Window

__all__ = ["Mpc8xxxGpio", "GPIO_SIZE"]

GPIO_SIZE = 0x1000
GPDIR, GPODR, GPDAT, GPIER, GPIMR, GPICR = 0x00, 0x04, 0x08, 0x0C, 0x10, 0x14


class Mpc8xxxGpio(Device):
    size = GPIO_SIZE

    def __init__(self, on_output: Callable[[int, bool], None] | None = None, name: str = "gpio"):
        self.name = name
        self.on_output = on_output or (lambda pin, level: None)
        self.reset()
        super().__init__([Window("mpc8xxx_gpio", 0, GPIO_SIZE, self._read, self._write, 1, 4)])

    def reset(self) -> None:
        self.dir = self.odr = self.dat = self.ier = self.imr = self.icr = 0

    def _read(self, offset: int, size: int, cpu: int) -> int:
        if size != 4:
            return 0
        return {GPDIR: self.dir, GPODR: self.odr, GPDAT: self.dat, GPIER: self.ier,
                GPIMR: self.imr, GPICR: self.icr}.get(offset, 0)

    def _write(self, offset: int, size: int, value: int, cpu: int) -> None:
        if size != 4:
            return
        value &= 0xFFFFFFFF
        if offset == GPDIR:
            self.dir = value
        elif offset == GPODR:
            self.odr = value
        elif offset == GPDAT:
            self._write_data(value)
        elif offset == GPIER:
            self.ier &= ~value
        elif offset == GPIMR:
            self.imr = value
        elif offset == GPICR:
            self.icr = value

    def _write_data(self, new: int) -> None:
        diff = self.dat ^ new
        self.dat = new
        for pin in range(32):
            mask = 0x80000000 >> pin
            if diff & mask and self.dir & mask:
                self.on_output(pin, bool(new & mask))
