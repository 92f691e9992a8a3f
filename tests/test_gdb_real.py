"""A real gdb-multiarch against a running scenario (issue 4), through the pytest plugin's fixtures
(cosim/gdb_harness.py): `cosim_gdb_server` starts the scenario in a child process serving GDB on
127.0.0.1 port 0, with its guest RAM and run pages attached so a test checks what gdb shows against the
machine; `cosim_gdb` attaches gdb-multiarch to one through its machine interface (MI, async: one result
record per command, *stopped records for stops, `-exec-interrupt` for Ctrl-C). One test runs gdb in
plain `-batch` mode; a raw-socket test covers malformed packets, the 0x03 byte, a second connection and
D/vKill. Every gdb and scenario is killed in the fixtures' teardown; the scenario's own report checks
that no process, shared-memory block or socket outlived it.
"""
from __future__ import annotations

import random
import re
import shutil
import socket
import subprocess
import time

import pytest

from cosim.isa import Word
from cosim.machine.image import GuestImage, guest_path

GDB = shutil.which("gdb-multiarch")
pytestmark = pytest.mark.skipif(GDB is None, reason="gdb-multiarch is not installed")

LOOP_ELF = guest_path("loop")
IMAGE = GuestImage.load(LOOP_ELF)
BP = IMAGE.symbol("bp_target")
CNT_HITS = IMAGE.symbol("cnt_hits")
CNT_ITER = IMAGE.symbol("cnt_iter")
ORIGINAL = IMAGE.read_word(BP)          # li r0, 0
STOP_TIMEOUT = 60.0
START_TIMEOUT = 90.0

PLANTED = {"sc64": Word.SC64, "trap-user": Word.TRAP, "trap-kernel": Word.TRAP,
           "ehpriv": Word.EHPRIV1, "illegal": Word.ILLEGAL_BP}
SOFTWARE = [("e500v2", "sc64")] + [(cpu, s) for s in ("trap-user", "trap-kernel", "ehpriv", "illegal")
                                   for cpu in ("e500v2", "e500mc")]


def scenario(cpu="e500mc", strategy="illegal", vcpus=1, iterations=2000, wall=240.0, program="loop",
             name="gdb-test", description="tests/test_gdb_real.py") -> dict:
    """The tests' scenario (a config dict for the plugin; iterations None: a guest without them)."""
    guest = {"program": program} | ({} if iterations is None else {"iterations": iterations})
    return {"name": name, "description": description, "machine": {"cpu": cpu, "vcpus": vcpus},
            "guest": guest, "debug": {"strategy": strategy}, "limits": {"wall_seconds": wall}}


def counter(sc, addr: int, vcpu: int = 0) -> int:
    """A per-vCPU guest counter, read in the scenario's guest RAM."""
    return sc.word(addr + IMAGE.pcpu_stride * vcpu)


def stopped_pc(stop: dict) -> int:
    """The PC of a *stopped record's frame."""
    return int(stop["frame"]["addr"], 16)


def said(records: list[dict]) -> str:
    """Everything in these MI records, as text (streams and result payloads)."""
    return "".join(str(r["payload"]) for r in records if r["payload"])


def assert_clean_end(report: dict):
    inv = report["invariants"]
    assert inv["no-leftovers"]["ok"], inv["no-leftovers"]
    assert inv["code-restored-after-detach"]["ok"], inv["code-restored-after-detach"]
    assert inv["run-completed"]["ok"], inv["run-completed"]
    assert not report["problems"], report["problems"]


# --- break + continue for every strategy ----------------------------------------------------------------
@pytest.mark.parametrize("cpu,strategy", SOFTWARE + [("e500v2", "hw"), ("e500mc", "hw")],
                         ids=[f"{s}-{c}" for c, s in SOFTWARE + [("e500v2", "hw"), ("e500mc", "hw")]])
