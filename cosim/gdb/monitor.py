"""gdb's `monitor` commands (qRcmd), like QEMU's HMP: plain text about the scenario, pure.

`run(command, source)` returns the text gdb prints. Commands are a table (`COMMANDS`: prefix, handler,
help) searched longest prefix first; a handler formats what its `MonitorSource` method returns (plain
dicts and lists, see `MonitorSource`), so every command is tested without a socket or a scenario.
Unknown commands answer with a line naming the command and pointing at `help` (as HMP does).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..isa import Dbcr0, GuestDebug, Msr
from . import monitor_qemu
from .monitor_qemu import QemuSource


class MonitorSource(QemuSource, Protocol):
    """What the commands read (implemented by cosim/gdb/vm_info.py over a live scenario)."""

    def strategy(self) -> dict:
        """name, summary, cpu, match (how hits are recognised: word|table|all|iac), hit_event,
        planted (the planted word, or None), table_in_kernel (bool)."""
        ...

    def breakpoints(self) -> list[dict]:
        """One per point: kind (sw|iac|watch|rwatch|awatch), address, length, symbol (or None),
        saved (original word, sw only), in_ram (the word now in RAM, sw only), owners (list of
        "gdb" / "script"), hits (debugger hits at that address)."""
        ...

    def vcpus(self) -> list[dict]:
        """One per vCPU: index, state (text), pc, instructions, exits (level -> count)."""
        ...

    def exits(self) -> dict[str, dict[str, int]]:
        """event -> level -> count, over every vCPU."""
        ...

    def debug(self) -> list[dict]:
        """One per vCPU: index, control (KVM_SET_GUEST_DEBUG flags as set for it), host_iac
        (list of address or None), host_dac (list of (address, rw) or None), msr, and the guest's
        debug SPRs: dbcr0, dbcr1, dbcr2, dbsr, iac1, iac2, dac1, dac2. host_dac_range: (start, end)
        when the two DACs watch one range (DBCR2[DAC12M]: start <= EA < end), else None."""
        ...

    def refused(self) -> list[str]:
        """gdb's breakpoint/watchpoint insertions refused in this run, each with the reason (gdb itself
        only says "too many hardware breakpoints/watchpoints")."""
        ...

    def gdb_points(self) -> dict | None:
        """gdb's own breakpoints and watchpoints during a stop: in_place (planted now), lifted (in place
        when the world last stopped, gone now: a stock gdb removes them at every stop and plants them
        again when it resumes). None while no gdb holds the world stopped."""
        ...


Handler = Callable[[MonitorSource, str], str]


@dataclass(frozen=True)
class MonitorCommand:
    prefix: str
    handler: Handler
    help: str


# --- formatting -------------------------------------------------------------------------------------
def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[k]) for r in rows)) if rows else len(h) for k, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines) + "\n"


def _hex(v: int | None) -> str:
    return "-" if v is None else f"0x{v:08x}"


def _flags(control: int) -> str:
    names = [n for bit, n in ((GuestDebug.ENABLE, "ENABLE"), (GuestDebug.SINGLESTEP, "SINGLESTEP"),
                              (GuestDebug.USE_SW_BP, "USE_SW_BP"), (GuestDebug.USE_HW_BP, "USE_HW_BP"))
             if control & bit]
    return "|".join(names) if names else "0 (guest owns the debug facility)"


_RW = {1: "r", 2: "w", 3: "rw"}
_HOW = {
    "word": "the kernel compares the faulting word with the planted one (ONE_REG DEBUG_INST)",
    "table": "the kernel looks the faulting address up in its table of patched addresses",
    "all": "every exit of that kind goes to userspace, which re-injects what it did not plant",
    "iac": "a hardware IAC debug event (KVM_SET_GUEST_DEBUG), no code is modified",
}


# --- commands ---------------------------------------------------------------------------------------
def cmd_help(src: MonitorSource, args: str) -> str:
    width = max(len(c.prefix) for c in COMMANDS)
    aliases = ", ".join(f"{a} = {t}" for a, t in ALIASES.items())
    return "".join(f"{c.prefix.ljust(width)} -- {c.help}\n" for c in COMMANDS) + f"aliases: {aliases}\n"


def cmd_strategy(src: MonitorSource, args: str) -> str:
    s = src.strategy()
    planted = "nothing (hardware points)" if s["planted"] is None else f"0x{s['planted']:08x}"
    lines = [f"strategy: {s['name']} -- {s['summary']}",
             f"cpu: {s['cpu']}",
             f"planted word: {planted}",
             f"a hit arrives as: {s['hit_event']} exit",
             f"hits recognised: {s['match']}: {_HOW.get(s['match'], s['match'])}",
             f"table of patched addresses in the kernel: {'yes' if s['table_in_kernel'] else 'no'}"]
    return "\n".join(lines) + "\n"


def _lifted_note(src: MonitorSource) -> str:
    """Said whenever none of gdb's points is in place during a stop: what the monitor shows (and what
    $dbcr0 reads) is then the guest's state without gdb, not what runs once gdb resumes."""
    g = src.gdb_points()
    if g is None or g["in_place"]:
        return ""
    lifted = (f"gdb lifted its {g['lifted']} breakpoint(s)/watchpoint(s) at this stop" if g["lifted"]
              else "none of gdb's breakpoints is in place during this stop")
    return (f"note: {lifted}: a stock gdb plants its breakpoints only when it resumes and removes them at "
            "every stop, so they are not shown here and the host does not debug for them now; to keep "
            "them in while stopped: set breakpoint always-inserted on\n")


