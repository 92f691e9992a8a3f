"""cosim.hw.ns16550 against QEMU 7.2's serial.c behaviour, as scripts of register accesses: ("w", offset,
value), ("r", offset, expected), ("rx", bytes) pushed by the console, ("tx", bytes sent so far), ("irq",
level of the interrupt output)."""
import pytest

from cosim.hw.ns16550 import NS16550

RBR, IER, IIR, LCR, MCR, LSR, MSR, SCR = range(8)
DLL, DLM, FCR, THR = 0, 1, 2, 0

CASES = {
    "reset values": [("r", RBR, 0), ("r", IER, 0), ("r", IIR, 0x01), ("r", LCR, 0), ("r", MCR, 0x08),
                     ("r", LSR, 0x60), ("r", MSR, 0xB0), ("r", SCR, 0), ("irq", False)],
    "divisor latch": [("w", LCR, 0x80), ("r", DLL, 0x0C), ("r", DLM, 0), ("w", DLL, 0x36), ("w", DLM, 0x01),
                      ("r", DLL, 0x36), ("r", DLM, 0x01), ("w", LCR, 0x03), ("r", IER, 0), ("r", LCR, 0x03),
                      ("tx", b"")],
    "transmit is instant": [("w", THR, ord("h")), ("r", LSR, 0x60), ("w", THR, ord("i")), ("tx", b"hi")],
    "IER keeps 4 bits, MCR 5, SCR 8": [("w", IER, 0xF0), ("r", IER, 0), ("w", MCR, 0xFF), ("r", MCR, 0x1F),
                                       ("w", MCR, 0x0B), ("w", SCR, 0xA5), ("r", SCR, 0xA5)],
    "FCR enables the FIFO bits in IIR": [("w", FCR, 0x07), ("r", IIR, 0xC1), ("w", FCR, 0x00), ("r", IIR, 0x01)],
    "receive without FIFO, one byte at a time": [
        ("rx", b"ab"), ("r", LSR, 0x61), ("r", RBR, ord("a")), ("r", LSR, 0x61), ("r", RBR, ord("b")),
        ("r", LSR, 0x60), ("r", RBR, ord("b"))],
    "receive with FIFO (U-Boot's FCR 0x07)": [
        ("w", FCR, 0x07), ("rx", b"xyz"), ("r", LSR, 0x61), ("r", RBR, ord("x")), ("r", RBR, ord("y")),
        ("r", RBR, ord("z")), ("r", LSR, 0x60), ("r", RBR, 0)],
    "FIFO reset drops what the receiver holds": [
        ("w", FCR, 0x01), ("rx", b"q"), ("r", LSR, 0x61), ("w", FCR, 0x03), ("r", LSR, 0x60),
        ("r", RBR, 0), ("rx", b"r"), ("r", RBR, ord("r"))],
    "THR-empty interrupt, cleared by reading IIR": [
        ("w", IER, 0x02), ("irq", True), ("r", IIR, 0x02), ("irq", False), ("r", IIR, 0x01),
        ("w", THR, 0x41), ("irq", True), ("w", IER, 0x00), ("irq", False)],
    "receive interrupt until RBR is read": [
        ("w", IER, 0x01), ("irq", False), ("rx", b"k"), ("irq", True), ("r", IIR, 0x04), ("r", RBR, ord("k")),
        ("irq", False), ("r", IIR, 0x01)],
    "line status interrupt on overrun (loopback)": [
        ("w", MCR, 0x10), ("w", IER, 0x04), ("w", THR, 1), ("w", THR, 2), ("irq", True), ("r", IIR, 0x06),
        ("r", LSR, 0x63), ("irq", False), ("r", LSR, 0x61), ("r", RBR, 2), ("tx", b"")],
    "loopback modem lines": [("w", MCR, 0x1F), ("r", MSR, 0xF0), ("w", MCR, 0x10), ("r", MSR, 0x00),
                             ("w", MCR, 0x08), ("r", MSR, 0xB0)],
    "input waits while in loopback": [("w", MCR, 0x10), ("rx", b"z"), ("r", LSR, 0x60), ("w", MCR, 0x08),
                                      ("r", LSR, 0x61), ("r", RBR, ord("z"))],
}


@pytest.mark.parametrize("script", CASES.values(), ids=CASES.keys())
def test_register_script(script):
    sent, levels = [], []
    u = NS16550(on_tx=sent.append, irq=levels.append)
    for step in script:
        kind = step[0]
        if kind == "w":
            u.write(step[1], 1, step[2])
        elif kind == "r":
            assert u.read(step[1], 1) == step[2], f"{step} (LSR {u.lsr:#x}, IIR {u.iir:#x})"
        elif kind == "rx":
            u.push_rx(step[1])
        elif kind == "tx":
            assert b"".join(sent) == step[1]
        elif kind == "irq":
            assert (levels[-1] if levels else False) is step[1], step


def test_wider_accesses_reach_the_byte_register():
    u = NS16550()
    assert u.read(4, 4) == 0x08            # QEMU's serial_mm_read ignores the access size
    assert u.claims(4, 4) and not u.claims(5, 4) and not u.claims(6, 4)    # unaligned: QEMU refuses
    u.write(0, 4, 0x12345641)              # serial_mm_write keeps the low byte
    assert u.read(7, 1) == 0


def test_many_bytes_in_and_out_in_order():
    sent = []
    u = NS16550(on_tx=sent.append)
    u.write(FCR, 1, 0xC7)                  # FIFO, trigger level 14
    text = bytes(range(32, 127)) * 3
    u.push_rx(text)
    assert u.rx_pending == len(text)
    got = bytearray()
    while u.read(LSR, 1) & 0x01:
        got.append(u.read(RBR, 1))
    assert bytes(got) == text and u.rx_pending == 0
    for b in text:
        u.write(THR, 1, b)
    assert b"".join(sent) == text


def test_reset_clears_state_but_keeps_callbacks():
    sent = []
    u = NS16550(on_tx=sent.append)
    u.write(LCR, 1, 0x83)
    u.write(MCR, 1, 0x10)                  # loopback: console input waits in the backend
    u.push_rx(b"a")
    u.reset()                              # the receiver is empty again and takes the waiting byte
    assert (u.read(LCR, 1), u.read(MCR, 1), u.read(LSR, 1), u.read(RBR, 1)) == (0, 0x08, 0x61, ord("a"))
    u.write(THR, 1, 0x42)
    assert sent == [b"B"]
