"""End to end: real processes (supervisor, vCPUs, kernel, userspace) over real sockets, one scenario per
test, every invariant asserted from the report. Nothing may outlive a run: no process, no shared-memory
block, no socket directory."""
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from cosim.config import load_config, parse_config
from cosim.report import build_report
from cosim.supervisor import Supervisor, run_config

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
STRATEGY_CONFIGS = sorted((CONFIGS / "strategies").glob("*.toml"))


def shm_blocks():
    """Shared-memory blocks made by this (test) process: names carry the creator's pid."""
    pid = os.getpid()
    return {n for n in os.listdir("/dev/shm") if f"-{pid}-" in n or f"_{pid}_" in n}


def run(cfg, **kw):
    before = shm_blocks()
    data = run_config(cfg, **kw)
    report = build_report(data)
    assert not shm_blocks() - before
    for pid in data.pids.values():
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert report["invariants"]["no-leftovers"]["ok"], report["invariants"]["no-leftovers"]
    return data, report


def scenario(**over):
    base = {"machine": {"cpu": "e500mc", "vcpus": 1}, "guest": {"program": "warn_storm", "iterations": 50},
            "debug": {"strategy": "illegal", "breakpoints": [{"at": "bp_target_a"}, {"at": "bp_target_b"}]},
            "limits": {"wall_seconds": 60.0}}
    for k, v in over.items():
        base[k] = {**base.get(k, {}), **v}
    return parse_config(base, "<test>")


def assert_invariants(report, excused=()):
    for name, e in report["invariants"].items():
        if name in excused:
            assert not e["ok"] and e.get("excused_by_finding"), (name, e)
        else:
            assert e["ok"], (name, e)


@pytest.mark.parametrize("path", STRATEGY_CONFIGS, ids=lambda p: p.stem)
def test_strategy_on_warn_storm(path):
    cfg = load_config(path)
    data, report = run(cfg)
    it = cfg.guest.iterations
    strategy, cpu = cfg.debug.strategy, cfg.machine.cpu
    findings = {f["id"]: f for f in report["findings"]}
    assert report["guest_warns"]["total"] == 3 * it
    assert report["guest_warns"]["unexplained_program_interrupts"] == 0
    assert data.guest["cnt_hits"] == [2 * it]
    if (strategy, cpu) == ("sc64", "e500mc"):
        # the thread's prediction: E.HV routes `sc` to the guest, the debugger never sees a hit
        assert report["debugger_hits"]["total"] == 0
        assert findings["sc64-lost-hits"]["predicted"]
        assert report["guest_warns"]["guest_syscalls"] == 2 * it
        assert_invariants(report, excused={"debugger-hits-exactly-once"})
        assert report["ok"]
        return
    assert report["ok"], report["failed"]
    assert_invariants(report)
    assert report["debugger_hits"]["total"] == 2 * it
    for bp in report["debugger_hits"]["by_breakpoint"].values():
        assert bp["hits"] == bp["executed"] == it and bp["stale"] == 0
    levels = report["exits"]["by_level"]
    if strategy == "trap-user":
        # every guest trap makes a userspace round trip and is re-injected with its own ESR/SRR0
        assert report["debugger_hits"]["reinjected"] == {"trap": 3 * it}
        assert levels["userspace"] == 2 * it + 3 * it
        assert findings["guest-traps-via-userspace"]["predicted"]
    else:
        assert report["debugger_hits"]["reinjected"] == {}
        assert levels["userspace"] == 2 * it
    if strategy == "hw":
        assert report["kernel"]["decisions"].get("debug:user") == 2 * it
    priv = report["exits"]["by_reason"]["priv"]
    assert (priv.get("kernel", 0) > 0) == (cpu == "e500v2") and (priv.get("vcpu", 0) > 0) == (cpu == "e500mc")


def test_hw_refuses_a_third_breakpoint():
    cfg = scenario(debug={"strategy": "hw", "breakpoints": [
        {"at": "bp_target_a"}, {"at": "bp_target_b"}, {"at": "main"}]})
    data, report = run(cfg)
    f = {x["id"]: x for x in report["findings"]}["hw-slots-exhausted"]
    assert f["predicted"] and "no free instruction (IAC) slot" in f["detail"] and "e500 has 2" in f["detail"]
    assert report["ok"] and report["debugger_hits"]["total"] == 100


