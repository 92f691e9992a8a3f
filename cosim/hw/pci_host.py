"""The Freescale e500 PCI host controller as QEMU 7.2's hw/pci-host/ppce500.c, with an empty bus.

Windows inside its 4 KiB (QEMU's flat view, ``info mtree -f``):

    +0x000  pci-conf-idx   4 bytes, big-endian: CONFIG_ADDRESS (stored on an aligned 4-byte write only)
    +0x004  pci-conf-data  4 bytes, little-endian: CONFIG_DATA of the function CONFIG_ADDRESS selects
    +0xC00  pci.reg        1 KiB, big-endian: outbound windows 1-4 (POTAR/POTEAR/POWBAR/POWAR at
                           +0xC20/+0xC40/+0xC60/+0xC80), inbound windows 3-1 (PITAR/PIWBAR/PIWBEAR/
                           PIWAR at +0xDA0/+0xDC0/+0xDE0), the gasket timer (+0xE20); stored and read
                           back, everything else there reads 0
    anything else in the 4 KiB is unassigned (the bus counts it)

Configuration space (QEMU's pci_host.c + pci.c): with CONFIG_ADDRESS[31] clear the data register reads
0xFFFFFFFF; bus 0 device 0 function 0 is the host bridge as QEMU presents it ("e500-host-bridge":
vendor 0x1957 Freescale, device 0x0030 MPC8533E, class 0x0B20 PowerPC processor, subsystem
0x1AF4/0x1100, BAR0 a 32-bit memory BAR of 1 MiB (the CCSR), QEMU's writable masks: command
IO|MEM|MASTER|SERR|INTX_DISABLE, status write-1-to-clear error bits, cache line size, interrupt line,
BAR0 address bits, 0x40-0xFF); every other bus/device/function is absent and reads 0xFFFFFFFF,
writes to it are dropped. This is QEMU with ``-nic none``: the board has no PCI device.

Left out: what the windows do once enabled (QEMU maps PCI bus memory into the CPU's space through an
enabled outbound window and the CCSR into PCI space through BAR0: with no device behind either, a CPU
access there reads 0 in QEMU too, and the bus counts it as unassigned here); INTx routing (no device
raises one).
"""
from __future__ import annotations

from .device import Device, Window

__all__ = ["PciHost", "PCI_VENDOR_FREESCALE", "PCI_DEVICE_MPC8533E", "PCI_CLASS_PROCESSOR_POWERPC",
           "ABSENT"]

PCI_REGION_SIZE = 0x1000
REG_BASE = 0xC00
PCI_VENDOR_FREESCALE = 0x1957
PCI_DEVICE_MPC8533E = 0x0030
PCI_CLASS_PROCESSOR_POWERPC = 0x0B20
SUBSYSTEM_VENDOR_QUMRANET, SUBSYSTEM_QEMU = 0x1AF4, 0x1100
CCSR_BAR_SIZE = 0x100000
ABSENT = 0xFFFFFFFF
CONFIG_ENABLE = 1 << 31

# register offsets in pci.reg (QEMU's PPCE500_PCI_* minus PCIE500_REG_BASE)
OUTBOUND = (0x20, 0x40, 0x60, 0x80)            # OW1..OW4, index = (addr >> 5) & 7
INBOUND = (0x1A0, 0x1C0, 0x1E0)                # IW3, IW2, IW1, index = ((addr >> 5) & 3) - 1
GASKET_TIMR = 0x220
OUT_FIELDS = {0x0: "potar", 0x4: "potear", 0x8: "powbar", 0x10: "powar"}
IN_FIELDS = {0x0: "pitar", 0x8: "piwbar", 0xC: "piwbear", 0x10: "piwar"}
WAR_EN, WAR_SZ_MASK = 0x80000000, 0x3F

# config-space offsets
VENDOR, DEVICE, COMMAND, STATUS, CLASS_DEVICE, CACHE_LINE, BAR0, SUBSYS_VENDOR, SUBSYS_ID = (
    0x00, 0x02, 0x04, 0x06, 0x0A, 0x0C, 0x10, 0x2C, 0x2E)
INTERRUPT_LINE = 0x3C
COMMAND_WMASK = 0x0001 | 0x0002 | 0x0004 | 0x0100 | 0x0400   # IO MEM MASTER SERR INTX_DISABLE
STATUS_W1C = 0x0100 | 0x0800 | 0x1000 | 0x2000 | 0x4000 | 0x8000


