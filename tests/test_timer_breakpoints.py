"""A breakpoint and a decrementer expiry on the same instruction (issue 21 item 3). guests/dec_same.S
arms its decrementer with MSR[EE] = 1 so that it expires at the boundary before `tick_site`: run free,
the interrupt is taken with SRR0 = tick_site. With a breakpoint there (and one on the instruction before
it, whose step-over is the instruction during which the decrementer reaches zero), every strategy on both
CPU models: the hit reaches the debugger once, the interrupt reaches the guest once, at the same
instruction as without the debugger, and tick_site runs once (the guest counts it).

The project's other timer guest, dec_step.S, covers an interrupt that became pending with MSR[EE] = 0 and
is made deliverable by the instruction under the breakpoint (tests/test_step_irq.py)."""
import shutil

import pytest

from cosim.config import parse_config
from cosim.machine.image import GuestImage, guest_path
from cosim.report import build_report
from cosim.strategies import STRATEGIES
from cosim.supervisor import run_config

IMAGE = GuestImage.load(guest_path("dec_same"))
SYM = {n: IMAGE.symbol(n) for n in ("before_tick", "tick_site", "after_tick", "on_dec", "done")}
# the guest's own record: decrementer interrupts, the last SRR0, executions of tick_site
RECORD = [1, SYM["tick_site"], 1]
ONE_TICK = {"decrementer": {f"{SYM['tick_site']:#x}": 1}}


def _doc(cpu, strategy, breakpoints=()):
    return {"machine": {"cpu": cpu}, "guest": {"program": "dec_same", "until": "done"},
            "debug": {"strategy": strategy, "breakpoints": [{"at": b} for b in breakpoints]},
            "expect": {"memory": [{"at": "ticks", "words": RECORD}]},
            "limits": {"wall_seconds": 120}}


@pytest.mark.parametrize("cpu", ["e500mc", "e500v2"])
def test_without_a_debugger_the_tick_lands_on_tick_site(cpu):
    r = build_report(run_config(parse_config(_doc(cpu, "illegal"), "dec_same.toml")))
    assert r["ok"], r["failed"]
    assert r["interrupts_delivered"]["total"] == ONE_TICK


@pytest.mark.parametrize("cpu", ["e500mc", "e500v2"])
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_a_breakpoint_on_the_instruction_the_decrementer_expires_at(cpu, strategy):
    r = build_report(run_config(parse_config(_doc(cpu, strategy, ("before_tick", "tick_site")), "dec_same.toml")))
    if strategy == "sc64" and cpu == "e500mc":            # the thread's prediction: U-Boot-like guests own sc
        assert "sc64-lost-hits" in [f["id"] for f in r["findings"]]
        assert r["invariants"]["async-interrupts-delivered-once"]["ok"]
        return
    assert r["ok"], (r["failed"], {k: r["invariants"][k] for k in r["failed"]})
    hits = {v["symbol"]: (v["executed"], v["hits"]) for v in r["debugger_hits"]["by_breakpoint"].values()}
    assert hits == {"before_tick": (1, 1), "tick_site": (1, 1)}
    assert r["interrupts_delivered"]["total"] == ONE_TICK
    assert r["invariants"]["async-interrupts-delivered-once"]["ok"]


needs_gdb = pytest.mark.skipif(shutil.which("gdb-multiarch") is None, reason="gdb-multiarch missing")


@needs_gdb
@pytest.mark.parametrize("cpu", ["e500mc", "e500v2"])
@pytest.mark.parametrize("strategy, kind", [("illegal", "break"), ("trap-kernel", "break"), ("hw", "hbreak")])
def test_gdb_sees_the_hit_once_and_the_guest_its_tick_once(tmp_path, cpu, strategy, kind):
    """A real gdb: `break` on tick_site and `hbreak` on the decrementer handler. The first stop is the
    handler (the expiry comes first: SRR0 = tick_site), the second tick_site (after the handler's rfi),
    then the guest runs to its end: one hit each, one interrupt, tick_site executed once."""
    from cosim.gdb_harness import GdbServer, GdbSession
    server = GdbServer(parse_config(_doc(cpu, strategy), "dec_same.toml"), tmp_path)
    gdb = None
    try:
        gdb = GdbSession(server)
        gdb.cmd(f"{kind} *{SYM['tick_site']:#x}")
        gdb.cmd(f"hbreak *{SYM['on_dec']:#x}")
        first = gdb.resume()
        assert int(first["frame"]["addr"], 16) == SYM["on_dec"]
        assert gdb.value("$srr0") == SYM["tick_site"]
        second = gdb.resume()
        assert int(second["frame"]["addr"], 16) == SYM["tick_site"]
        gdb.cmd("delete")
        report = gdb.finish()                  # the guest runs to `done`; [[expect.memory]] reads its record
    finally:
        if gdb is not None:
            gdb.close()
        server.close()
    assert report["ok"], (report["failed"], {k: report["invariants"][k] for k in report["failed"]})
    assert report["interrupts_delivered"]["total"] == ONE_TICK
    hits = {v["symbol"]: (v["executed"], v["hits"]) for v in report["debugger_hits"]["by_breakpoint"].values()}
    assert hits == {"on_dec": (1, 1), "tick_site": (1, 1)}
    assert report["debugger_hits"]["by_owner"]["gdb"] == 2
