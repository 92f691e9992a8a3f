"""A real gdb-multiarch as a QEMU user would drive it (issue 13): Book E SPRs, `monitor` commands, and
how sessions end (wall limit paused while stopped, the reason told to gdb, `kill` as a normal end,
scripted breakpoints kept across `detach`, `--running` attach). Each test runs its own scenario serving
gdb on port 0 through the pytest plugin's fixtures (`cosim_gdb_server`, `cosim_gdb`: see
tests/test_gdb_real.py); scenarios and gdb are killed in teardown whatever happens.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from cosim.isa import SPR, Dbcr0, mfspr
from cosim.machine.image import GuestImage, guest_path
from test_gdb_real import GDB, START_TIMEOUT, scenario, stopped_pc

pytestmark = pytest.mark.skipif(GDB is None, reason="gdb-multiarch is not installed")

REPO = Path(__file__).resolve().parents[1]
IMAGE = GuestImage.load(guest_path("loop"))
BP = IMAGE.symbol("bp_target")


def session_scenario(cpu="e500mc", strategy="illegal", vcpus=1, iterations=2000, wall=240.0,
                     scripted=False) -> dict:
    """The loop guest; `scripted`: with the scenario's own breakpoint on bp_target."""
    cfg = scenario(cpu=cpu, strategy=strategy, vcpus=vcpus, iterations=iterations, wall=wall,
                   name="gdb-session-test", description="tests/test_gdb_session.py")
    if scripted:
        cfg["debug"]["breakpoints"] = [{"at": "bp_target"}]
    return cfg


def ended(sc, timeout: float = 120.0) -> tuple[int, dict]:
    """The scenario's exit status (that of `cosim run`) and report, once it ended."""
    report = sc.wait(timeout)
    return sc.returncode, report


def p(gdb, expr: str) -> int:
    return gdb.value(expr)


# --- registers ----------------------------------------------------------------------------------------
def test_book_e_registers_as_qemu_shows_them(cosim_gdb):
    gdb = cosim_gdb(session_scenario(cpu="e500mc"))
    sc = gdb.server
    out = gdb.cmd("info registers dbcr0 pvr pir ivpr dsrr0 epcr msrp ivor40")
    assert re.search(r"^pvr\s+0x80230020", out, re.M), out
    for name in ("dbcr0", "pir", "ivpr", "dsrr0", "epcr", "msrp", "ivor40"):
        assert re.search(rf"^{name}\s+0x", out, re.M), out
    spr_group = gdb.cmd("info registers spr")
    assert "dbcr0" in spr_group and "iac1" in spr_group
    assert not re.search(r"^r3\s", spr_group, re.M), spr_group

    # a hardware breakpoint: the host owns the debug facility; the guest's IAC1 is untouched
    gdb.cmd("set breakpoint always-inserted on")
    gdb.cmd("hbreak bp_target")
    stop = gdb.resume()
    assert stopped_pc(stop) == BP, stop
    assert p(gdb, "$ivpr") == sc.spr(0, "IVPR") != 0                      # the guest's own setting
    assert p(gdb, "$iac1") == sc.spr(0, "IAC1") == 0
    assert p(gdb, "$dbcr0") & Dbcr0.EDM                                    # as the guest's mfspr sees it
    debug = gdb.monitor("info debug")
    assert f"IAC1=0x{BP:08x}" in debug and "owned by: host" in debug, debug
    cls, rest = gdb.result('-interpreter-exec console "set $dbcr0 = 0x40000000"')
    assert cls == "error" and "Could not write register" in rest["msg"], rest       # not the guest's now
    assert sc.spr(0, "DBCR0") == 0
    cls, rest = gdb.result('-interpreter-exec console "set $pvr = 1"')
    assert cls == "error", rest

    # SRR0 written by gdb is what the guest reads: run `mfspr r3, srr0` in place of bp_target's word
    gdb.cmd("set $srr0 = 0x1234")
    assert p(gdb, "$srr0") == 0x1234 and sc.spr(0, "SRR0") == 0x1234
    gdb.cmd("delete")
    gdb.cmd(f"set {{unsigned int}}{BP:#x} = {mfspr(3, SPR['SRR0']):#x}")
    stop = gdb.resume("-exec-step-instruction")
    assert p(gdb, "$r3") == 0x1234
    assert stopped_pc(stop) == BP + 4 == p(gdb, "$pc"), stop          # one instruction, emulated
    gdb.cmd("kill")
    rc, report = ended(sc, 60)
    assert report["outcome"] == "killed-by-debugger"


