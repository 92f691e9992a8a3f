"""The HMP commands a QEMU user types at gdb's `monitor`, as QEMU prints them, pure: `info registers`,
`x`/`xp` (guest memory), `stop`/`cont`/`info status`, `system_reset`, `cpu N`, `info mtree`,
`info roms`, `info tlb`. cosim/gdb/monitor.py puts them in its command table; each handler formats
what its `QemuSource` returns.

Invariants: nothing here touches a process or a socket; a command with bad arguments answers one line
saying what was expected (as HMP does) and changes nothing. `x` and `xp` show guest memory as the
guest reads it, planted breakpoint words included (gdb's own `x` shows the saved words instead).
`info tlb` is the hook for the guest MMU: until the monitor reads the guest TLB the source answers
None and the command says so.
"""
from __future__ import annotations

import re
from typing import Protocol


class QemuSource(Protocol):
    """What these commands read and do (implemented by cosim/gdb/vm_info.py over a live scenario)."""

    def cpu_count(self) -> int:
        ...

    def current_cpu(self) -> int:
        """The monitor's current vCPU (QEMU's `cpu N`; 0 at first)."""
        ...

    def set_current_cpu(self, index: int) -> None:
        ...

    def cpu_registers(self, index: int) -> dict[str, int]:
        """r0..r31, pc, msr, cr, lr, ctr, xer and the model's SPRs by gdb's (lower-case) names, as the
        guest's mfspr reads them."""
        ...

    def read_memory(self, address: int, length: int, physical: bool, cpu: int) -> bytes:
        """Guest memory as the guest reads it (raises ValueError with a reason outside memory)."""
        ...

    def resolve(self, name: str) -> int | None:
        """A guest symbol's address, or None."""
        ...

    def status(self) -> str:
        """`running` or `paused (why)`."""
        ...

    def system_reset(self) -> str:
        """Reset the machine (every vCPU at its entry, the image loaded again); the text to print
        (empty when done, as QEMU prints nothing), or why not."""
        ...

    def memory_map(self) -> list[dict]:
        """The guest physical address space: rows of start, end (inclusive), kind (ram|mmio|...), name."""
        ...

    def roms(self) -> list[dict]:
        """What was loaded into guest memory: rows of address, size, name (QEMU's `info roms`)."""
        ...

    def clock(self) -> dict:
        """host_seconds, held_seconds, timebase_hz, vcpus: rows of vcpu, timebase, seconds, instructions."""
        ...

    def mmio(self) -> dict | None:
        """The board's MMIO statistics (userspace's BoardHost.stats()), None without a board."""
        ...

    def tlb(self) -> list[dict] | None:
        """The guest MMU's TLB entries, or None while the monitor does not read them. Rows: tlb (0/1), index,
        valid, tid, ts, epn (effective page), rpn (real page), size (bytes), perms (e.g. "SR SW SX")."""
        ...


def _cpu_arg(src: QemuSource, args: str) -> list[int]:
    return list(range(src.cpu_count())) if args.strip() == "-a" else [src.current_cpu()]


# --- info registers ---------------------------------------------------------------------------------
_SPR_ROWS = (("srr0", "srr1", "pvr"), ("sprg0", "sprg1", "sprg2", "sprg3"), ("sprg4", "sprg5", "sprg6", "sprg7"),
             ("csrr0", "csrr1", "mcsrr0", "mcsrr1"), ("dsrr0", "dsrr1", "esr", "dear"),
             ("pir", "ivpr", "epcr", "msrp"), ("dbcr0", "dbcr1", "dbcr2", "dbsr"), ("iac1", "iac2", "dac1", "dac2"))


def _cr_flags(cr: int) -> str:
    out = []
    for i in range(8):
        f = (cr >> (28 - 4 * i)) & 0xF
        a = "L" if f & 8 else "G" if f & 4 else "E" if f & 2 else "-"
        out.append(f" {a}{'O' if f & 1 else ' '}")
    return "".join(out)


def format_registers(index: int, r: dict[str, int]) -> str:
    """One vCPU's registers in the layout of QEMU's `info registers` for Book E (the rows it has)."""
    lines = [f"NIP {r['pc']:08x}   LR {r['lr']:08x} CTR {r['ctr']:08x} XER {r['xer']:08x} CPU#{index}",
             f"MSR {r['msr']:08x}"]
    for row in range(4):
        lines.append(f"GPR{8 * row:02d} " + " ".join(f"{r[f'r{8 * row + k}']:08x}" for k in range(8)))
    lines.append(f"CR {r['cr']:08x}  [{_cr_flags(r['cr'])} ]")
    for names in _SPR_ROWS:
        cells = [f"{n.upper():>6} {r[n]:08x}" for n in names if n in r]
        if cells:
            lines.append(" ".join(cells))
    return "\n".join(lines) + "\n"