def cmd_breakpoints(src: MonitorSource, args: str) -> str:
    bps = src.breakpoints()
    if not bps:
        return "No breakpoints or watchpoints.\n" + _lifted_note(src) + _refused(src)
    rows = []
    for k, b in enumerate(sorted(bps, key=lambda b: (b["address"], b["kind"])), 1):
        where = _hex(b["address"]) + (f" <{b['symbol']}>" if b.get("symbol") else "")
        rows.append([str(k), b["kind"], where, str(b.get("length", 4)), _hex(b.get("saved")),
                     _hex(b.get("in_ram")), ",".join(b["owners"]) or "-", str(b["hits"])])
    return (_table(["Num", "Type", "Address", "Len", "Saved", "In RAM", "Owner", "Hits"], rows) + _lifted_note(src)
            + _refused(src))


def _refused(src: MonitorSource) -> str:
    """gdb's refused insertions, newest last (gdb's own message gives no reason)."""
    seen = list(dict.fromkeys(src.refused()))
    if not seen:
        return ""
    return "refused (gdb said only 'too many hardware breakpoints/watchpoints'):\n" + "".join(
        f"  {x}\n" for x in seen[-5:])


def cmd_vcpus(src: MonitorSource, args: str) -> str:
    vs = src.vcpus()
    levels = sorted({lv for v in vs for lv in v["exits"]}, key=_level_order)
    rows = [[f"{v['index']}", v["state"], _hex(v["pc"]), f"{v['instructions']:,}"]
            + [f"{v['exits'].get(lv, 0):,}" for lv in levels] for v in vs]
    return _table(["vCPU", "State", "PC", "Instructions"] + [f"exits@{lv}" for lv in levels], rows)


def cmd_exits(src: MonitorSource, args: str) -> str:
    ex = src.exits()
    if not ex:
        return "No exits yet.\n"
    levels = sorted({lv for by in ex.values() for lv in by}, key=_level_order)
    rows = [[ev] + [f"{by.get(lv, 0):,}" for lv in levels] + [f"{sum(by.values()):,}"]
            for ev, by in sorted(ex.items())]
    total = ["total"] + [f"{sum(by.get(lv, 0) for by in ex.values()):,}" for lv in levels]
    total.append(f"{sum(sum(by.values()) for by in ex.values()):,}")
    return _table(["Event"] + levels + ["Total"], rows + [total])


