"""Peer authentication (issue 14): over tcp, an intruder on the same machine connects to every socket
of a running scenario, once without CURVE and once with a key of its own, and sends what would hurt
(Shutdown, Pause, a Peers redirect, kicks) under a peer's name. Nothing reaches any process: the run
completes with every invariant and every hit, no process saw a message it had to drop, and each one
reports the connections it refused."""
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

from cosim import wire
from cosim.config import parse_config
from cosim.report import build_report
from cosim.supervisor import Supervisor

ITERATIONS = 1500
PROCESSES = ["kernel", "userspace", "vcpu0", "vcpu1", "supervisor"]


FAILED = (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH
          | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


def _intruders(ctx, addr: str, server_key: bytes | None, monitors: list | None = None):
    """A plain PUSH, and (when the server speaks CURVE) one with a key that is not the run's; each
    with a monitor of its handshakes in `monitors` (attached before it connects)."""
    plain = ctx.socket(zmq.PUSH)
    socks = [plain]
    if server_key is not None:
        pub, sec = zmq.curve_keypair()
        rogue = ctx.socket(zmq.PUSH)
        rogue.curve_serverkey = server_key
        rogue.curve_publickey = pub
        rogue.curve_secretkey = sec
        socks.append(rogue)
    for s in socks:
        s.setsockopt(zmq.LINGER, 0)
        if monitors is not None:
            monitors.append(s.get_monitor_socket(FAILED | zmq.EVENT_HANDSHAKE_SUCCEEDED))
        s.connect(addr)
    return socks


def _wait_refused(monitors, timeout_s=60.0):
    """Wait until every intruder socket saw its handshake fail (the server decided: the refusal is
    counted on its side before it answers)."""
    seen = {}
    deadline = time.monotonic() + timeout_s
    while len(seen) < len(monitors) and time.monotonic() < deadline:
        for i, m in enumerate(monitors):
            while i not in seen and m.poll(10):
                ev = recv_monitor_message(m)
                if ev["event"] & FAILED:
                    seen[i] = "failed"
                elif ev["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    seen[i] = "succeeded"
    return seen, len(monitors)


def test_intruder_over_tcp_reaches_nothing():
    cfg = parse_config({
        "machine": {"cpu": "e500v2", "vcpus": 2, "transport": "tcp"},
        "guest": {"program": "warn_storm", "iterations": ITERATIONS},
        "debug": {"strategy": "trap-user", "breakpoints": [{"at": "bp_target_a"}]},
    }, "<test>")
    sup = Supervisor(cfg)
    sent = []
    outcome = []

    def intrude(progress):
        if sent:
            return
        ctx = zmq.Context()
        try:
            keys = sup.keyring.public
            harm = [wire.Shutdown("intruder"), wire.Pause(99), wire.Start(paused=True),
                    wire.Peers({"supervisor": "tcp://127.0.0.1:9", "kernel": "tcp://127.0.0.1:9"}, {}),
                    wire.Detach(5)]
            monitors, socks = [], []          # (kept referenced: a collected socket closes)
            for name in PROCESSES:
                for sock in _intruders(ctx, sup.ep.inboxes[name], keys[name], monitors):
                    socks.append(sock)
                    for m in harm:
                        sock.send_multipart([b"supervisor", wire.encode(m)])
                        sent.append(name)
            for name, addr in sup.ep.kicks.items():
                for sock in _intruders(ctx, addr, keys[name], monitors):
                    socks.append(sock)
                    for _ in range(100):
                        sock.send(b"k")
            outcome.append(_wait_refused(monitors))
        finally:
            ctx.destroy(0)

    sup.progress = intrude
    data = sup.run()
    report = build_report(data)
    assert sent
    seen, n = outcome[0]
    assert len(seen) == n and set(seen.values()) == {"failed"}, seen
    assert report["ok"], (report["failed"], report["problems"])
    assert report["debugger_hits"]["total"] == 2 * ITERATIONS
    assert report["outcome"] == "completed"
    tr = report["transport"]
    assert tr["auth"] == "curve"
    assert tr["dropped"] == {}, "an intruder's message reached the message layer"
    for name in PROCESSES:
        refused = tr["refused"].get(name, {})
        assert refused.get("no-curve", 0) >= 1 and refused.get("wrong-key", 0) >= 1, (name, tr["refused"])
    assert any("refused a connection (wrong-key" in text for _, _, text in data.logs)
    # no process logged a message from the intruder (nothing to reject: nothing arrived)
    assert not any("rejected" in text or "does not take" in text for _, _, text in data.logs)


def test_plain_tcp_is_open_without_curve():
    """The control: with CURVE off (curve=False, only for measurements) the same plain intruder's
    Shutdown does reach the kernel, which is what the authentication above prevents."""
    cfg = parse_config({
        "machine": {"cpu": "e500v2", "vcpus": 1, "transport": "tcp"},
        "guest": {"program": "warn_storm", "iterations": ITERATIONS},
        "debug": {"strategy": "trap-user", "breakpoints": [{"at": "bp_target_a"}]},
    }, "<test>")
    sup = Supervisor(cfg, curve=False)
    sent = []

    def intrude(progress):
        if sent:
            return
        ctx = zmq.Context()
        try:
            (sock,) = _intruders(ctx, sup.ep.inboxes["kernel"], None)
            sock.send_multipart([b"vcpu0", wire.encode(wire.TableUpdate(1, [0x1234], []))])
            sent.append(True)
            time.sleep(0.5)
        finally:
            ctx.destroy(0)

    sup.progress = intrude
    data = sup.run()
    assert sent
    # the kernel took the forged table update (and acked it to the forged sender)
    assert 0x1234 in data.stats["kernel"]["table"]
    assert data.transport["kernel"]["auth"] == "none"
