"""QEMU 7.2's ``-M ppce500`` board (hw/ppc/e500.c + e500plat.c) as data: one table from which both the
MMIO bus and the device tree are generated, the boot state QEMU gives vCPU 0 for ``-bios ELF``, and
the state of the secondaries (held until the spin table releases them).

The table ``PPCE500`` lists the board's parts in the order e500.c creates their device-tree nodes;
each row has a guest-physical base and size, a device factory (None: QEMU has something there that
is not modelled, or nothing at all: accesses are unassigned and counted), and its device-tree
operations. The device tree is built by replaying those operations with libfdt's semantics
(``cosim.hw.fdt``), so it comes out as QEMU's node by node, property by property and string by string;
``tests/test_board_ppce500.py`` compares it with ``qemu-system-ppc -machine dumpdtb`` and with the blob
QEMU puts in guest RAM.

Physical map (36-bit), as QEMU's ``info mtree -f`` with ``-nic none``:

    0x0_0000_0000  RAM                     (not on the bus: the vCPU's own memory)
    0xF_0000_0000  platform bus, 128 MiB   empty
    0xF_E000_0000  CCSR, 1 MiB:  +0x3000 i2c (not modelled)   +0x4500 serial0 (8 bytes)
                   +0x4600 serial1 (only with two serial ports)   +0x8000 PCI host   +0x40000 MPIC
                   +0xE0000 GUTS   +0xFF000 GPIO (pin 0: power-off)
    0xF_E100_0000  PCI I/O, 64 KiB         in the device tree; mapped only through an enabled
    0xC_0000_0000  PCI memory, 512 MiB     outbound window, with no device behind it
    0xF_EF00_0000  spin table, 1 KiB

Device tree phandles: QEMU builds the tree three times (a dry run for its size, at machine-init-done,
and at reset) from one counter starting at 0x8000, so ``-machine dumpdtb`` shows the second build
(MPIC 0x8003) and the guest boots with the third (MPIC 0x8006): ``PHANDLE_START_DUMPDTB`` and
``PHANDLE_START_BOOT``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from cosim.hw import fdt
from cosim.hw.bus import SystemBus
from cosim.hw.device import Device
from cosim.hw.gpio import GPIO_SIZE, Mpc8xxxGpio
from cosim.hw.guts import GUTS_SIZE, Guts
from cosim.hw.ns16550 import NS16550
from cosim.hw.openpic import FSL_MPIC_42, MPIC_SIZE, OpenPIC
from cosim.hw.pci_host import PciHost
from cosim.hw.spin_table import ENTRY_SIZE, SPIN_SIZE, SpinRelease, SpinTable
from cosim.hw.tlb import TlbEntry, page_size_to_tsize

__all__ = ["PPCE500", "Row", "BoardError", "Ppce500", "BootState", "check_ram", "dt_address",
           "payload_extent", "device_tree", "boot_state", "secondary_state", "FirmwareBoot", "CCSR_BASE", "SPIN_BASE",
           "FDT_MAX_SIZE", "PHANDLE_START_BOOT", "PHANDLE_START_DUMPDTB", "UART_IRQ", "CPU_MODELS"]

MiB = 1 << 20
RAM_SIZES_ALIGN = 64 * MiB
EPAPR_MAGIC = 0x45504150
DTC_LOAD_PAD, DTC_PAD_MASK = 0x1800000, 0xFFFFF
INITRD_LOAD_PAD, INITRD_PAD_MASK = 0x2000000, 0xFFFFFF
DTB_MAX_SIZE = 8 * MiB
FDT_MAX_SIZE = 0x100000                    # QEMU's create_device_tree: every tree is 1 MiB
PLATFORM_CLK_FREQ_HZ = 400_000_000
PHANDLE_START_DUMPDTB, PHANDLE_START_BOOT = 0x8003, 0x8006

# e500plat.c's PPCE500MachineClass
CCSR_BASE = 0xF_E000_0000
CCSR_SIZE = 1 * MiB
PCI_PIO_BASE = 0xF_E100_0000
PCI_MMIO_BASE = 0xC_0000_0000
PCI_MMIO_BUS_BASE = 0xE000_0000
SPIN_BASE = 0xF_EF00_0000
PLATFORM_BUS_BASE = 0xF_0000_0000
PLATFORM_BUS_SIZE = 128 * MiB
PCI_FIRST_SLOT, PCI_NR_SLOTS = 1, 31
MPIC_OFFSET, MSI_OFFSET, SERIAL0_OFFSET, SERIAL1_OFFSET = 0x40000, 0x41600, 0x4500, 0x4600
PCI_OFFSET, GUTS_OFFSET, GPIO_OFFSET, I2C_OFFSET = 0x8000, 0xE0000, 0xFF000, 0x3000
UART_IRQ, I2C_IRQ, GPIO_IRQ, PCI_IRQ = 42, 43, 47, 24
POWER_OFF_PIN = 0
RTC_ADDR = 0x68

SOC = f"/soc@{CCSR_BASE:x}"
MPIC = f"{SOC}/pic@{MPIC_OFFSET:x}"
MSI = f"{SOC}/msi@{MSI_OFFSET:x}"
GPIO = f"{SOC}/gpio@{GPIO_OFFSET:x}"
I2C = f"{SOC}/i2c@{I2C_OFFSET:x}"
PCI = f"/pci@{CCSR_BASE + PCI_OFFSET:x}"
PLATFORM = f"/platform@{PLATFORM_BUS_BASE:x}"

# per CPU model: what the device tree and GUTS show of it (QEMU's init_proc_e500 and cpu-models.c)
CPU_MODELS = {
    "e500v2": {"pvr": 0x80210030, "svr": 0, "cache_line": 32},
    "e500mc": {"pvr": 0x80230020, "svr": 0, "cache_line": 64},
}


class BoardError(ValueError):
    """Bad board parameters; the message is one line for the user."""


def check_ram(size: int) -> None:
    """QEMU's check: RAM a non-zero multiple of 64 MiB."""
    if size <= 0 or size % RAM_SIZES_ALIGN:
        raise BoardError(f"ppce500: RAM size must be a multiple of 64 MiB "
                         f"({RAM_SIZES_ALIGN} bytes), got {size} bytes")


