#!/usr/bin/env python3
"""What the deterministic schedule costs: the same scenarios free-running and deterministic, in one run.

mips     the `loop` guest (no exits after boot) on --vcpus vCPUs, for --instructions per vCPU (the
         instruction limit, exact in both modes): guest instructions / run seconds (start-up included,
         the same in both). Deterministic: one vCPU at a time, in quanta of the config's default size.
         `free-1`: the same on one free-running vCPU, for --vcpus x --instructions (as many
         instructions as the others run in all, so start-up weighs the same; issue 22's floor:
         deterministic >= 0.8x of it).
exits    `warn_storm` with one software breakpoint (strategy illegal) on --vcpus vCPUs: exits that
         crossed to the kernel or userspace per second of run (issue 22's target: >= 0.5x free).
Columns: free (--vcpus free-running), deterministic (the baton: quanta handed on by the vCPUs,
cosim/baton.py, run inside their block hooks, cosim/baton.h, a waiting vCPU spinning for its turn),
python (the same baton with each quantum's end back in Python: COSIM_BATON_HOOK=0, the way before),
no-spin (the hook's baton, waiting vCPUs never spinning: COSIM_BATON_SPIN_NS=0), round-trip
(COSIM_BATON=0's way: a supervisor round trip per quantum), and the ratios against free (and against
free-1 for mips); medians of --repeat runs, interleaved, so each ratio is measured against a floor of
the same minute.

    .venv/bin/python tools/bench_deterministic.py [--vcpus 2] [--repeat 3] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cosim.config import parse_config  # noqa: E402
from cosim.report import build_report  # noqa: E402
from cosim.baton import SPIN_NS  # noqa: E402
from cosim.supervisor import run_config  # noqa: E402


def scenario(kind: str, vcpus: int, schedule: str, instructions: int) -> dict:
    machine = {"cpu": "e500mc", "vcpus": vcpus, "schedule": schedule}
    if kind == "mips":
        return {"machine": machine, "guest": {"program": "loop", "iterations": 4_000_000_000},
                "limits": {"wall_seconds": 600, "instructions": instructions}}
    return {"machine": machine, "guest": {"program": "warn_storm", "iterations": 300},
            "debug": {"strategy": "illegal", "breakpoints": [{"at": "bp_target_a"}]},
            "limits": {"wall_seconds": 600}}


def measure(kind: str, vcpus: int, schedule: str, instructions: int, baton: bool = True,
            spin_ns: int | None = None, hook: bool = True) -> float:
    from cosim import supervisor
    supervisor.BATON = baton
    supervisor.BATON_SPIN_NS = SPIN_NS if spin_ns is None else spin_ns
    supervisor.BATON_HOOK = hook
    report = build_report(run_config(parse_config(scenario(kind, vcpus, schedule, instructions), "<bench>")))
    if not report["ok"]:
        raise SystemExit(f"{kind} {schedule}: run failed: {report['failed']} {report['problems']}")
    seconds = report["seconds"]
    if kind == "mips":
        return sum(v["instructions"] for v in report["vcpus"]) / seconds / 1e6
    crossed = sum(n for reason in report["exits"]["by_reason"].values() for level, n in reason.items()
                  if level != "vcpu")
    return crossed / seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vcpus", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--instructions", type=int, default=200_000_000, help="per vCPU, for the mips rows")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args()
    rows = []
    for kind, unit in (("mips", "MIPS"), ("exits", "exits/s")):
        cols = {"free": (args.vcpus, "free", True, None, True),
                "deterministic": (args.vcpus, "deterministic", True, None, True),
                "python": (args.vcpus, "deterministic", True, None, False),
                "no-spin": (args.vcpus, "deterministic", True, 0, True),
                "round-trip": (args.vcpus, "deterministic", False, None, True)}
        if kind == "mips":
            cols["free-1"] = (1, "free", True, None, True)
        got: dict[str, list[float]] = {c: [] for c in cols}
        for _ in range(args.repeat):                       # interleaved repeats: same machine noise
            for c, (n, schedule, baton, spin, hook) in cols.items():
                per = args.instructions * (args.vcpus if c == "free-1" else 1)     # (the same total)
                got[c].append(measure(kind, n, schedule, per, baton, spin, hook))
        med = {c: statistics.median(v) for c, v in got.items()}
        row = {"row": kind, "unit": unit, **med, "samples": got,
               **{f"ratio_{c.replace('-', '_')}": med[c] / med["free"]
                  for c in ("deterministic", "python", "no-spin", "round-trip")}}
        row["ratio"] = row.pop("ratio_deterministic")
        line = f"{kind:6} {unit:8} free {med['free']:9.1f}  " + "  ".join(
            f"{c} {med[c]:9.1f} ({med[c] / med['free']:5.2f}x)"
            for c in ("deterministic", "python", "no-spin", "round-trip"))
        if "free-1" in med:
            row["ratio_one_vcpu"] = med["deterministic"] / med["free-1"]
            row["ratio_one_vcpu_python"] = med["python"] / med["free-1"]
            line += (f"  free-1 {med['free-1']:9.1f}: deterministic {row['ratio_one_vcpu']:5.2f}x of it "
                     f"(python {row['ratio_one_vcpu_python']:5.2f}x)")
        rows.append(row)
        print(line, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"vcpus": args.vcpus, "repeat": args.repeat, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