def test_e500v2_has_no_e_hv_registers(cosim_gdb):
    gdb = cosim_gdb(session_scenario(cpu="e500v2", strategy="trap-kernel"))
    sc = gdb.server
    assert p(gdb, "$pvr") == 0x80210030
    assert "ivor35" in gdb.cmd("info registers ivor35")
    cls, rest = gdb.result('-interpreter-exec console "info registers epcr"')
    assert cls == "error" and "Invalid register" in rest["msg"], rest
    gdb.cmd("kill")
    rc, report = ended(sc, 60)
    assert rc == 0 and report["ok"], report["failed"]


# --- monitor, and detach keeping the scenario's breakpoints ---------------------------------------------
def test_monitor_commands_and_detach_keeps_scripted_breakpoints(cosim_gdb):
    iterations = 2000
    gdb = cosim_gdb(session_scenario(cpu="e500mc", strategy="illegal", vcpus=2, iterations=iterations, scripted=True))
    sc = gdb.server
    text = gdb.monitor("help")
    for name in ("info strategy", "info breakpoints", "info vcpus", "info exits", "info debug"):
        assert name in text, text
    strategy = gdb.monitor("info strategy")
    assert "planted word: 0x00dddd00" in strategy and "DEBUG_INST" in strategy, strategy
    gdb.cmd("set breakpoint always-inserted on")
    gdb.cmd("break bp_target")
    stop = gdb.resume()
    assert stopped_pc(stop) == BP
    rows = [line.split() for line in gdb.monitor("info breakpoints").splitlines()]
    assert rows[1][:2] == ["1", "sw"] and rows[1][2] == f"0x{BP:08x}", rows
    assert rows[1][5:8] == [f"0x{IMAGE.read_word(BP):08x}", "0x00dddd00", "gdb,script"], rows
    vcpus = gdb.monitor("info vcpus").splitlines()
    assert vcpus[0].split()[:4] == ["vCPU", "State", "PC", "Instructions"]
    # either vCPU may reach bp_target first: the row of gdb's stopped thread, and the other held
    tid = int(stop["thread-id"])
    assert "stopped" in vcpus[tid] and f"0x{BP:08x}" in vcpus[tid], (tid, vcpus)
    other = vcpus[3 - tid].split()[1]
    assert other in ("paused", "stopped", "in"), (tid, vcpus)          # held: paused, its own stop, an exit
    exits = gdb.monitor("info exits")
    assert re.search(r"^priv\s+[1-9]", exits, re.M) and re.search(r"^total\s", exits, re.M), exits
    assert "unknown command" in gdb.monitor("info nonsense")
    cls, _ = gdb.result("-target-detach")
    assert cls == "done"
    rc, report = ended(sc, 120)
    assert rc == 0 and report["ok"], report["failed"]
    by_bp = report["debugger_hits"]["by_breakpoint"][f"{BP:#x}"]
    assert by_bp["executed"] == by_bp["hits"] == 2 * iterations            # every one, after detach too
    assert report["gdb"]["detaches"] == 1
    assert report["gdb"]["script_breakpoints"] == "kept across the gdb session(s): bp_target"


# --- how sessions end -----------------------------------------------------------------------------------
def test_wall_limit_pauses_while_gdb_holds_the_world(cosim_gdb):
    wall = 10.0
    gdb = cosim_gdb(session_scenario(vcpus=2, iterations=300, wall=wall, scripted=True))
    sc = gdb.server
    gdb.cmd("break bp_target")
    gdb.resume()
    time.sleep(wall + 3)                                  # stopped longer than the whole wall limit
    gdb.cmd("delete")
    stop = gdb.resume(timeout=120)
    rc, report = ended(sc, 60)
    assert stop["reason"] == "exited-normally", (stop, report["problems"], report["seconds"])
    assert rc == 0 and report["outcome"] == "completed", report["problems"]
    stopped = report["gdb"]["stopped_seconds"]
    assert stopped >= wall + 3
    # the other vCPU's scripted hits waited while gdb held the world: not a handling latency
    lat = report["exits"]["latency_us"]["userspace"]
    assert lat["count"] > 0 and lat["p99"] < stopped * 1e6 / 2, lat