def payload_extent(segments: Iterable) -> tuple[int, int]:
    """(load address, size) of an ELF payload as QEMU's load_elf returns them: the lowest PT_LOAD
    physical address and the sum of the segments' memory sizes (a segment whose zero-fill would
    overlap another one counts its file size only). ``segments``: objects with ``addr``, ``memsz``
    and ``data`` (cosim.machine.image.Segment)."""
    segs = list(segments)
    if not segs:
        raise BoardError("ppce500: the firmware has no PT_LOAD segment")
    low, total = None, 0
    for i, s in enumerate(segs):
        mem, filesz = s.memsz, len(s.data)
        if mem > filesz:
            z0, z1 = s.addr + filesz, s.addr + mem
            if any(j != i and not (o.addr >= z1 or z0 >= o.addr + o.memsz) for j, o in enumerate(segs)):
                mem = filesz
        total += mem
        low = s.addr if low is None else min(low, s.addr)
    assert low is not None
    if low & 0x80000000:                     # QEMU: (uint64_t)(elf_sword)low
        low -= 1 << 32
    return low, total


def dt_address(loadaddr: int, payload_size: int, ram_size: int | None = None) -> int:
    """Where QEMU puts the device tree: 24 MiB past the payload's end, rounded down to 1 MiB
    (0x2700000 for Debian's U-Boot). With ``ram_size``, QEMU's "not enough memory" check too."""
    base = (loadaddr + payload_size + DTC_LOAD_PAD) & ~DTC_PAD_MASK & 0xFFFFFFFFFFFFFFFF
    if ram_size is not None and base + DTB_MAX_SIZE > ram_size:
        raise BoardError(f"ppce500: not enough memory for the device tree at {base:#x} "
                         f"(needs {base + DTB_MAX_SIZE:#x} bytes of RAM, have {ram_size:#x})")
    return base


def initrd_address(loadaddr: int, payload_size: int) -> int:
    """Where QEMU loads -initrd: 32 MiB past the payload (at least past 32 MiB, U-Boot's), rounded
    down to 16 MiB."""
    cur = max(loadaddr + payload_size, 32 * MiB)
    return (cur + INITRD_LOAD_PAD) & ~INITRD_PAD_MASK


# -- the device-tree operations (a row's data) -----------------------------------------------------

