#!/usr/bin/env python3
"""Build the Linux guest from Debian's packages: an e500 kernel (vmlinux) and an initramfs whose /init is
guests/linux/init.c, into a cache keyed by what goes in.

    tools/linux_guest.py            build (or find) it and print where it is
    tools/linux_guest.py --jobs 2   make's -j (default: the CPU count)
    tools/linux_guest.py --ship     also write guests/linux/prebuilt/ (the compressed build CI uses)
    tools/linux_guest.py --where    print the cache directory of the current key, built or not
    tools/linux_guest.py --flavour linux-e500mc   the e500mc kernel (corenet32_smp_defconfig)

What goes in (the key): the linux-source package's version, the flavour's defconfig and fragments
(guests/linux/e500.config over mpc85xx_smp_defconfig for `linux`, the e500v2 kernel; plus
guests/linux/e500mc.config over corenet32_smp_defconfig for `linux-e500mc`), guests/linux/init.c, the cross
compiler's version and this recipe's RECIPE number.
Needs the Debian packages linux-source-6.1, gcc-powerpc-linux-gnu, flex, bison, bc and libelf-dev (this
tool installs them with apt-get when run as root). A build takes about 17 minutes on 2 cores; the kernel's
build stamps (time, user, host) are fixed so the same inputs give the same vmlinux.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cosim.guest_linux import FLAVOURS, LinuxBuildError, build, cache_dir, current_key, ship  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", "-j", type=int, default=None, help="make -j (default: CPU count)")
    ap.add_argument("--ship", action="store_true", help="also write the compressed build to guests/linux/prebuilt/")
    ap.add_argument("--where", action="store_true", help="print the cache directory for the current inputs and exit")
    ap.add_argument("--force", action="store_true", help="rebuild even when the cache holds this key")
    ap.add_argument("--flavour", choices=sorted(FLAVOURS), default="linux",
                    help="which kernel: linux (e500v2, the default) or linux-e500mc")
    args = ap.parse_args(argv)
    try:
        if args.where:
            print(cache_dir(current_key(args.flavour)))
            return 0
        t0 = time.monotonic()
        out = build(jobs=args.jobs, force=args.force, log=lambda s: print(s, file=sys.stderr, flush=True),
                    which=args.flavour)
        print(f"linux guest: {out} ({time.monotonic() - t0:.0f} s)")
        if args.ship:
            print(f"shipped: {ship(out, args.flavour)}")
    except LinuxBuildError as e:
        print(f"linux_guest: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
