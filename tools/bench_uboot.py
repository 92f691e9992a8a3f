#!/usr/bin/env python3
"""Benchmark of the real guest (issue 19): Debian's U-Boot on the ppce500 board, beside floors measured
in the same run (these machines are noisy: only ratios mean anything).

  MMIO exit        vCPU -> userspace's device model -> vCPU, p50 of every MMIO exit of a boot to the
                   prompt plus `version`, beside a raw pyzmq PUSH/PULL ring of the same 2 hops
                   (tools/bench_cosim.py's floor). Target: at most 1.3x.
  boot             wall seconds of the same run (start-up of the processes included, and reported
                   separately: the run's time to its first MMIO exit minus the guest's own time is not
                   separable, so start-up is measured as the run of a guest that halts at once), beside
                   QEMU 7.2 booting the same firmware to the same command (cosim/uboot_oracle.py)
  coalesced MMIO   the same boot with the UART's stores posted (machine.coalesced_mmio): kept as the
                   default only if it pays off here

Measurements alternate --repeat times; medians are reported.

    .venv/bin/python tools/bench_uboot.py [--repeat 5] [--json PATH]
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_cosim import raw_ring  # noqa: E402

from cosim.config import load_config, parse_config  # noqa: E402
from cosim.report import build_report  # noqa: E402
from cosim.supervisor import run_config  # noqa: E402
from cosim.uboot_oracle import OracleError, run_qemu  # noqa: E402
from cosim.machine.uboot import RELOC_OFF_256M, commands  # noqa: E402
from cosim.machine.image import FIRMWARE  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def boot(coalesced: bool) -> dict:
    cfg = load_config(ROOT / "configs" / "uboot.toml", ["serial.echo=false", f"machine.coalesced_mmio={str(coalesced).lower()}"])
    t0 = time.monotonic()
    r = build_report(run_config(cfg))
    wall = time.monotonic() - t0
    if not r["ok"]:
        raise SystemExit(f"U-Boot run failed: {r['failed']}")
    b = r["board"]
    return {"wall": wall, "mmio_p50_us": b["mmio_round_trip_us"]["p50"], "waited": b["mmio_round_trip_us"]["samples"],
            "mmio_exits": b["mmio_exits"], "instructions": r["instructions"]}


def startup() -> float:
    """A run whose guest halts at once on the same board: the processes' start and teardown."""
    doc = {"machine": {"cpu": "e500mc", "board": "ppce500"}, "guest": {"program": "loop", "iterations": 1}}
    t0 = time.monotonic()
    run_config(parse_config(doc, "startup.toml"))
    return time.monotonic() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    stop = commands(Path(FIRMWARE["u-boot"][0]))["version"] + RELOC_OFF_256M
    rows: dict[str, list] = {"floor_p50_us": [], "plain": [], "coalesced": [], "qemu_s": [], "startup_s": []}
    for i in range(args.repeat):
        ns = raw_ring(2, 2000, "ipc")
        rows["floor_p50_us"].append(statistics.median(ns) / 1000)
        rows["plain"].append(boot(False))
        rows["coalesced"].append(boot(True))
        try:
            with tempfile.TemporaryDirectory() as d:
                t0 = time.monotonic()
                run_qemu("e500mc", stop, Path(d))
                rows["qemu_s"].append(time.monotonic() - t0)
        except OracleError as e:
            print(f"QEMU: {e}", file=sys.stderr)
        rows["startup_s"].append(startup())
        print(f"round {i + 1}/{args.repeat} done", file=sys.stderr)
    med = statistics.median

    def m(kind, key):
        return med(x[key] for x in rows[kind])
    floor = med(rows["floor_p50_us"])
    out = {
        "floor_p50_us": round(floor, 1),
        "mmio_p50_us": round(m("plain", "mmio_p50_us"), 1),
        "mmio_p50_vs_floor": round(m("plain", "mmio_p50_us") / floor, 2),
        "boot_wall_s": round(m("plain", "wall"), 2),
        "startup_s": round(med(rows["startup_s"]), 2),
        "qemu_wall_s": round(med(rows["qemu_s"]), 2) if rows["qemu_s"] else None,
        "coalesced_boot_wall_s": round(m("coalesced", "wall"), 2),
        "coalesced_mmio_p50_us": round(m("coalesced", "mmio_p50_us"), 1),
        "coalesced_waited_exits": m("coalesced", "waited"),
        "plain_waited_exits": m("plain", "waited"),
        "raw": rows,
    }
    if out["qemu_wall_s"]:
        out["boot_vs_qemu"] = round(out["boot_wall_s"] / out["qemu_wall_s"], 1)
        out["boot_minus_startup_vs_qemu"] = round((out["boot_wall_s"] - out["startup_s"]) / out["qemu_wall_s"], 1)
    out["coalesced_vs_plain"] = round(out["coalesced_boot_wall_s"] / out["boot_wall_s"], 3)
    for k, v in out.items():
        if k != "raw":
            print(f"{k:28} {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
