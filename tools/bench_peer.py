#!/usr/bin/env python3
"""Guest MIPS side by side with the peer: QEMU TCG (`qemu-system-ppc -M ppce500 -cpu e500mc`) and the
harness, the same ELF (guests/loop.elf), in one run, rounds interleaved so machine noise hits both.

qemu     QEMU loads loop.elf with `-kernel` and starts it stopped (-S) with its gdbstub on a private
         unix socket (cosim/qemu.py). Through the gdbstub: cfg_iterations is set to 2^31 - 1 (the
         guest never reaches its halt, which under QEMU would be a plain system call: QEMU is no
         hypervisor), then `c`, a fixed wall time (--seconds), Ctrl-C, and the guest's own counter
         cnt_iter[0] is read, as a gdb user would. MIPS = cnt_iter x instructions per iteration / time
         (boot is ~100 instructions; the time includes one RSP round trip, well under a millisecond).
harness  `cosim.vcpu.local.run_local("loop", cpu, N)` (the vCPU core with the kernel's exit handler
         called in process, guest RAM in shared memory), N sized to run about --seconds; MIPS from
         the engine's exact instruction count and run_local's own time.
+bp      the harness again with a breakpoint planted (the `illegal` strategy's word) on the loop's
         page but never executed (on `loop_body_end`): a patched page must not slow the guest.

Targets: harness >= 1.0 x QEMU; planted never-hit breakpoint >= 0.95 x none. Instructions per
iteration are the harness's own count (13 on loop), the same code QEMU runs.

    .venv/bin/python tools/bench_peer.py [--seconds 1.0] [--rounds 3] [--cpu e500mc] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cosim.machine.image import GuestImage, guest_path  # noqa: E402
from cosim.qemu import QemuGuest, qemu_available  # noqa: E402
from cosim.strategies import strategy  # noqa: E402
from cosim.vcpu.local import run_local  # noqa: E402

TARGET_PEER = 1.0
TARGET_BP = 0.95


def harness(iterations: int, cpu: str, planted: bool = False) -> dict:
    def plant(core, image, ram):
        ram.write_word(image.symbol("loop_body_end"), strategy("illegal").word)
    r = run_local("loop", cpu, iterations, setup=plant if planted else None)
    if r.counters["cnt_iter"][0] != iterations:
        raise SystemExit(f"harness run{' with a planted breakpoint' if planted else ''} miscounted: "
                         f"{r.counters['cnt_iter'][0]} of {iterations} iterations")
    return {"mips": r.mips, "instructions": r.instructions, "seconds": r.seconds}


def qemu(image: GuestImage, seconds: float, per_iter: float) -> dict:
    with QemuGuest(str(image.path)) as q:
        q.rsp.write_word(image.symbol("cfg_iterations"), 0x7FFFFFFF)
        t0 = time.perf_counter()
        q.run_for(seconds)
        elapsed = time.perf_counter() - t0
        done = q.rsp.read_word(image.percpu_address("cnt_iter", 0))
    return {"mips": done * per_iter / elapsed / 1e6, "iterations": done, "seconds": elapsed}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=1.0, help="time per measurement (default 1.0)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds, medians reported (default 3)")
    ap.add_argument("--cpu", default="e500mc", choices=["e500v2", "e500mc"], help="harness CPU model")
    ap.add_argument("--json", metavar="PATH", help="also write the medians and ratios as JSON")
    ap.add_argument("--strict", action="store_true", help="exit 1 if a ratio misses its target")
    args = ap.parse_args(argv)
    if args.seconds <= 0 or args.rounds < 1:
        ap.error("--seconds and --rounds must be positive")
    why = qemu_available()
    if why:
        print(f"bench_peer: skipped: {why}")
        return 0
    image = GuestImage.load(guest_path("loop"))
    probe = harness(100_000, args.cpu)
    per_iter = (probe["instructions"] - harness(1, args.cpu)["instructions"]) / (100_000 - 1)
    iterations = max(1000, int(probe["mips"] * 1e6 * args.seconds / per_iter))
    runs: dict[str, list[float]] = {"qemu": [], "harness": [], "harness+bp": []}
    for k in range(args.rounds):
        runs["qemu"].append(qemu(image, args.seconds, per_iter)["mips"])
        runs["harness"].append(harness(iterations, args.cpu)["mips"])
        runs["harness+bp"].append(harness(iterations, args.cpu, planted=True)["mips"])
        print(f"round {k + 1}/{args.rounds}: " + ", ".join(f"{n} {v[-1]:.0f}" for n, v in runs.items()),
              file=sys.stderr, flush=True)
    med = {n: statistics.median(v) for n, v in runs.items()}
    peer = med["harness"] / med["qemu"]
    bp = med["harness+bp"] / med["harness"]
    print(f"loop guest, {per_iter:.0f} instructions per iteration, medians of {args.rounds} rounds "
          f"of ~{args.seconds:g} s (harness CPU model {args.cpu}; QEMU -cpu e500mc TCG)")
    print(f"{'':12}{'MIPS':>10}   all rounds")
    for n, v in runs.items():
        print(f"{n:12}{med[n]:10.1f}   " + " ".join(f"{x:.1f}" for x in v))
    ok_peer, ok_bp = peer >= TARGET_PEER, bp >= TARGET_BP
    print(f"harness / QEMU        {peer:.2f} (target >= {TARGET_PEER}): {'PASS' if ok_peer else 'FAIL'}")
    print(f"planted bp / none     {bp:.2f} (target >= {TARGET_BP}): {'PASS' if ok_bp else 'FAIL'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"medians": med, "runs": runs, "harness_over_qemu": peer,
                                               "planted_over_none": bp}, indent=2) + "\n")
    return 1 if args.strict and not (ok_peer and ok_bp) else 0


if __name__ == "__main__":
    sys.exit(main())
