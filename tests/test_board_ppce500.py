"""cosim.board.ppce500 against QEMU 7.2 itself: the device tree (``-machine dumpdtb`` and the blob QEMU
writes into guest RAM), the boot registers and TLB1 entry (``info registers``/``info tlb`` before the
first instruction), the MMIO map (``info mtree -f``) and the reset values of the device registers
(``xp`` from the monitor). QEMU runs with ``-S``: nothing executes; a minimal ELF stands in for the
firmware. Skipped only when qemu-system-ppc is missing."""
import os
import re
import shutil
import struct
import subprocess
import time
from types import SimpleNamespace

import pytest

from cosim.board import ppce500 as board
from cosim.board.ppce500 import (CCSR_BASE, FDT_MAX_SIZE, PHANDLE_START_BOOT, PHANDLE_START_DUMPDTB, BoardError,
                                 Ppce500, boot_state, check_ram, device_tree, dt_address, payload_extent)
from cosim.hw import fdt
from cosim.hw.tlb import TlbEntry

QEMU = shutil.which("qemu-system-ppc")
needs_qemu = pytest.mark.skipif(QEMU is None, reason="qemu-system-ppc is not installed (./setup.sh installs it)")
MiB = 1 << 20
UBOOT = "/usr/lib/u-boot/qemu-ppce500/uboot.elf"


def tiny_elf(path, memsz=0x400, entry=0xF00000):
    """A 32-bit big-endian PowerPC executable: one PT_LOAD at ``entry`` holding `b .`."""
    code = struct.pack(">I", 0x48000000)
    ehdr = struct.pack(">16sHHIIIIIHHHHHH", b"\x7fELF\x01\x02\x01" + bytes(9), 2, 20, 1, entry, 52, 0, 0,
                       52, 32, 1, 0, 0, 0)
    phdr = struct.pack(">8I", 1, 0x100, entry, entry, len(code), memsz, 7, 4)
    path.write_bytes(ehdr + phdr + bytes(0x100 - 84) + code)
    return path


