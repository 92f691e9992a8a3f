"""Malformed messages sent into a running scenario: every process answers with an Error, logs it, and
keeps running; the run still completes with every invariant holding."""
import msgpack

from cosim import wire
from cosim.config import parse_config
from cosim.report import build_report
from cosim.supervisor import Supervisor
from cosim.transport import Endpoint

GARBAGE = [
    b"\xc1\xc1",                                         # not msgpack
    msgpack.packb([1, "exit", "zero"]),                  # wrong arity and types
    msgpack.packb([1, "reboot_now"]),                    # unknown type
    msgpack.packb([99, "pause", 1]),                     # wrong version
]


def test_processes_survive_malformed_messages(tmp_path):
    cfg = parse_config({
        "machine": {"cpu": "e500v2", "vcpus": 2},
        "guest": {"program": "warn_storm", "iterations": 400},
        "debug": {"strategy": "trap-user", "breakpoints": [{"at": "bp_target_a"}]},
    }, "<test>")
    sup = Supervisor(cfg)
    replies = []

    def inject(progress):
        if replies:
            return
        tester = Endpoint("tester", "ipc", sup.run_dir)
        try:
            targets = ["kernel", "userspace", "vcpu0", "vcpu1"]
            tester.set_peers({n: sup.ep.inboxes[n] for n in targets})
            for n in targets:
                tester.send(n, wire.Peers({"tester": tester.inbox_addr}, {}))
                for g in GARBAGE:
                    tester.send_raw(n, g)
            while len(replies) < len(targets) * len(GARBAGE):
                r = tester.recv(5000)
                assert r is not None, f"no Error reply after {len(replies)}"
                replies.append((r.sender, r.msg))
        finally:
            tester.close()

    sup.progress = inject
    data = sup.run()
    report = build_report(data)
    assert len(replies) == 16
    assert all(isinstance(m, wire.Error) for _, m in replies)
    assert {s for s, _ in replies} == {"kernel", "userspace", "vcpu0", "vcpu1"}
    reasons = {m.reason for _, m in replies}
    assert any("not msgpack" in r for r in reasons) and any("unknown message type" in r for r in reasons)
    assert sum("malformed" in text for _, _, text in data.logs) == 16
    assert report["ok"], report["failed"]
    assert report["kernel"]["malformed"] == 4
    assert report["debugger_hits"]["total"] == 2 * 400
