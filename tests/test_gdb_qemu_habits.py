"""What a QEMU user types, against a live scenario with a real gdb-multiarch (issue 23): the HMP
commands at `monitor` (info registers, x/xp, system_reset, info tlb), gdb's `watch` on more than 4
bytes through the two DACs as one range (DBCR2[DAC12M]) and a refused watchpoint explained by the
monitor, and `--gdb` without a port. Fixtures as in tests/test_gdb_real.py (port 0, killed in teardown).
"""
from __future__ import annotations

import pytest

from cosim import cli
from test_gdb_real import GDB, IMAGE, scenario, stopped_pc

pytestmark = pytest.mark.skipif(GDB is None, reason="gdb-multiarch is not installed")

CNT_ITER = IMAGE.symbol("cnt_iter")
BP = IMAGE.symbol("bp_target")


def test_watch_on_8_bytes_uses_the_dacs_as_one_range_and_a_refusal_says_why(cosim_gdb):
    gdb = cosim_gdb(scenario(vcpus=1, iterations=50))
    sc = gdb.server
    # [cnt_iter - 4, cnt_iter + 4): the guest's store to cnt_iter is at offset 4 of the range
    gdb.cmd(f"watch *(unsigned long long *){CNT_ITER - 4:#x}")
    stop = gdb.resume()
    assert stop["reason"] == "watchpoint-trigger", stop
    assert sc.word(CNT_ITER) == 1 and int(stop["value"]["new"]) == 1
    stop = gdb.resume()
    assert stop["reason"] == "watchpoint-trigger" and sc.word(CNT_ITER) == 2, stop
    # both DACs hold the range: a further watchpoint is refused; gdb blames "too many", the monitor says why
    gdb.cmd(f"watch *(unsigned int *){CNT_ITER + 0x100:#x}")
    start = len(gdb.log)
    cls, _ = gdb.result("-exec-continue")
    if cls == "running":                                  # (async: gdb's error follows the ^running)
        gdb.wait_for(lambda r: r["type"] == "result")
    told = "".join(str(r["payload"]) for r in gdb.log[start:] if r["type"] == "log")
    assert "Could not insert hardware watchpoint 2" in told, told
    bps = gdb.monitor("info breakpoints")
    assert "refused" in bps and f"watch 0x{CNT_ITER + 0x100:x} (4 bytes): no free data (DAC) slot" in bps, bps
    assert "(8 bytes, both slots)" in bps
    debug = gdb.monitor("info debug")             # (gdb inserted the range before failing on the new one)
    assert f"0x{CNT_ITER - 4:08x} <= EA < 0x{CNT_ITER + 4:08x}" in debug and "DBCR2[DAC12M]" in debug, debug
    gdb.cmd("delete")
    gdb.cmd("kill")
    report = sc.wait(60)
    assert report["outcome"] == "killed-by-debugger"
    assert report["debugger_hits"]["watch"] == {f"{CNT_ITER:#x}": 2}, report["debugger_hits"]["watch"]


def test_hmp_commands_on_a_live_scenario_and_system_reset(cosim_gdb):
    iterations = 30
    gdb = cosim_gdb(scenario(vcpus=1, iterations=iterations))
    sc = gdb.server
    gdb.cmd("set breakpoint always-inserted on")
    gdb.cmd("break bp_target")
    for _ in range(3):
        assert stopped_pc(gdb.resume()) == BP
    assert sc.word(CNT_ITER) == 2
    regs = gdb.registers()
    text = gdb.monitor("info registers")
    assert text.splitlines()[0].startswith(f"NIP {BP:08x}   LR {regs['lr']:08x}") and "CPU#0" in text
    assert f"GPR00 {regs['r0']:08x} {regs['r1']:08x}" in text
    # x shows memory as the guest reads it: the planted word; gdb's own x shows the saved one
    assert gdb.monitor("x /2xw bp_target") == f"{BP:08x}: 0x00dddd00 0x{IMAGE.read_word(BP + 4):08x}\n"
    assert gdb.monitor(f"xp /1xw {CNT_ITER:#x}") == f"{CNT_ITER:016x}: 0x00000002\n"
    assert "does not read the guest TLB yet" in gdb.monitor("info tlb")
    assert "(prio 0, ram): cosim.guest-ram" in gdb.monitor("info mtree")
    assert gdb.monitor("info status").startswith("VM status: paused (debug)")
    # system_reset: the image again (counters back to 0, the breakpoint still planted), PC at the entry
    assert gdb.monitor("system_reset") == ""
    assert sc.word(CNT_ITER) == 0 and sc.word(BP) == 0x00DDDD00
    gdb.cmd("maintenance flush register-cache")       # (gdb caches registers: the monitor changed them)
    assert gdb.value("$pc") == IMAGE.entry
    assert stopped_pc(gdb.resume()) == BP and sc.word(CNT_ITER) == 0       # the loop starts again
    gdb.cmd("delete")
    report = gdb.finish()
    assert report["ok"], report["failed"]
    assert report["guest"]["cnt_iter"] == [iterations]                    # a whole run after the reset
    assert any("system_reset" in line["text"] for line in report["logs"]), report["logs"]


def test_gdb_without_a_port_is_1234_as_qemus_s(monkeypatch, capsys):
    seen = []

    def bind(addr):
        seen.append(addr)
        return "stop here"                 # (no run: the address is what is tested)
    monkeypatch.setattr(cli, "check_gdb_bind", bind)
    assert cli.main(["run", "demo", "--gdb"]) == 2
    assert cli.main(["run", "demo", "--gdb", "--running"]) == 2
    assert cli.main(["run", "demo", "--gdb", "0"]) == 2
    assert seen == ["127.0.0.1:1234", "127.0.0.1:1234", "127.0.0.1:0"]
