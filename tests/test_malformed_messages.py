"""Hostile and broken input into a running scenario (issue 14): every kind of message the transport
cannot accept (unknown sender, bad frame count, undecodable bytes, oversized) sent into every process
kind (vCPU, kernel, userspace, supervisor), over ipc and over tcp with CURVE. Nothing dies; known
senders get an Error for what they sent; each process counts what it dropped, by kind, and notes the
first of each kind once; the run completes with every invariant holding."""
import random
import time

import msgpack
import pytest

from cosim import wire
from cosim.config import parse_config
from cosim.report import build_report
from cosim.supervisor import Supervisor
from cosim.transport import MAX_MESSAGE_BYTES, Endpoint

GARBAGE = [
    b"\xc1\xc1",                                         # not msgpack
    msgpack.packb([1, "exit", "zero"]),                  # wrong arity and types
    msgpack.packb([1, "reboot_now"]),                    # unknown type
    msgpack.packb([99, "pause", 1]),                     # wrong version
]


def _random_frames(seed: int, n: int) -> list[bytes]:
    """Seeded random msgpack: a version, a real tag and random fields; only the undecodable ones
    (a well-formed message from a known peer is obeyed: that is what authentication is for)."""
    rng = random.Random(seed)

    def value(depth=0):
        kinds = [lambda: None, lambda: rng.random() < 0.5, lambda: rng.randrange(-2 ** 63, 2 ** 64),
                 rng.random, lambda: "".join(rng.choice("abc\u00e9") for _ in range(rng.randrange(5))),
                 lambda: rng.randbytes(rng.randrange(6)),
                 lambda: [value(depth + 1) for _ in range(rng.randrange(4))],
                 lambda: {str(rng.randrange(9)): value(depth + 1) for _ in range(rng.randrange(3))}]
        return kinds[rng.randrange(8 if depth < 2 else 6)]()

    out = []
    while len(out) < n:
        data = msgpack.packb([rng.choice([1, 1, 1, 0, 2]), rng.choice(sorted(wire.MESSAGES)),
                              *[value() for _ in range(rng.randrange(18))]], use_bin_type=True)
        try:
            wire.decode(data)
        except wire.WireError:
            out.append(data)
    return out


GARBAGE += _random_frames(14, 24)
TARGETS = ["kernel", "userspace", "vcpu0", "vcpu1", "supervisor"]
ITERATIONS = 400


class Supervisor(Supervisor):      # noqa: F811 - the run's keyring also holds the tester's identity
    EXTRA_IDENTITIES = ("tester",)


def _tester(sup) -> Endpoint:
    """The tester's endpoint: a peer of the run (with the run's token for it), once introduced."""
    creds = sup.keyring.credentials("tester") if sup.keyring is not None else None
    return Endpoint("tester", "ipc", sup.run_dir, credentials=creds)


def _config(transport):
    return parse_config({
        "machine": {"cpu": "e500v2", "vcpus": 2, "transport": transport},
        "guest": {"program": "warn_storm", "iterations": ITERATIONS},
        "debug": {"strategy": "trap-user", "breakpoints": [{"at": "bp_target_a"}]},
    }, "<test>")


def _barrage(tester: Endpoint, dest: str, as_name: bytes) -> None:
    valid = wire.encode(wire.Pause(7))
    tester.send_frames(dest, [b"fuzzer", valid])                        # unknown (or spoofed) sender
    tester.send_frames(dest, [b"\xff\xfe", valid])                      # a sender name that is not text
    tester.send_frames(dest, [valid])                                   # one frame
    tester.send_frames(dest, [as_name, valid, valid])                   # three frames
    tester.send_frames(dest, [as_name, b"\x00" * (MAX_MESSAGE_BYTES + 1)])   # oversized
    for g in GARBAGE:                                                   # undecodable
        tester.send_raw(dest, g)


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_every_process_survives_what_it_cannot_accept(transport):
    sup = Supervisor(_config(transport))
    replies = []
    done = []

    def inject(progress):
        if done:
            return
        done.append(True)
        if transport == "ipc":
            # a peer the supervisor introduced: known to every process, so it is answered
            tester = _tester(sup)
            name = "tester"
            for n in TARGETS[:-1]:
                sup.ep.send(n, wire.Peers({"tester": tester.inbox_addr}, {}))
            sup.ep.admit(["tester"])
        else:
            # tcp: only the run's keys connect; a buggy holder of one (the supervisor's) sends garbage
            tester = Endpoint("supervisor", "tcp", credentials=sup.keyring.credentials("supervisor"))
            name = "supervisor"
        try:
            tester.set_peers({n: sup.ep.inboxes[n] for n in TARGETS})
            for n in TARGETS:
                _barrage(tester, n, name.encode())
            if transport == "ipc":
                # undecodable (4) and oversized (1) from a known peer are answered, except by the
                # supervisor, which answers nobody
                want = (len(TARGETS) - 1) * (len(GARBAGE) + 1)
                while len(replies) < want:
                    r = tester.recv(10_000)
                    assert r is not None, f"no Error reply after {len(replies)}"
                    replies.append((r.sender, r.msg))
        finally:
            tester.close()

    sup.progress = inject
    data = sup.run()
    report = build_report(data)
    assert done
    assert report["ok"], (report["failed"], report["problems"])
    assert report["debugger_hits"]["total"] == 2 * ITERATIONS
    dropped = report["transport"]["dropped"]
    sender_kind = "spoofed-sender"     # (both transports authenticate: the name must be the peer's own)
    for n in TARGETS:
        assert dropped[n] == {sender_kind: 2, "bad-frame-count": 2, "oversized": 1,
                              "undecodable": len(GARBAGE)}, (n, dropped)
    assert report["kernel"]["malformed"] == len(GARBAGE) + 1
    # each kind is noted once per process, not once per message
    notes = [(who, text) for who, _, text in data.logs if text.startswith("dropped a message")]
    assert len(notes) == 4 * len(TARGETS), notes
    assert {who for who, _ in notes} == set(TARGETS)
    if transport == "ipc":
        assert all(isinstance(m, wire.Error) for _, m in replies)
        assert {s for s, _ in replies} == set(TARGETS[:-1])
        reasons = {m.reason for _, m in replies}
        assert any("not msgpack" in r for r in reasons) and any("unknown message type" in r for r in reasons)
        assert any("exceeds" in r for r in reasons)
        assert report["transport"]["auth"] == "ipc-0700+uid+token"
    else:
        assert report["transport"]["auth"] == "curve"


