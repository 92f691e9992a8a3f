#!/usr/bin/env python3
"""Benchmark of the Linux guest (issue 25): the kernel and initramfs boot to init's reboot call on the
harness and under QEMU 7.2 in the same run (these machines are noisy: only ratios mean anything).

  boot         wall seconds to sys_reboot, harness / QEMU, with start-up counted apart: QEMU's is its
               time to the kernel's first instruction (a TCG plugin stops it there), the harness's its
               time until every vCPU process runs (the report's vcpus_started_seconds)
  instructions guest instructions to sys_reboot, harness / QEMU (target: within 5%)
  exits        exits per second of guest run time, by reason and level
  costliest    the ten exit kinds that cost the harness the most host time (where speed work should go)

Runs alternate --repeat times; medians are reported.

    .venv/bin/python tools/bench_linux.py [--cpu e500v2|e500mc] [--repeat 3] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cosim.guest_linux import LinuxBuildError, locate  # noqa: E402
from cosim.linux_oracle import STOP_SYMBOL, OracleError, flavour_for, run_harness, run_qemu  # noqa: E402
from cosim.machine.image import GuestImage  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json")
    ap.add_argument("--cpu", choices=["e500v2", "e500mc"], default="e500v2",
                    help="the CPU model, and so the kernel (linux or linux-e500mc)")
    args = ap.parse_args(argv)
    try:
        guest = locate(flavour_for(args.cpu))
    except LinuxBuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    stop = GuestImage.load(guest.vmlinux).symbol(STOP_SYMBOL)
    q_total, q_start, h_total, h_start = [], [], [], []
    counts = {}
    report = None
    try:
        for i in range(args.repeat):
            with tempfile.TemporaryDirectory(prefix="cosim-bench-") as d:
                t0 = time.monotonic()
                run_qemu(guest, 4, Path(d), args.cpu)                  # to the kernel's second instruction
                q_start.append(time.monotonic() - t0)
                t0 = time.monotonic()
                _, counts["qemu"] = run_qemu(guest, stop, Path(d), args.cpu)
                q_total.append(time.monotonic() - t0)
            t0 = time.monotonic()
            _, counts["harness"], report = run_harness(STOP_SYMBOL, args.cpu)
            h_total.append(time.monotonic() - t0)
            h_start.append(report["exits"]["over_time"].get("vcpus_started_seconds") or 0.0)
            print(f"run {i + 1}/{args.repeat}: QEMU {q_total[-1]:.2f} s (start-up {q_start[-1]:.2f} s), "
                  f"harness {h_total[-1]:.2f} s (start-up {h_start[-1]:.2f} s)", file=sys.stderr)
    except OracleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    med = statistics.median
    run_s = max(1e-9, med(h_total) - med(h_start))
    exits = report["exits"]["by_reason"]
    out = {
        "boot_seconds": {"qemu": round(med(q_total), 2), "qemu_startup": round(med(q_start), 2),
                         "harness": round(med(h_total), 2), "harness_startup": round(med(h_start), 2),
                         "ratio": round(med(h_total) / med(q_total), 2),
                         "ratio_without_startup": round(run_s / max(1e-9, med(q_total) - med(q_start)), 2)},
        "instructions": {**counts, "ratio": round(counts["harness"] / counts["qemu"], 4)},
        "mips": {"harness": round(counts["harness"] / run_s / 1e6, 1),
                 "qemu": round(counts["qemu"] / max(1e-9, med(q_total) - med(q_start)) / 1e6, 1)},
        "exits_per_second": {reason: {lv: round(n / run_s) for lv, n in levels.items()}
                             for reason, levels in exits.items()},
        "costliest": report["exits"]["costliest"],
    }
    b, n = out["boot_seconds"], out["instructions"]
    print(f"boot to {STOP_SYMBOL}: harness {b['harness']} s (start-up {b['harness_startup']} s), QEMU {b['qemu']} s "
          f"(start-up {b['qemu_startup']} s): {b['ratio']}x, {b['ratio_without_startup']}x without start-up")
    print(f"instructions: harness {n['harness']:,}, QEMU {n['qemu']:,}: ratio {n['ratio']} "
          f"({'within' if abs(n['ratio'] - 1) <= 0.05 else 'OUTSIDE'} 5%); MIPS harness {out['mips']['harness']}, "
          f"QEMU {out['mips']['qemu']}")
    print("exits per second of run time: " + "; ".join(
        f"{r} " + ", ".join(f"{lv} {v:,}" for lv, v in lvs.items()) for r, lvs in out["exits_per_second"].items()))
    print("costliest exit kinds:")
    for row in out["costliest"]:
        print(f"    {row['kind']:32} {row['count']:>9,}  {row['total_ms']:>9,} ms  {row['mean_us']:>7} us each")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