@dataclass(frozen=True)
class Ctx:
    """What device-tree values may depend on."""

    ram_size: int
    cpus: int
    cpu_model: str
    serials: int
    bootargs: str
    rng_seed: bytes
    dt: fdt.DeviceTree
    initrd: tuple[int, int] | None = None      # (base, size) in guest RAM, as -initrd
    kernel: tuple[int, int] | None = None      # (base, size): the payload is a kernel (-kernel, no -bios)

    def phandle(self, path: str) -> int:
        return self.dt.get_phandle(path)


Value = bytes | Callable[[Ctx], bytes]
Op = tuple  # ("node", path) | ("prop", path, name, Value) | ("phandle", path) | ("each", fn)


def node(path: str, *props: tuple[str, Value]) -> list[Op]:
    return [("node", path)] + [("prop", path, k, v) for k, v in props]


def prop(path: str, name: str, value: Value) -> Op:
    return ("prop", path, name, value)


def phandle_of(path: str) -> Callable[[Ctx], bytes]:
    return lambda c: fdt.cells(c.phandle(path))


C, S, EMPTY = fdt.cells, fdt.string, b""


def _cpu_nodes(c: Ctx) -> list[Op]:
    line = CPU_MODELS[c.cpu_model]["cache_line"]
    ops: list[Op] = []
    for i in reversed(range(c.cpus)):      # reverse, so Linux finds CPU 0 first (libfdt prepends)
        p = f"/cpus/PowerPC,8544@{i:x}"
        ops += node(p, ("clock-frequency", C(PLATFORM_CLK_FREQ_HZ)),
                    ("timebase-frequency", C(PLATFORM_CLK_FREQ_HZ)), ("device_type", S("cpu")),
                    ("reg", C(i)), ("d-cache-line-size", C(line)), ("i-cache-line-size", C(line)),
                    ("d-cache-size", C(0x8000)), ("i-cache-size", C(0x8000)), ("bus-frequency", C(0)))
        if i:
            ops += [prop(p, "status", S("disabled")), prop(p, "enable-method", S("spin-table")),
                    prop(p, "cpu-release-addr", fdt.u64(SPIN_BASE + i * ENTRY_SIZE))]
        else:
            ops += [prop(p, "status", S("okay"))]
    return ops


def _serial_dt(index: int, offset: int, defcon: bool) -> list[Op]:
    p = f"{SOC}/serial@{offset:x}"
    ops = node(p, ("device_type", S("serial")), ("compatible", S("ns16550")), ("reg", C(offset, 0x100)),
               ("cell-index", C(index)), ("clock-frequency", C(PLATFORM_CLK_FREQ_HZ)),
               ("interrupts", C(UART_IRQ, 2)), ("interrupt-parent", phandle_of(MPIC)))
    ops.append(prop("/aliases", f"serial{index}", S(p)))
    if defcon:
        ops += [prop("/chosen", "linux,stdout-path", S(p)), prop("/chosen", "stdout-path", S(p))]
    return ops


def _pci_interrupt_map(c: Ctx) -> bytes:
    """e500.c's pci_map_create: INTA-D of each slot to MPIC sources 1-4, rotated by slot."""
    mpic = c.phandle(MPIC)
    out = []
    for slot in range(PCI_FIRST_SLOT, PCI_FIRST_SLOT + PCI_NR_SLOTS):
        for pin in range(4):
            out += [slot << 11, 0, 0, pin + 1, mpic, (slot + pin) % 4 + 1, 1]
    return fdt.cells(*out)


PCI_RANGES = fdt.cells(0x2000000, 0x0, PCI_MMIO_BUS_BASE, PCI_MMIO_BASE >> 32, PCI_MMIO_BASE, 0x0, 0x20000000,
                       0x1000000, 0x0, 0x0, PCI_PIO_BASE >> 32, PCI_PIO_BASE, 0x0, 0x10000)


@dataclass(frozen=True)
class Row:
    """One part of the board: where it sits, what models it, what the device tree says of it."""

    name: str
    base: int | None = None                # guest-physical (36-bit); None: no MMIO range
    size: int = 0
    factory: Callable[["Ppce500"], Device] | None = None
    dt: Sequence[Op] | Callable[[Ctx], Sequence[Op]] = ()
    present: Callable[[Ctx | "Ppce500"], bool] = lambda b: True
    note: str = ""