def test_break_continue_hits_match_the_guest(cosim_gdb, cpu, strategy):
    gdb = cosim_gdb(scenario(cpu=cpu, strategy=strategy, iterations=3000))
    sc = gdb.server
    gdb.cmd("set breakpoint always-inserted on")          # planted while gdb looks, not only running
    cls, rest = gdb.result("-break-insert bp_target")
    assert cls == "done" and rest["bkpt"]["addr"] == "0x%08x" % BP
    n = 5
    for k in range(1, n + 1):
        stop = gdb.resume()
        assert stop["reason"] == "breakpoint-hit", stop
        assert stopped_pc(stop) == BP and stop["thread-id"] == "1"
        # the k-th call stops before its own count: cnt_hits (by gdb, and in guest RAM) is k - 1
        assert gdb.value("*(unsigned int *)&cnt_hits") == k - 1
        assert counter(sc, CNT_HITS) == k - 1
        assert counter(sc, CNT_ITER) == k - 1
    if strategy == "hw":
        assert sc.word(BP) == ORIGINAL                    # an IAC: no code modified
    else:
        assert sc.word(BP) == PLANTED[strategy]           # the strategy's word is in RAM...
    assert "li      r0,0" in gdb.cmd("x/i $pc")             # ...but gdb sees the original instruction
    assert f"0x{ORIGINAL:08x}" in gdb.cmd("x/wx $pc")
    assert f'"{ORIGINAL:08x}"' in gdb.cmd(f"maint packet m{BP:x},4")   # so does the raw `m`
    assert gdb.registers()["pc"] == BP == sc.registers(0)["pc"]
    stop = gdb.resume("-exec-step-instruction")
    assert stopped_pc(stop) == BP + 4 == sc.registers(0)["pc"]
    assert counter(sc, CNT_HITS) == n - 1                  # `li r0,0` does not count yet
    cls, rest = gdb.result("-target-detach")
    assert cls == "done", rest
    assert IMAGE.code_diff(sc.ram) == []                 # guest code is the image's again
    report = sc.wait()
    assert_clean_end(report)
    assert report["guest"]["cnt_hits"] == [3000] and report["guest"]["cnt_iter"] == [3000]
    assert report["invariants"]["debugger-hits-exactly-once"]["ok"], report["debugger_hits"]


# --- registers, threads, SMP ----------------------------------------------------------------------------
def test_registers_and_threads_on_two_vcpus(cosim_gdb):
    gdb = cosim_gdb(scenario(vcpus=2, iterations=3000))
    sc = gdb.server
    threads = gdb.cmd("info threads")
    assert re.search(r"Thread 1\.1 \(vCPU 0 ", threads) and re.search(r"Thread 1\.2 \(vCPU 1 ", threads)
    # stopped at start: both vCPUs at the entry, their registers from the run page
    assert gdb.registers() == sc.registers(0)
    assert gdb.result("-break-insert bp_target")[0] == "done"
    seen = {1: 0, 2: 0}
    stops = 0
    while stops < 6 or not (seen[1] and seen[2]):   # vCPU 1 may need a few rounds to get there
        assert stops < 200, seen
        stops += 1
        stop = gdb.resume()
        assert stop["reason"] == "breakpoint-hit" and stopped_pc(stop) == BP
        seen[int(stop["thread-id"])] += 1
        before = sc.instructions()
        for tid in (1, 2):                                 # every vCPU stopped, each one's registers
            gdb.cmd(f"thread {tid}")
            regs = gdb.registers()
            assert regs == sc.registers(tid - 1), f"thread {tid}"
        time.sleep(0.05)
        assert sc.instructions() == before   # the world is stopped
    hits = [counter(sc, CNT_HITS, i) for i in range(2)]
    assert sum(hits) <= stops <= sum(hits) + 2             # a vCPU stopped at entry has not counted yet
    # stepi the thread that reported the last hit, alone: gdb steps it over its breakpoint. (A
    # thread that sits at an inserted breakpoint it has not reported yet would report that hit
    # first, as a real CPU would.)
    tid = int(stop["thread-id"])
    out = gdb.cmd(f"thread {tid}")
    assert f"Thread 1.{tid}" in out
    regs = gdb.registers()
    gdb.cmd("set scheduler-locking on")
    stop = gdb.resume("-exec-step-instruction")
    assert stop["thread-id"] == str(tid)
    assert stopped_pc(stop) == regs["pc"] + 4 == sc.registers(tid - 1)["pc"]
    assert gdb.result("-target-detach")[0] == "done"
    report = sc.wait()
    assert_clean_end(report)
    assert report["guest"]["cnt_hits"] == [3000, 3000]


