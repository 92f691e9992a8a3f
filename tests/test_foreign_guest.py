"""Guests the project did not write, first class (issue 10): `[guest] until`, `[[expect.memory]]`,
`[[expect.interrupts]]` judge a stand-alone Book E guest (guests/foreign_traps.S, own vectors, no
project counters) from what the harness delivered; what cannot be judged is said, never called ok;
E.HV's two debug modes (machine.msrp_dep) with a guest that clears its own MSR[DE]
(guests/foreign_debug.S)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cosim import junit
from cosim.config import load_config, parse_config
from cosim.machine.image import GuestImage, guest_path
from cosim.report import build_report
from cosim.supervisor import run_config
from test_gdb_real import GDB, scenario, stopped_pc

REPO = Path(__file__).resolve().parents[1]
TRAPS = GuestImage.load(guest_path("foreign_traps"))
DEBUG = GuestImage.load(guest_path("foreign_debug"))
CPUS = ("e500v2", "e500mc")


def run(d: dict) -> dict:
    return build_report(run_config(parse_config(d, "test.toml")))


def foreign(cpu="e500mc", vcpus=2, strategy="illegal", breakpoints=(), **expect) -> dict:
    d = load_config(REPO / "configs" / "foreign.toml").to_dict()
    d["machine"].update(cpu=cpu, vcpus=vcpus)
    d["debug"].update(strategy=strategy, breakpoints=list(breakpoints))
    d["expect"].update(debugger_hits=None, **expect)
    return d


@pytest.mark.parametrize("cpu", CPUS)
def test_foreign_guest_judged_by_memory_and_delivered_interrupts(cpu):
    d = foreign(cpu, breakpoints=[{"at": "sc_site"}])
    d["expect"]["debugger_hits"] = 12
    r = run(d)
    assert r["ok"], r["failed"]
    inv = r["invariants"]
    assert inv["expect-memory"]["ok"] and inv["expect-interrupts"]["ok"]
    assert r["vcpus"][0]["state"] == "halted" and r["vcpus"][1]["state"] == "halted"
    # no WARN counters in this guest: said, not called ok
    assert inv["guest-traps-to-guest-once"]["ok"] is None
    assert inv["guest-traps-to-guest-once"]["detail"].startswith("not judged: ")
    assert "guest-traps-to-guest-once" in r["not_judged"]
    assert r["guest_warns"]["judged"] is False
    ts = junit.suite(r)                                  # JUnit: a skipped testcase, not a pass
    skipped = [tc.get("name") for tc in ts.findall("testcase") if tc.find("skipped") is not None]
    assert skipped == ["guest-traps-to-guest-once"] and ts.get("skipped") == "1"
    trap, ill, ret = (f"{TRAPS.symbol(s):#x}" for s in ("trap_site", "ill_site", "sc_return"))
    assert len(r["interrupts_delivered"]["by_vcpu"]) == 2
    for v in r["interrupts_delivered"]["by_vcpu"]:
        assert v == {"program": {trap: 3, ill: 1}, "syscall": {ret: 6}}


def test_wrong_expectations_fail_with_the_difference():
    d = foreign(vcpus=1)
    d["expect"]["interrupts"][0]["count"] = 4          # trap_site fires 3 times
    d["expect"]["memory"][0]["words"] = [4, 7, 6]       # 6 system calls, not 7
    d["expect"]["interrupts"] = d["expect"]["interrupts"][:2]   # the syscalls not listed
    r = run(d)
    assert not r["ok"]
    assert set(r["failed"]) == {"expect-memory", "expect-interrupts"}
    detail = r["invariants"]["expect-interrupts"]["detail"]
    assert "program at SRR0" in detail and "3, expected 4" in detail
    assert "6 syscall interrupt(s) not expected" in detail
    assert "is 0x6, expected 0x7" in r["invariants"]["expect-memory"]["detail"]


def test_sc64_lost_hits_derived_from_delivery_without_guest_counters():
    """sc64 on E.HV: the planted `sc 64` goes to the guest's own syscall vector. The finding comes
    from what the harness delivered (SRR0 = site + 4), not from guest counter symbols."""
    d = foreign("e500mc", vcpus=1, strategy="sc64", breakpoints=[{"at": "trap_site"}])
    d["expect"]["interrupts"] = None
    d["expect"]["memory"] = None
    r = run(d)
    f = {x["id"]: x for x in r["findings"]}
    assert "sc64-lost-hits" in f and f["sc64-lost-hits"]["predicted"]
    assert "trap_site: 6" in f["sc64-lost-hits"]["detail"]
    assert r["invariants"]["predictions-confirmed"]["ok"]
    assert r["invariants"]["debugger-hits-exactly-once"].get("excused_by_finding")


def _cosim(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "cosim", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("guest,problem", [
    ('iterations = 5', "guest.iterations: foreign_traps.elf has no cfg_iterations word to set"),
    ('until = "no_such_symbol"', "guest.until:"),
])
def test_guest_config_errors_exit_2_before_anything_starts(tmp_path, guest, problem):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[machine]\ncpu = "e500mc"\n[guest]\nprogram = "foreign_traps"\n{guest}\n')
    p = _cosim("run", str(cfg), "--quiet")
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and problem in lines[0], p.stderr


def test_msrp_dep_only_on_e500mc(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[machine]\ncpu = "e500v2"\nmsrp_dep = false\n[guest]\nprogram = "foreign_debug"\n')
    p = _cosim("run", str(cfg), "--quiet")
    assert p.returncode == 2 and "machine.msrp_dep: only valid with cpu = 'e500mc'" in p.stderr


def _dep_run(dep: bool, breakpoints) -> dict:
    return run({"machine": {"cpu": "e500mc", "msrp_dep": dep},
                "guest": {"program": "foreign_debug", "until": "done"},
                "debug": {"strategy": "hw", "breakpoints": breakpoints}})


def test_msrp_dep_1_guest_cannot_switch_off_host_debug():
    r = _dep_run(True, [{"at": "spot"}])
    assert r["ok"], r["failed"]
    assert r["debugger_hits"]["total"] == 10
    assert not r["findings"]


def test_msrp_dep_0_guest_clearing_msr_de_hides_host_breakpoints():
    r = _dep_run(False, [{"at": "spot"}])
    assert r["debugger_hits"]["total"] == 5           # only while the guest had MSR[DE] = 1
    f = {x["id"]: x for x in r["findings"]}
    assert f["guest-disabled-host-debug"]["predicted"]
    assert r["host_debug_missed"]["iac"] == {f"{DEBUG.symbol('spot'):#x}": 5}
    inv = r["invariants"]["debugger-hits-exactly-once"]
    assert not inv["ok"] and inv.get("excused_by_finding")
    assert r["ok"], r["failed"]


def test_msrp_dep_0_single_step_across_clearing_msr_de_is_lost():
    """A host single-step through the guest's `mtmsr` that clears MSR[DE]: the steps after it do not
    happen under MSRP[DEP] = 0 (counted), all of them do under MSRP[DEP] = 1."""
    words = [DEBUG.read_word(a) for a in range(DEBUG.entry, DEBUG.symbol("done"), 4)]
    mtmsr = [DEBUG.entry + 4 * i for i, w in enumerate(words) if w & 0xFC0007FE == 0x7C000124]
    at = mtmsr[-1] - 4                                 # `li r3, 0` before the mtmsr clearing DE
    bp = [{"at": at, "action": "single-step", "steps": 4}]
    on, off = _dep_run(True, bp), _dep_run(False, bp)
    assert on["debugger_hits"]["steps"] == 4 and not on["findings"]
    assert off["debugger_hits"]["steps"] < 4
    assert sum(off["host_debug_missed"]["step"].values()) >= 1
    assert "guest-disabled-host-debug" in {x["id"] for x in off["findings"]}


@pytest.mark.skipif(GDB is None, reason="gdb-multiarch is not installed")
def test_until_ends_the_run_under_gdb(cosim_gdb):
    """gdb attached, a breakpoint on the guest's sc: 6 stops, then `continue` runs the vCPU into
    `until` and the run ends by itself, judged like without gdb."""
    gdb = cosim_gdb(scenario(cpu="e500mc", strategy="illegal", iterations=None, program="foreign_traps",
                             wall=120.0), **{"guest.until": "done"})
    assert str(gdb.server.image.path) == str(guest_path("foreign_traps"))   # gdb loaded the guest's ELF
    sc = gdb.server
    site = TRAPS.symbol("sc_site")
    gdb.cmd(f"break *{site:#x}")
    for _ in range(6):
        assert stopped_pc(gdb.resume()) == site
    gdb.mi("-exec-continue")
    report = sc.wait()
    assert report["outcome"] == "completed", report["problems"]
    assert report["vcpus"][0]["state"] == "halted"
    assert report["debugger_hits"]["total"] == 6
    irq = report["interrupts_delivered"]["by_vcpu"][0]
    assert irq["syscall"] == {f"{TRAPS.symbol('sc_return'):#x}": 6}
    assert sum(irq["program"].values()) == 4


@pytest.mark.parametrize("extra,problem", [
    ('[[expect.interrupts]]\nkind = "prog"\ncount = 1\n',
     "expect.interrupts[0].kind: unknown interrupt kind 'prog' (expected one of: critical,"),
    ('[[expect.interrupts]]\nkind = "program"\ncount = 1\n[[expect.interrupts]]\nkind = "program"\ncount = 2\n',
     "expect.interrupts[1].kind: program at any SRR0 listed twice (also expect.interrupts[0])"),
    ('[[expect.interrupts]]\nkind = "syscall"\n', "expect.interrupts[0].count: missing required key"),
    ('[[expect.memory]]\nat = "records"\nwords = [-1]\n',
     "expect.memory[0].words[0]: expected a 32-bit word (0..0xffffffff), got integer -1"),
    ('[[expect.memory]]\nat = "records"\nwords = [1]\nstride = 6\n',
     "expect.memory[0].stride: 6 is not a multiple of 4"),
    ('[[expect.memory]]\nat = "records"\nwords = []\n', "expect.memory[0].words: must list at least one word"),
])
def test_expect_schema_errors_are_one_line(tmp_path, extra, problem):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[machine]\ncpu = "e500mc"\n[guest]\nprogram = "foreign_traps"\n' + extra)
    with pytest.raises(Exception) as info:
        load_config(cfg)
    assert str(info.value).startswith(f"{cfg}: {problem}"), str(info.value)
    assert "\n" not in str(info.value)
