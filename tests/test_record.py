"""The run's record (cosim/record.py): every run writes its schedule and digest; `--record DIR` keeps
them; `cosim replay DIR` reruns and compares. A deterministic guest (one vCPU, no stress) replays
identically; `compare` names the first divergence (vCPU, instruction count, fields)."""
import json
import os
import subprocess
import sys

import msgpack

from cosim import record
from cosim.config import parse_config
from cosim.supervisor import run_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ONE = {"machine": {"cpu": "e500v2", "vcpus": 1}, "guest": {"program": "warn_storm", "iterations": 40},
       "debug": {"strategy": "trap-kernel", "breakpoints": [{"at": "bp_target_a"},
                                                            {"at": "bp_target_b", "action": "single-step",
                                                             "steps": 2}]},
       "limits": {"wall_seconds": 60}}


def test_run_writes_a_record_and_keeps_it(tmp_path):
    data = run_config(parse_config(ONE, "<record>"), record_dir=str(tmp_path))
    assert data.outcome == "completed"
    rec = record.load(str(tmp_path))
    assert rec["schedule"]["mode"] == "free-running"
    v = rec["digest"]["vcpus"][0]
    exits = record.read_exits(str(tmp_path), 0)
    # level "kernel" also counts KVM PR emulation done inside the vCPU process: only userspace's
    # count is all crossings
    user = sum(c for ev in v["exits"].values() for lv, c in ev.items() if lv == "userspace")
    kernel = sum(c for ev in v["exits"].values() for lv, c in ev.items() if lv == "kernel")
    assert len(exits) == v["crossing_exits"] > 0
    assert sum(1 for e in exits if e[4] == "userspace") == user > 0
    assert sum(1 for e in exits if e[4] == "kernel") <= kernel
    assert [e[0] for e in exits] == list(range(1, len(exits) + 1))          # every seq, in order
    assert [e[3] for e in exits] == sorted(e[3] for e in exits) and exits[-1][3] <= v["instructions"]
    hits = sum(rec["digest"]["debugger"]["hits"].values())
    assert sum(1 for e in exits if e[4] == "userspace") >= hits > 0        # the debugger's decisions
    assert {e[5] for e in exits if e[4] == "userspace"} <= {"continue", "step_over", "reflect"}
    assert len(rec["digest"]["ram_hash"]) == 32
    assert not [n for n in os.listdir(tmp_path) if not n.startswith("record")]


def test_replay_of_a_deterministic_guest_is_identical(tmp_path):
    run_config(parse_config(ONE, "<record>"), record_dir=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "cosim", "replay", str(tmp_path), "--runs", "2"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("identical (invariants hold)") == 2


def _fake(d, exits, extra=None, tag=""):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "record-vcpu0.msgpack"), "wb") as f:
        for e in exits:
            f.write(msgpack.packb(e))
    digest = {"vcpus": [{"vcpu": 0}], "ram_hash": "x", **(extra or {})}
    with open(os.path.join(d, "record.json"), "w") as f:
        json.dump({"schedule": {}, "digest": digest, "digest_hash": tag}, f)


def test_compare_names_the_first_divergence(tmp_path):
    a = [[1, "program", 0x100, 50, "kernel", "reflect"], [2, "program", 0x200, 90, "userspace", "continue"]]
    b = [[1, "program", 0x100, 50, "kernel", "reflect"], [2, "program", 0x204, 91, "userspace", "continue"]]
    _fake(tmp_path / "a", a, tag="a")
    _fake(tmp_path / "b", b, tag="b")
    diff = record.compare(str(tmp_path / "a"), str(tmp_path / "b"))
    assert diff == "vcpu0 exit #2 at instruction 90: pc 0x00000200 vs 0x00000204, instructions 90 vs 91"
    _fake(tmp_path / "c", a[:1], tag="c")
    assert record.compare(str(tmp_path / "c"), str(tmp_path / "a")) == \
        "vcpu0: 1 vs 2 exits; exit #2 at instruction 90 (program at 0x00000200) only in one"
    _fake(tmp_path / "d", a, {"ram_hash": "y"}, tag="d")
    assert record.compare(str(tmp_path / "a"), str(tmp_path / "d")).startswith("ram_hash differs")


def test_replay_rejects_what_is_not_a_record(tmp_path):
    out = subprocess.run([sys.executable, "-m", "cosim", "replay", str(tmp_path)], capture_output=True,
                         text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 2 and "not a run record" in out.stderr