class HostBridgeConfig:
    """256 bytes of configuration space with QEMU's write masks (pci_default_write_config)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        c = bytearray(256)
        wmask = bytearray(256)
        w1c = bytearray(256)

        def word(buf: bytearray, off: int, v: int) -> None:
            buf[off:off + 2] = v.to_bytes(2, "little")

        word(c, VENDOR, PCI_VENDOR_FREESCALE)
        word(c, DEVICE, PCI_DEVICE_MPC8533E)
        word(c, CLASS_DEVICE, PCI_CLASS_PROCESSOR_POWERPC)
        word(c, SUBSYS_VENDOR, SUBSYSTEM_VENDOR_QUMRANET)
        word(c, SUBSYS_ID, SUBSYSTEM_QEMU)
        word(wmask, COMMAND, COMMAND_WMASK)
        wmask[CACHE_LINE] = 0xFF
        wmask[INTERRUPT_LINE] = 0xFF
        wmask[BAR0:BAR0 + 4] = (~(CCSR_BAR_SIZE - 1) & 0xFFFFFFFF).to_bytes(4, "little")
        wmask[0x40:] = b"\xff" * 0xC0
        word(w1c, STATUS, STATUS_W1C)
        self.config, self.wmask, self.w1cmask = c, wmask, w1c

    def read(self, addr: int, size: int) -> int:
        size = min(size, 256 - addr)
        return int.from_bytes(self.config[addr:addr + size], "little")

    def write(self, addr: int, size: int, value: int) -> None:
        size = min(size, 256 - addr)
        for i in range(size):
            b = (value >> (8 * i)) & 0xFF
            m, w1c = self.wmask[addr + i], self.w1cmask[addr + i]
            self.config[addr + i] = ((self.config[addr + i] & ~m) | (b & m)) & ~(b & w1c) & 0xFF


class PciHost(Device):
    size = PCI_REGION_SIZE

    def __init__(self, name: str = "pci"):
        self.name = name
        self.bridge = HostBridgeConfig()
        self._functions = {(0, 0): self.bridge}              # (bus, devfn) -> config space
        super().__init__([
            Window("pci-conf-idx", 0x0, 4, self._read_cfgaddr, self._write_cfgaddr),
            Window("pci-conf-data", 0x4, 4, self._read_cfgdata, self._write_cfgdata, little_endian=True),
            Window("pci.reg", REG_BASE, PCI_REGION_SIZE - REG_BASE, self._read_reg, self._write_reg),
        ])
        self.reset()

    def reset(self) -> None:
        self.config_reg = 0
        self.outbound = [dict.fromkeys(OUT_FIELDS.values(), 0) for _ in range(5)]   # pob[0..4]
        self.inbound = [dict.fromkeys(IN_FIELDS.values(), 0) for _ in range(3)]    # pib[0..2]
        self.gasket_time = 0
        self.bridge.reset()
        self.config_reads = 0
        self.config_writes = 0
        self.absent_reads = 0

    # -- configuration address / data ----------------------------------------------------------------
    def _read_cfgaddr(self, offset: int, size: int, cpu: int) -> int:
        return self.config_reg

    def _write_cfgaddr(self, offset: int, size: int, value: int, cpu: int) -> None:
        if offset == 0 and size == 4:
            self.config_reg = value & 0xFFFFFFFF

    def _target(self, offset: int) -> tuple[HostBridgeConfig | None, int]:
        addr = self.config_reg | (offset & 3)
        bus, devfn = (addr >> 16) & 0xFF, (addr >> 8) & 0xFF
        return self._functions.get((bus, devfn)), addr & 0xFF

    def _read_cfgdata(self, offset: int, size: int, cpu: int) -> int:
        self.config_reads += 1
        if not self.config_reg & CONFIG_ENABLE:
            return ABSENT
        fn, reg = self._target(offset)
        if fn is None:
            self.absent_reads += 1
            return ABSENT
        return fn.read(reg, size)

    def _write_cfgdata(self, offset: int, size: int, value: int, cpu: int) -> None:
        self.config_writes += 1
        if self.config_reg & CONFIG_ENABLE:
            fn, reg = self._target(offset)
            if fn is not None:
                fn.write(reg, size, value)

    # -- window registers (pci_reg_read4 / pci_reg_write4) --------------------------------------------
    def _field(self, offset: int) -> tuple[dict[str, int], str] | None:
        win = offset & 0xFE0
        if win in OUTBOUND:
            name = OUT_FIELDS.get(offset & 0x1F)
            return (self.outbound[(offset >> 5) & 7], name) if name else None
        if win in INBOUND:
            name = IN_FIELDS.get(offset & 0x1F)
            return (self.inbound[((offset >> 5) & 3) - 1], name) if name else None
        return None

    def _read_reg(self, offset: int, size: int, cpu: int) -> int:
        if (offset & 0xFE0) == GASKET_TIMR:
            return self.gasket_time
        f = self._field(offset)
        return f[0][f[1]] if f else 0

    def _write_reg(self, offset: int, size: int, value: int, cpu: int) -> None:
        if (offset & 0xFE0) == GASKET_TIMR:
            self.gasket_time = value
            return
        f = self._field(offset)
        if f:
            f[0][f[1]] = value & 0xFFFFFFFF

    def outbound_windows(self) -> list[dict]:
        """The enabled outbound windows decoded as QEMU's e500_update_pow maps them (CPU -> PCI)."""
        out = []
        for i, w in enumerate(self.outbound):
            if w["powar"] & WAR_EN:
                out.append({"index": i, "cpu_base": w["powbar"] << 12, "pci_base": w["potar"] << 12,
                            "size": 2 << (w["powar"] & WAR_SZ_MASK)})
        return out
