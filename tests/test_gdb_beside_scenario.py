"""A real gdb-multiarch beside a scripted scenario, as a new user drives it (issue 23): gdb's breakpoints
on top of the scenario's own, with a stock gdb (which lifts its breakpoints at every stop) and with
`set breakpoint always-inserted on`. The scenario's expectations judge its own breakpoints; gdb's hits
are reported beside them; one execution of the guest is one hit of each. Fixtures as in
tests/test_gdb_real.py (port 0, everything killed in teardown).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from cosim.machine.image import GuestImage, guest_path
from test_gdb_real import GDB, stopped_pc

pytestmark = pytest.mark.skipif(GDB is None, reason="gdb-multiarch is not installed")

REPO = Path(__file__).resolve().parents[1]
FOREIGN = REPO / "configs" / "foreign.toml"          # 2 vCPUs, 6 iterations each, a breakpoint on sc_site
IMAGE = GuestImage.load(guest_path("foreign_traps"))
SC_SITE = IMAGE.symbol("sc_site")


def run_to_exit(gdb, limit: int = 100) -> list[int]:
    """`continue` until gdb says the program exited; the PCs of the stops on the way."""
    pcs = []
    for _ in range(limit):
        stop = gdb.resume()
        if stop.get("reason", "").startswith("exited"):
            return pcs
        pcs.append(stopped_pc(stop))
    raise AssertionError(f"no exit after {limit} stops")


@pytest.mark.parametrize("always_inserted", [False, True], ids=["stock-gdb", "always-inserted"])
@pytest.mark.parametrize("strategy,where", [("illegal", "sc_site"), ("illegal", "loop"), ("hw", "sc_site")])
def test_gdb_hits_beside_the_scenarios_own_count_each_execution_once(cosim_gdb, strategy, where,
                                                                     always_inserted):
    gdb = cosim_gdb(FOREIGN, **{"debug.strategy": strategy})
    sc = gdb.server
    if always_inserted:
        gdb.cmd("set breakpoint always-inserted on")
    gdb.cmd(f"break {where}")
    pcs = run_to_exit(gdb)
    at = IMAGE.symbol(where)
    assert pcs == [at] * 12, pcs                     # 6 iterations x 2 vCPUs, each stopped once
    report = sc.wait(120)
    assert sc.returncode == 0 and report["ok"], (report["failed"], report["invariants"])
    inv = report["invariants"]
    assert inv["expect-debugger-hits"]["ok"], inv["expect-debugger-hits"]
    assert inv["expect-memory"]["ok"], inv["expect-memory"]        # the guest's own count: 6 sc per vCPU
    dh = report["debugger_hits"]
    assert dh["by_owner"] == {"script": 12, "gdb": 12}, dh["by_owner"]
    site = dh["by_breakpoint"][f"{SC_SITE:#x}"]
    assert site["executed"] == site["hits"] == 12, site             # never twice for one execution
    assert dh["total"] == (12 if where == "sc_site" else 24), dh["total"]


# --- what a stop shows, with gdb's breakpoints lifted (stock gdb) or kept in (always-inserted) -----------
@pytest.mark.parametrize("always_inserted", [False, True], ids=["stock-gdb", "always-inserted"])
def test_a_stop_tells_whether_gdbs_breakpoints_are_in(cosim_gdb, always_inserted):
    from cosim.isa import Dbcr0
    from test_gdb_real import BP, scenario
    gdb = cosim_gdb(scenario(cpu="e500mc", strategy="hw", vcpus=1, iterations=50))
    sc = gdb.server
    if always_inserted:
        gdb.cmd("set breakpoint always-inserted on")
    gdb.cmd("break bp_target")
    assert stopped_pc(gdb.resume()) == BP
    bps = gdb.monitor("info breakpoints")
    debug = gdb.monitor("info debug")
    dbcr0 = gdb.value("$dbcr0")
    cls, rest = gdb.result('-interpreter-exec console "set $dbcr0 = 0x40000000"')
    if always_inserted:       # the README's register and monitor statements hold
        assert f"0x{BP:08x}" in bps and "always-inserted" not in bps, bps
        assert "owned by: host" in debug and "always-inserted" not in debug, debug
        assert dbcr0 & Dbcr0.EDM
        assert cls == "error" and "Could not write register" in rest["msg"], rest
        assert sc.spr(0, "DBCR0") == 0
    else:                     # gdb lifted its breakpoint: the guest owns the facility, and the monitor says why
        assert bps.startswith("No breakpoints or watchpoints.\n"), bps
        for text in (bps, debug):
            assert "note: gdb lifted its 1 breakpoint(s)/watchpoint(s) at this stop" in text, text
            assert "set breakpoint always-inserted on" in text, text
        assert "owned by: guest" in debug, debug
        assert not dbcr0 & Dbcr0.EDM
        assert cls == "done", rest                                   # the guest's register, written
        assert sc.spr(0, "DBCR0") == 0x40000000
        gdb.cmd("set $dbcr0 = 0")
    gdb.cmd("delete")
    gdb.cmd("kill")
    report = sc.wait(60)
    assert report["outcome"] == "killed-by-debugger"