@pytest.mark.parametrize("exit_code, last", [(None, b"X09"), (0, b"W00"), (0x103, b"W03")])
def test_farewell_is_an_exit_when_every_vcpu_halted_and_a_kill_otherwise(exit_code, last):
    """The supervisor can see the last vCPU halt before userspace does: its Shutdown/Detach then
    carries the exit code, and gdb hears `W` (exited), not `X09` (killed). No gdb needed: the stub's
    own connection end on a socket pair, the packets read back."""
    import socket

    from cosim.gdb.commands import GdbSession
    from cosim.gdb.stub import GdbStub
    from test_gdb_commands import FakeTarget
    a, b = socket.socketpair()
    try:
        stub = GdbStub.__new__(GdbStub)          # only the connection end: no listener, no VM
        stub.conn, stub.session, stub.target = a, GdbSession(FakeTarget()), FakeTarget()
        stub.out, stub.stalled_since = bytearray(), None      # (the output buffer: empty)
        stub.session.running = True
        stub.farewell("run over: completed", exit_code)
        a.close()
        got = b.recv(4096)
    finally:
        b.close()
    packets = re.findall(rb"\$([^#]*)#[0-9a-f]{2}", got)
    assert packets[0].startswith(b"O") and bytes.fromhex(packets[0][1:].decode()) == b"cosim: run over: completed\n"
    assert packets[1:] == [last], packets
    assert not stub.session.running


def test_run_ending_while_gdb_waits_tells_gdb_why(cosim_gdb):
    gdb = cosim_gdb(session_scenario(iterations=2_000_000_000, wall=5.0))
    sc = gdb.server
    start = len(gdb.log)
    cls, rest = gdb.result("-exec-continue")
    assert cls == "running", rest
    stop = gdb.wait_stop(120)
    assert stop["reason"] == "exited-signalled", stop
    assert stop["signal-name"] == "SIGKILL", stop
    said = gdb.output(start)                             # console and target streams since
    assert "cosim: run over: wall-limit" in said, said
    rc, report = ended(sc, 60)
    assert rc == 1 and report["outcome"] == "wall-limit"


def test_kill_is_a_normal_end(cosim_gdb):
    gdb = cosim_gdb(session_scenario(vcpus=2, iterations=2_000_000_000, scripted=True))
    sc = gdb.server
    gdb.cmd("break bp_target")
    gdb.resume()
    gdb.resume()
    gdb.cmd("kill")
    rc, report = ended(sc, 60)
    assert rc == 0 and report["ok"], report["failed"]
    assert report["outcome"] == "killed-by-debugger"
    assert report["invariants"]["run-completed"]["ok"]
    assert report["invariants"]["debugger-hits-exactly-once"]["ok"]
    assert "predictions-confirmed" in report["gdb"]["not_judged"]
    assert report["gdb"]["killed"]


def test_running_attach_stops_every_vcpu(cosim_gdb_server, cosim_gdb):
    sc = cosim_gdb_server(session_scenario(vcpus=2, iterations=2_000_000_000, scripted=True), running=True)
    deadline = time.monotonic() + START_TIMEOUT
    while min(sc.instructions()) < 10_000:               # it runs before anyone attaches
        assert time.monotonic() < deadline, sc.instructions()
        time.sleep(0.05)
    gdb = cosim_gdb(sc)
    threads = gdb.cmd("info threads")
    assert "Thread 1.1" in threads and "Thread 1.2" in threads, threads
    before = sc.instructions()
    time.sleep(0.5)
    assert sc.instructions() == before                    # all-stop on attach
    gdb.cmd("kill")
    rc, report = ended(sc, 60)
    assert rc == 0 and report["outcome"] == "killed-by-debugger"
    assert report["debugger_hits"]["total"] > 0           # the scripted breakpoint ran before gdb came


def test_running_needs_gdb(capsys):
    from cosim.cli import main
    assert main(["run", str(REPO / "configs" / "gdb.toml"), "--running"]) == 2
    assert "--running needs --gdb" in capsys.readouterr().err
