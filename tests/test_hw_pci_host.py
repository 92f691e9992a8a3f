"""cosim.hw.pci_host: configuration cycles as QEMU's pci_host.c + ppce500.c answer them with ``-nic none``
(only the host bridge at 0:0.0), window registers stored and read back. Accesses are what the guest
issues: CONFIG_ADDRESS big-endian at +0, CONFIG_DATA little-endian at +4 (U-Boot uses lwbrx/stwbrx)."""
import pytest

from cosim.hw.device import bswap
from cosim.hw.pci_host import ABSENT, PciHost


def cfg_addr(bus, dev, fn, reg):
    return 0x80000000 | (bus << 16) | (dev << 11) | (fn << 8) | (reg & 0xFC)


def cfg_read(p, bus, dev, fn, reg, size=4):
    p.write(0, 4, cfg_addr(bus, dev, fn, reg))
    return bswap(p.read(4 + (reg & 3), size), size)        # as the guest's byte-reversed load sees it


def cfg_write(p, bus, dev, fn, reg, value, size=4):
    p.write(0, 4, cfg_addr(bus, dev, fn, reg))
    p.write(4 + (reg & 3), size, bswap(value, size))


BRIDGE = [  # (register, size, value at reset): QEMU's e500-host-bridge
    (0x00, 4, 0x00301957), (0x00, 2, 0x1957), (0x02, 2, 0x0030), (0x04, 2, 0), (0x06, 2, 0),
    (0x08, 4, 0x0B200000), (0x0A, 2, 0x0B20), (0x0E, 1, 0), (0x10, 4, 0), (0x2C, 4, 0x11001AF4),
    (0x3C, 4, 0), (0x40, 4, 0), (0xFC, 4, 0),
]


@pytest.mark.parametrize("reg, size, value", BRIDGE)
def test_host_bridge_config_space(reg, size, value):
    assert cfg_read(PciHost(), 0, 0, 0, reg, size) == value


@pytest.mark.parametrize("bus, dev, fn", [(0, 1, 0), (0, 31, 7), (0, 0, 1), (1, 0, 0), (255, 3, 0)])
def test_every_other_function_is_absent(bus, dev, fn):
    p = PciHost()
    assert cfg_read(p, bus, dev, fn, 0) == ABSENT
    cfg_write(p, bus, dev, fn, 4, 0xFFFF)             # dropped
    assert cfg_read(p, bus, dev, fn, 4) == ABSENT and p.absent_reads == 2


def test_config_disabled_reads_all_ones_and_address_reads_back():
    p = PciHost()
    p.write(0, 4, 0x00000800)                          # enable bit clear
    assert p.read(4, 4) == ABSENT and p.read(0, 4) == 0x800
    p.write(0, 2, 0x1234)                              # only aligned 4-byte writes set CONFIG_ADDRESS
    assert p.read(0, 4) == 0x800


@pytest.mark.parametrize("reg, size, write, readback", [
    (0x04, 2, 0xFFFF, 0x0507),                         # command: IO MEM MASTER SERR INTX_DISABLE
    (0x10, 4, 0xFFFFFFFF, 0xFFF00000),                 # BAR0 sizing: 1 MiB memory BAR
    (0x0C, 1, 0xAB, 0xAB),                             # cache line size
    (0x3C, 1, 0x55, 0x55),                             # interrupt line
    (0x00, 4, 0xFFFFFFFF, 0x00301957),                 # IDs are read-only
    (0x08, 4, 0, 0x0B200000),
    (0x80, 4, 0xCAFEF00D, 0xCAFEF00D),                 # 0x40-0xFF writable
])
def test_host_bridge_write_masks(reg, size, write, readback):
    p = PciHost()
    cfg_write(p, 0, 0, 0, reg, write, size)
    assert cfg_read(p, 0, 0, 0, reg, size) == readback


def test_status_write_one_to_clear():
    p = PciHost()
    p.bridge.config[6:8] = (0xF900).to_bytes(2, "little")
    cfg_write(p, 0, 0, 0, 0x06, 0x2100, 2)
    assert cfg_read(p, 0, 0, 0, 0x06, 2) == 0xD800


@pytest.mark.parametrize("offset", [0xC20, 0xC24, 0xC28, 0xC30, 0xC40, 0xC8C + 4, 0xDA0, 0xDA8, 0xDAC, 0xDB0,
                                    0xDE0, 0xDF0, 0xE20])
def test_window_registers_read_back(offset):
    p = PciHost()
    p.write(offset, 4, 0x80000017)
    assert p.read(offset, 4) == 0x80000017


@pytest.mark.parametrize("offset", [0xC00, 0xC0C, 0xC14, 0xDA4, 0xD00, 0xFFC])
def test_other_registers_read_zero(offset):
    p = PciHost()
    p.write(offset, 4, 0xFFFFFFFF)
    assert p.read(offset, 4) == 0


def test_outbound_window_decoded_and_reset():
    p = PciHost()
    p.write(0xC20, 4, 0x000E0000)          # POTAR: PCI 0xE0000000
    p.write(0xC28, 4, 0x00C00000)          # POWBAR: CPU 0xC_0000_0000
    p.write(0xC30, 4, 0x8004401B)          # POWAR: enabled, 256 MiB
    assert p.outbound_windows() == [{"index": 1, "cpu_base": 0xC_0000_0000, "pci_base": 0xE0000000,
                                     "size": 256 << 20}]
    p.reset()
    assert p.outbound_windows() == [] and p.read(0xC30, 4) == 0


def test_holes_are_not_claimed():
    p = PciHost()
    assert p.claims(0, 4) and p.claims(4, 4) and p.claims(0xC00, 4)
    assert not p.claims(8, 4) and not p.claims(0xBFC, 4)