def _chosen(c: Ctx) -> list[tuple[str, Value]]:
    """/chosen as ppce500_load_device_tree writes it: the initrd's bounds (32-bit cells), the kernel
    payload's extent (qemu,boot-kernel), the command line, the seed."""
    props: list[tuple[str, Value]] = []
    if c.initrd is not None and c.initrd[1]:
        base, size = c.initrd
        props += [("linux,initrd-start", C(base & 0xFFFFFFFF)), ("linux,initrd-end", C((base + size) & 0xFFFFFFFF))]
    if c.kernel is not None:
        base, size = c.kernel
        props.append(("qemu,boot-kernel", C(base >> 32, base & 0xFFFFFFFF, size >> 32, size & 0xFFFFFFFF)))
    return props + [("bootargs", S(c.bootargs)), ("rng-seed", c.rng_seed)]


def _make_uart(index: int) -> Callable[["Ppce500"], Device]:
    return lambda b: NS16550(f"serial{index}", on_tx=lambda data: b.on_tx(index, data),
                             irq=lambda level: b.mpic.set_irq(UART_IRQ, level))


PPCE500: tuple[Row, ...] = (
    Row("root", dt=[prop("/", "#address-cells", C(2)), prop("/", "#size-cells", C(2))]),
    Row("ram", 0, 0, None, note="guest RAM, the vCPU's own",
        dt=lambda c: node("/memory", ("device_type", S("memory")), ("reg", fdt.u64(0, c.ram_size)))),
    Row("chosen", dt=lambda c: node("/chosen", *_chosen(c))),
    Row("cpus", dt=lambda c: node("/cpus", ("#address-cells", C(1)), ("#size-cells", C(0))) + _cpu_nodes(c)),
    Row("aliases", dt=[("node", "/aliases")]),
    Row("ccsr", CCSR_BASE, CCSR_SIZE, None, note="container: a CCSR offset no device claims is unassigned",
        dt=node(SOC, ("device_type", S("soc")), ("compatible", fdt.strings("fsl,mpc8544-immr", "simple-bus")),
                ("#address-cells", C(1)), ("#size-cells", C(1)),
                ("ranges", C(0, CCSR_BASE >> 32, CCSR_BASE, CCSR_SIZE)), ("bus-frequency", C(0)))),
    Row("mpic", CCSR_BASE + MPIC_OFFSET, MPIC_SIZE,
        lambda b: OpenPIC(b.cpus, b.mpic_model, on_output=b.on_irq_output, on_proxy=b.on_proxy, clock=b.clock),
        dt=node(MPIC, ("device_type", S("open-pic")), ("compatible", S("fsl,mpic")),
                ("reg", C(MPIC_OFFSET, 0x40000)), ("#address-cells", C(0)), ("#interrupt-cells", C(2)))
        + [("phandle", MPIC), prop(MPIC, "interrupt-controller", EMPTY)]),
    Row("serial1", CCSR_BASE + SERIAL1_OFFSET, 8, _make_uart(1), dt=_serial_dt(1, SERIAL1_OFFSET, False),
        present=lambda b: b.serials >= 2, note="QEMU creates it only for a second -serial"),
    Row("serial0", CCSR_BASE + SERIAL0_OFFSET, 8, _make_uart(0), dt=_serial_dt(0, SERIAL0_OFFSET, True),
        present=lambda b: b.serials >= 1),
    Row("i2c", CCSR_BASE + I2C_OFFSET, 0x14, None, note="QEMU's mpc-i2c + ds1338 RTC: not modelled",
        dt=node(I2C, ("device_type", S("i2c")), ("compatible", S("fsl-i2c")), ("reg", C(I2C_OFFSET, 0x14)),
                ("cell-index", C(0)), ("interrupts", C(I2C_IRQ, 2)), ("interrupt-parent", phandle_of(MPIC)))
        + [prop("/aliases", "i2c", S(I2C))]
        + node(f"{I2C}/rtc@{RTC_ADDR:x}", ("compatible", S("pericom,pt7c4338")), ("reg", C(RTC_ADDR)))
        + [prop("/aliases", "rtc", S(f"i2c/rtc@{RTC_ADDR:x}"))]),
    Row("guts", CCSR_BASE + GUTS_OFFSET, GUTS_SIZE,
        lambda b: Guts(CPU_MODELS[b.cpu_model]["pvr"], CPU_MODELS[b.cpu_model]["svr"], on_reset=b.on_reset),
        dt=node(f"{SOC}/global-utilities@{GUTS_OFFSET:x}", ("compatible", S("fsl,mpc8544-guts")),
                ("reg", C(GUTS_OFFSET, 0x1000)), ("fsl,has-rstcr", EMPTY))),
    Row("msi", None, note="MSI registers: part of the MPIC's window",
        dt=node(MSI, ("compatible", S("fsl,mpic-msi")), ("reg", C(MSI_OFFSET, 0x200)))
        + [("alloc", MSI), prop(MSI, "msi-available-ranges", C(0, 0x100)),
           prop(MSI, "interrupt-parent", phandle_of(MPIC)),
           prop(MSI, "interrupts", C(*[v for i in range(8) for v in (0xE0 + i, 0)])), ("phandle", MSI)]),
    Row("pci", CCSR_BASE + PCI_OFFSET, 0x1000, lambda b: PciHost(),
        dt=node(PCI, ("cell-index", C(0)), ("compatible", S("fsl,mpc8540-pci")), ("device_type", S("pci")),
                ("interrupt-map-mask", C(0xF800, 0, 0, 7)), ("interrupt-map", _pci_interrupt_map),
                ("interrupt-parent", phandle_of(MPIC)), ("interrupts", C(PCI_IRQ, 2)),
                ("bus-range", C(0, 255)), ("fsl,msi", phandle_of(MSI)), ("ranges", PCI_RANGES),
                ("reg", C((CCSR_BASE + PCI_OFFSET) >> 32, CCSR_BASE + PCI_OFFSET, 0, 0x1000)),
                ("clock-frequency", C(66666666)), ("#interrupt-cells", C(1)), ("#size-cells", C(2)),
                ("#address-cells", C(3)))
        + [prop("/aliases", "pci0", S(PCI))]),
    Row("gpio", CCSR_BASE + GPIO_OFFSET, GPIO_SIZE, lambda b: Mpc8xxxGpio(on_output=b._gpio_output),
        dt=node(GPIO, ("compatible", S("fsl,qoriq-gpio")), ("reg", C(GPIO_OFFSET, 0x1000)),
                ("interrupts", C(GPIO_IRQ, 2)), ("interrupt-parent", phandle_of(MPIC)), ("#gpio-cells", C(2)),
                ("gpio-controller", EMPTY))
        + [("phandle", GPIO)]
        + node(f"{SOC}/power-off", ("compatible", S("gpio-poweroff")),
               ("gpios", lambda c: C(c.phandle(GPIO), 0, 0)))),
    Row("platform", PLATFORM_BUS_BASE, PLATFORM_BUS_SIZE, None, note="platform bus: no dynamic device",
        dt=node(PLATFORM, ("compatible", fdt.strings("qemu,platform", "simple-bus")), ("#size-cells", C(1)),
                ("#address-cells", C(1)), ("ranges", C(0, PLATFORM_BUS_BASE >> 32, PLATFORM_BUS_BASE,
                                                      PLATFORM_BUS_SIZE)),
                ("interrupt-parent", phandle_of(MPIC)))),
    Row("spin", SPIN_BASE, SPIN_SIZE,
        lambda b: SpinTable(b.cpus, on_release=b.on_release)),
    Row("model", dt=[prop("/", "model", S("QEMU ppce500")), prop("/", "compatible", S("fsl,qemu-e500"))]),
)


