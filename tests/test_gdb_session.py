"""A real gdb-multiarch as a QEMU user would drive it (issue 13): Book E SPRs, `monitor` commands, and
how sessions end (wall limit paused while stopped, the reason told to gdb, `kill` as a normal end,
scripted breakpoints kept across `detach`, `--running` attach). Each test runs its own `run.py --gdb`
on port 0; scenarios and gdb are killed in teardown whatever happens.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cosim.isa import SPR, Dbcr0, mfspr
from cosim.machine.guest_ram import GuestRAM
from cosim.machine.image import GuestImage, guest_path
from cosim.vcpu.runpage import RunPages
from test_gdb_real import GDB, START_TIMEOUT, Gdb, _c_string, stopped_field, stopped_pc

pytestmark = pytest.mark.skipif(GDB is None, reason="gdb-multiarch is not installed")

REPO = Path(__file__).resolve().parents[1]
IMAGE = GuestImage.load(guest_path("loop"))
BP = IMAGE.symbol("bp_target")

CONFIG = """
name = "gdb-session-test"
description = "tests/test_gdb_session.py"
[machine]
cpu = "{cpu}"
vcpus = {vcpus}
[guest]
program = "loop"
iterations = {iterations}
[debug]
strategy = "{strategy}"
{breakpoints}
[limits]
wall_seconds = {wall}
"""
SCRIPTED = '[[debug.breakpoints]]\nat = "bp_target"\n'


class Scenario:
    """`run.py CONFIG --gdb 127.0.0.1:0 [--running]` with a JSON report; shared memory attached."""

    def __init__(self, tmp: Path, cpu="e500mc", strategy="illegal", vcpus=1, iterations=2000, wall=240.0,
                 scripted=False, running=False):
        self.report_path = tmp / "report.json"
        cfg = tmp / "scenario.toml"
        cfg.write_text(CONFIG.format(cpu=cpu, strategy=strategy, vcpus=vcpus, iterations=iterations,
                                     wall=wall, breakpoints=SCRIPTED if scripted else ""))
        args = [sys.executable, str(REPO / "run.py"), str(cfg), "--gdb", "127.0.0.1:0", "--quiet",
                "--json", str(self.report_path)] + (["--running"] if running else [])
        self.proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
        self.stderr: list[str] = []
        self.address = None
        self.ram = self.pages = None
        ready = threading.Event()
        shm = {}

        def read():
            for line in self.proc.stderr:
                self.stderr.append(line)
                if m := re.search(r"listening on (\S+:\d+)", line):
                    self.address = m.group(1)
                if m := re.search(r"ram=(\S+) ram_size=(\S+) runpages=(\S+) vcpus=(\d+)", line):
                    shm.update(ram=m.group(1), size=int(m.group(2), 16), pages=m.group(3))
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(START_TIMEOUT) or not shm or self.address is None:
            self.close()
            raise AssertionError("the scenario did not start listening:\n" + "".join(self.stderr))
        self.ram = GuestRAM.attach(shm["ram"], shm["size"])
        self.pages = RunPages.attach(shm["pages"], vcpus)

    def spr(self, vcpu: int, name: str) -> int:
        return int(self.pages[vcpu]["spr"][SPR[name]])

    def instructions(self) -> list[int]:
        return [int(x) for x in self.pages.pages["instructions"]]

    def wait(self, timeout: float = 120.0) -> tuple[int, dict]:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("the scenario did not end:\n" + "".join(self.stderr)) from None
        assert self.report_path.exists(), "".join(self.stderr)
        return rc, json.loads(self.report_path.read_text())

    def close(self):
        for block in (self.ram, self.pages):
            if block is not None:
                block.close()
        self.ram = self.pages = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(10)


@pytest.fixture
def make(tmp_path):
    made = []

    class Make:
        def scenario(self, **kw) -> Scenario:
            d = tmp_path / f"s{len(made)}"
            d.mkdir()
            s = Scenario(d, **kw)
            made.append(s)
            return s

        def gdb(self) -> Gdb:
            g = Gdb()
            made.append(g)
            return g

    yield Make()
    for thing in reversed(made):
        thing.close()


def monitor(gdb: Gdb, command: str) -> str:
    """`monitor COMMAND` through gdb: the text it printed (target stream `@"..."` in MI)."""
    start = len(gdb.log)
    cls, rest, console = gdb.mi(f'-interpreter-exec console "monitor {command}"')
    assert cls == "done", rest
    target = "".join(_c_string(x[2:-1]) for x in gdb.log[start:] if x.startswith('@"'))
    return target + console


def p(gdb: Gdb, expr: str) -> int:
    return gdb.value(expr)


# --- registers ----------------------------------------------------------------------------------------
def test_book_e_registers_as_qemu_shows_them(make):
    sc = make.scenario(cpu="e500mc")
    gdb = make.gdb()
    gdb.connect(sc.address)
    out = gdb.cli("info registers dbcr0 pvr pir ivpr dsrr0 epcr msrp ivor40")
    assert re.search(r"^pvr\s+0x80230020", out, re.M), out
    for name in ("dbcr0", "pir", "ivpr", "dsrr0", "epcr", "msrp", "ivor40"):
        assert re.search(rf"^{name}\s+0x", out, re.M), out
    spr_group = gdb.cli("info registers spr")
    assert "dbcr0" in spr_group and "iac1" in spr_group
    assert not re.search(r"^r3\s", spr_group, re.M), spr_group

    # a hardware breakpoint: the host owns the debug facility; the guest's IAC1 is untouched
    gdb.cli("set breakpoint always-inserted on")
    gdb.cli("hbreak bp_target")
    stop = gdb.resume()
    assert stopped_pc(stop) == BP, stop
    assert p(gdb, "$ivpr") == sc.spr(0, "IVPR") != 0                      # the guest's own setting
    assert p(gdb, "$iac1") == sc.spr(0, "IAC1") == 0
    assert p(gdb, "$dbcr0") & Dbcr0.EDM                                    # as the guest's mfspr sees it
    debug = monitor(gdb, "info debug")
    assert f"IAC1=0x{BP:08x}" in debug and "owned by: host" in debug, debug
    cls, rest, _ = gdb.mi('-interpreter-exec console "set $dbcr0 = 0x40000000"')
    assert cls == "error" and "Could not write register" in rest, rest       # not the guest's now
    assert sc.spr(0, "DBCR0") == 0
    cls, rest, _ = gdb.mi('-interpreter-exec console "set $pvr = 1"')
    assert cls == "error", rest

    # SRR0 written by gdb is what the guest reads: run `mfspr r3, srr0` in place of bp_target's word
    gdb.cli("set $srr0 = 0x1234")
    assert p(gdb, "$srr0") == 0x1234 and sc.spr(0, "SRR0") == 0x1234
    gdb.cli("delete")
    gdb.cli(f"set {{unsigned int}}{BP:#x} = {mfspr(3, SPR['SRR0']):#x}")
    gdb.resume("-exec-step-instruction")
    # (the PC is not checked: a host single-step over an emulated instruction runs one more, a
    # vCPU-core stepping matter reported separately)
    assert p(gdb, "$r3") == 0x1234
    gdb.cli("kill")
    rc, report = sc.wait(60)
    assert report["outcome"] == "killed-by-debugger"


def test_e500v2_has_no_e_hv_registers(make):
    sc = make.scenario(cpu="e500v2", strategy="trap-kernel")
    gdb = make.gdb()
    gdb.connect(sc.address)
    assert p(gdb, "$pvr") == 0x80210030
    assert "ivor35" in gdb.cli("info registers ivor35")
    cls, rest, _ = gdb.mi('-interpreter-exec console "info registers epcr"')
    assert cls == "error" and "Invalid register" in rest, rest
    gdb.cli("kill")
    rc, report = sc.wait(60)
    assert rc == 0 and report["ok"], report["failed"]


# --- monitor, and detach keeping the scenario's breakpoints ---------------------------------------------
def test_monitor_commands_and_detach_keeps_scripted_breakpoints(make):
    iterations = 2000
    sc = make.scenario(cpu="e500mc", strategy="illegal", vcpus=2, iterations=iterations, scripted=True)
    gdb = make.gdb()
    gdb.connect(sc.address)
    text = monitor(gdb, "help")
    for name in ("info strategy", "info breakpoints", "info vcpus", "info exits", "info debug"):
        assert name in text, text
    strategy = monitor(gdb, "info strategy")
    assert "planted word: 0x00dddd00" in strategy and "DEBUG_INST" in strategy, strategy
    gdb.cli("set breakpoint always-inserted on")
    gdb.cli("break bp_target")
    stop = gdb.resume()
    assert stopped_pc(stop) == BP
    rows = [line.split() for line in monitor(gdb, "info breakpoints").splitlines()]
    assert rows[1][:2] == ["1", "sw"] and rows[1][2] == f"0x{BP:08x}", rows
    assert rows[1][5:8] == [f"0x{IMAGE.read_word(BP):08x}", "0x00dddd00", "gdb,script"], rows
    vcpus = monitor(gdb, "info vcpus").splitlines()
    assert vcpus[0].split()[:4] == ["vCPU", "State", "PC", "Instructions"]
    assert "stopped" in vcpus[1] and f"0x{BP:08x}" in vcpus[1], vcpus
    exits = monitor(gdb, "info exits")
    assert re.search(r"^priv\s+[1-9]", exits, re.M) and re.search(r"^total\s", exits, re.M), exits
    assert "unknown command" in monitor(gdb, "info nonsense")
    cls, _, _ = gdb.mi("-target-detach")
    assert cls == "done"
    rc, report = sc.wait(120)
    assert rc == 0 and report["ok"], report["failed"]
    by_bp = report["debugger_hits"]["by_breakpoint"][f"{BP:#x}"]
    assert by_bp["executed"] == by_bp["hits"] == 2 * iterations            # every one, after detach too
    assert report["gdb"]["detaches"] == 1
    assert report["gdb"]["script_breakpoints"] == "kept across the gdb session(s): bp_target"


# --- how sessions end -----------------------------------------------------------------------------------
def test_wall_limit_pauses_while_gdb_holds_the_world(make):
    wall = 10.0
    sc = make.scenario(vcpus=2, iterations=300, wall=wall, scripted=True)
    gdb = make.gdb()
    gdb.connect(sc.address)
    gdb.cli("break bp_target")
    gdb.resume()
    time.sleep(wall + 3)                                  # stopped longer than the whole wall limit
    gdb.cli("delete")
    stop = gdb.resume(timeout=120)
    rc, report = sc.wait(60)
    assert stopped_field(stop, "reason") == "exited-normally", (stop, report["problems"], report["seconds"])
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


def test_run_ending_while_gdb_waits_tells_gdb_why(make):
    sc = make.scenario(iterations=2_000_000_000, wall=5.0)
    gdb = make.gdb()
    gdb.connect(sc.address)
    start = len(gdb.log)
    cls, rest, _ = gdb.mi("-exec-continue")
    assert cls == "running", rest
    stop = gdb.wait_stopped(120)
    assert stopped_field(stop, "reason") == "exited-signalled", stop
    assert stopped_field(stop, "signal-name") == "SIGKILL", stop
    said = "".join(_c_string(x[2:-1]) for x in gdb.log[start:] if x[:2] in ('@"', '~"'))
    assert "cosim: run over: wall-limit" in said, said
    rc, report = sc.wait(60)
    assert rc == 1 and report["outcome"] == "wall-limit"


def test_kill_is_a_normal_end(make):
    sc = make.scenario(vcpus=2, iterations=100_000_000, scripted=True)
    gdb = make.gdb()
    gdb.connect(sc.address)
    gdb.cli("break bp_target")
    gdb.resume()
    gdb.resume()
    gdb.cli("kill")
    rc, report = sc.wait(60)
    assert rc == 0 and report["ok"], report["failed"]
    assert report["outcome"] == "killed-by-debugger"
    assert report["invariants"]["run-completed"]["ok"]
    assert report["invariants"]["debugger-hits-exactly-once"]["ok"]
    assert "predictions-confirmed" in report["gdb"]["not_judged"]
    assert report["gdb"]["killed"]


def test_running_attach_stops_every_vcpu(make):
    sc = make.scenario(vcpus=2, iterations=100_000_000, running=True, scripted=True)
    deadline = time.monotonic() + START_TIMEOUT
    while min(sc.instructions()) < 10_000:               # it runs before anyone attaches
        assert time.monotonic() < deadline, sc.instructions()
        time.sleep(0.05)
    gdb = make.gdb()
    gdb.connect(sc.address)
    threads = gdb.cli("info threads")
    assert "Thread 1.1" in threads and "Thread 1.2" in threads, threads
    before = sc.instructions()
    time.sleep(0.5)
    assert sc.instructions() == before                    # all-stop on attach
    gdb.cli("kill")
    rc, report = sc.wait(60)
    assert rc == 0 and report["outcome"] == "killed-by-debugger"
    assert report["debugger_hits"]["total"] > 0           # the scripted breakpoint ran before gdb came


def test_running_needs_gdb(capsys):
    from cosim.cli import main
    assert main(["run", str(REPO / "configs" / "gdb.toml"), "--running"]) == 2
    assert "--running needs --gdb" in capsys.readouterr().err
