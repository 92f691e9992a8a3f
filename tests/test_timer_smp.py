"""Time on more than one vCPU (issue 21 item 5), on guests/dec_smp.S: every vCPU's decrementer
auto-reloads every 997 time-base ticks while the vCPUs pass a token back and forth, so where the ticks
land depends on how the vCPUs were scheduled.

- All-stop: while gdb holds any vCPU, no vCPU's time base moves (a real gdb, 2 vCPUs, a 1 s hold). The
  machine has one clock (every vCPU's retired instructions advance it; Linux needs the cores' time bases
  in step): a step of one thread with the others held by `scheduler-locking` runs only that vCPU, and
  every vCPU's time base moves by its instructions, in step.
- Under a seed (the deterministic schedule) the ticks land on the same instructions in every replay:
  the same interrupts at the same SRR0s, the same guest record (its hash of every tick's SRR0, in guest
  RAM, is in the record's digest), with a breakpoint on the decrementer handler or without one; another
  seed lands them elsewhere (so the comparison can fail)."""
import re
import shutil
import time

import pytest

from cosim import record
from cosim.config import parse_config
from cosim.machine.image import GuestImage, guest_path
from cosim.report import build_report
from cosim.supervisor import run_config

IMAGE = GuestImage.load(guest_path("dec_smp"))
ON_DEC = IMAGE.symbol("on_dec")


def _doc(vcpus=2, seed=None, breakpoints=(), cpu="e500mc"):
    machine = {"cpu": cpu, "vcpus": vcpus}
    if seed is not None:
        machine |= {"schedule": "deterministic", "seed": seed}
    return {"machine": machine, "guest": {"program": "dec_smp", "until": "done"},
            "debug": {"strategy": "illegal", "breakpoints": [{"at": b} for b in breakpoints]},
            "limits": {"wall_seconds": 120}}


def _seeded(tmp_path, name, seed, breakpoints, cpu):
    where = tmp_path / name
    r = build_report(run_config(parse_config(_doc(seed=seed, breakpoints=breakpoints, cpu=cpu), "dec_smp.toml"),
                                record_dir=str(where)))
    assert r["ok"], (r["failed"], {k: r["invariants"][k] for k in r["failed"]})
    assert r["invariants"]["async-interrupts-delivered-once"]["ok"]
    return r, record.load(str(where))


@pytest.mark.parametrize("cpu, breakpoints", [("e500mc", ()), ("e500v2", ()), ("e500mc", ("on_dec",))])
def test_seeded_ticks_land_on_the_same_instructions_in_every_replay(tmp_path, cpu, breakpoints):
    (a, ra), (b, rb) = (_seeded(tmp_path, n, 5, breakpoints, cpu) for n in ("a", "b"))
    ticks = a["interrupts_delivered"]["by_vcpu"]
    assert all(sum(v["decrementer"].values()) >= 10 for v in ticks)       # both vCPUs ticked
    assert b["interrupts_delivered"]["by_vcpu"] == ticks
    assert rb["digest_hash"] == ra["digest_hash"]
    assert record.compare(str(tmp_path / "a"), str(tmp_path / "b")) is None
    if breakpoints:
        assert a["debugger_hits"]["total"] == sum(sum(v["decrementer"].values()) for v in ticks)
    other, ro = _seeded(tmp_path, "other", 6, breakpoints, cpu)
    assert ro["digest_hash"] != ra["digest_hash"]


def _time_bases(gdb) -> list[int]:
    text = gdb.monitor("info clock")
    return [int(tb.replace(",", "")) for tb in re.findall(r"time base ([\d,]+)", text)]


@pytest.mark.skipif(shutil.which("gdb-multiarch") is None, reason="gdb-multiarch missing")
def test_all_stop_no_clock_advances_while_any_vcpu_is_held(tmp_path):
    from cosim.gdb_harness import GdbServer, GdbSession
    server = GdbServer(parse_config(_doc(), "dec_smp.toml"), tmp_path)
    gdb = None
    try:
        gdb = GdbSession(server)
        gdb.cmd(f"hbreak *{ON_DEC:#x}")
        stop = gdb.resume()                                  # the first tick of either vCPU
        assert int(stop["frame"]["addr"], 16) == ON_DEC
        gdb.cmd("delete")
        first, icount = _time_bases(gdb), server.instructions()
        assert len(first) == 2 and all(first)                # both ran before the world stopped
        assert first[0] == first[1]                          # one clock: the time bases in step
        time.sleep(1.0)
        assert _time_bases(gdb) == first and server.instructions() == icount
        # one thread steps, the other stays held: only the stepping vCPU runs, both time bases follow it
        held = 2 if int(stop["thread-id"]) == 1 else 1
        stepping = 3 - held
        before = server.instructions()
        gdb.cmd("set scheduler-locking step")
        gdb.cmd(f"thread {stepping}")
        for _ in range(3):
            gdb.resume("-exec-step-instruction")
        now, after = _time_bases(gdb), server.instructions()
        assert after[held - 1] == before[held - 1] and after[stepping - 1] == before[stepping - 1] + 3
        assert now == [first[0] + 3, first[1] + 3]
        report = gdb.finish()
    finally:
        if gdb is not None:
            gdb.close()
        server.close()
    assert report["ok"], (report["failed"], {k: report["invariants"][k] for k in report["failed"]})
    assert report["invariants"]["async-interrupts-delivered-once"]["ok"]


@pytest.mark.parametrize("shared", [False, True])
def test_time_base_writes_one_vcpu_honours_them_several_ignore_them(shared):
    """One vCPU: mtspr TBL/TBU set its time base, as QEMU's cpu_ppc_store_tbl does. Several vCPUs share
    one clock, as a KVM guest's cores share the host's time base: their writes are ignored, as KVM
    ignores them ("All guest timebase writes are ignored"); honoured, Linux's software time-base sync
    left the cores ~7,000 ticks apart on a loaded host and a 2-vCPU boot stalled with jiffies stopped."""
    import numpy as np

    from cosim.cpu_models import CPU_MODELS
    from cosim.isa import SPR
    from cosim.vcpu.core import Core
    from cosim.vcpu.engine import Engine
    from cosim.vcpu.runpage import RunPages

    ram = np.zeros(1 << 20, np.uint8)
    pages = RunPages.create(2 if shared else 1)
    try:
        engine = Engine(ram.ctypes.data, ram.size, pages.address_of(0, "instructions"),
                        clock_address=pages.clock_address if shared else None)
        core = Core(engine, pages.record(0), CPU_MODELS["e500v2"], ram.view(">u4"))
        core.reset(0x1000, pir=0)
        before = engine.timebase
        core.write_spr(SPR["TBL"], 0)
        core.write_spr(SPR["TBU"], 0x1234)
        core.write_spr(SPR["TBL"], 0x5678)
        if shared:
            assert engine.timebase == before
        else:
            assert engine.timebase == 0x1234_0000_5678
        del core, engine
    finally:
        pages.close()
