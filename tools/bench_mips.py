#!/usr/bin/env python3
"""Guest instructions per second: the `loop` guest on one vCPU of the harness versus raw unicorn
running the same loop from the same ELF.

harness  `cosim.vcpu.local.run_local("loop", cpu, N)`: the whole guest (mini-kernel boot, the loop,
         HALT) on the vCPU core in this process, guest RAM in shared memory, the kernel's exit handler
         called directly. Instructions are counted exactly by the engine's C block hook into the run
         page; the time is run_local's own (from the first instruction to the halt, excluding RAM and
         image setup). The boot's few dozen privileged-instruction exits are included (they are
         tens of microseconds next to a run of a second or so).
raw      a plain `Uc(UC_ARCH_PPC, UC_MODE_PPC32 | UC_MODE_BIG_ENDIAN)` with the ELF's PT_LOAD segments
         written at their addresses in 16 MiB mapped at 0, MSR = 0x4000 (problem state), no hooks. The
         mini-kernel's privileged boot cannot run there, so only main's loop body runs: from
         `loop_body_start` to `loop_body_end`, with the registers it needs set by hand as the boot and
         main's prologue would (r1 = top of vCPU 0's stack, r2 = &pcpu_area[0], r30 = iterations,
         r31 = &cnt_iter[0]). Instructions = iterations x instructions per iteration, where the latter
         is counted by single-stepping (count=1) one iteration on a separate Uc first; the loop is
         deterministic (bl bp_target; 7 instructions in bp_target; 5 to count and branch), and the
         counters cnt_iter and cnt_hits are checked after the timed run.

Both run the same number of iterations (--iterations), --repeat times each; the best run of each is
reported. Target: harness >= 0.5 x raw (PASS/FAIL printed; exit status 1 on FAIL only with --strict).
(The raw floor is unicorn's default model in real mode, where every store takes the softmmu slow
path; the harness no longer does, so it now runs several times faster than this floor. The peer that
matters is QEMU: tools/bench_peer.py.)

smp      aggregate MIPS of 1, 2 (and --vcpus N) vCPU processes running `loop` at once on ONE shared
         guest RAM (each a vCPU core with its own PIR, as `run_local(attach=...)`: the silicon without
         the kernel and userspace processes), started together at a barrier; aggregate = the sum of
         their instructions / the longest one's time. Target: 2 vCPUs >= 1.8 x 1 vCPU. On a machine
         with fewer cores than vCPUs the ratio is capped by the cores, and it says so.

    .venv/bin/python tools/bench_mips.py [--iterations N] [--repeat R] [--cpu e500mc] [--vcpus N]
                                         [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

from unicorn import UC_ARCH_PPC, UC_MODE_BIG_ENDIAN, UC_MODE_PPC32, UC_PROT_ALL, Uc
from unicorn import ppc_const as P

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cosim.machine.guest_ram import GuestRAM  # noqa: E402
from cosim.machine.image import GuestImage, guest_path  # noqa: E402
from cosim.vcpu.local import run_local  # noqa: E402

TARGET_RATIO = 0.5
SMP_TARGET = 1.8
RAM_SIZE = 16 << 20
MSR_PR = 0x4000
STACK_SIZE = 16 << 10


def harness_run(iterations: int, cpu: str) -> dict:
    r = run_local("loop", cpu, iterations)
    if r.exit_code != 0 or r.fault is not None:
        raise SystemExit(f"harness run failed: exit {r.exit_code}, fault {r.fault}")
    if r.counters["cnt_iter"][0] != iterations or r.counters["cnt_hits"][0] != iterations:
        raise SystemExit(f"harness run miscounted: {r.counters['cnt_iter'][0]} iterations")
    return {"instructions": r.instructions, "seconds": r.seconds, "mips": r.mips, "exits": r.exits}


def _smp_worker(ram_name: str, ram_size: int, pir: int, cpu: str, barrier, out) -> None:
    def wait(core, image, ram):
        barrier.wait(60)
    r = run_local("loop", cpu, None, ram_size=ram_size, attach=ram_name, pir=pir, setup=wait)
    out.put((pir, r.instructions, r.seconds, r.exit_code, r.counters["cnt_iter"][0]))


def smp_run(vcpus: int, iterations: int, cpu: str) -> dict:
    """`vcpus` processes running loop on one shared guest RAM; aggregate MIPS."""
    ctx = mp.get_context("spawn")
    image = GuestImage.load(guest_path("loop"))
    ram = GuestRAM.create(RAM_SIZE)
    try:
        image.load_into(ram)
        ram.write_word(image.symbol("cfg_iterations"), iterations)
        barrier, out = ctx.Barrier(vcpus), ctx.Queue()
        procs = [ctx.Process(target=_smp_worker, args=(ram.name, ram.size, i, cpu, barrier, out))
                 for i in range(vcpus)]
        for p in procs:
            p.start()
        results = [out.get(timeout=600) for _ in procs]
        for p in procs:
            p.join(60)
    finally:
        ram.close()
    for pir, _, _, code, done in results:
        if code != 0 or done != iterations:
            raise SystemExit(f"smp run: vCPU {pir} exit {code}, {done} iterations of {iterations}")
    instructions = sum(r[1] for r in results)
    seconds = max(r[2] for r in results)
    return {"vcpus": vcpus, "instructions": instructions, "seconds": seconds,
            "mips": instructions / seconds / 1e6}


class RawLoop:
    """The loop body of guests/loop.elf on a bare unicorn."""

    def __init__(self, image: GuestImage):
        self.image = image
        self.start = image.symbol("loop_body_start")
        self.until = image.symbol("loop_body_end")
        self.cnt_iter = image.symbol("cnt_iter")
        self.cnt_hits = image.symbol("cnt_hits")

    def machine(self, iterations: int) -> Uc:
        uc = Uc(UC_ARCH_PPC, UC_MODE_PPC32 | UC_MODE_BIG_ENDIAN)
        uc.mem_map(0, RAM_SIZE, UC_PROT_ALL)
        for seg in self.image.segments:         # mem_map zero-fills: bss is already zero
            uc.mem_write(seg.addr, seg.data)
        uc.reg_write(P.UC_PPC_REG_MSR, MSR_PR)
        im = self.image
        uc.reg_write(P.UC_PPC_REG_1, im.symbol("kernel_stacks") + STACK_SIZE - 16)
        uc.reg_write(P.UC_PPC_REG_2, im.symbol("pcpu_area"))   # pir = 0, pir * 4 = 0 (zeroed area)
        uc.reg_write(P.UC_PPC_REG_30, iterations)
        uc.reg_write(P.UC_PPC_REG_31, self.cnt_iter)
        return uc

    def instructions_per_iteration(self) -> int:
        uc = self.machine(1)
        pc, steps = self.start, 0
        while pc != self.until:
            uc.emu_start(pc, self.until, count=1)
            pc = uc.reg_read(P.UC_PPC_REG_PC) & 0xFFFFFFFF
            steps += 1
            if steps > 10_000:
                raise SystemExit("single-stepping one iteration did not reach loop_body_end")
        return steps

    def run(self, iterations: int, per_iter: int) -> dict:
        uc = self.machine(iterations)
        t0 = time.perf_counter()
        uc.emu_start(self.start, self.until)
        seconds = time.perf_counter() - t0
        word = lambda addr: int.from_bytes(uc.mem_read(addr, 4), "big")  # noqa: E731
        if word(self.cnt_iter) != iterations or word(self.cnt_hits) != iterations:
            raise SystemExit(f"raw run miscounted: cnt_iter {word(self.cnt_iter)}, "
                             f"cnt_hits {word(self.cnt_hits)}, expected {iterations}")
        instructions = iterations * per_iter
        return {"instructions": instructions, "seconds": seconds, "mips": instructions / seconds / 1e6}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=10_000_000, help="loop iterations (default 10M)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each, best reported (default 3)")
    ap.add_argument("--cpu", default="e500mc", choices=["e500v2", "e500mc"], help="harness CPU model")
    ap.add_argument("--json", metavar="PATH", help="also write {harness_mips, raw_mips, ratio} here")
    ap.add_argument("--vcpus", type=int, default=2, help="largest vCPU count for the SMP part (default 2)")
    ap.add_argument("--no-smp", action="store_true", help="skip the SMP part")
    ap.add_argument("--strict", action="store_true", help="exit 1 if a ratio is below its target")
    args = ap.parse_args(argv)
    if args.iterations < 1 or args.repeat < 1:
        ap.error("--iterations and --repeat must be positive")

    raw = RawLoop(GuestImage.load(guest_path("loop")))
    per_iter = raw.instructions_per_iteration()
    harness_runs, raw_runs = [], []
    for _ in range(args.repeat):               # interleaved, so drift in machine load hits both
        harness_runs.append(harness_run(args.iterations, args.cpu))
        raw_runs.append(raw.run(args.iterations, per_iter))
    h = max(harness_runs, key=lambda r: r["mips"])
    w = max(raw_runs, key=lambda r: r["mips"])
    ratio = h["mips"] / w["mips"]
    verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"

    print(f"loop guest, {args.iterations:,} iterations, {per_iter} instructions per iteration, "
          f"best of {args.repeat}")
    print(f"{'':10}{'MIPS':>10}{'seconds':>10}{'instructions':>16}   all runs (MIPS)")
    for name, best, runs in (("harness", h, harness_runs), ("raw", w, raw_runs)):
        print(f"{name:10}{best['mips']:10.1f}{best['seconds']:10.3f}{best['instructions']:16,}   "
              + " ".join(f"{r['mips']:.1f}" for r in runs))
    print(f"ratio {ratio:.3f} (target >= {TARGET_RATIO}): {verdict}  [harness on {args.cpu}; "
          f"harness instructions per iteration {h['instructions'] / args.iterations:.4f}]")
    result = {"harness_mips": h["mips"], "raw_mips": w["mips"], "ratio": ratio}
    smp_ok = True
    if not args.no_smp:
        counts = sorted({1, 2, args.vcpus} - {0})
        smp_iters = max(1, args.iterations // 2)
        runs = {n: [] for n in counts}
        for _ in range(args.repeat):
            for n in counts:
                runs[n].append(smp_run(n, smp_iters, args.cpu))
        best = {n: max(rs, key=lambda r: r["mips"]) for n, rs in runs.items()}
        cores = len(os.sched_getaffinity(0))
        print(f"\nSMP: loop on 1..{max(counts)} vCPU processes over one shared guest RAM, {smp_iters:,} "
              f"iterations each, best of {args.repeat} ({cores} cores here)")
        print(f"{'vCPUs':>6}{'MIPS':>10}{'x 1 vCPU':>10}   all runs (MIPS)")
        for n in counts:
            print(f"{n:6d}{best[n]['mips']:10.1f}{best[n]['mips'] / best[1]['mips']:10.2f}   "
                  + " ".join(f"{r['mips']:.1f}" for r in runs[n]))
        scale2 = best[2]["mips"] / best[1]["mips"] if 2 in best else 0.0
        smp_ok = scale2 >= SMP_TARGET
        note = "" if cores >= 2 else " (fewer than 2 cores: not meaningful)"
        print(f"2 vCPUs / 1 vCPU {scale2:.2f} (target >= {SMP_TARGET}): {'PASS' if smp_ok else 'FAIL'}{note}")
        result["smp"] = {str(n): best[n]["mips"] for n in counts}
        result["smp_scale_2"] = scale2
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 1 if args.strict and (verdict == "FAIL" or not smp_ok) else 0


if __name__ == "__main__":
    sys.exit(main())
