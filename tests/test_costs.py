"""Machine-independent costs (cosim/costs.py): attribution of exits, hops and messages to debugger hits
and guest WARNs, from exits by reason x level; intervals over repeats."""
from cosim import costs


def report(by_reason, hits, warns, reinjected=None, inproc=0):
    levels = {"vcpu": 0, "kernel": 0, "userspace": 0}
    for lv in by_reason.values():
        for k, v in lv.items():
            levels[k] += v
    return {"exits": {"by_reason": by_reason, "by_level": levels, "kernel_in_vcpu_process_us": {"count": inproc}},
            "debugger_hits": {"total": hits, "reinjected": reinjected or {}}, "guest_warns": {"total": warns}}


def test_illegal_hits_in_userspace_warns_in_kernel():
    r = report({"priv": {"kernel": 50}, "trap": {"kernel": 300}, "illegal": {"userspace": 200}}, 200, 300,
               inproc=50)
    # 300 kernel-process exits x 2 messages + 200 userspace exits x (exit, debug_exit, continue, resume)
    c = costs.of(r, "illegal", {"exit": 500, "resume": 300, "debug_exit": 200, "continue": 200, "kick": 200})
    assert c["per_hit"]["exits_by_level"] == {"vcpu": 0, "kernel": 0, "userspace": 1}
    assert c["per_hit"]["hops"] == 3 and c["per_hit"]["messages"] == 4
    assert c["per_warn"]["exits_by_level"] == {"vcpu": 0, "kernel": 1, "userspace": 0}
    assert c["per_warn"]["hops"] == 2 and c["per_warn"]["messages"] == 2
    assert c["other_exits"] == {"kernel": 50, "userspace": 0}


def test_trap_user_reinjected_warns_are_not_hits():
    r = report({"trap": {"userspace": 500}}, 200, 300, reinjected={"trap": 300})
    c = costs.of(r, "trap", {"exit": 500, "debug_exit": 500, "resume": 500})
    assert c["per_hit"]["exits_by_level"]["userspace"] == 1
    assert c["per_warn"]["exits_by_level"] == {"vcpu": 0, "kernel": 0, "userspace": 1}
    assert c["per_warn"]["hops"] == 3 and c["per_warn"]["messages"] == 3


def test_no_hits_no_per_hit_costs_and_reflected_warns_cost_nothing():
    r = report({"syscall": {"vcpu": 200}}, 0, 300)
    c = costs.of(r, "syscall", {})
    assert c["per_hit"]["count"] == 0 and c["per_hit"]["hops"] is None
    assert c["per_warn"]["exits_by_level"] == {"vcpu": 1, "kernel": 0, "userspace": 0}
    assert c["per_warn"]["hops"] == 0 and c["per_warn"]["messages"] == 0


def test_interval_marks_wide_spreads_and_single_runs():
    assert costs.interval([100.0, 110.0, 105.0]) == {"n": 3, "lo": 100.0, "mid": 105.0, "hi": 110.0, "wide": False}
    assert costs.interval([100.0, 200.0])["wide"]
    assert costs.interval([100.0])["wide"]
    assert costs.interval([None])["n"] == 0
