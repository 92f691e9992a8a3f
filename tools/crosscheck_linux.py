#!/usr/bin/env python3
"""QEMU as the oracle for the Linux guest (cosim/linux_oracle.py): the same vmlinux and initramfs under
QEMU 7.2 and on the harness up to init's reboot call; the transcripts compared line by line (masked
lines listed with their reason), guest instructions and wall time as ratios, and where the harness's
time goes (the costliest exit kinds).

    .venv/bin/python tools/crosscheck_linux.py
    .venv/bin/python tools/crosscheck_linux.py --json out.json --tolerance 0.05

Exit status: 0 when the transcripts agree and the instruction ratio is within --tolerance (default 5%),
1 otherwise, 2 when QEMU, the Linux guest or a C compiler is missing.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cosim.guest_linux import LinuxBuildError  # noqa: E402
from cosim.linux_oracle import OracleError, compare  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tolerance", type=float, default=0.05, help="allowed |instruction ratio - 1|")
    ap.add_argument("--json", help="write the comparison here")
    args = ap.parse_args(argv)
    try:
        r = compare()
    except (OracleError, LinuxBuildError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t, n, s = r["transcript"], r["instructions"], r["seconds"]
    good = t["same"] and abs(n["ratio"] - 1) <= args.tolerance and r["harness_ok"]
    print(f"Linux {r['kernel']} on {r['cpu']} until {r['stop']}: transcript "
          f"{'identical' if t['same'] else 'DIFFERS'} ({t['lines']} lines, {len(t['masked'])} masked); "
          f"instructions QEMU {n['qemu']:,} harness {n['harness']:,} ratio {n['ratio']:.4f}; wall QEMU "
          f"{s['qemu']} s harness {s['harness']} s ratio {s['ratio']} (start-up included) {'ok' if good else 'FAIL'}")
    for d in t["different"]:
        print(f"    differs at QEMU line {d['qemu_line']}: QEMU {d['qemu']!r} harness {d['harness']!r}")
    for d in t["masked"]:
        print(f"    masked ({d['why']}): QEMU {d['qemu']!r} harness {d['harness']!r}")
    print("costliest exit kinds on the harness:")
    for row in r["costliest"]:
        print(f"    {row['kind']:32} {row['count']:>9,}  {row['total_ms']:>9,} ms  {row['mean_us']:>7} us each")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1) + "\n")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
