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


def test_guest_instructions_in_handlers_are_counted_from_delivery_to_rfi():
    """warn_storm's program handler (bug-table search, count, rfi) costs the same per WARN whatever the
    iteration count; every WARN is one delivery and one return."""
    from cosim.vcpu.local import run_local
    seen = {}

    def collect(n):
        def f(core, image, ram):
            seen[n] = dict(core.handler_instructions)
        return f
    for n in (10, 40):
        r = run_local("warn_storm", "e500mc", n, collect=collect(n))
        assert r.exit_code == 0
    returns10, ins10 = seen[10][6]
    returns40, ins40 = seen[40][6]
    assert (returns10, returns40) == (30, 120)                  # 3 firing WARNs per iteration
    assert ins10 > 0 and ins40 * returns10 == ins10 * returns40   # the same cost per WARN
    assert set(seen[10]) == {6}                                 # no other interrupt returned from


def test_per_warn_guest_instructions_in_handler():
    r = report({"trap": {"kernel": 300}}, 0, 300)
    r["guest_handlers"] = {"ivor6": {"returns": 300, "instructions": 26700}}
    assert costs.of(r, "illegal", {})["per_warn"]["guest_instructions_in_handler"] == 89
