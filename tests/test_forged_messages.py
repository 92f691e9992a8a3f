"""Correctly typed messages with out-of-range fields from a known peer (issue 24 item 4): every field is
range-checked where it is decoded (cosim/wire.py), so no handler raises: each is answered with Error,
counted as undecodable, and the run completes with every invariant holding. Messages a known peer may
not send (a Detach not from the supervisor, a Halted not from its vCPU, a Pause not from userspace)
are refused the same way (wrong-sender). Real processes over ipc."""
from __future__ import annotations

import pytest
from test_malformed_messages import ITERATIONS, Supervisor, _config, _introduce_tester

from cosim import wire
from cosim.report import build_report

BIG = 2**64 - 1

FORGED = {
    # the kernel: an hcall exit whose pc cannot be a guest address (its Resume could not be encoded)
    "kernel": [wire.ExitMsg(0, 10**6, "hcall", BIG, 0x44000022, 8, BIG),
               wire.ExitMsg(0, 10**6, "no-such-event", 0x100, 0, 8, 0x100),
               wire.ExitMsg(-1, 10**6, "trap", 0x100, 0, 7, 0x100)],
    # userspace: a debug exit of a vCPU this run does not have (IndexError/KeyError in the handler)
    "userspace": [wire.DebugExit(99, 1, 0x100, 0, "debug", 0x100, 0, 15, 0x100),
                  wire.DebugExit(-1, 1, 0x100, 0, "debug", 0x100, 0, 15, 0x100),
                  wire.DebugExit(2, 1, 0x100, 0, "debug", 0x100, 0, 15, 0x100),
                  wire.Halted(7, 0, "spoofed", 0),
                  # well-formed, from an authenticated peer that may not send them: refused the same way
                  wire.Detach(1), wire.Halted(0, 0, "guest halted", 0)],
    # a vCPU: translations to flush at addresses no guest has (UcError in the engine)
    "vcpu0": [wire.Continue(10**6, [BIG, -1, 2**63]),
              wire.Resume(0, 10**6, "explode", "kernel"),
              wire.Resume(0, 10**6, "continue", "userspace", pc=BIG),
              wire.Pause(1)],
}


@pytest.mark.parametrize("target", sorted(FORGED))
def test_out_of_range_fields_are_refused_at_decode_and_answered(target):
    sup = Supervisor(_config("ipc"))
    got: list = []
    done: list = []

    def inject(_progress):
        if done:
            return
        done.append(True)
        tester = _introduce_tester(sup, (target,))
        try:
            for m in FORGED[target]:
                tester.send(target, m)
            while len(got) < len(FORGED[target]):
                r = tester.recv(10_000)
                assert r is not None, f"no Error after {len(got)}"
                got.append(r.msg)
        finally:
            tester.close()

    sup.progress = inject
    data = sup.run()
    report = build_report(data)
    assert done
    assert data.outcome == "completed", data.problems
    assert all(isinstance(m, wire.Error) for m in got), got
    assert [m.tag for m in got] == [m.TAG for m in FORGED[target]], got
    assert report["ok"], (report["failed"], report["problems"])
    assert report["debugger_hits"]["total"] == 2 * ITERATIONS
    dropped = report["transport"]["dropped"][target]
    assert dropped.get("undecodable", 0) + dropped.get("wrong-sender", 0) == len(FORGED[target]), dropped


@pytest.mark.parametrize("field,value", [("pc", 2**32), ("pc", -1), ("seq", 2**63), ("vcpu", 16),
                                         ("event", "reboot"), ("ivor", 64)])
def test_wire_decode_names_the_out_of_range_field(field, value):
    good = wire.ExitMsg(0, 1, "hcall", 0x100, 0x44000022, 8, 0x100)
    wire.decode(wire.encode(good))
    with pytest.raises(wire.WireError, match=f"exit.{field}: bad value"):
        wire.decode(wire.encode(good._replace(**{field: value})))


@pytest.mark.parametrize("msg,sender,ok", [
    (wire.Detach(1), "supervisor", True), (wire.Detach(1), "vcpu0", False), (wire.Detach(1), "kernel", False),
    (wire.Halted(1, 0, "guest halted", 0), "vcpu1", True), (wire.Halted(1, 0, "guest halted", 0), "vcpu0", False),
    (wire.Pause(3), "userspace", True), (wire.Pause(3), "supervisor", False),
    (wire.ExitMsg(0, 1, "hcall", 0x100, 0, 8, 0x100), "vcpu0", True),
    (wire.ExitMsg(0, 1, "hcall", 0x100, 0, 8, 0x100), "vcpu1", False),
    (wire.Resume(0, 1, "reflect", "kernel"), "kernel", True), (wire.Stats("x", {}), "vcpu3", True),
])
def test_who_may_send_what_is_declared_with_the_message(msg, sender, ok):
    assert wire.sender_ok(msg, sender) is ok


def test_the_vcpu_range_is_the_runs():
    m = wire.encode(wire.Paused(3, 1, 2, 0x100))
    try:
        wire.set_vcpus(4)
        assert wire.decode(m).vcpu == 3
        wire.set_vcpus(2)
        with pytest.raises(wire.WireError, match="paused.vcpu"):
            wire.decode(m)
    finally:
        wire.set_vcpus(16)


# --- per-run authentication on ipc --------------------------------------------------------------------
def test_a_process_of_our_uid_without_the_runs_token_is_refused():
    """A same-user process that knows the socket paths and names itself "supervisor": a Detach to
    userspace would silently remove the breakpoints (1,470 hits of ~12,000 in issue 24), a Halted
    would end the run early, a Pause stall it. Without the run's token its connections never complete."""
    import tempfile

    from cosim.transport import Endpoint, remove_run_dir

    sup = Supervisor(_config("ipc"))
    done: list = []

    def inject(_progress):
        if done:
            return
        done.append(True)
        d = tempfile.mkdtemp(prefix="ci-")
        intruder = Endpoint("supervisor", "ipc", d)         # our uid, no token
        try:
            intruder.set_peers({n: sup.ep.inboxes[n] for n in ("userspace", "vcpu0", "kernel")}
                               | {"supervisor": sup.ep.inbox_addr})
            intruder.send("userspace", wire.Detach(1))
            intruder.send("supervisor", wire.Halted(0, 0, "guest halted", 0))
            intruder.send("vcpu0", wire.Pause(1))
            intruder.send("kernel", wire.ExitMsg(0, 1, "hcall", 0x100, 0x44000022, 8, 0x100))
            time.sleep(1.0)
        finally:
            intruder.close()
            remove_run_dir(d)

    import time
    sup.progress = inject
    data = sup.run()
    report = build_report(data)
    assert done
    assert report["ok"], (report["failed"], report["problems"])
    assert report["debugger_hits"]["total"] == 2 * ITERATIONS     # no Detach took effect
    assert data.outcome == "completed" and len(data.halts) == 2
    refused = report["transport"]["refused"]
    assert {n for n, c in refused.items() if c.get("no-curve")} == {"userspace", "supervisor", "vcpu0",
                                                                     "kernel"}, refused
    assert report["transport"]["auth"] == "ipc-0700+uid+token"
