#!/usr/bin/env python3
"""Build the guest programs: every PROGRAM.S linked with kernel.S into PROGRAM.elf; the stand-alone
programs (their own vectors, no mini kernel) are linked alone.

    python guests/build.py                 rebuild guests/*.elf in place
    python guests/build.py --out DIR       build into DIR instead
    python guests/build.py --check         exit 1 if a committed ELF differs from a fresh build

The build is deterministic: sources are passed to the assembler by their bare names with guests/
as the working directory, no build-id, no debug info, no timestamps; building twice (anywhere)
gives byte-identical ELFs. Cross tools default to powerpc-linux-gnu-{as,ld}; set CROSS_COMPILE to
use another prefix.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

GUESTS = Path(__file__).resolve().parent
PROGRAMS = ("loop", "warn_storm", "smp_workers", "selfcheck", "guest_iac", "atomics")
STANDALONE = ("irq_table", "foreign_traps", "foreign_debug", "own_code", "spe", "spin_release", "dec_step", "vmap", "dec_same", "dec_smp", "idle_smp", "doorbell", "spin_alone")
KERNEL = "kernel.S"
LINKER_SCRIPT = "guest.ld"
AS_FLAGS = ["-a32", "-mbig", "-me500mc", "-mregnames"]
LD_FLAGS = ["-T", LINKER_SCRIPT, "--build-id=none", "-nostdlib", "-static",
            "-z", "max-page-size=0x1000", "-z", "common-page-size=0x1000", "-z", "noexecstack"]


def tool(name: str) -> str:
    return os.environ.get("CROSS_COMPILE", "powerpc-linux-gnu-") + name


def have_tools() -> bool:
    return all(shutil.which(tool(t)) for t in ("as", "ld"))


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, cwd=GUESTS, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"build.py: command failed ({proc.returncode}): {' '.join(cmd)}\n"
                         f"{proc.stdout}{proc.stderr}")


def build_all(out_dir: Path, programs=PROGRAMS + STANDALONE) -> dict[str, Path]:
    """Assemble and link every program into *out_dir*; returns {name: elf path}."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {}
    with tempfile.TemporaryDirectory(prefix="cosim-guest-build-") as tmp:
        kernel_o = str(Path(tmp) / "kernel.o")
        _run([tool("as"), *AS_FLAGS, "-o", kernel_o, KERNEL])
        for name in programs:
            obj = str(Path(tmp) / f"{name}.o")
            elf = out_dir / f"{name}.elf"
            _run([tool("as"), *AS_FLAGS, "-o", obj, f"{name}.S"])
            tmp_elf = Path(tmp) / f"{name}.elf"
            objs = [obj] if name in STANDALONE else [kernel_o, obj]
            _run([tool("ld"), *LD_FLAGS, "-o", str(tmp_elf), *objs])
            data = tmp_elf.read_bytes()
            if not elf.exists() or elf.read_bytes() != data:  # leave unchanged files untouched
                elf.write_bytes(data)
            result[name] = elf
    return result


def stale(programs=PROGRAMS + STANDALONE) -> list[str]:
    """Names of programs whose committed ELF is missing or differs from a fresh build."""
    with tempfile.TemporaryDirectory(prefix="cosim-guest-check-") as tmp:
        fresh = build_all(Path(tmp), programs)
        bad = []
        for name, path in fresh.items():
            committed = GUESTS / f"{name}.elf"
            if not committed.exists() or committed.read_bytes() != path.read_bytes():
                bad.append(name)
        return bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="exit 1 if any committed ELF differs from a fresh build")
    ap.add_argument("--out", type=Path, default=GUESTS, help="output directory (default: guests/)")
    known = PROGRAMS + STANDALONE
    ap.add_argument("programs", nargs="*", default=list(known), help="programs (default: all)")
    args = ap.parse_args(argv)
    unknown = sorted(set(args.programs) - set(known))
    if unknown:
        ap.error(f"unknown program(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if not have_tools():
        print(f"build.py: {tool('as')} / {tool('ld')} not found "
              "(Debian: apt-get install binutils-powerpc-linux-gnu)", file=sys.stderr)
        return 2
    if args.check:
        bad = stale(args.programs)
        if bad:
            print("build.py: stale guest ELF(s), run `python guests/build.py` and commit: "
                  + ", ".join(f"guests/{b}.elf" for b in bad), file=sys.stderr)
            return 1
        print(f"build.py: {len(args.programs)} guest ELF(s) up to date")
        return 0
    for name, path in build_all(args.out, args.programs).items():
        print(f"{name:12s} -> {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