def _introduce_tester(sup: Supervisor, names) -> Endpoint:
    """An ipc endpoint "tester" that the supervisor introduces to `names` (a known peer there, so it is
    obeyed and answered), with their inboxes as its peers. The caller closes it."""
    tester = _tester(sup)
    for n in names:
        sup.ep.send(n, wire.Peers({"tester": tester.inbox_addr}, {}))
    tester.set_peers({n: sup.ep.inboxes[n] for n in names})
    # the supervisor's Peers and the tester's first message reach a process by two senders, in either
    # order: a message that overtakes Peers is dropped (unknown sender). Probe until each one answers
    # (a GetOneReg: the kernel answers OneReg, the others Error), then drain the late answers.
    waiting, deadline = set(names), time.monotonic() + 30
    while waiting and time.monotonic() < deadline:
        for n in waiting:
            tester.send(n, wire.GetOneReg(0, "probe"))
        until = time.monotonic() + 0.2
        while waiting and time.monotonic() < until:
            r = tester.recv(50)
            if r is not None:
                waiting.discard(r.sender)
    assert not waiting, f"{sorted(waiting)} never took the tester as a peer"
    while tester.recv(300) is not None:
        pass
    return tester


def test_peers_only_from_the_supervisor(tmp_path):
    """A known peer may not redirect another process's routing table: Peers from anyone but the
    supervisor is refused with an Error and changes nothing."""
    sup = Supervisor(_config("ipc"))
    replies = []

    def inject(progress):
        if replies:
            return
        tester = _introduce_tester(sup, ("kernel", "userspace", "vcpu0"))
        try:
            for n in ("kernel", "userspace", "vcpu0"):
                # point "supervisor" and "kernel" at the tester: would steal Stats and exits
                tester.send(n, wire.Peers({"supervisor": tester.inbox_addr, "kernel": tester.inbox_addr}, {}))
            while len(replies) < 3:
                r = tester.recv(10_000)
                assert r is not None
                replies.append((r.sender, r.msg))
        finally:
            tester.close()

    sup.progress = inject
    report = build_report(sup.run())
    assert [type(m) for _, m in replies] == [wire.Error] * 3
    assert all(m.tag == "peers" for _, m in replies)
    assert report["ok"], (report["failed"], report["problems"])
    assert report["debugger_hits"]["total"] == 2 * ITERATIONS


def test_a_resume_whose_go_is_malformed_is_refused_whole_and_answered():
    """A Resume carrying a malformed Continue (`go`) from a known peer: the vCPU answers Error, applies
    nothing of it (its exit, if any, stays pending for the real resume) and the run completes."""
    sup = Supervisor(_config("ipc"))
    got = []

    def inject(progress):
        if got:
            return
        tester = _introduce_tester(sup, ("vcpu0",))
        try:
            for go in ([1, 2, 3], ["x"], [[0x10760], "no", False, False, False, False, False]):
                tester.send("vcpu0", wire.Resume(0, 10**6, "continue", "userspace", go=go))
            while len(got) < 3:
                r = tester.recv(10_000)
                assert r is not None, f"no Error after {len(got)}"
                if isinstance(r.msg, wire.Error):
                    got.append(r.msg)
        finally:
            tester.close()

    sup.progress = inject
    report = build_report(sup.run())
    assert [m.tag for m in got] == ["resume"] * 3 and all("go:" in m.reason for m in got), got
    assert report["ok"], (report["failed"], report["problems"])
    assert report["debugger_hits"]["total"] == 2 * ITERATIONS