def _run_ops(ctx: Ctx, ops: Sequence[Op], pending: dict[str, int]) -> None:
    dt = ctx.dt
    for op in ops:
        kind = op[0]
        if kind == "node":
            dt.add_subnode(op[1])
        elif kind == "prop":
            value = op[3](ctx) if callable(op[3]) else op[3]
            dt.setprop(op[1], op[2], value)
        elif kind == "alloc":                        # allocate now, set later (e500.c's msi_ph)
            pending[op[1]] = dt.alloc_phandle()
        elif kind == "phandle":                      # "phandle" and "linux,phandle", as e500.c
            ph = pending.pop(op[1], None) or dt.alloc_phandle()
            dt.setprop_cells(op[1], "phandle", ph)
            dt.setprop_cells(op[1], "linux,phandle", ph)
        else:
            raise ValueError(f"unknown device-tree op {kind!r}")


def _check_params(cpus: int, cpu_model: str, serials: int) -> None:
    if not 1 <= cpus <= 32:
        raise BoardError(f"ppce500: {cpus} vCPUs (QEMU's ppce500 takes 1 to 32)")
    if cpu_model not in CPU_MODELS:
        raise BoardError(f"ppce500: unknown CPU model {cpu_model!r} (expected one of: {', '.join(CPU_MODELS)})")
    if not 0 <= serials <= 2:
        raise BoardError(f"ppce500: {serials} serial ports (QEMU's ppce500 has at most 2)")


