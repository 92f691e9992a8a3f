"""The ns16550A UART as QEMU 7.2's hw/char/serial.c (``serial_mm``, regshift 0, big-endian, 8 bytes).

Registers (offset: read / write):

    0  RBR / THR        (DLAB=1: DLL)        4  MCR (5 bits)
    1  IER (4 bits)     (DLAB=1: DLM)        5  LSR (read only; reading clears BI, OE)
    2  IIR / FCR                             6  MSR (reading clears the delta bits)
    3  LCR                                   7  SCR

Transmission is instantaneous, as with QEMU's stdio/socket backends: a THR write hands the byte to
``on_tx`` at once and LSR reads THRE|TEMT again before the next access. Input pushed with
``push_rx`` waits in a backend queue and enters the receiver as QEMU's chardev layer feeds it
(``serial_can_receive``: one byte at a time without FIFO, up to the trigger level with it), so a
polled guest never loses a byte; LSR[DR] is set while the receiver holds data. In loopback (MCR[4])
transmitted bytes are received instead of sent. The modem status lines are those of a non-tty
backend: MSR = DCD|DSR|CTS, never changing.

``irq(level)`` is called whenever the interrupt output changes (QEMU's serial_update_irq drives the
MPIC's source 42 with it). Left out: the FIFO character-timeout interrupt (it needs a clock; a
receiver below its trigger level only interrupts when IER[RDI] and the level is reached), break
reception, the divisor's effect on timing (none: time is not modelled here).
"""
from __future__ import annotations

from collections import deque
from typing import Callable

from .device import Device, Window

__all__ = ["NS16550", "LSR_DR", "LSR_THRE", "LSR_TEMT", "IIR_NO_INT"]

LCR_DLAB = 0x80
IER_MSI, IER_RLSI, IER_THRI, IER_RDI = 0x08, 0x04, 0x02, 0x01
IIR_NO_INT, IIR_ID, IIR_MSI, IIR_THRI, IIR_RDI, IIR_RLSI = 0x01, 0x06, 0x00, 0x02, 0x04, 0x06
IIR_FE = 0xC0
MCR_LOOP, MCR_OUT2 = 0x10, 0x08
MSR_DCD, MSR_DSR, MSR_CTS, MSR_ANY_DELTA = 0x80, 0x20, 0x10, 0x0F
LSR_TEMT, LSR_THRE, LSR_BI, LSR_OE, LSR_DR, LSR_INT_ANY = 0x40, 0x20, 0x10, 0x02, 0x01, 0x1E
FCR_FE, FCR_RFR, FCR_XFR = 0x01, 0x02, 0x04
FIFO_LENGTH = 16
ITL = {0x00: 1, 0x40: 4, 0x80: 8, 0xC0: 14}      # FCR[7:6] -> receive trigger level


