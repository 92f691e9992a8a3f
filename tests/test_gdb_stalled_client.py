"""A gdb client that stops reading never wedges the stub or the run (issue 24 item 3): real processes,
a real socket, the run driven in this process."""
from __future__ import annotations

import os
import signal
import socket
import threading
import time

from cosim.config import parse_config
from cosim.gdb.client import RspClient, RspError
from cosim.gdb.packets import encode
from cosim.machine.image import GuestImage, guest_path
from cosim.report import build_report
from cosim.supervisor import Supervisor

HANG_S = 60
IMAGE = GuestImage.load(guest_path("warn_storm"))


def gdb_config(iterations=100_000_000, wall=120.0):
    return parse_config({"machine": {"cpu": "e500mc", "vcpus": 2},
                         "guest": {"program": "warn_storm", "iterations": iterations},
                         "debug": {"strategy": "illegal", "breakpoints": []},
                         "limits": {"wall_seconds": wall}}, "<test>")


def address(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


def test_a_client_that_stops_reading_is_dropped_and_the_next_one_is_served():
    """Client A plants a breakpoint, then sends `m` requests without ever reading a reply. The stub must
    drop A (as a lost connection: its breakpoint removed) and serve client B, who ends the run."""
    bp = IMAGE.symbol("bp_target_a")
    original = IMAGE.read_word(bp)
    sup = Supervisor(gdb_config(), gdb="127.0.0.1:0")
    ev: dict = {}

    def clients(addr):
        a = None
        try:
            a = RspClient.connect(address(addr))
            ev["z0"] = a.request(f"Z0,{bp:x},4")
            a.sock.settimeout(2.0)
            flood = encode(b"m0,800") * 64
            t0 = time.monotonic()
            try:
                while time.monotonic() - t0 < 30:    # until our own sends block: the stub reads no more
                    a.sock.sendall(flood)
            except OSError:
                pass
            deadline = time.monotonic() + HANG_S
            while time.monotonic() < deadline:
                try:
                    b = RspClient.connect(address(addr), timeout=5.0, retry_for=5.0)
                except (OSError, RspError):
                    time.sleep(0.3)                  # A still holds the stub: B is turned away
                    continue
                ev["served"] = time.monotonic() - t0
                ev["word"] = b.read_word(bp)
                b.send("k")
                b.close()
                return
        except Exception as e:
            ev["error"] = f"{type(e).__name__}: {e}"
        finally:
            if "served" not in ev:                   # the stub is wedged: end the run another way
                p = sup.procs.get("userspace")
                if p is not None and p.pid:
                    os.kill(p.pid, signal.SIGKILL)
            if a is not None:
                a.close()

    sup.on_gdb_ready = lambda addr, _shm=None: threading.Thread(target=clients, args=(addr,),
                                                                  daemon=True).start()
    data = sup.run()
    report = build_report(data)
    assert "error" not in ev, ev
    assert ev["z0"] == b"OK"
    assert "served" in ev, (data.outcome, data.problems)
    assert ev["word"] == original               # A's breakpoint removed when it was dropped
    assert data.outcome == "killed-by-debugger", data.problems
    assert "userspace" in data.stats            # its statistics reached the report
    assert report["gdb"]["connections"] == 2 and report["gdb"]["dropped_not_reading"] == 1, report["gdb"]
    assert any("took none of" in text for _n, _l, text in data.logs), data.logs
    assert report["invariants"]["code-restored-after-detach"]["ok"]


def test_a_gdb_run_nobody_attaches_to_ends_at_the_wall_limit():
    """Waiting for the first client is not gdb's hold: the wall limit counts it (it ran 1,128 s with
    60 before). Once a client is attached, the time it holds the world stopped is not counted."""
    sup = Supervisor(gdb_config(wall=2.0), gdb="127.0.0.1:0")
    t0 = time.monotonic()
    timer = threading.Timer(HANG_S, lambda: os.kill(sup.procs["userspace"].pid, signal.SIGKILL))
    timer.start()
    try:
        data = sup.run()
    finally:
        timer.cancel()
    assert data.outcome == "wall-limit", data.problems
    assert time.monotonic() - t0 < HANG_S
    assert data.gdb_stopped_seconds == 0.0


def test_more_breakpoints_than_the_ledger_holds_is_a_clean_error(cosim_gdb_server):
    """Past the ledger's 4,096 planted words, Z0 answered E05 with an 'internal error' log line per
    request; it must be ENOSPC (E1c), and the run ends clean with every word restored."""
    from test_gdb_real import IMAGE, scenario

    from cosim.machine.ledger import SLOTS
    sc = cosim_gdb_server(scenario(vcpus=1, iterations=100))
    c = RspClient.connect(address(sc.address))      # (no-ack mode, TCP_NODELAY: 4,100 round trips)
    base = 0x00800000                        # past the guest image, inside its 16 MiB of RAM
    try:
        replies = [c.request(b"Z0,%x,4" % (base + 4 * i)) for i in range(SLOTS + 2)]
        assert replies[:SLOTS] == [b"OK"] * SLOTS
        assert replies[SLOTS:] == [b"E1c", b"E1c"], replies[SLOTS:]
        assert c.request(b"z0,%x,4" % base) == b"OK"             # one freed: one more fits
        assert c.request(b"Z0,%x,4" % (base + 4 * SLOTS)) == b"OK"
        c.send("k")
    finally:
        c.close()
    report = sc.wait()
    assert not [x for x in report["logs"] if x["level"] == "error"], report["logs"][:5]
    assert IMAGE.code_diff(sc.ram) == []
    assert all(w == 0 for w in sc.ram.read_u32s(base, SLOTS + 1))