def test_guest_loses_its_own_iac_while_host_debugs():
    cfg = scenario(guest={"program": "guest_iac", "iterations": 30},
                   debug={"strategy": "hw", "breakpoints": [{"at": "main"}]})
    data, report = run(cfg)
    assert {x["id"] for x in report["findings"]} >= {"guest-debug-lost"}
    assert data.guest["cnt_debug"] == [0] and data.guest["cnt_iter"] == [30]
    assert report["ok"]


def test_selfcheck_sees_patched_code_only_with_software_breakpoints():
    for strategy, visible in (("illegal", True), ("hw", False)):
        cfg = scenario(guest={"program": "selfcheck", "iterations": 20},
                       debug={"strategy": strategy, "breakpoints": [{"at": "bp_target"}]})
        data, report = run(cfg)
        # planted before boot: the guest's boot checksum already differs from the image's
        assert ("patched-code-visible" in {f["id"] for f in report["findings"]}) is visible, strategy
        assert report["ok"] and data.guest["cnt_iter"] == [20]


def test_actions_remove_after_log_registers_single_step():
    cfg = scenario(debug={"strategy": "trap-kernel", "breakpoints": [
        {"at": "bp_target_a", "action": "remove-after", "hits": 7},
        {"at": "bp_target_b", "action": "single-step", "steps": 3}]})
    data, report = run(cfg)
    assert report["ok"], report["failed"]
    by = {v["symbol"]: v for v in report["debugger_hits"]["by_breakpoint"].values()}
    assert by["bp_target_a"]["hits"] == 7 and by["bp_target_a"]["executed"] == 7
    assert by["bp_target_b"]["hits"] == 50
    assert report["debugger_hits"]["steps"] == 3 * 50
    cfg = scenario(debug={"breakpoints": [{"at": "bp_target_b", "action": "log-registers"}]})
    data, report = run(cfg)
    log = report["register_log"]
    assert log and all(e["symbol"] == "bp_target_b" and e["pc"] == e["regs"]["pc"] for e in log)
    assert all(e["regs"]["r1"] != 0 for e in log)   # the guest's stack pointer, from the run page
    assert len(log) + report["register_log_dropped"] == report["debugger_hits"]["total"]   # nothing cut silently


def test_smp_stress_eight_vcpus():
    cfg = load_config(CONFIGS / "smp-stress.toml")
    data, report = run(cfg)
    assert report["ok"], report["failed"]
    assert_invariants(report)
    dh = report["debugger_hits"]
    assert dh["inserts"] + dh["removes"] >= 100      # breakpoints really came and went
    # several vCPUs hit breakpoints (not necessarily all 8: on 2 loaded cores the OS scheduler may run
    # one vCPU's whole guest while both breakpoints are out; the deterministic test below pins all 8)
    assert len(dh["by_vcpu"]) >= 2 and sum(dh["by_vcpu"].values()) == dh["total"]
    executed = sum(b["executed"] for b in dh["by_breakpoint"].values())
    assert executed == dh["total"] + dh["stale"]       # zero lost hits
    it = cfg.guest.iterations
    # (a vCPU that ran its boot and then main as if it had read cfg_iterations = 0 was a kick that made
    # a load run twice, about 1 run in 10 under load: fixed, tests/test_kick.py; the counters say which)
    detail = {k: data.guest.get(k) for k in ("cnt_iter", "cnt_warn", "cnt_bad_prog", "exit_code")}
    assert report["guest_warns"]["total"] == 3 * it * 8, detail   # zero misrouted traps
    assert data.guest["cnt_bad_prog"] == [0] * 8 and data.guest["cnt_iter"] == [it] * 8, detail


def test_a_vcpu_that_skipped_its_iterations_fails_the_run():
    """A vCPU that halts by itself with exit code 0 but did fewer iterations than configured passes
    every other check (the WARN count follows the guest's own iteration counter): run-completed
    judges it. The run is real; its counters are then changed as the kick race of the stress test
    (fixed, tests/test_kick.py) left them (one vCPU at 0)."""
    cfg = scenario(machine={"vcpus": 2}, guest={"iterations": 5})
    data, report = run(cfg)
    assert report["ok"] and report["invariants"]["run-completed"]["ok"], report["failed"]
    data.guest = {**data.guest, "cnt_iter": [5, 0], "cnt_warn": [15, 0]}
    short = build_report(data)
    rc = short["invariants"]["run-completed"]
    assert not short["ok"] and not rc["ok"], rc
    assert "vCPU 1 halted after 0 of its 5 iterations" in rc["detail"], rc


