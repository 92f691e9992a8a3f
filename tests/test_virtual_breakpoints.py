"""Breakpoints name guest virtual addresses and are planted at the physical word the guest TLB maps them
to at that moment, as QEMU+KVM plant through the guest MMU (issue 19, item 7): guests/vmap.S runs its
loop through an alias (EA 0x40000000 -> PA 0). One on an unmapped address is refused with a clear
message; the ledger keeps the physical word, so the code is restored after the run."""
import shutil

import pytest

from cosim.config import parse_config
from cosim.machine.image import GuestImage, guest_path
from cosim.report import build_report
from cosim.supervisor import run_config

IMAGE = GuestImage.load(guest_path("vmap"))
ALIAS = 0x40000000
SYM = {n: IMAGE.symbol(n) for n in ("mapped", "bp_alias", "done")}


def _doc(cpu, **debug):
    return {"machine": {"cpu": cpu, "board": "ppce500"}, "guest": {"program": "vmap", "until": "done"},
            "debug": {"strategy": "illegal", **debug}, "expect": {"memory": [{"at": "count", "words": [10]}]},
            "limits": {"wall_seconds": 60}}


@pytest.mark.skipif(shutil.which("gdb-multiarch") is None, reason="gdb-multiarch missing")
@pytest.mark.parametrize("cpu", ["e500mc", "e500v2"])
def test_gdb_breaks_at_a_virtual_alias(tmp_path, cpu):
    from cosim.gdb_harness import GdbServer, GdbSession
    server = GdbServer(parse_config(_doc(cpu), "vmap.toml"), tmp_path)
    gdb = None
    try:
        gdb = GdbSession(server)
        gdb.cmd(f"break *{ALIAS + SYM['bp_alias']:#x}")   # not mapped yet: refused when gdb inserts it
        records = gdb.mi("-exec-continue")
        if records[-1]["message"] != "error":             # (mi-async: ^running first, then the error)
            records += gdb.wait_for(lambda r: r.get("type") == "result" and r.get("message") == "error", 30)
        said = " ".join(str(r.get("payload")) for r in records)
        assert "Cannot insert breakpoint" in said, said
        assert f"Cannot access memory at address {ALIAS + SYM['bp_alias']:#x}" in said
        gdb.cmd("delete")
        gdb.cmd(f"break *{SYM['mapped']:#x}")
        assert int(gdb.resume()["frame"]["addr"], 16) == SYM["mapped"]
        gdb.cmd("delete")
        gdb.cmd(f"break *{ALIAS + SYM['bp_alias']:#x}")   # mapped now: planted at the physical word
        stop = gdb.resume()
        assert int(stop["frame"]["addr"], 16) == ALIAS + SYM["bp_alias"]
        assert gdb.value(f"*(unsigned int *){ALIAS + SYM['bp_alias']:#x}") == server.word(SYM["bp_alias"]) \
            or server.word(SYM["bp_alias"]) == 0x00DDDD00  # gdb reads through the TLB, its word hidden
        assert "addi" in gdb.cmd("x/i $pc")
        for _ in range(9):
            assert int(gdb.resume()["frame"]["addr"], 16) == ALIAS + SYM["bp_alias"]
        gdb.cmd("delete")
        report = gdb.finish()
    finally:
        if gdb is not None:
            gdb.close()
        server.close()
    assert report["ok"], (report["failed"], report["invariants"])
    assert report["invariants"]["code-restored-after-detach"]["ok"]


@pytest.mark.parametrize("strategy", ["trap-kernel", "illegal", "hw"])
def test_a_scripted_breakpoint_on_an_alias_counts_every_execution(strategy):
    """The scenario's breakpoints are planted at the start, when nothing maps 0x40000000 yet: a software
    one is refused and reported (`breakpoint-unmapped`); a hardware one compares the address itself."""
    r = build_report(run_config(parse_config(_doc("e500mc", strategy=strategy,
                                                   breakpoints=[{"at": ALIAS + SYM["bp_alias"]}]), "vmap.toml")))
    if strategy == "hw":                                 # an IAC compares the address itself: no planting
        assert r["ok"] and r["debugger_hits"]["total"] == 10
    else:                                                # refused, named, never silent
        finding = [f for f in r["findings"] if f["id"] == "breakpoint-unmapped"]
        assert finding and "no guest TLB entry maps it" in finding[0]["detail"]
        assert r["debugger_hits"]["total"] == 0