def cmd_debug(src: MonitorSource, args: str) -> str:
    out = []
    for d in src.debug():
        host = bool(d["control"] & GuestDebug.ENABLE)
        out.append(f"vCPU {d['index']}: KVM_SET_GUEST_DEBUG {_flags(d['control'])}")
        iacs = "  ".join(f"IAC{k + 1}={_hex(a)}" for k, a in enumerate(d["host_iac"]))
        dacs = "  ".join(f"DAC{k + 1}=" + ("-" if p is None else f"{_hex(p[0])}/{_RW.get(p[1], '?')}")
                         for k, p in enumerate(d["host_dac"]))
        out.append(f"  host points:  {iacs}  {dacs}")
        if d.get("host_dac_range"):
            lo, hi = d["host_dac_range"]
            out.append(f"                DAC1-DAC2 as one range (DBCR2[DAC12M] = 0b10): {_hex(lo)} <= EA < {_hex(hi)}")
        dbcr0 = d["dbcr0"] | (Dbcr0.EDM if host else 0)
        out.append(f"  guest SPRs:   DBCR0={_hex(dbcr0)} DBCR1={_hex(d['dbcr1'])} "
                   f"DBCR2={_hex(d['dbcr2'])} DBSR={_hex(d['dbsr'])}")
        out.append(f"                IAC1={_hex(d['iac1'])} IAC2={_hex(d['iac2'])} "
                   f"DAC1={_hex(d['dac1'])} DAC2={_hex(d['dac2'])}  MSR[DE]={int(bool(d['msr'] & Msr.DE))}")
        owner = ("host (DBCR0[EDM]: guest writes to debug SPRs are ignored, MSR[DE] frozen)" if host
                 else "guest (DBCR0[IDM] and MSR[DE])")
        out.append(f"  debug facility owned by: {owner}")
    return "\n".join(out) + "\n" + _lifted_note(src)


def _level_order(level: str) -> tuple[int, str]:
    order = ("vcpu", "kernel", "userspace")
    return (order.index(level) if level in order else len(order), level)


COMMANDS: tuple[MonitorCommand, ...] = (
    MonitorCommand("help", cmd_help, "list the monitor commands"),
    MonitorCommand("info strategy", cmd_strategy, "the breakpoint strategy: planted word, how hits "
                   "are recognised"),
    MonitorCommand("info breakpoints", cmd_breakpoints, "every breakpoint and watchpoint: address, "
                   "saved and planted word, owner (gdb/script), hits"),
    MonitorCommand("info vcpus", cmd_vcpus, "per vCPU: state, PC, instructions, exits by level"),
    MonitorCommand("info exits", cmd_exits, "exits by event and by the level that handled them"),
    MonitorCommand("info debug", cmd_debug, "per vCPU: KVM_SET_GUEST_DEBUG, host points and the "
                   "guest's debug registers"),
    *(MonitorCommand(p, h, text) for p, h, text in monitor_qemu.COMMANDS),
)
ALIASES = {"?": "help", "info cpus": "info vcpus", "info break": "info breakpoints", **monitor_qemu.ALIASES}


def lookup(command: str) -> tuple[MonitorCommand | None, str]:
    """The row for `command` (whitespace-normalised, aliases resolved) and its remaining arguments."""
    words = " ".join(command.split())
    words = re.sub(r"^(xp?)/", r"\1 /", words)          # HMP takes x/10x as x /10x
    for alias, target in ALIASES.items():
        if words == alias or words.startswith(alias + " "):
            words = target + words[len(alias):]
            break
    for row in sorted(COMMANDS, key=lambda c: -len(c.prefix)):
        if words == row.prefix or words.startswith(row.prefix + " "):
            return row, words[len(row.prefix):].strip()
    return None, ""


def run(command: str, source: MonitorSource) -> str:
    """The text for one `monitor` command."""
    row, args = lookup(command)
    if row is None:
        name = " ".join(command.split()) or "(empty)"
        return f"unknown command: '{name}'; try 'monitor help'\n"
    return row.handler(source, args)