def test_register_write_reaches_the_vcpu(cosim_gdb):
    gdb = cosim_gdb(scenario(iterations=3000))
    sc = gdb.server
    assert gdb.result("-break-insert bp_target")[0] == "done"
    gdb.resume()
    gdb.resume()
    # r30 is main's iterations-left counter: shrink it, the guest then makes fewer calls
    left = gdb.registers()["r30"]
    assert left == 3000 - 1
    gdb.cmd("set $r30 = 3")
    assert sc.registers(0)["r30"] == 3
    assert gdb.result("-target-detach")[0] == "done"
    report = sc.wait()
    assert_clean_end(report)
    assert report["guest"]["cnt_hits"] == [1 + 3]


# --- hardware breakpoint and watchpoint -----------------------------------------------------------------
@pytest.mark.parametrize("cpu", ["e500v2", "e500mc"])
def test_hbreak_and_watch(cosim_gdb, cpu):
    gdb = cosim_gdb(scenario(cpu=cpu, iterations=3000))
    sc = gdb.server
    cls, rest = gdb.result("-break-insert -h bp_target")
    assert cls == "done", rest
    for k in range(1, 4):
        stop = gdb.resume()
        assert stop["reason"] == "breakpoint-hit" and stopped_pc(stop) == BP
        assert counter(sc, CNT_HITS) == k - 1
        assert IMAGE.code_diff(sc.ram) == []              # nothing planted: an IAC slot
    assert gdb.result("-break-delete 1")[0] == "done"
    cls, rest = gdb.result('-break-watch "*(unsigned int *)&cnt_iter"')
    assert cls == "done", rest
    assert "hw watchpoint" in gdb.cmd("info watchpoints")  # a DAC, not gdb single-stepping
    for k in range(3):
        stop = gdb.resume()
        assert stop["reason"] == "watchpoint-trigger", stop
        old, new = int(stop["value"]["old"]), int(stop["value"]["new"])
        assert new == old + 1 == counter(sc, CNT_ITER)
    # gdb reports the store after stepping over it: the PC is in the loop body, past the `stw`
    pc = stopped_pc(stop)
    assert IMAGE.symbol("loop_body_start") < pc <= IMAGE.symbol("loop_body_end")
    assert gdb.result("-target-detach")[0] == "done"
    assert_clean_end(sc.wait())


def test_no_free_iac_slot_is_an_error_gdb_shows(cosim_gdb):
    gdb = cosim_gdb(scenario(iterations=3000))
    sc = gdb.server
    for sym in ("bp_target", "main", "loop_body_start"):
        assert gdb.result(f"-break-insert -h {sym}")[0] == "done"
    # gdb inserts at resume: the third IAC is refused (E1c), gdb says so and the target stays stopped
    assert gdb.result("-exec-continue")[0] == "running"
    records = gdb.wait_for(lambda r: r["type"] == "result" and r["message"] == "error", STOP_TIMEOUT)
    assert "You may have requested too many hardware breakpoints" in said(records), records
    assert sc.registers(0)["pc"] == IMAGE.entry
    assert gdb.result("-break-delete 3")[0] == "done"
    stop = gdb.resume()
    assert stop["reason"] == "breakpoint-hit"
    assert gdb.result("-target-detach")[0] == "done"
    assert_clean_end(sc.wait())