def cmd_registers(src: QemuSource, args: str) -> str:
    if args.strip() not in ("", "-a"):
        return "usage: info registers [-a]  (-a: every vCPU; else the current one, see 'cpu N')\n"
    return "".join(format_registers(i, src.cpu_registers(i)) for i in _cpu_arg(src, args))


# --- x / xp ----------------------------------------------------------------------------------------
_FMT = re.compile(r"^/(\d*)([xduoci]?)([bhwg]?)([xduoci]?)$")
_SIZES = {"b": 1, "h": 2, "w": 4, "g": 8}


def parse_address(src: QemuSource, text: str) -> int:
    """A number (0x.., decimal), `$reg` of the current vCPU, or a guest symbol (+ offset)."""
    text = text.strip()
    base, _, off = text.partition("+")
    base = base.strip()
    if base.startswith("$"):
        regs = src.cpu_registers(src.current_cpu())
        if base[1:].lower() not in regs:
            raise ValueError(f"unknown register {base!r}")
        value = regs[base[1:].lower()]
    else:
        try:
            value = int(base, 0)
        except ValueError:
            sym = src.resolve(base)
            if sym is None:
                raise ValueError(f"{base!r} is neither a number, a $register nor a guest symbol") from None
            value = sym
    return (value + (int(off.strip(), 0) if off.strip() else 0)) & 0xFFFFFFFF


def memory_dump(src: QemuSource, args: str, physical: bool) -> str:
    name = "xp" if physical else "x"
    usage = (f"usage: {name} /fmt addr  (fmt: [count][format][size], format x d u o c i, size b h w g; "
             f"e.g. {name} /8xw 0x10000)\n")
    parts = args.split(None, 1)
    if not parts:
        return usage
    fmt, rest = (parts[0], parts[1] if len(parts) > 1 else "") if parts[0].startswith("/") else ("/", args)
    m = _FMT.match(fmt)
    if m is None or not rest.strip():
        return usage
    count = int(m.group(1) or 1)
    form = m.group(2) or m.group(4) or "x"
    size = _SIZES[m.group(3) or "w"] if form != "c" else _SIZES[m.group(3) or "b"]
    if form == "i":
        size = 4
    try:
        addr = parse_address(src, rest)
        data = src.read_memory(addr, count * size, physical, src.current_cpu())
    except ValueError as e:
        return f"{name}: {e}\n"
    if form == "i":
        return _disassemble(addr, data, physical)
    per_line = 16 if form != "c" else 8
    lines = []
    for off in range(0, len(data), per_line):
        chunk = data[off:off + per_line]
        head = f"{addr + off:016x}:" if physical else f"{addr + off:08x}:"
        values = [int.from_bytes(chunk[k:k + size], "big") for k in range(0, len(chunk), size)]
        lines.append(head + "".join(" " + _value(v, form, size) for v in values))
    return "\n".join(lines) + "\n"


def _value(v: int, form: str, size: int) -> str:
    if form == "x":
        return f"0x{v:0{2 * size}x}"
    if form == "o":
        return f"{v:#o}"
    if form == "u":
        return f"{v}"
    if form == "d":
        return f"{v - (1 << (8 * size)) if v >> (8 * size - 1) else v}"
    c = v & 0xFF
    return f"'{chr(c)}'" if 32 <= c < 127 else f"'\\x{c:02x}'"


def _disassemble(addr: int, data: bytes, physical: bool) -> str:
    try:
        import capstone
    except ImportError:
        return "x /i: needs the capstone disassembler (pip install capstone)\n"
    md = capstone.Cs(capstone.CS_ARCH_PPC, capstone.CS_MODE_32 | capstone.CS_MODE_BIG_ENDIAN)
    lines = []
    for off in range(0, len(data) - 3, 4):
        word = data[off:off + 4]
        insn = next(iter(md.disasm(word, addr + off)), None)
        text = f"{insn.mnemonic} {insn.op_str}".strip() if insn is not None else f".long 0x{word.hex()}"
        head = f"0x{addr + off:016x}" if physical else f"0x{addr + off:08x}"
        lines.append(f"{head}:  {word.hex()}  {text}")
    return "\n".join(lines) + "\n"


def cmd_x(src: QemuSource, args: str) -> str:
    return memory_dump(src, args, physical=False)


def cmd_xp(src: QemuSource, args: str) -> str:
    return memory_dump(src, args, physical=True)


# --- the machine ------------------------------------------------------------------------------------
def cmd_stop(src: QemuSource, args: str) -> str:
    return f"VM status: {src.status()}\n"