class NS16550(Device):
    size = 8

    def __init__(self, name: str = "serial0", on_tx: Callable[[bytes], None] | None = None,
                 irq: Callable[[bool], None] | None = None):
        self.name = name
        self.on_tx = on_tx or (lambda data: None)
        self.irq = irq or (lambda level: None)
        super().__init__([Window("serial", 0, 8, self._read, self._write, impl_min=1, impl_max=8,
                                valid_max=8)])
        self._backend: deque[int] = deque()       # input not yet accepted by the receiver
        self._reads = {0: self._read_rbr, 1: self._read_ier, 2: self._read_iir, 3: lambda: self.lcr,
                       4: lambda: self.mcr, 5: self._read_lsr, 6: self._read_msr, 7: lambda: self.scr}
        self._writes = {0: self._write_thr, 1: self._write_ier, 2: self._write_fcr, 3: self._write_lcr,
                        4: self._write_mcr, 5: lambda v: None, 6: lambda v: None, 7: self._write_scr}
        self.reset()

    def reset(self) -> None:
        self.rbr = 0
        self.ier = 0
        self.iir = IIR_NO_INT
        self.lcr = 0
        self.lsr = LSR_TEMT | LSR_THRE
        self.msr = MSR_DCD | MSR_DSR | MSR_CTS
        self.divider = 0x0C
        self.mcr = MCR_OUT2
        self.scr = 0
        self.fcr = 0
        self.recv_fifo: deque[int] = deque()
        self.recv_fifo_itl = 1
        self.thr_ipending = False
        self._level = False
        self.irq(False)
        self._feed()                               # console input still waiting enters the receiver

    # -- the outside world ---------------------------------------------------------------------------
    def push_rx(self, data: bytes) -> None:
        """Input from the console (terminal, socket, scripted text)."""
        self._backend.extend(data)
        self._feed()

    @property
    def rx_pending(self) -> int:
        """Bytes pushed but not yet read by the guest (backend queue + receiver)."""
        return len(self._backend) + (len(self.recv_fifo) if self.fcr & FCR_FE else bool(self.lsr & LSR_DR))

    # -- QEMU's serial_update_irq / serial_can_receive / serial_receive1 ------------------------------
    def _update_irq(self) -> None:
        tmp = IIR_NO_INT
        if (self.ier & IER_RLSI) and (self.lsr & LSR_INT_ANY):
            tmp = IIR_RLSI
        elif (self.ier & IER_RDI) and (self.lsr & LSR_DR) and (
                not (self.fcr & FCR_FE) or len(self.recv_fifo) >= self.recv_fifo_itl):
            tmp = IIR_RDI
        elif (self.ier & IER_THRI) and self.thr_ipending:
            tmp = IIR_THRI
        elif (self.ier & IER_MSI) and (self.msr & MSR_ANY_DELTA):
            tmp = IIR_MSI
        self.iir = tmp | (self.iir & 0xF0)
        level = tmp != IIR_NO_INT
        if level != self._level:
            self._level = level
            self.irq(level)

    def _can_receive(self) -> int:
        if self.fcr & FCR_FE:
            n = len(self.recv_fifo)
            if n < FIFO_LENGTH:
                return self.recv_fifo_itl - n if n <= self.recv_fifo_itl else 1
            return 0
        return 0 if self.lsr & LSR_DR else 1

    def _receive(self, data: bytes | list[int]) -> None:
        if self.fcr & FCR_FE:
            for b in data:
                if len(self.recv_fifo) < FIFO_LENGTH:
                    self.recv_fifo.append(b)
                else:
                    self.lsr |= LSR_OE
            self.lsr |= LSR_DR
        else:
            if self.lsr & LSR_DR:
                self.lsr |= LSR_OE
            self.rbr = data[0]
            self.lsr |= LSR_DR
        self._update_irq()

    def _feed(self) -> None:
        """The chardev front end: hand queued input over while the receiver accepts it."""
        if self.mcr & MCR_LOOP:
            return
        while self._backend:
            n = self._can_receive()
            if n <= 0:
                return
            chunk = [self._backend.popleft() for _ in range(min(n, len(self._backend)))]
            self._receive(chunk)

    # -- the window ----------------------------------------------------------------------------------
    def _read(self, offset: int, size: int, cpu: int) -> int:
        if offset in (0, 1) and self.lcr & LCR_DLAB:
            return (self.divider >> (8 * offset)) & 0xFF
        return self._reads[offset & 7]()

    def _write(self, offset: int, size: int, value: int, cpu: int) -> None:
        value &= 0xFF
        if offset in (0, 1) and self.lcr & LCR_DLAB:
            shift = 8 * offset
            self.divider = (self.divider & ~(0xFF << shift)) | (value << shift)
            return
        self._writes[offset & 7](value)

    def _read_rbr(self) -> int:
        if self.fcr & FCR_FE:
            ret = self.recv_fifo.popleft() if self.recv_fifo else 0
            if not self.recv_fifo:
                self.lsr &= ~(LSR_DR | LSR_BI)
        else:
            ret = self.rbr
            self.lsr &= ~(LSR_DR | LSR_BI)
        self._update_irq()
        if not self.mcr & MCR_LOOP:
            self._feed()                          # qemu_chr_fe_accept_input
        return ret

    def _read_ier(self) -> int:
        return self.ier

    def _read_iir(self) -> int:
        ret = self.iir
        if (ret & IIR_ID) == IIR_THRI:
            self.thr_ipending = False
            self._update_irq()
        return ret

    def _read_lsr(self) -> int:
        ret = self.lsr
        if self.lsr & (LSR_BI | LSR_OE):
            self.lsr &= ~(LSR_BI | LSR_OE)
            self._update_irq()
        return ret

    def _read_msr(self) -> int:
        if self.mcr & MCR_LOOP:
            return ((self.mcr & 0x0C) << 4) | ((self.mcr & 0x02) << 3) | ((self.mcr & 0x01) << 5)
        ret = self.msr
        if self.msr & MSR_ANY_DELTA:
            self.msr &= 0xF0
            self._update_irq()
        return ret

    def _write_thr(self, value: int) -> None:
        self.thr_ipending = False
        self.lsr &= ~(LSR_THRE | LSR_TEMT)
        self._update_irq()
        # serial_xmit: the byte leaves at once (FIFO or not, the transmit FIFO never holds more than it)
        self.lsr |= LSR_THRE
        if not self.thr_ipending:
            self.thr_ipending = True
            self._update_irq()
        if self.mcr & MCR_LOOP:
            self._receive([value])
        else:
            self.on_tx(bytes([value]))
        self.lsr |= LSR_TEMT

    def _write_ier(self, value: int) -> None:
        changed = (self.ier ^ value) & 0x0F
        self.ier = value & 0x0F
        if changed & IER_THRI:
            self.thr_ipending = bool((self.ier & IER_THRI) and (self.lsr & LSR_THRE))
        if changed:
            self._update_irq()

    def _write_fcr(self, value: int) -> None:
        if (value ^ self.fcr) & FCR_FE:
            value |= FCR_XFR | FCR_RFR
        if value & FCR_RFR:
            self.lsr &= ~(LSR_DR | LSR_BI)
            self.recv_fifo.clear()
        if value & FCR_XFR:
            self.lsr |= LSR_THRE
            self.thr_ipending = True
        self.fcr = value & 0xC9
        if value & FCR_FE:
            self.iir |= IIR_FE
            self.recv_fifo_itl = ITL[value & 0xC0]
        else:
            self.iir &= ~IIR_FE
        self._update_irq()
        self._feed()

    def _write_lcr(self, value: int) -> None:
        self.lcr = value

    def _write_mcr(self, value: int) -> None:
        was_loop = self.mcr & MCR_LOOP
        self.mcr = value & 0x1F
        if was_loop and not self.mcr & MCR_LOOP:
            self._feed()

    def _write_scr(self, value: int) -> None:
        self.scr = value
