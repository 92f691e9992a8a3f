"""The timeline trace (`--trace`): a real run on 2 vCPUs with stress toggles, the merged Chrome JSON
read back. Its slices, flows and counters must equal the report's counts: one vCPU slice pair per exit
that crossed to the kernel, one kernel slice per such exit, one userspace slice per KVM_EXIT_DEBUG, and
one flow per exit whose arrows follow vCPU -> kernel (-> userspace) -> vCPU."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from cosim import trace
from cosim.config import parse_config
from cosim.report import build_report
from cosim.supervisor import run_config

STRESS = {"machine": {"cpu": "e500mc", "vcpus": 2}, "guest": {"program": "warn_storm", "iterations": 100},
          "debug": {"strategy": "illegal", "breakpoints": [{"at": "bp_target_a"}, {"at": "bp_target_b"}],
                    "stress": {"toggle": ["bp_target_a", "bp_target_b"], "interval_ms": [0.2, 1.0],
                               "seed": 3, "toggles": 20}},
          "limits": {"wall_seconds": 120}}


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("trace") / "run.json")
    data = run_config(parse_config(STRESS, "<trace>"), trace=path)
    report = build_report(data)
    assert report["ok"], report["failed"]
    with open(path) as f:
        return report, json.load(f), data


def test_slices_and_flows_equal_the_reports_exit_counts(traced):
    report, t, data = traced
    s = trace.summarize(t)
    by_level = report["exits"]["by_level"]
    crossed = by_level["kernel"] + by_level["userspace"]
    assert crossed > 0 and by_level["userspace"] > 0
    for v in report["vcpus"]:
        n = sum(c for ev in v["exits"].values() for lv, c in ev.items() if lv != "vcpu")
        assert s["slices"][f"vcpu{v['vcpu']}"] == 2 * n          # "exit EVENT" + "resume HOW"
    assert s["slices"]["kernel"] == crossed
    user_exits = [e for e in t["traceEvents"] if e.get("ph") == "X" and e["name"].startswith("debug exit")]
    assert len(user_exits) == by_level["userspace"]
    assert s["flows"] == crossed
    assert s["paths"] == {"vcpu->kernel->vcpu": by_level["kernel"],
                          "vcpu->kernel->userspace->vcpu": by_level["userspace"]}
    assert s["arrows"] == 2 * by_level["kernel"] + 3 * by_level["userspace"]


def test_counters_and_instants(traced):
    report, t, data = traced
    s = trace.summarize(t)
    hits = [e["args"]["value"] for e in t["traceEvents"] if e.get("ph") == "C" and e["name"] == "hits"]
    assert hits and hits[-1] == report["debugger_hits"]["total"]
    assert hits == sorted(hits)
    for v in report["vcpus"]:
        inst = [e["args"]["value"] for e in t["traceEvents"]
                if e.get("ph") == "C" and e["name"] == f"instructions vcpu{v['vcpu']}"]
        assert inst == sorted(inst) and 0 < inst[-1] <= v["instructions"]
    assert s["instants"]["patch"] >= 2 + 1   # two plants at start, then toggles
    assert s["instants"]["flush"] > 0 and s["instants"]["stop"] > 0
    names = {e["args"]["name"] for e in t["traceEvents"] if e.get("name") == "thread_name"}
    assert names == {"vcpu0", "vcpu1", "kernel", "userspace"}


def test_slices_nest_on_every_track(traced):
    """Slices of one track never overlap partially (a viewer would draw them wrongly)."""
    _, t, _ = traced
    by_tid: dict[int, list] = {}
    for e in t["traceEvents"]:
        if e.get("ph") == "X":
            by_tid.setdefault(e["tid"], []).append((e["ts"], e["ts"] + e["dur"]))
    for spans in by_tid.values():
        stack: list[float] = []
        for a, b in sorted(spans, key=lambda x: (x[0], -x[1])):
            while stack and stack[-1] <= a:
                stack.pop()
            assert not stack or b <= stack[-1] + 1e-3
            stack.append(b)


def _trace_processor_shell():
    """The perfetto package downloads its trace_processor_shell on first use; offline it is only there
    when cached or named by PERFETTO_TRACE_PROCESSOR."""
    path = os.environ.get("PERFETTO_TRACE_PROCESSOR") or shutil.which("trace_processor_shell")
    return path if path and os.access(path, os.X_OK) else None


@pytest.mark.skipif(_trace_processor_shell() is None,
                    reason="no trace_processor_shell binary (the perfetto package downloads it; offline here)")
def test_trace_processor_loads_it(traced):
    from perfetto.trace_processor import TraceProcessor, TraceProcessorConfig
    report, t, _ = traced
    by_level = report["exits"]["by_level"]
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(t, f)
        f.flush()
        tp = TraceProcessor(trace=f.name, config=TraceProcessorConfig(bin_path=_trace_processor_shell()))
        try:
            kernel = next(iter(tp.query("select count(*) n from slice join thread_track tt on slice.track_id = "
                                        "tt.id join thread using(utid) where thread.name = 'kernel'"))).n
            flows = next(iter(tp.query("select count(*) n from flow"))).n
        finally:
            tp.close()
    assert kernel == by_level["kernel"] + by_level["userspace"]
    assert flows == 2 * by_level["kernel"] + 3 * by_level["userspace"]


def test_cli_trace_option(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    bad = subprocess.run([sys.executable, os.path.join(root, "run.py"), os.path.join(root, "configs", "demo.toml"),
                          "--trace", str(tmp_path / "no" / "t.json"), "--quiet"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--trace" in bad.stderr


def test_deterministic_trace_is_virtual_time_the_same_for_the_same_seed(tmp_path):
    """Under the deterministic schedule the timestamps are virtual (10 ns per guest instruction, a
    Lamport clock along each exit): two runs of one seed give the same trace, event for event; every
    exit's hops follow each other in time; the counts still equal the report's."""
    cfg = json.loads(json.dumps(STRESS))
    cfg["machine"].update(vcpus=3, schedule="deterministic", seed=5)
    cfg["guest"]["iterations"] = 30
    cfg["debug"]["stress"]["interval_ms"] = [0.005, 0.02]
    runs = []
    for k in range(2):
        path = str(tmp_path / f"t{k}.json")
        report = build_report(run_config(parse_config(cfg, "<trace>"), trace=path))
        assert report["ok"], report["failed"]
        with open(path) as f:
            runs.append((report, json.load(f)))
    (report, t), (_, t2) = runs

    def events(tr):
        return sorted((json.dumps(e, sort_keys=True) for e in tr["traceEvents"]))
    assert events(t) == events(t2)
    s = trace.summarize(t)
    by_level = report["exits"]["by_level"]
    assert s["slices"]["kernel"] == by_level["kernel"] + by_level["userspace"] > 0
    assert s["paths"] == {"vcpu->kernel->vcpu": by_level["kernel"],
                          "vcpu->kernel->userspace->vcpu": by_level["userspace"]}
    # every exit's hops in time order: the kernel's slice starts after the vCPU's exit, userspace's
    # after the kernel's ended, the vCPU's resume after the last hop's
    tracks = {e["tid"]: e["args"]["name"] for e in t["traceEvents"] if e.get("name") == "thread_name"}
    hops: dict[str, dict] = {}
    for e in t["traceEvents"]:
        if e.get("ph") == "X" and "bind_id" in e:
            who = tracks[e["tid"]]
            key = "resume" if e["name"].startswith("resume") else "exit" if who.startswith("vcpu") else who
            hops.setdefault(e["bind_id"], {})[key] = (e["ts"], e["ts"] + e["dur"])
    assert len(hops) == by_level["kernel"] + by_level["userspace"]
    for h in hops.values():
        assert h["kernel"][0] >= h["exit"][0], h
        last = h["kernel"]
        if "userspace" in h:
            assert h["userspace"][0] >= last[1], h
            last = h["userspace"]
        assert h["resume"][0] >= last[1], h
    vtime = sum(v["instructions"] for v in report["vcpus"])
    last = max(e.get("ts", 0) + e.get("dur", 0) for e in t["traceEvents"])
    assert vtime * 0.01 * 0.5 < last < vtime * 0.01 * 3       # microseconds: 10 ns per instruction
