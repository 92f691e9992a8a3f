"""cosim.hw.bus and cosim.hw.device: dispatch by 36-bit address, overlap refused, unassigned accesses
read 0 and are counted by address, QEMU's access-size adjustment and byte order per window."""
import pytest

from cosim.hw.bus import BusError, SystemBus
from cosim.hw.device import Device, Window, bswap


class Regs(Device):
    """Two 4-byte-only big-endian registers at +0/+4, a hole, a little-endian register at +0x10,
    and a byte-wide window at +0x20 that accepts only 1-byte accesses."""

    size = 0x40

    def __init__(self, name="regs"):
        self.name = name
        self.calls = []
        super().__init__([
            Window("be", 0x0, 8, self._rd, self._wr, impl_min=4, impl_max=4),
            Window("le", 0x10, 4, self._at(0x10, self._rd), self._at(0x10, self._wr), impl_min=4, impl_max=4,
                   little_endian=True),
            Window("bytes", 0x20, 8, self._at(0x20, self._rd), self._at(0x20, self._wr), valid_min=1, valid_max=1),
        ])
        self.reset()

    @staticmethod
    def _at(base, fn):       # handlers get window-relative offsets; the test keys registers by device offset
        return lambda off, *rest: fn(base + off, *rest)

    def reset(self):
        self.mem = {0x0: 0x11223344, 0x4: 0x55667788, 0x10: 0xA1B2C3D4}

    def _rd(self, off, size, cpu):
        self.calls.append(("r", off, size, cpu))
        return self.mem.get(off, 0xFFFFFFFF)

    def _wr(self, off, size, value, cpu):
        self.calls.append(("w", off, size, value, cpu))
        self.mem[off] = value


@pytest.fixture
def bus():
    b = SystemBus()
    b.add(0xF_E000_0000, Regs("a"))
    b.add(0xF_E000_1000, Regs("b"))
    return b


@pytest.mark.parametrize("paddr, size, value", [
    (0xF_E000_0000, 4, 0x11223344),
    (0xF_E000_0004, 4, 0x55667788),
    (0xF_E000_0000, 8, 0x1122334455667788),     # two 4-byte accesses, high word first
    (0xF_E000_0000, 1, 0x11),                   # a 4-byte read at the address, top byte kept
    (0xF_E000_0000, 2, 0x1122),
    (0xF_E000_0010, 4, bswap(0xA1B2C3D4, 4)),   # little-endian register as a big-endian load sees it
    (0xF_E000_1004, 4, 0x55667788),             # the second device
])
def test_reads_dispatch_and_adjust(bus, paddr, size, value):
    assert bus.read(paddr, size) == value
    assert not bus.unassigned


def test_write_adjust_and_byte_order(bus):
    a = bus.device("a")
    bus.write(0xF_E000_0000, 8, 0x0102030405060708)
    assert a.mem[0] == 0x01020304 and a.mem[4] == 0x05060708
    bus.write(0xF_E000_0010, 4, 0x11223344)
    assert a.mem[0x10] == 0x44332211
    bus.write(0xF_E000_0004, 1, 0xAB)            # widened to 4 bytes, the byte in the top lane
    assert a.mem[4] == 0xAB000000
    assert bus.accesses == {"a": [0, 3], "b": [0, 0]}


@pytest.mark.parametrize("paddr, size, why", [
    (0xF_E000_0008, 4, "hole between windows"),
    (0xF_E000_0002, 4, "unaligned"),
    (0xF_E000_0020, 2, "size the window refuses"),
    (0xF_E000_0800, 4, "between devices"),
    (0x0_8000_0000, 4, "below every device"),
    (0xF_FFFF_FFFC, 4, "top of the 36-bit space"),
])
def test_unassigned_reads_zero_and_counts(bus, paddr, size, why):
    calls = len(bus.device("a").calls)
    assert bus.read(paddr, size) == 0, why
    bus.write(paddr, size, 0xDEADBEEF)
    bus.read(paddr, size)
    assert bus.unassigned[(paddr, size, False)] == 2 and bus.unassigned[(paddr, size, True)] == 1
    assert len(bus.device("a").calls) == calls          # the device never saw it
    rows = bus.unassigned_by_address()
    assert rows[0] == {"paddr": paddr, "size": size, "write": False, "count": 2}
    assert f"{paddr:#011x}" in bus.summary()


def test_cpu_index_reaches_the_device(bus):
    bus.read(0xF_E000_1000, 4, cpu=3)
    bus.write(0xF_E000_1000, 4, 7, cpu=2)
    assert bus.device("b").calls == [("r", 0, 4, 3), ("w", 0, 4, 7, 2)]


@pytest.mark.parametrize("base, name", [
    (0xF_E000_0000, "x"), (0xF_DFFF_FFC1, "x"), (0xF_E000_0FFF, "x"), (0xF_E000_0000 - 0x40, "a2")])
def test_overlap_and_duplicate_refused(bus, base, name):
    if name == "a2":      # adjacent is fine, a duplicate name is not
        bus.add(base, Regs("a2"))
        with pytest.raises(BusError, match="already mapped"):
            bus.add(0x1000, Regs("a2"))
        return
    with pytest.raises(BusError, match="overlaps"):
        bus.add(base, Regs(name))


def test_outside_36_bits_refused():
    with pytest.raises(BusError, match="36-bit"):
        SystemBus().add((1 << 36) - 0x20, Regs())


def test_find_and_summary(bus):
    dev, off = bus.find(0xF_E000_1008)
    assert dev.name == "b" and off == 8 and not dev.claims(off)
    assert bus.find(0xF_E000_2000) is None
    assert bus.base_of("b") == 0xF_E000_1000
    bus.read(0xF_E000_0000, 4)
    s = bus.summary()
    assert "a                 0xfe0000000" in s and "unassigned: 0" in s


def test_reset_resets_every_device(bus):
    bus.write(0xF_E000_0000, 4, 0)
    bus.reset()
    assert bus.read(0xF_E000_0000, 4) == 0x11223344


def test_overlapping_windows_refused():
    class Bad(Device):
        size = 0x10

        def __init__(self):
            self.name = "bad"
            super().__init__([Window("x", 0, 8, None, None), Window("y", 4, 8, None, None)])

    with pytest.raises(ValueError, match="overlap"):
        Bad()