# --- Ctrl-C, kill, lost connection ------------------------------------------------------------------------
def test_ctrl_c_stops_the_world(cosim_gdb):
    gdb = cosim_gdb(scenario(vcpus=2, iterations=2_000_000_000))
    sc = gdb.server
    for _ in range(2):
        cls, rest = gdb.result("-exec-continue")
        assert cls == "running", rest
        time.sleep(0.5)
        assert gdb.result("-exec-interrupt")[0] == "done"
        stop = gdb.wait_stop()
        assert stop["reason"] == "signal-received", stop
        assert stop["signal-name"] == "SIGINT"
        before = sc.instructions()
        assert all(before)
        time.sleep(0.1)
        assert sc.instructions() == before
        for tid in (1, 2):
            gdb.cmd(f"thread {tid}")
            regs = gdb.registers()
            assert regs == sc.registers(tid - 1)
            lo, hi = IMAGE.code_ranges()[0]
            assert lo <= regs["pc"] < hi
    gdb.cmd("kill")
    report = sc.wait(60)
    assert report["outcome"] == "killed-by-debugger"
    assert report["invariants"]["no-leftovers"]["ok"]
    assert report["invariants"]["code-restored-after-detach"]["ok"]


def test_kill_ends_the_run(cosim_gdb):
    gdb = cosim_gdb(scenario(iterations=2_000_000_000))
    sc = gdb.server
    assert gdb.result("-break-insert bp_target")[0] == "done"
    gdb.resume()
    gdb.cmd("kill")
    report = sc.wait(60)
    assert report["outcome"] == "killed-by-debugger"
    assert report["invariants"]["no-leftovers"]["ok"]
    assert report["invariants"]["code-restored-after-detach"]["ok"]


def test_gdb_crash_detaches_and_restores_code(cosim_gdb):
    gdb = cosim_gdb(scenario(iterations=3000))
    sc = gdb.server
    gdb.cmd("set breakpoint always-inserted on")
    assert gdb.result("-break-insert bp_target")[0] == "done"
    assert gdb.result("-break-watch \"*(unsigned int *)&cnt_iter\"")[0] == "done"
    gdb.resume()
    assert sc.word(BP) == Word.ILLEGAL_BP
    gdb.kill_gdb()                                    # SIGKILL: the connection is lost, no D
    report = sc.wait()
    assert_clean_end(report)
    assert report["guest"]["cnt_hits"] == [3000]


def test_guest_traps_still_reach_the_guest_under_gdb(cosim_gdb):
    """trap-user: every guest WARN trap makes a userspace round trip; the ones in flight while gdb
    holds the world are re-injected when gdb resumes, each exactly once."""
    gdb = cosim_gdb(scenario(cpu="e500v2", strategy="trap-user", vcpus=2, iterations=300,
                             program="warn_storm"))
    sc = gdb.server
    assert gdb.result("-break-insert bp_target_b")[0] == "done"
    for _ in range(8):
        stop = gdb.resume()
        assert stop["reason"] == "breakpoint-hit"
    assert gdb.result("-target-detach")[0] == "done"
    report = sc.wait()
    assert_clean_end(report)
    assert report["ok"], report["failed"]
    assert report["guest_warns"]["total"] == report["guest_warns"]["expected"] == 2 * 300 * 3
    assert report["debugger_hits"]["reinjected"].get("trap", 0) > 0   # (only while a breakpoint is set)