def qemu(tmp_path, *args, cpus=1, ram_mb=256, cpu="e500v2", monitor=(), memsz=0x400):
    elf = tiny_elf(tmp_path / "fw.elf", memsz)
    cmd = [QEMU, "-M", "ppce500", "-cpu", cpu, "-smp", str(cpus), "-m", str(ram_mb), "-bios", str(elf),
           "-nic", "none", "-display", "none", "-serial", "null", *args]
    if monitor:
        cmd += ["-S", "-monitor", "stdio"]
    r = subprocess.run(cmd, input="".join(c + "\n" for c in (*monitor, "quit")) if monitor else None,
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", r.stdout)


def normalise(blob):
    """A blob as our writer would emit it, QEMU's random rng-seed zeroed (libfdt leaves stale bytes in
    property padding; parse + to_bytes writes zeros there)."""
    t = fdt.parse(blob)
    t.node("/chosen").props["rng-seed"] = bytes(32)
    return t, t.to_bytes(FDT_MAX_SIZE)


def assert_same_tree(ours, theirs):
    o, t = fdt.parse(ours), fdt.parse(theirs)
    assert fdt.to_dts(o.root) == fdt.to_dts(t.root)          # node by node, property by property
    assert o.strings_block == t.strings_block
    assert ours == theirs                                    # and the bytes, header and layout


# -- pure parts --------------------------------------------------------------------------------------

@pytest.mark.parametrize("size, ok", [(64 * MiB, True), (256 * MiB, True), (3 * 64 * MiB, True),
                                      (100 * MiB, False), (0, False), (64 * MiB + 4096, False)])
def test_check_ram(size, ok):
    if ok:
        check_ram(size)
    else:
        with pytest.raises(BoardError, match=r"^ppce500: RAM size must be a multiple of 64 MiB .*got") as e:
            check_ram(size)
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("segments, extent", [
    ([(0xF00000, 0x5EFF8, 0x65E74)], (0xF00000, 0x65E74)),             # Debian's U-Boot
    ([(0x100000, 0x10, 0x10), (0x200000, 0x10, 0x20)], (0x100000, 0x30)),
    ([(0x100000, 0x10, 0x200000), (0x200000, 0x10, 0x10)], (0x100000, 0x20)),   # zero-fill would overlap
    ([(0xC0000000, 4, 4)], (0xC0000000 - (1 << 32), 4)),               # QEMU sign-extends the low address
])
def test_payload_extent(segments, extent):
    segs = [SimpleNamespace(addr=a, data=bytes(f), memsz=m) for a, f, m in segments]
    assert payload_extent(segs) == extent


@pytest.mark.parametrize("loadaddr, size, base", [(0xF00000, 0x65E74, 0x2700000), (0xF00000, 0x100000, 0x2800000),
                                                  (0, 0x1000, 0x1800000)])
def test_dt_address(loadaddr, size, base):
    assert dt_address(loadaddr, size) == base
    with pytest.raises(BoardError, match="not enough memory"):
        dt_address(loadaddr, size, ram_size=base + 4 * MiB)


def test_boot_state_for_uboot():
    s = boot_state(256 * MiB, 0xF00000, 0x2700000)
    assert (s.pc, s.msr, s.halted) == (0xF00000, 0, False)
    assert {n: s.gpr(n) for n in (1, 3, 4, 5, 6, 7, 8, 9, 2, 31)} == {
        1: 0xFFFFF8, 3: 0x2700000, 4: 0, 5: 0, 6: 0x45504150, 7: 0x4000000, 8: 0, 9: 0, 2: 0, 31: 0}
    assert s.tlb1 == (TlbEntry(mas0=0x10000000, mas1=0x80000800, mas2=0, mas3=0x3F, mas7=0),)
    assert (s.tlb1[0].size, s.tlb1[0].iprot, s.tlb1[0].pa, s.tlb1[0].va) == (64 * MiB, False, 0, 0)
    assert board.secondary_state(1).halted and not board.secondary_state(1).tlb1
    # a tree ending past 64 MiB needs the next even size: 256 MiB
    assert boot_state(512 * MiB, 0, 0x4000000).tlb1[0].size == 256 * MiB


def test_bad_board_parameters():
    for kwargs, msg in [(dict(cpus=0), "vCPUs"), (dict(cpus=33), "vCPUs"), (dict(cpu_model="e5500"), "CPU model"),
                        (dict(serials=3), "serial")]:
        args = dict(ram_size=256 * MiB, cpus=1, cpu_model="e500v2") | kwargs
        with pytest.raises(BoardError, match=msg):
            device_tree(args.pop("ram_size"), args.pop("cpus"), args.pop("cpu_model"), **args)


def test_the_table_builds_bus_and_tree():
    b = Ppce500(256 * MiB, cpus=2, cpu_model="e500mc")
    modelled = {r.name for r in board.PPCE500 if r.factory} - {"serial1"}
    assert set(b.devices) == modelled
    for row in board.PPCE500:
        if row.name in b.devices:
            assert b.bus.base_of(row.name) == row.base and b.devices[row.name].size == row.size
    assert {n for n, *_ in b.unmodelled()} == {"ccsr", "i2c", "platform"}
    two = Ppce500(256 * MiB, serials=2)
    assert "serial1" in two.devices and "serial@4600" in fdt.to_dts(fdt.parse(two.device_tree()).root)


def test_uart_wired_to_mpic_and_console():
    sent, pins = [], []
    b = Ppce500(256 * MiB, on_tx=lambda port, data: sent.append((port, data)),
                on_irq_output=lambda cpu, line, level: pins.append((cpu, line, level)))
    uart, mpic = CCSR_BASE + 0x4500, CCSR_BASE + 0x40000
    b.mmio_write(uart, 1, ord("U"))
    assert sent == [(0, b"U")]
    b.mmio_write(mpic + 0x10000 + 42 * 0x20, 4, 0x00050042)      # unmask source 42
    b.mmio_write(mpic + 0x20080, 4, 0)                           # CTPR 0
    b.mmio_write(uart + 1, 1, 0x01)                              # IER: receive interrupt
    b.uart(0).push_rx(b"k")
    assert pins[-1] == (0, 0, True)
    assert b.mmio_read(b.mpic_iack_address, 4) == 0x42
    assert b.mmio_read(uart, 1) == ord("k")                      # the line drops
    b.mmio_write(mpic + 0x200B0, 4, 0)
    assert pins[-1] == (0, 0, False)


def test_spin_release_and_reset_request_reach_the_callbacks():
    released, resets = [], []
    b = Ppce500(256 * MiB, cpus=2, on_release=released.append, on_reset=lambda: resets.append(1))
    b.mmio_write(board.SPIN_BASE + 0x24, 4, 0x2000)
    assert released[0].cpu == 1 and released[0].pc == 0x2000
    b.mmio_write(CCSR_BASE + 0xE00B0, 4, 2)
    assert resets == [1]
    assert b.mmio_read(CCSR_BASE + 0xE00A0, 4) == 0x80210030


def test_unassigned_ccsr_access_is_counted_and_reported():
    b = Ppce500(256 * MiB)
    assert b.handle_mmio(CCSR_BASE + 0x5008, 4, False) == 0       # U-Boot's one read QEMU answers 0
    assert b.handle_mmio(CCSR_BASE + 0x3000, 1, True, 0x80) == 0  # the i2c controller: not modelled
    assert b.handle_mmio(CCSR_BASE + 0x4505, 1, False) == 0x60
    assert b.bus.unassigned == {(CCSR_BASE + 0x5008, 4, False): 1, (CCSR_BASE + 0x3000, 1, True): 1}
    r = b.report()
    assert r["unassigned"] == [{"paddr": CCSR_BASE + 0x3000, "size": 1, "write": True, "count": 1},
                               {"paddr": CCSR_BASE + 0x5008, "size": 4, "write": False, "count": 1}]
    assert {"name": "serial0", "base": CCSR_BASE + 0x4500, "size": 8, "reads": 1, "writes": 0} in r["devices"]
    assert [u["name"] for u in r["unmodelled"]] == ["ccsr", "i2c", "platform"]


# -- against QEMU -------------------------------------------------------------------------------------

@needs_qemu
@pytest.mark.parametrize("cpu, cpus, ram_mb", [("e500v2", n, m) for m in (256, 512) for n in (1, 2, 4)]
                         + [("e500mc", 1, 256), ("e500mc", 4, 512)])   # e500mc: other cache line size
def test_device_tree_equals_qemu_dumpdtb(tmp_path, cpu, cpus, ram_mb):
    out = tmp_path / "qemu.dtb"
    qemu(tmp_path, "-machine", f"dumpdtb={out}", cpus=cpus, ram_mb=ram_mb, cpu=cpu)
    theirs_tree, theirs = normalise(out.read_bytes())
    assert len(out.read_bytes()) == FDT_MAX_SIZE
    ours = device_tree(ram_mb * MiB, cpus, cpu, phandle_start=PHANDLE_START_DUMPDTB)
    assert_same_tree(ours, theirs)
    assert len([p for p, _ in theirs_tree.root.walk() if "/cpus/PowerPC" in p]) == cpus


@needs_qemu
@pytest.mark.parametrize("memsz", [0x400, 0x1A0000])
def test_boot_blob_address_and_registers_equal_qemu(tmp_path, memsz):
    """What the guest finds at reset: the tree QEMU wrote to RAM (third build: phandles from 0x8006) at
    the address dt_address computes, r3 pointing at it, and TLB1[0]."""
    segs = [SimpleNamespace(addr=0xF00000, data=bytes(4), memsz=memsz)]
    base = dt_address(*payload_extent(segs), ram_size=256 * MiB)
    assert base == (0x2700000 if memsz == 0x400 else 0x2800000)
    dump = tmp_path / "ram.dtb"
    out = qemu(tmp_path, cpus=2, memsz=memsz,
               monitor=["info registers", "info tlb", f'pmemsave {base:#x} {FDT_MAX_SIZE:#x} "{dump}"'])
    ours = device_tree(256 * MiB, 2, "e500v2", phandle_start=PHANDLE_START_BOOT)
    assert_same_tree(ours, normalise(dump.read_bytes())[1])

    state = boot_state(256 * MiB, 0xF00000, base)
    cpu0 = out.split("CPU#1")[0]
    assert re.search(r"NIP (\w+)", cpu0).group(1) == f"{state.pc:08x}"
    assert int(re.search(r"MSR (\w+)", cpu0).group(1), 16) == state.msr
    gprs = [int(v, 16) for v in re.findall(r"GPR\d\d((?: [0-9a-f]{16}){4})", cpu0)[0:8] for v in v.split()]
    assert gprs == [state.gpr(n) for n in range(32)]
    tlb1 = out.split("TLB1:")[1].splitlines()[2]
    e = state.tlb1[0]
    assert tlb1.split()[:7] == [f"0x{e.va:016x}", f"0x{e.pa:016x}", "64M", "0", "0", "SRWXURWX", "-----"]


@needs_qemu
def test_mmio_map_equals_qemu_mtree(tmp_path):
    """Every MMIO region of QEMU's flat view is a window of our device at the same place, or a row the
    table declares unmodelled; and we map nothing QEMU does not."""
    out = qemu(tmp_path, cpus=2, monitor=["info mtree -f"])
    (view,) = [v for v in out.split("FlatView #") if 'AS "memory"' in v]
    regions = [(int(a, 16), int(b, 16) + 1, name) for a, b, kind, name in
               re.findall(r"([0-9a-f]{16})-([0-9a-f]{16}) \(prio \d+, ([\w/]+)\): (.+)$", view, re.M)
               if kind == "i/o"]
    b = Ppce500(256 * MiB, cpus=2)
    ours = sorted((m.base + w.offset, m.base + w.offset + w.size, w.name)
                  for m in b.bus.mappings for w in m.device.windows)
    unmodelled = {(r.base, r.base + r.size) for r in board.PPCE500 if r.factory is None and r.size}
    theirs = sorted(r for r in regions if (r[0], r[1]) not in unmodelled)
    assert ours == theirs
    assert {(s, e) for s, e, _ in regions} - {(s, e) for s, e, _ in ours} == {
        (CCSR_BASE + 0x3000, CCSR_BASE + 0x3014)}


# registers a monitor read has no side effect on (no IACK, RBR, MSIR; not GUTS or the MPIC's per-CPU
# aliases, which QEMU answers from the current CPU, and the monitor has none)
XP = [(CCSR_BASE + 0x4500 + r, 1) for r in (1, 2, 3, 4, 5, 6, 7)] + [
    (CCSR_BASE + 0x8000, 4), (CCSR_BASE + 0x8004, 4), (CCSR_BASE + 0x8C20, 4), (CCSR_BASE + 0x8E20, 4),
    (CCSR_BASE + 0x8008, 4), (CCSR_BASE + 0x5008, 4), (CCSR_BASE + 0x3000, 4),
    *[(CCSR_BASE + 0x40000 + o, 4) for o in (0x0, 0x1000, 0x1020, 0x1080, 0x1090, 0x10A0, 0x10B0, 0x10E0, 0x10F0,
                                              0x1100, 0x1110, 0x1120, 0x1130, 0x1720, 0x3800, 0x10000, 0x10010,
                                              0x10018, 0x10540, 0x10550, 0x10558, 0x1FFE0, 0x20080, 0x20090,
                                              0x21080, 0x21090, 0x200B0, 0x2000, 0x12000)],
    *[(board.SPIN_BASE + o, 4) for o in (0x0, 0x4, 0x8, 0xC, 0x14, 0x24, 0x2C, 0x34, 0x3FC)],
]


@needs_qemu
def test_register_reset_values_equal_qemu(tmp_path):
    cmds = [f"xp /1{'b' if size == 1 else 'w'}x {addr:#x}" for addr, size in XP]
    out = qemu(tmp_path, cpus=2, monitor=cmds)
    answers = dict(re.findall(r"^([0-9a-f]{16}): (0x[0-9a-f]+|Cannot access memory)", out, re.M))
    b = Ppce500(256 * MiB, cpus=2)
    unmodelled = [(base, base + size) for _, base, size, _ in b.unmodelled() if base != CCSR_BASE]
    for addr, size in XP:
        theirs = answers[f"{addr:016x}"]
        ours = b.mmio_read(addr, size)
        if any(lo <= addr < hi for lo, hi in unmodelled):       # QEMU's i2c: counted here, never silent
            assert theirs != "Cannot access memory" and b.bus.unassigned[(addr, size, False)] == 1
        elif theirs == "Cannot access memory":
            assert b.bus.unassigned[(addr, size, False)] == 1, f"{addr:#x}: QEMU has nothing there"
        else:
            assert (addr, size, False) not in b.bus.unassigned and ours == int(theirs, 16), f"{addr:#x}"


@pytest.mark.skipif(not os.path.exists(UBOOT), reason="Debian's u-boot-qemu is not installed")
def test_uboot_device_tree_address():
    from cosim.machine.image import GuestImage
    img = GuestImage.load(UBOOT)
    assert dt_address(*payload_extent(img.segments), ram_size=256 * MiB) == 0x2700000
    assert img.entry == 0xF00000
    boot = Ppce500(256 * MiB, cpus=2).firmware_boot(img.segments, img.entry)
    assert boot.dt_address == 0x2700000 and len(boot.dt_blob) == FDT_MAX_SIZE
    assert boot.states[0].gpr(3) == 0x2700000 and boot.states[0].pc == 0xF00000 and boot.states[1].halted


TRACE_LINE = re.compile(r"^memory_region_ops_(read|write) cpu (-?\d+) mr \S+ addr (0x[0-9a-f]+) value (0x[0-9a-f]+) "
                        r"size (\d) name '([^']*)'$", re.M)


def run_uboot_traced(tmp_path, cpu, keys):
    """U-Boot under QEMU with its console on a pipe and QEMU's device-access trace on: ``keys`` maps
    console text to the input sent once it appears. Returns (console bytes, trace events)."""
    trace = tmp_path / "trace.txt"
    proc = subprocess.Popen([QEMU, "-M", "ppce500", "-cpu", cpu, "-m", "256", "-bios", UBOOT, "-nic", "none",
                             "-display", "none", "-monitor", "none", "-serial", "stdio",
                             "-trace", "memory_region_ops_*", "-D", str(trace)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    console = bytearray()
    try:
        os.set_blocking(proc.stdout.fileno(), False)
        deadline = time.monotonic() + 120
        todo = list(keys)
        while time.monotonic() < deadline and proc.poll() is None:
            chunk = proc.stdout.read() or b""
            console += chunk
            if todo and todo[0][0] in console:
                proc.stdin.write(todo.pop(0)[1])
                proc.stdin.flush()
            elif not todo and console.count(b"\n=> ") >= len(keys) + (not keys):
                break
            if not chunk:
                time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    return bytes(console), TRACE_LINE.findall(trace.read_text(errors="replace"))


@needs_qemu
@pytest.mark.skipif(not os.path.exists(UBOOT), reason="Debian's u-boot-qemu is not installed")
@pytest.mark.parametrize("cpu, keys", [
    ("e500v2", ()), ("e500mc", ()),
    ("e500v2", ((b"Hit any key", b" "), (b"\n=> ", b"version\r"))),
], ids=["e500v2-to-prompt", "e500mc-to-prompt", "e500v2-key-and-version"])
def test_uboot_mmio_under_qemu_replayed_against_our_models(tmp_path, cpu, keys):
    """Every device access Debian's U-Boot makes under QEMU (QEMU's own memory_region_ops trace) to
    its prompt (and, with keys, through stopping autoboot and typing ``version``), replayed in order
    against our board: each read gets QEMU's answer, each access lands in a window of ours, and the
    bytes written to the UART are QEMU's console output. A typed byte enters our UART when QEMU's
    LSR first shows it (the host's typing time is not the guest's)."""
    console, events = run_uboot_traced(tmp_path, cpu, keys)
    assert console.count(b"\n=> ") >= 1, console[-300:]
    assert len(events) > 1000
    typed = bytearray(b"".join(k for _, k in keys))

    sent = []
    b = Ppce500(256 * MiB, 1, cpu, on_tx=lambda port, data: sent.append(data))
    uart, lsr = b.uart(0), CCSR_BASE + 0x4505
    mismatches, names = [], set()
    for kind, vcpu, addr, value, size, name in events:
        addr, value, size = int(addr, 16), int(value, 16), int(size)
        dev, off = b.bus.find(addr)
        window = dev.window(off)
        names.add((name, window.name))
        if window.little_endian:        # the trace shows the device's side of the byte swap
            value = int.from_bytes(value.to_bytes(size, "little"), "big")
        if kind == "write":
            b.mmio_write(addr, size, value, cpu=int(vcpu))
            continue
        if addr == lsr and value & 0x01 and not uart.rx_pending and typed:
            uart.push_rx(bytes([typed.pop(0)]))
        ours = b.mmio_read(addr, size, cpu=int(vcpu))
        if ours != value:
            mismatches.append((name, hex(addr), size, hex(value), hex(ours)))
    assert mismatches == []
    assert not b.bus.unassigned and not typed
    assert {qemu_name for qemu_name, _ in names} >= {"serial", "pci-conf-idx", "pci-conf-data", "pci.reg", "glb"}
    assert all(q == ours for q, ours in names)          # the same window names as QEMU's regions
    out = b"".join(sent)
    assert out.endswith(b"=> ") and console.startswith(out)      # U-Boot writes CR LF itself
    if keys:
        assert b"U-Boot 2023.01" in out.split(b"version", 1)[1]       # the command ran and printed