def device_tree_object(ram_size: int, cpus: int, cpu_model: str, *, serials: int = 1, bootargs: str = "",
                       rng_seed: bytes = bytes(32), phandle_start: int = PHANDLE_START_BOOT,
                       initrd: tuple[int, int] | None = None,
                       kernel: tuple[int, int] | None = None) -> fdt.DeviceTree:
    check_ram(ram_size)
    _check_params(cpus, cpu_model, serials)
    dt = fdt.DeviceTree(phandle_start=phandle_start)
    ctx = Ctx(ram_size, cpus, cpu_model, serials, bootargs, bytes(rng_seed), dt, initrd, kernel)
    pending: dict[str, int] = {}
    for row in PPCE500:
        if not row.present(ctx):
            continue
        _run_ops(ctx, row.dt(ctx) if callable(row.dt) else row.dt, pending)
    return dt


def device_tree(ram_size: int, cpus: int, cpu_model: str, *, serials: int = 1, bootargs: str = "",
                rng_seed: bytes = bytes(32), phandle_start: int = PHANDLE_START_BOOT,
                initrd: tuple[int, int] | None = None, kernel: tuple[int, int] | None = None) -> bytes:
    """The device tree blob QEMU 7.2 gives this machine (1 MiB, as QEMU's). ``rng_seed``: the 32
    bytes of /chosen/rng-seed (QEMU's are random); ``phandle_start``: see the module comment."""
    return device_tree_object(ram_size, cpus, cpu_model, serials=serials, bootargs=bootargs,
                              rng_seed=rng_seed, phandle_start=phandle_start, initrd=initrd,
                              kernel=kernel).to_bytes(FDT_MAX_SIZE)


# -- boot state ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BootState:
    """A vCPU's state at reset, as QEMU's ppce500_cpu_reset(_sec) leaves it. ``gprs`` lists the
    registers QEMU sets (all others are 0); ``tlb1`` the TLB1 entries written (all others invalid).
    A ``halted`` vCPU does not run until the spin table releases it (then ``SpinRelease`` applies)."""

    cpu: int
    halted: bool
    pc: int = 0
    msr: int = 0
    gprs: dict[int, int] = field(default_factory=dict, hash=False)
    tlb1: tuple[TlbEntry, ...] = ()

    def gpr(self, n: int) -> int:
        return self.gprs.get(n, 0)


def initial_map_tsize(dt_base: int, dt_size: int = FDT_MAX_SIZE) -> int:
    """e500.c's booke206_initial_map_tsize: the smallest even TSIZE whose page at 0 covers the tree."""
    ps = page_size_to_tsize(dt_base + dt_size) + 1
    return ps + 1 if ps & 1 else ps


def boot_state(ram_size: int, entry: int, dt_address: int, dt_size: int = FDT_MAX_SIZE) -> BootState:
    """vCPU 0 at reset with ``-bios ELF``: PC = the ELF entry, MSR = 0, r1 = 16 MiB - 8 (stack),
    r3 = device tree, r6 = ePAPR magic, r7 = size of the initial mapping, TLB1[0] = EA 0 -> PA 0 of
    that size (64 MiB for U-Boot), supervisor and user RWX, TID 0, TS 0, no IPROT."""
    check_ram(ram_size)
    tsize = initial_map_tsize(dt_address, dt_size)
    return BootState(cpu=0, halted=False, pc=entry & 0xFFFFFFFF, msr=0,
                     gprs={1: 16 * MiB - 8, 3: dt_address, 4: 0, 5: 0, 6: EPAPR_MAGIC,
                           7: 1024 << tsize, 8: 0, 9: 0},
                     tlb1=(TlbEntry.tlb1(esel=0, va=0, pa=0, tsize=tsize),))


