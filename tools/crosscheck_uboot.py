#!/usr/bin/env python3
"""QEMU as the oracle for Debian's U-Boot (cosim/uboot_oracle.py): the serial transcripts compared line
by line (wall-time lines masked and listed) and the guest instructions until U-Boot first runs the
typed command's handler, under QEMU (a TCG plugin's count) and under the harness, per CPU model.

    .venv/bin/python tools/crosscheck_uboot.py                    # both CPU models, `version`
    .venv/bin/python tools/crosscheck_uboot.py --cpu e500mc --command bdinfo --json out.json

Exit status: 0 when every transcript agrees and every count is within --tolerance (default 2%), 1
otherwise, 2 when QEMU, U-Boot or a C compiler is missing.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cosim.uboot_oracle import OracleError, compare  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu", action="append", choices=["e500mc", "e500v2"], help="CPU model(s) (default both)")
    ap.add_argument("--command", default="version", help="the U-Boot command typed at the prompt")
    ap.add_argument("--tolerance", type=float, default=0.02, help="allowed |ratio - 1| of the counts")
    ap.add_argument("--json", help="write the comparison here")
    args = ap.parse_args(argv)
    rows = []
    try:
        for cpu in args.cpu or ["e500mc", "e500v2"]:
            rows.append(compare(cpu, args.command))
    except OracleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ok = True
    for r in rows:
        t, n, s = r["transcript"], r["instructions"], r["seconds"]
        good = t["same"] and abs(n["ratio"] - 1) <= args.tolerance and r["harness_ok"]
        ok &= good
        print(f"{r['cpu']:7} until {r['command']} ({r['stop']}): transcript "
              f"{'identical' if t['same'] else 'DIFFERS'} ({t['lines']} lines, {len(t['masked'])} masked), "
              f"instructions QEMU {n['qemu']:,} harness {n['harness']:,} ratio {n['ratio']:.4f}; wall "
              f"QEMU {s['qemu']} s harness {s['harness']} s (start-up included) {'ok' if good else 'FAIL'}")
        for d in t["different"] + [dict(m, masked=True) for m in t["masked"]]:
            print(f"    line {d['line']}{' (masked)' if d.get('masked') else ''}: QEMU {d['qemu']!r} "
                  f"harness {d['harness']!r}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