def test_smp_stress_eight_vcpus_deterministic():
    """The same stress under the deterministic schedule (seed 1): every vCPU hits breakpoints, every
    time, and nothing is lost."""
    it = 100
    cfg = load_config(CONFIGS / "smp-stress.toml", ['machine.schedule="deterministic"', "machine.seed=1",
                                                    f"guest.iterations={it}",
                                                    "debug.stress.interval_ms=[0.002, 0.01]"])
    data, report = run(cfg)
    assert report["ok"], report["failed"]
    assert_invariants(report)
    dh = report["debugger_hits"]
    assert dh["inserts"] + dh["removes"] >= 50
    assert sorted(dh["by_vcpu"]) == [str(i) for i in range(8)]
    executed = sum(b["executed"] for b in dh["by_breakpoint"].values())
    assert executed == dh["total"] + dh["stale"] and dh["stale"] > 0
    assert report["guest_warns"]["total"] == 3 * it * 8
    assert data.guest["cnt_bad_prog"] == [0] * 8 and data.guest["cnt_iter"] == [it] * 8


def test_forced_stale_exit_race():
    cfg = load_config(CONFIGS / "stale-race.toml")
    data, report = run(cfg)
    assert report["ok"], report["failed"]
    inv = report["invariants"]["stale-exit-never-delivered"]
    assert inv["ok"] and "race forced 1 time" in inv["detail"]
    dh = report["debugger_hits"]
    assert dh["stale"] == 1 and dh["total"] == cfg.debug.race.after_hits - 1
    assert data.guest["cnt_bad_prog"] == [0]          # never delivered to the guest as a trap
    assert data.guest["cnt_hits"] == [2 * cfg.guest.iterations]


def test_tcp_transport():
    data, report = run(scenario(machine={"transport": "tcp", "vcpus": 2}))
    assert report["ok"] and report["debugger_hits"]["total"] == 200


def test_child_death_is_reported_and_cleaned_up():
    cfg = scenario(guest={"iterations": 10_000_000}, debug={"breakpoints": []})
    sup = Supervisor(cfg)
    killed = []

    def killer(progress):
        if not killed:
            pid = [p.pid for n, p in sup.procs.items() if n == "vcpu0"][0]
            psutil.Process(pid).kill()
            killed.append(pid)

    sup.progress = killer
    before = shm_blocks()
    data = sup.run()
    report = build_report(data)
    assert data.outcome == "child-died"
    assert any("vcpu0" in p and "died" in p for p in data.problems)
    assert not report["ok"] and "run-completed" in report["failed"]
    assert not shm_blocks() - before
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                   for p in data.pids.values())


def test_wall_limit_ends_the_run():
    cfg = scenario(guest={"iterations": 10_000_000}, limits={"wall_seconds": 1.5})
    data, report = run(cfg)
    assert data.outcome == "wall-limit" and "run-completed" in report["failed"]
    assert report["invariants"]["code-restored-after-detach"]["ok"]


def test_cli_bad_config_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[machine]\ncpu = "e600"\n[guest]\nprogram = "loop"\n')
    p = subprocess.run([sys.executable, str(ROOT / "run.py"), str(bad)], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "machine.cpu" in lines[0]


def test_cli_json_report(tmp_path):
    import json
    out = tmp_path / "r.json"
    p = subprocess.run([sys.executable, str(ROOT / "run.py"), str(CONFIGS / "demo.toml"), "--json", str(out)],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(out.read_text())
    for key in ("invariants", "vcpus", "exits", "debugger_hits", "guest_warns", "findings"):
        assert key in r
    assert set(r["exits"]["latency_us"]) == {"vcpu", "kernel", "userspace"}
    assert all(v["ok"] for v in r["invariants"].values())
    assert "invariants" in p.stdout and "PASS" in p.stdout


def test_guest_fault_is_reported_not_a_crash():
    cfg = scenario(guest={"entry": "0x80000000"}, debug={"breakpoints": []})
    data, report = run(cfg)
    inv = report["invariants"]["run-completed"]
    assert not inv["ok"] and "unmapped fetch at 0x80000000" in inv["detail"]
    assert report["vcpus"][0]["state"] == "faulted" and data.outcome == "completed"
