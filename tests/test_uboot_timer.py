"""Debugging U-Boot while its decrementer runs (issue 21 items 1 and 4), on Debian's U-Boot for QEMU's
ppce500 board: the decrementer interrupts it every 400,000 time-base ticks (1 ms at 400 MHz, one tick per
guest instruction).

- A real gdb-multiarch: stopped in do_sleep, `set $decr = 1` makes the decrementer expire during the
  next instruction. By default (QEMU's gdbstub flags NOIRQ|NOTIMER) every step executes one instruction
  and the interrupt is taken once gdb resumes, none lost; after `maintenance packet Qqemu.sstep=0x1`
  the step after the expiry stops at the first instruction of U-Boot's decrementer handler, which is
  where IVPR | IVOR10 (read through gdb, as U-Boot set them) point.
- A scripted breakpoint on that first instruction, planted at the prompt: `sleep 1` hits it once per
  tick, and takes exactly the ticks it takes without the breakpoint."""
import shutil
from pathlib import Path

import pytest

from cosim.config import parse_config
from cosim.machine.image import FIRMWARE
from cosim.machine.uboot import DEC_VECTOR_256M, RELOC_OFF_256M, commands
from cosim.report import build_report
from cosim.strategies import STRATEGIES
from cosim.supervisor import run_config

UBOOT = Path(FIRMWARE["u-boot"][0])
pytestmark = pytest.mark.skipif(not UBOOT.exists(), reason="Debian's u-boot-qemu is not installed (./setup.sh)")
needs_gdb = pytest.mark.skipif(shutil.which("gdb-multiarch") is None, reason="gdb-multiarch missing")
SLEEP = [{"after": "Hit any key to stop autoboot", "text": " "}, {"after": "=> ", "text": "sleep 1\r"}]


def _doc(cpu="e500mc", strategy="illegal", breakpoints=()):
    return {"machine": {"cpu": cpu, "board": "ppce500"}, "guest": {"program": "u-boot"},
            "debug": {"strategy": strategy, "breakpoints": list(breakpoints)},
            "serial": {"end_on": "=> ", "send": SLEEP}, "limits": {"wall_seconds": 300}}


@needs_gdb
@pytest.mark.parametrize("flags", [None, "0x1"])
def test_gdb_steps_over_an_expiring_decrementer_in_uboot(tmp_path, flags):
    from cosim.gdb_harness import GdbServer, GdbSession
    do_sleep = commands(UBOOT)["sleep"] + RELOC_OFF_256M
    server = GdbServer(parse_config(_doc(), "uboot-step.toml"), tmp_path)
    gdb = None
    try:
        gdb = GdbSession(server)
        gdb.cmd(f"hbreak *{do_sleep:#x}")
        assert int(gdb.resume()["frame"]["addr"], 16) == do_sleep
        gdb.cmd("delete")
        vector = (gdb.value("$ivpr") & 0xFFFF0000) | (gdb.value("$ivor10") & 0xFFF0)
        assert vector == DEC_VECTOR_256M
        assert gdb.value("$tcr") & 0x04000000                   # TCR[DIE]: U-Boot's tick is on
        assert gdb.value("$msr") & 0x8000                        # MSR[EE]
        assert 0 < gdb.value("$decr") <= 400_000
        if flags is not None:
            assert "OK" in gdb.cmd(f"maintenance packet Qqemu.sstep={flags}")
        gdb.cmd("set $decr = 1")                                 # expires during the next instruction
        first = int(gdb.resume("-exec-step-instruction")["frame"]["addr"], 16)
        assert first == do_sleep + 4                             # one instruction, whatever the flags
        assert gdb.value("$decr") == 0
        second = int(gdb.resume("-exec-step-instruction")["frame"]["addr"], 16)
        if flags is None:                                        # held: the step is one instruction again,
            assert second == first + 4                           # the interrupt still to come
            gdb.cmd(f"hbreak *{vector:#x}")
            assert int(gdb.resume()["frame"]["addr"], 16) == vector   # taken once gdb resumed
            assert gdb.value("$srr0") == second                  # ... before the next instruction ran
        else:                                                    # allowed: the step is the interrupt
            assert second == vector
            assert gdb.value("$srr0") == first
            assert gdb.value("$tsr") & 0x08000000                # TSR[DIS]: the handler's to clear
        listing = gdb.cmd("x/i $pc")
        assert "mtsprg" in listing                               # the handler's first instruction
        gdb.cmd("delete")
        report = gdb.finish(timeout=300)
    finally:
        if gdb is not None:
            gdb.close()
        server.close()
    assert report["ok"], (report["failed"], {k: report["invariants"][k] for k in report["failed"]})
    timers = report["board"]["timers"][0]
    assert timers["fired"]["dec"] == timers["delivered"]["decrementer"] >= 1000   # none lost, none invented
    assert report["invariants"]["async-interrupts-delivered-once"]["ok"]
    assert report["board"]["transcript"].count("=> ") == 2                      # sleep 1 came back


def _sleep_run(strategy=None, arm_on="=> "):
    bps = [] if strategy is None else [{"at": DEC_VECTOR_256M} | ({"arm_on": arm_on} if arm_on else {})]
    r = build_report(run_config(parse_config(_doc("e500mc", strategy or "illegal", bps), "uboot-tick.toml")))
    assert r["ok"], (r["failed"], {k: r["invariants"][k] for k in r["failed"]})
    return r


@pytest.fixture(scope="module")
def plain():
    return _sleep_run()


def _same_ticks(r, base):
    ticks = r["board"]["timers"][0]
    assert ticks["fired"] == base["board"]["timers"][0]["fired"]
    assert ticks["delivered"] == base["board"]["timers"][0]["delivered"]
    assert r["interrupts_delivered"]["total"] == base["interrupts_delivered"]["total"]   # same SRR0s too
    assert r["board"]["transcript"] == base["board"]["transcript"]
    assert r["invariants"]["async-interrupts-delivered-once"]["ok"]
    assert r["invariants"]["debugger-hits-exactly-once"]["ok"]
    return ticks["delivered"]["decrementer"], r["debugger_hits"]["by_breakpoint"][f"{DEC_VECTOR_256M:#x}"]


def test_an_iac_on_uboots_decrementer_vector_from_reset_hits_every_tick(plain):
    """hw: an IAC survives U-Boot's relocation, so it watches the vector from the first tick on:
    hits = every decrementer interrupt of the run, and the run is the run without it."""
    ticks, hits = _same_ticks(_sleep_run("hw", arm_on=None), plain)
    assert hits["hits"] == hits["executed"] == ticks >= 1000


@pytest.mark.parametrize("strategy", ["illegal", "trap-kernel", "ehpriv"])
def test_a_breakpoint_on_uboots_decrementer_vector_hits_every_tick(plain, strategy):
    """A planted word, armed at the prompt (planted before, U-Boot's relocation would copy over it):
    every tick from then on is one hit (the handler's first instruction runs once per tick; `sleep 1`
    alone is 1,000), and the run takes exactly the ticks, at the same instructions, of the run without it."""
    ticks, hits = _same_ticks(_sleep_run(strategy), plain)
    assert 1000 <= hits["hits"] == hits["executed"] <= ticks