# --- plain batch mode -------------------------------------------------------------------------------------
def test_batch_session(cosim_gdb_server):
    sc = cosim_gdb_server(scenario(cpu="e500v2", strategy="trap-kernel", iterations=3000))
    out = subprocess.run(
        [GDB, "-q", "-nx", "-batch", str(LOOP_ELF), "-ex", f"target remote {sc.address}",
         "-ex", "break bp_target", "-ex", "continue", "-ex", "continue", "-ex", "continue",
         "-ex", "x/i $pc", "-ex", "p/x $pc", "-ex", "info threads", "-ex", "stepi",
         "-ex", "p/x $pc", "-ex", "detach"],
        capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    assert text.count("Breakpoint 1, 0x%08x in bp_target ()" % BP) == 3, text
    assert "li      r0,0" in text and f"$1 = 0x{BP:x}" in text and f"$2 = 0x{BP + 4:x}" in text, text
    assert "Thread 1.1 (vCPU 0 " in text and "[Inferior 1 (process 1) detached]" in text, text
    assert_clean_end(sc.wait())


# --- raw socket --------------------------------------------------------------------------------------------
class Raw:
    def __init__(self, address: str):
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=STOP_TIMEOUT)
        self.buf = b""

    def frame(self, payload: bytes) -> bytes:
        return b"$%s#%02x" % (payload, sum(payload) & 0xFF)

    def read_until(self, pred) -> bytes:
        while not pred(self.buf):
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed by the stub")
            self.buf += data
        return self.buf

    def reply(self) -> bytes:
        """Skip acks; return the next packet's payload (and ack it)."""
        buf = self.read_until(lambda b: re.search(rb"\$[^#]*#[0-9a-f]{2}", b) is not None)
        m = re.search(rb"\$([^#]*)#[0-9a-f]{2}", buf)
        self.buf = buf[m.end():]
        self.sock.sendall(b"+")
        return m.group(1)

    def cmd(self, payload: bytes) -> bytes:
        self.sock.sendall(self.frame(payload))
        return self.reply()

    def closed(self, timeout: float = 10.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
        except OSError:
            return True

    def close(self):
        self.sock.close()


def test_raw_malformed_packets_keep_the_stub_serving(cosim_gdb_server):
    sc = cosim_gdb_server(scenario(iterations=2_000_000_000))
    c = Raw(sc.address)
    try:
        assert c.cmd(b"qSupported:multiprocess+;swbreak+").startswith(b"PacketSize=")
        c.sock.sendall(b"$g#00")                          # bad checksum -> `-`, nothing else
        c.read_until(lambda b: b"-" in b)
        assert c.buf.startswith(b"-")
        c.buf = b""
        c.sock.sendall(b"garbage outside any packet")      # skipped
        assert c.cmd(b"?").startswith(b"T05thread:p01.01;")
        assert c.cmd(b"mzz,4") == b"E01"                   # not hex
        assert c.cmd(b"m10730") == b"E01"                  # missing length
        assert c.cmd(b"m7ffffff0,100").startswith(b"E")    # outside guest RAM
        assert c.cmd(b"Z0,10731,4").startswith(b"E")       # not word-aligned
        assert c.cmd(b"Z0,7ffffff0,4").startswith(b"E")    # outside guest RAM
        assert c.cmd(b"Z9,10730,4") == b""                 # unknown kind
        assert c.cmd(b"Z2,12400,0").startswith(b"E")       # a watchpoint of no bytes
        assert c.cmd(b"Z2,12400,8") == b"OK"               # 8 bytes: both DACs as one range (issue 23)
        assert c.cmd(b"z2,12400,8") == b"OK"
        assert c.cmd(b"vCont;x") == b"E01"
        assert c.cmd(b"Hgp1.9") == b"E02"                  # no such thread
        assert c.cmd(b"qNoSuchThing") == b""
        c.sock.sendall(b"$" + b"a" * 70000)                # longer than the codec takes: dropped
        c.sock.sendall(c.frame(b"?"))
        assert c.reply().startswith(b"T05thread:p01.01;")
        regs = c.cmd(b"g")
        assert len(regs) == 38 * 8 and int(regs[32 * 8:33 * 8], 16) == IMAGE.entry
        assert c.cmd(b"m%x,4" % BP) == b"%08x" % ORIGINAL
        # a second gdb is turned away while this one is attached
        host, port = sc.address.rsplit(":", 1)
        other = socket.create_connection((host, int(port)))
        try:
            other.settimeout(10)
            assert other.recv(10) == b""
        finally:
            other.close()
        # the minimal cycle, then Ctrl-C as the raw 0x03 byte
        assert c.cmd(b"Z0,%x,4" % BP) == b"OK"
        assert c.cmd(b"m%x,4" % BP) == b"%08x" % ORIGINAL   # the original under the planted word
        assert sc.word(BP) == Word.ILLEGAL_BP
        stop = c.cmd(b"vCont;c:p1.-1")
        assert stop.startswith(b"T05thread:p01.01;swbreak:;")
        assert b";20:%08x;" % BP in stop                   # registers expedited: pc (remote 0x20)
        assert c.cmd(b"z0,%x,4" % BP) == b"OK"
        stop = c.cmd(b"vCont;s:p1.1")
        assert stop.startswith(b"T05thread:p01.01;00:") and b";20:%08x;" % (BP + 4) in stop
        assert c.cmd(b"Z0,%x,4" % BP) == b"OK"
        assert c.cmd(b"vCont;c:p1.-1").startswith(b"T05thread:p01.01;swbreak:;")
        assert c.cmd(b"z0,%x,4" % BP) == b"OK"
        c.sock.sendall(c.frame(b"vCont;c:p1.-1"))
        c.read_until(lambda b: b"+" in b)
        time.sleep(0.3)
        assert c.cmd(b"g") == b"E01"                       # all-stop: gdb must wait while it runs
        c.sock.sendall(b"\x03")
        assert c.reply().startswith(b"T02thread:p01.01;")
        assert c.cmd(b"Z0,%x,4" % BP) == b"OK"
        assert c.cmd(b"Z2,%x,4" % CNT_ITER) == b"OK"
        assert c.cmd(b"D;1") == b"OK"
        assert c.closed()
    finally:
        c.close()
    assert IMAGE.code_diff(sc.ram) == []                 # detached: guest code restored...
    n = counter(sc, CNT_ITER)
    time.sleep(0.3)
    assert counter(sc, CNT_ITER) > n                       # ...and the guest runs on its own


def test_raw_vkill(cosim_gdb_server):
    sc = cosim_gdb_server(scenario(iterations=2_000_000_000))
    c = Raw(sc.address)
    try:
        assert c.cmd(b"QStartNoAckMode") == b"OK"
        c.sock.sendall(c.frame(b"vKill;1"))
        assert c.read_until(lambda b: b"OK" in b)
        assert c.closed()
    finally:
        c.close()
    report = sc.wait(60)
    assert report["outcome"] == "killed-by-debugger"
    assert report["invariants"]["no-leftovers"]["ok"]


def test_reconnect_right_after_a_disconnect_while_running(cosim_gdb_server):
    """Issue 15: a gdb that hangs up while the target runs and connects again at once is served (the
    old connection's EOF is read before the new one is accepted), 30 times in a row."""
    sc = cosim_gdb_server(scenario(iterations=2_000_000_000))
    for k in range(30):
        c = Raw(sc.address)
        try:
            assert c.cmd(b"qSupported:multiprocess+;swbreak+").startswith(b"PacketSize="), k
            assert c.cmd(b"?").startswith(b"T"), k
            c.sock.sendall(c.frame(b"vCont;c:p1.-1"))
            c.read_until(lambda b: b"+" in b)
        finally:
            c.close()
    c = Raw(sc.address)
    try:
        assert c.cmd(b"?").startswith(b"T")
        c.sock.sendall(c.frame(b"vKill;1"))
        assert c.read_until(lambda b: b"OK" in b)
    finally:
        c.close()
    report = sc.wait(60)
    assert report["outcome"] == "killed-by-debugger"
    assert report["invariants"]["code-restored-after-detach"]["ok"]


def test_hbreak_and_watch_on_two_vcpus_gdb_never_aborts(cosim_gdb):
    """Issue 15: with an hbreak and a watchpoint on 2 vCPUs, gdb steps one thread over the point
    (vCont;s:p1.N) while the other's exit may be in flight; that other stop must stay pending (all-stop),
    or gdb aborts with infrun's `trap_expected` assertion. 300 continues, no internal error."""
    gdb = cosim_gdb(scenario(vcpus=2, iterations=100_000))
    sc = gdb.server
    assert gdb.result("-break-insert -h bp_target")[0] == "done"
    assert gdb.result('-break-watch "*(unsigned int *)&cnt_iter"')[0] == "done"
    reasons = set()
    for _ in range(300):
        start = len(gdb.log)
        stop = gdb.resume()
        text = str(stop) + gdb.output(start)                # the stop, and all gdb printed meanwhile
        assert "internal-error" not in text and "Assertion" not in text, text
        reasons.add(stop["reason"])
    assert reasons <= {"breakpoint-hit", "watchpoint-trigger"} and len(reasons) == 2, reasons
    assert "internal-error" not in gdb.cmd("info threads")
    assert gdb.result("-target-detach")[0] == "done"
    assert_clean_end(sc.wait())


KILL_MODES = ["stepi", "continue", "hbreak+watch"]


@pytest.mark.parametrize("seed", range(30))
def test_gdb_killed_at_a_random_moment_leaves_the_guest_intact(cosim_gdb, seed):
    """Issue 15: SIGKILL of a real gdb at a seeded random moment during `stepi`, `continue`, or
    `hbreak` + `watch` (2 vCPUs): the scenario carries on without it and the guest's own counters are
    intact (no bogus interrupt, e.g. from the engine's step page becoming a guest PC)."""
    rng = random.Random(seed)
    mode = KILL_MODES[seed % len(KILL_MODES)]
    vcpus = 2 if mode == "hbreak+watch" else 1
    iterations = 3000
    gdb = cosim_gdb(scenario(vcpus=vcpus, iterations=iterations))
    sc = gdb.server
    if mode == "hbreak+watch":
        assert gdb.result("-break-insert -h bp_target")[0] == "done"
        assert gdb.result('-break-watch "*(unsigned int *)&cnt_iter"')[0] == "done"
    else:
        assert gdb.result("-break-insert bp_target")[0] == "done"
    for _ in range(rng.randrange(1, 4)):
        gdb.resume()
    command = "-exec-step-instruction" if mode == "stepi" else "-exec-continue"
    for _ in range(rng.randrange(0, 6)):
        gdb.resume(command)
    gdb.send(command)                                  # in flight when gdb dies
    time.sleep(rng.uniform(0, 0.004))
    gdb.kill_gdb()
    report = sc.wait(120)
    guest = report["guest"]
    assert guest["cnt_iter"] == [iterations] * vcpus, (mode, guest)
    assert guest["cnt_hits"] == [iterations] * vcpus, (mode, guest)
    assert guest["cnt_bad_prog"] == [0] * vcpus and guest["unexpected_ivor"] == [0xFFFFFFFF] * vcpus, guest
    assert_clean_end(report)


# --- hops -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["trap-kernel", "hw"])
def test_a_bp_cycle_crosses_only_the_hops_the_design_requires(cosim_gdb_server, strategy):
    """Per raw cycle (c -> stop, z0, s -> stop, Z0): Exit, DebugExit and Resume per stop and nothing
    else -- Z/z and KVM_SET_GUEST_DEBUG go through shared memory, a Continue inside its Resume -- and
    every hit still crosses to the kernel (the kernel's decisions count them)."""
    from cosim.gdb.client import RspClient
    sc = cosim_gdb_server(scenario(cpu="e500mc", strategy=strategy, iterations=3000))
    host, port = sc.address.rsplit(":", 1)
    c = RspClient.connect((host, int(port)))
    try:
        z = f"{BP:x},4"
        kind = "1" if strategy == "hw" else "0"
        assert c.request(f"Z{kind},{z}") == b"OK"
        cycles = 10
        for _ in range(cycles):
            assert c.request("vCont;c:p1.-1").startswith(b"T05")
            assert c.request(f"z{kind},{z}") == b"OK"
            assert c.request("vCont;s:p1.1").startswith(b"T05")
            assert c.request(f"Z{kind},{z}") == b"OK"
        assert c.request("D;1") == b"OK"
    finally:
        c.close()
    report = sc.wait()
    assert_clean_end(report)
    tags = report["costs"]["messages"]["by_tag"]
    assert not {"set_guest_debug", "table_update", "ack"} & set(tags), tags
    assert tags["debug_exit"] == 2 * cycles and tags["resume"] == tags["exit"], tags
    assert tags.get("continue", 0) <= 2, tags    # gdb's first resume and the end's detach: none per stop
    assert report["invariants"]["debugger-hits-exactly-once"]["ok"], report["debugger_hits"]
