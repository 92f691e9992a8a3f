"""Running guests/irq_table.elf (a stand-alone guest with its own vectors) and reading what it recorded
in its own memory: the helpers shared by the interrupting-instruction tests.

The guest's record per vCPU (guests/irq_table.S): interrupts taken in total and per IVOR, the ESR it
read at `site_mfspr` in each iteration, and a log of (IVOR, SRR0, ESR, SRR1) per interrupt. Two runs
saw the same thing when these words and the way each vCPU ended (exit code, reason) are equal.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

from cosim.config import parse_config
from cosim.machine.image import GuestImage, guest_path
from cosim.report import build_report
from cosim.supervisor import Supervisor

IMAGE = GuestImage.load(guest_path("irq_table"))
AREA, AREA_WORDS, ITER = 0x800, 0x200, 8
IVOR_NAMES = {6: "program", 8: "syscall", 16: "other"}

# site -> where one step from it lands, per iteration i (the handler's first instruction when the
# instruction took an interrupt, else the next instruction)
SITES = {
    "site_twi": lambda i: "irq_program" if i % 2 else "site_tw",
    "site_tw": lambda i: "site_sc" if i % 2 else "irq_program",
    "site_sc": lambda i: "irq_syscall",
    "site_mfspr": lambda i: IMAGE.symbol("site_mfspr") + 4,
    "site_illegal": lambda i: "irq_program",
    "site_rfi": lambda i: "site_user_priv",
    "site_user_priv": lambda i: "irq_program",
    "site_user_sc": lambda i: "irq_syscall",
}
FAULT_SITE = "site_load"          # reached only from the `_start_fault` entry, once


def address(where) -> int:
    return where if isinstance(where, int) else IMAGE.symbol(where)


class _Snap(Supervisor):
    """The supervisor, also keeping the guest's own record before guest RAM goes away."""

    def _collect_guest(self, data, image):
        super()._collect_guest(data, image)
        base = image.symbol("irq_area")
        data.irq = [self.ram.read_u32s(base + AREA * i, AREA_WORDS) for i in range(self.cfg.machine.vcpus)]


@dataclass
class Seen:
    """What the guest saw (comparable between runs) and what the harness reported."""
    irq: list
    ends: dict
    report: dict

    def counts(self, vcpu: int = 0) -> dict[str, int]:
        r = self.irq[vcpu]
        return {IVOR_NAMES[n]: r[1 + n] for n in IVOR_NAMES if r[1 + n]}

    @property
    def hits(self) -> int:
        return self.report["debugger_hits"]["total"]

    def steps(self) -> list[int]:
        return [e["pc"] for e in self.report["register_log"] if e["what"] == "step"]


def shm_blocks():
    pid = os.getpid()
    return {n for n in os.listdir("/dev/shm") if f"-{pid}-" in n or f"_{pid}_" in n}


def run_irq(cpu: str, strategy: str = "illegal", breakpoints=(), vcpus: int = 1, entry: str | None = None,
            gdb: str | None = None, on_gdb_ready=None, wall: float = 60.0) -> Seen:
    d = {"machine": {"cpu": cpu, "vcpus": vcpus}, "guest": {"program": "irq_table"},
         "debug": {"strategy": strategy, "breakpoints": list(breakpoints)}, "limits": {"wall_seconds": wall}}
    if entry:
        d["guest"]["entry"] = entry
    before = shm_blocks()
    data = _Snap(parse_config(d, "<irq test>"), gdb=gdb, on_gdb_ready=on_gdb_ready).run()
    report = build_report(data)
    assert not shm_blocks() - before
    for pid in data.pids.values():
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    ends = {v: (code, why) for v, (code, why) in data.halts.items()}
    return Seen(getattr(data, "irq", None), ends, report)
