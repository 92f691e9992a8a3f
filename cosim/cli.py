"""Command line: `cosim run CONFIG` (same as `python run.py CONFIG`) and `cosim compare`.

Exit status: 0 when every invariant holds (a predicted finding is not a failure), 1 when one fails,
2 for a bad config or bad arguments (one line naming the file, the key and the problem).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console

from .config import CPUS, STRATEGIES, ConfigError, load_config, parse_config
from .machine.image import GuestImage, guest_path
from .render import render_compare, render_run
from .report import build_report
from .supervisor import run_config


class Progress:
    """Progress on stderr: a live line on a terminal, a line every few seconds otherwise."""

    def __init__(self, label: str, quiet: bool = False):
        self.label = label
        self.quiet = quiet
        self.err = Console(stderr=True)
        self.tty = self.err.is_terminal
        self.last = 0.0

    def __call__(self, p: dict) -> None:
        if self.quiet:
            return
        line = (f"{self.label}: {p['elapsed']:5.1f}/{p['wall_limit']:g} s  {p['instructions']:,} instructions"
                f"  {p['exits']:,} exits  {p['halted']}/{p['vcpus']} vCPUs done")
        if self.tty:
            self.err.file.write("\r\x1b[2K" + line)
            self.err.file.flush()
        elif time.monotonic() - self.last > 5:
            self.last = time.monotonic()
            self.err.print(line, highlight=False)

    def done(self):
        if self.tty and not self.quiet:
            self.err.file.write("\r\x1b[2K")
            self.err.file.flush()


def parse_gdb(value: str) -> str:
    host, _, port = value.rpartition(":")
    if not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"--gdb {value!r}: expected [HOST:]PORT (port 0 picks a free one)")
    return f"{host or '127.0.0.1'}:{int(port)}"


def cmd_run(args) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.running and args.gdb is None:
        print("error: --running needs --gdb [HOST:]PORT", file=sys.stderr)
        return 2
    progress = Progress(cfg.name, args.quiet)
    how = "scenario running; attaching stops it" if args.running else "scenario stopped"

    def gdb_ready(addr, shm=None):
        progress.done()
        print(f"gdb: listening on {addr} ({how}): gdb-multiarch "
              f"{cfg.guest.elf_path or guest_path(cfg.guest.program)} -ex 'target remote {addr}'",
              file=sys.stderr, flush=True)
        if shm:
            print(f"gdb: shared memory: ram={shm['ram']} ram_size={shm['ram_size']:#x} "
                  f"runpages={shm['runpages']} vcpus={shm['vcpus']}", file=sys.stderr, flush=True)

    data = run_config(cfg, progress=progress, gdb=args.gdb, on_gdb_ready=gdb_ready,
                      gdb_running=args.running)
    progress.done()
    report = build_report(data)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if not args.quiet:
        render_run(report)
    return 0 if report["ok"] else 1


def compare_config(strategy: str, cpu: str, program: str, iterations: int, vcpus: int) -> dict:
    image = GuestImage.load(guest_path(program))
    targets = [s for s in ("bp_target_a", "bp_target_b") if s in image] or ["bp_target"]
    return {
        "name": f"{strategy}-{cpu}", "description": f"compare: {strategy} on {cpu}, {program}",
        "machine": {"cpu": cpu, "vcpus": vcpus},
        "guest": {"program": program, "iterations": iterations},
        "debug": {"strategy": strategy, "breakpoints": [{"at": t} for t in targets]},
        "limits": {"wall_seconds": 120.0},
    }


def compare_row(report: dict) -> dict:
    sc = report["scenario"]
    dh = report["debugger_hits"]
    executed = sum(r["executed"] for r in dh["by_breakpoint"].values())
    user_exits = report["exits"]["by_level"].get("userspace", 0)
    bad = [k for k, v in report["invariants"].items() if not v["ok"]]
    return {
        "strategy": sc["strategy"], "cpu": sc["cpu"],
        "verdict": "ok" if not bad else ("finding" if report["ok"] else "fail"),
        "failed": report["failed"], "hits": dh["total"], "executed": executed,
        "warns": report["guest_warns"]["total"], "warns_expected": report["guest_warns"]["expected"],
        "user_exits_per_hit": round(user_exits / dh["total"], 2) if dh["total"] else None,
        "user_p50_us": report["exits"]["latency_us"]["userspace"]["p50"],
        "kernel_p50_us": report["exits"]["latency_us"]["kernel"]["p50"],
        "exits_by_level": report["exits"]["by_level"], "mips": report["mips"],
        "findings": [f["id"] for f in report["findings"]],
    }


def cmd_compare(args) -> int:
    try:
        guest_path(args.program)
    except Exception as e:
        print(f"error: --program: {e}", file=sys.stderr)
        return 2
    rows, reports = [], []
    cells = [(s, c) for s in args.strategies for c in args.cpus]
    err = Console(stderr=True)
    for k, (s, c) in enumerate(cells, 1):
        if not args.quiet:
            err.print(f"[{k}/{len(cells)}] {s} on {c} ...", highlight=False)
        cfg = parse_config(compare_config(s, c, args.program, args.iterations, args.vcpus), "<compare>")
        report = build_report(run_config(cfg))
        reports.append(report)
        rows.append(compare_row(report))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "reports": reports}, indent=2) + "\n")
    if not args.quiet:
        render_compare(rows)
    return 0 if all(r["verdict"] != "fail" for r in rows) else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="cosim", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run one scenario file")
    r.add_argument("config")
    r.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    r.add_argument("--gdb", metavar="[HOST:]PORT", type=parse_gdb,
                   help="serve the GDB remote protocol, start stopped (QEMU's -s -S; port 0: pick a "
                        "free port)")
    r.add_argument("--running", action="store_true",
                   help="with --gdb: start running, a gdb that attaches stops every vCPU (QEMU's -s)")
    r.add_argument("--quiet", action="store_true", help="no progress, no text report")
    r.set_defaults(func=cmd_run)
    c = sub.add_parser("compare", help="every strategy x CPU model on one guest: the thread as a table")
    c.add_argument("--program", default="warn_storm")
    c.add_argument("--iterations", type=int, default=100)
    c.add_argument("--vcpus", type=int, default=1)
    c.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    c.add_argument("--cpus", nargs="+", default=list(CPUS), choices=CPUS)
    c.add_argument("--json", metavar="PATH")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=cmd_compare)
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