def cmd_cont(src: QemuSource, args: str) -> str:
    return (f"VM status: {src.status()}; not resumed from here: gdb holds every vCPU stopped and would "
            "not know they ran. Resume with gdb's own 'continue' (or 'detach' to let the scenario run "
            "on without gdb).\n")


def cmd_clock(src: QemuSource, args: str) -> str:
    c = src.clock()
    lines = [f"host: {c['host_seconds']:.3f} s since the run started, {c['held_seconds']:.3f} s of it with the "
             f"world stopped by gdb",
             "virtual time (one time-base tick per guest instruction, of any vCPU when there are several: "
             "one clock for the machine; it stands still while the world is stopped):"]
    for row in c["vcpus"]:
        lines.append(f"  vCPU {row['vcpu']}: time base {row['timebase']:,} = {row['seconds']:.6f} s at "
                     f"{c['timebase_hz'] / 1e6:g} MHz, {row['instructions']:,} instructions")
    return "\n".join(lines) + "\n"


def cmd_status(src: QemuSource, args: str) -> str:
    return f"VM status: {src.status()}\n"


def cmd_system_reset(src: QemuSource, args: str) -> str:
    return src.system_reset()


def cmd_cpu(src: QemuSource, args: str) -> str:
    text = args.strip()
    if not text.isdigit() or int(text) >= src.cpu_count():
        return f"usage: cpu N  (N: 0..{src.cpu_count() - 1}, the vCPU 'info registers' and 'x' use)\n"
    src.set_current_cpu(int(text))
    return ""


def cmd_mtree(src: QemuSource, args: str) -> str:
    lines = ["address-space: memory"]
    for r in src.memory_map():
        lines.append(f"  {r['start']:016x}-{r['end']:016x} (prio 0, {r['kind']}): {r['name']}")
    return "\n".join(lines) + "\n"


def cmd_roms(src: QemuSource, args: str) -> str:
    return "".join(f"addr={r['address']:016x} size=0x{r['size']:06x} mem=ram name=\"{r['name']}\"\n"
                   for r in src.roms())


def cmd_tlb(src: QemuSource, args: str) -> str:
    entries = src.tlb()
    if entries is None:
        return ("info tlb: this machine has no guest MMU (board 'bare': guest addresses are physical); "
                "a board with one ([machine] board = 'ppce500') lists TLB0/TLB1 here as QEMU does.\n")
    if not entries:
        return "No valid TLB entries.\n"
    lines = ["TLB Idx  V TID TS EPN              RPN              Size       Perms"]
    for e in entries:
        lines.append(f"{e['tlb']:>3} {e['index']:>4}  {int(bool(e['valid']))} {e['tid']:>3} {e['ts']:>2} "
                     f"{e['epn']:016x} {e['rpn']:016x} {e['size']:#010x} {e['perms']}")
    return "\n".join(lines) + "\n"


def cmd_mmio(src: QemuSource, args: str) -> str:
    stats = src.mmio()
    if stats is None:
        return "info mmio: the bare machine has no devices (no MMIO exits).\n"
    lines = [f"{stats['mmio_exits']} MMIO exit(s)"]
    lines += [f"  {name:<12} {n}" for name, n in sorted(stats["mmio_by_device"].items(), key=lambda kv: -kv[1])]
    un = stats["board"].get("unassigned", [])
    lines.append(f"unmodelled: {len(un)} address(es)")
    lines += [f"  {u['paddr']:#011x} {u['size']}B {'write' if u['write'] else 'read'} x{u['count']}" for u in un[:40]]
    return "\n".join(lines) + "\n"


COMMANDS = (
    ("info registers", cmd_registers, "the current vCPU's registers as QEMU prints them (-a: every vCPU)"),
    ("x", cmd_x, "x /fmt addr: guest virtual memory as the guest reads it (planted words included)"),
    ("xp", cmd_xp, "xp /fmt addr: guest physical memory"),
    ("cpu", cmd_cpu, "cpu N: the vCPU 'info registers' and 'x' show"),
    ("stop", cmd_stop, "the VM's state (gdb already holds it stopped)"),
    ("cont", cmd_cont, "resume: use gdb's 'continue' (the monitor cannot run the guest behind gdb)"),
    ("info status", cmd_status, "running or paused, and why"),
    ("info clock", cmd_clock, "virtual time (per vCPU time base) beside host time"),
    ("system_reset", cmd_system_reset, "every vCPU back to its entry, the image loaded again"),
    ("info mtree", cmd_mtree, "the guest physical address space"),
    ("info roms", cmd_roms, "what was loaded into guest memory"),
    ("info tlb", cmd_tlb, "the guest MMU's TLBs (a board with one; the bare machine has none: says so)"),
    ("info mmio", cmd_mmio, "the board's MMIO exits by device and the accesses nothing models"),
)
ALIASES = {"c": "cont", "info reg": "info registers"}