def secondary_state(cpu: int) -> BootState:
    """vCPU 1..N-1 at reset: halted (QEMU: start-powered-off, EXCP_HLT), no TLB entry; the spin table
    releases it with the registers and TLB1[1] of a ``SpinRelease``."""
    if cpu <= 0:
        raise BoardError("secondary_state: vCPU 0 is the boot CPU (use boot_state)")
    return BootState(cpu=cpu, halted=True)


@dataclass(frozen=True)
class FirmwareBoot:
    """Where the device tree goes in guest RAM, its bytes, and each vCPU's reset state."""

    dt_address: int
    dt_blob: bytes
    states: tuple[BootState, ...]
    initrd_address: int | None = None


# -- the board ---------------------------------------------------------------------------------------

class Ppce500:
    """The board's devices on one bus, wired as e500.c wires them.

    Callbacks (all optional):
      on_tx(port, data)             bytes the guest wrote to serial ``port``'s THR
      on_irq_output(cpu, line, lvl) the MPIC's outputs to each vCPU (line 0: external interrupt)
      on_proxy(enabled)             GCR selected the MPIC's external proxy mode
      on_release(SpinRelease)       the spin table released a secondary vCPU
      on_reset()                    the guest asked for a reset (GUTS RSTCR)
      on_power_off()                the guest drove the power-off pin high (GPIO pin 0)
      clock() -> ns                 virtual time, for the MPIC's timers (default: stands still)
    """

    ram_size: int
    cpus: int
    cpu_model: str
    serials: int
    mpic_model: str
    on_tx: Callable[[int, bytes], None]
    on_irq_output: Callable[[int, int, bool], None]
    on_proxy: Callable[[bool], None]
    on_release: Callable[[SpinRelease], None]
    on_reset: Callable[[], None]
    on_power_off: Callable[[], None]
    clock: Callable[[], int]

    def __init__(self, ram_size: int, cpus: int = 1, cpu_model: str = "e500v2", *, serials: int = 1,
                 mpic_model: str = FSL_MPIC_42,
                 on_tx: Callable[[int, bytes], None] | None = None,
                 on_irq_output: Callable[[int, int, bool], None] | None = None,
                 on_proxy: Callable[[bool], None] | None = None,
                 on_release: Callable[[SpinRelease], None] | None = None,
                 on_reset: Callable[[], None] | None = None,
                 on_power_off: Callable[[], None] | None = None,
                 clock: Callable[[], int] | None = None):
        check_ram(ram_size)
        _check_params(cpus, cpu_model, serials)
        self.ram_size, self.cpus, self.cpu_model, self.serials = ram_size, cpus, cpu_model, serials
        self.mpic_model = mpic_model
        self.on_tx = on_tx or (lambda port, data: None)
        self.on_irq_output = on_irq_output or (lambda cpu, line, level: None)
        self.on_proxy = on_proxy or (lambda enabled: None)
        self.on_release = on_release or (lambda release: None)
        self.on_reset = on_reset or (lambda: None)
        self.on_power_off = on_power_off or (lambda: None)
        self.clock = clock or (lambda: 0)
        self.bus = SystemBus()
        self.devices: dict[str, Device] = {}
        self.mpic: OpenPIC = None  # type: ignore[assignment]   # set first below: the UARTs wire to it
        rows = sorted((r for r in PPCE500 if r.factory and r.present(self)), key=lambda r: r.name != "mpic")
        for row in rows:
            assert row.factory is not None and row.base is not None
            dev = row.factory(self)
            if dev.size != row.size:
                raise AssertionError(f"{row.name}: device size {dev.size:#x} != table size {row.size:#x}")
            if isinstance(dev, OpenPIC):
                self.mpic = dev
            self.bus.add(row.base, dev)
            self.devices[row.name] = dev

    def _gpio_output(self, pin: int, level: bool) -> None:
        if pin == POWER_OFF_PIN and level:       # e500.c: ppce500_power_off
            self.on_power_off()

    # typed shortcuts
    def uart(self, port: int = 0) -> NS16550:
        return self.devices[f"serial{port}"]  # type: ignore[return-value]

    @property
    def guts(self) -> Guts:
        return self.devices["guts"]  # type: ignore[return-value]

    @property
    def pci(self) -> PciHost:
        return self.devices["pci"]  # type: ignore[return-value]

    @property
    def spin(self) -> SpinTable:
        return self.devices["spin"]  # type: ignore[return-value]

    @property
    def mpic_iack_address(self) -> int:
        """Where a CPU in MPIC proxy mode reads its vector (QEMU's env->mpic_iack)."""
        return CCSR_BASE + MPIC_OFFSET + 0xA0

    # MMIO exits
    def mmio_read(self, paddr: int, size: int, cpu: int = 0) -> int:
        return self.bus.read(paddr, size, cpu)

    def mmio_write(self, paddr: int, size: int, value: int, cpu: int = 0) -> None:
        self.bus.write(paddr, size, value, cpu)

    def handle_mmio(self, paddr: int, size: int, is_write: bool, value: int = 0, cpu: int = 0) -> int:
        """One KVM_EXIT_MMIO: the value a load completes with (0 for a store)."""
        if is_write:
            self.bus.write(paddr, size, value, cpu)
            return 0
        return self.bus.read(paddr, size, cpu)

    def report(self) -> dict:
        """For the JSON report: accesses per device, every unassigned access by address, what the
        board has but does not model."""
        return {"devices": [{"name": m.device.name, "base": m.base, "size": m.device.size,
                             "reads": self.bus.accesses[m.device.name][0],
                             "writes": self.bus.accesses[m.device.name][1]} for m in self.bus.mappings],
                "unassigned": self.bus.unassigned_by_address(),
                "unmodelled": [{"name": n, "base": b, "size": sz, "note": note}
                               for n, b, sz, note in self.unmodelled()]}

    def reset(self) -> None:
        self.bus.reset()

    def device_tree(self, *, bootargs: str = "", rng_seed: bytes = bytes(32),
                    phandle_start: int = PHANDLE_START_BOOT, initrd: tuple[int, int] | None = None,
                    kernel: tuple[int, int] | None = None) -> bytes:
        return device_tree(self.ram_size, self.cpus, self.cpu_model, serials=self.serials, bootargs=bootargs,
                           rng_seed=rng_seed, phandle_start=phandle_start, initrd=initrd, kernel=kernel)

    def boot_states(self, entry: int, dt_addr: int) -> list[BootState]:
        return [boot_state(self.ram_size, entry, dt_addr)] + [secondary_state(i) for i in range(1, self.cpus)]

    def firmware_boot(self, segments: Iterable, entry: int, *, bootargs: str = "",
                      rng_seed: bytes = bytes(32), kernel: bool = False,
                      initrd_size: int | None = None) -> "FirmwareBoot":
        """Everything QEMU does for ``-bios ELF`` (or ``-kernel ELF`` with no -bios: ``kernel``) besides
        loading the segments: where the device tree (and an initrd of ``initrd_size`` bytes) go, the
        tree's bytes, and every vCPU's reset state. ``segments``: the ELF's PT_LOAD segments
        (cosim.machine.image.Segment)."""
        segs = list(segments)
        loadaddr, size = payload_extent(segs)
        base = dt_address(loadaddr, size, ram_size=self.ram_size)
        initrd = None
        if initrd_size is not None:
            initrd = (initrd_address(loadaddr, size), initrd_size)
            if initrd[0] + initrd_size > self.ram_size:
                raise BoardError(f"ppce500: the initrd ({initrd_size} bytes at {initrd[0]:#x}) does not fit in "
                                 f"{self.ram_size >> 20} MiB of RAM")
        blob = self.device_tree(bootargs=bootargs, rng_seed=rng_seed, initrd=initrd,
                                kernel=(loadaddr, size) if kernel else None)
        return FirmwareBoot(base, blob, tuple(self.boot_states(entry, base)), initrd[0] if initrd else None)

    def unmodelled(self) -> list[tuple[str, int, int, str]]:
        """Rows with an MMIO range but no model: (name, base, size, note), for the report."""
        return [(r.name, r.base, r.size, r.note) for r in PPCE500
                if r.base is not None and r.size and r.factory is None]
