#!/usr/bin/env python3
"""What the deterministic schedule costs: the same scenarios free-running and deterministic, in one run.

mips     the `loop` guest (no exits after boot) on --vcpus vCPUs, for --instructions per vCPU (the
         instruction limit, exact in both modes): guest instructions / run seconds (start-up included,
         the same in both). Deterministic: one vCPU at a time, in quanta of the config's default size.
exits    `warn_storm` with one software breakpoint (strategy illegal) on --vcpus vCPUs: exits that
         crossed to the kernel or userspace per second of run.
Reported per row: free, deterministic, and deterministic / free (the cost is 1 / that ratio); medians
of --repeat runs. There is no target: the schedule trades speed for replay, this says by how much.

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
from cosim.supervisor import run_config  # noqa: E402


def scenario(kind: str, vcpus: int, schedule: str, instructions: int) -> dict:
    machine = {"cpu": "e500mc", "vcpus": vcpus, "schedule": schedule}
    if kind == "mips":
        return {"machine": machine, "guest": {"program": "loop", "iterations": 4_000_000_000},
                "limits": {"wall_seconds": 600, "instructions": instructions}}
    return {"machine": machine, "guest": {"program": "warn_storm", "iterations": 300},
            "debug": {"strategy": "illegal", "breakpoints": [{"at": "bp_target_a"}]},
            "limits": {"wall_seconds": 600}}


def measure(kind: str, vcpus: int, schedule: str, instructions: int) -> float:
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
        got = {}
        for schedule in ("free", "deterministic"):          # interleaved repeats: same machine noise
            got[schedule] = []
        for _ in range(args.repeat):
            for schedule in ("free", "deterministic"):
                got[schedule].append(measure(kind, args.vcpus, schedule, args.instructions))
        free, det = statistics.median(got["free"]), statistics.median(got["deterministic"])
        rows.append({"row": kind, "unit": unit, "free": free, "deterministic": det, "ratio": det / free,
                     "samples": got})
        print(f"{kind:6} {unit:8} free {free:10.1f}  deterministic {det:10.1f}  ratio {det / free:5.2f}x",
              flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"vcpus": args.vcpus, "repeat": args.repeat, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
