#!/usr/bin/env python3
"""Chaos: N runs, each killing (SIGKILL) or stopping (SIGSTOP, then SIGCONT) one random process of the
run at a random moment; prints how many runs survived with a report, leaked, restored guest code, and
the detection latency of deaths (p50/p99).

    python tools/chaos.py [-n 40] [--seed 1] [--json PATH]

Targets: vcpu0, vcpu1, kernel, userspace, and a gdb client (a raw RSP client that plants a breakpoint
with Z0, lets the guest run, and dies: its socket reset as the kernel does for a killed gdb). Faults
of the host and of peers (issue 24):
  fd-limit     run.py with 8 vCPUs under RLIMIT_NOFILE 64 (hard: exit 2, one line, nothing started) or
               a soft limit of 48 under a high hard one (raised: the run completes)
  small-shm    /dev/shm reported with 8 MiB free (the free-space probe): the run reports an error
               naming /dev/shm, starts nothing
  stalled-gdb  a gdb client plants a breakpoint, then streams `m` packets and never reads a reply:
               dropped by the stub (its breakpoint removed), the run completes
  forged       a process of our uid without the run's token sends Detach, Halted, Pause and an exit
               under the supervisor's name: refused at the handshake, the run completes with every hit
Per run:
  survived  the run ended with a report; a killed process is named in it (outcome child-died), a
            stopped one changes nothing (the run completes, every invariant holds), a dead gdb client
            only detaches (the run completes)
  leaked    a process, shared-memory block, socket or run directory of the run outlived it
  restored  guest code byte-identical to the image at the end (code-restored-after-detach)
  detection time from the kill to the supervisor seeing the death (gdb client: to guest code restored)
The supervisor runs in this process (one run at a time), so kills are timed against its own clock.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402

from cosim.config import parse_config  # noqa: E402
from cosim.machine.image import GuestImage, guest_path  # noqa: E402
from cosim.report import build_report  # noqa: E402
from cosim.supervisor import Supervisor  # noqa: E402

TARGETS = ("vcpu0", "vcpu1", "kernel", "userspace", "gdb", "fd-limit", "small-shm", "stalled-gdb", "forged")
FAULTS = ("fd-limit", "small-shm", "stalled-gdb", "forged")
ROOT = Path(__file__).resolve().parent.parent
IMAGE = GuestImage.load(guest_path("warn_storm"))


def config(gdb: bool):
    bps = [] if gdb else [{"at": "bp_target_a"}, {"at": "bp_target_b"}]
    return parse_config({"name": "chaos", "machine": {"cpu": "e500mc", "vcpus": 2},
                         "guest": {"program": "warn_storm", "iterations": 600},
                         "debug": {"strategy": "illegal", "breakpoints": bps},
                         "limits": {"wall_seconds": 60.0}}, "<chaos>")


def _packet(body: str) -> bytes:
    return f"${body}#{sum(body.encode()) & 0xFF:02x}".encode()


class RspClient:
    """Just enough gdb to plant a breakpoint and let the guest run, then die."""

    def __init__(self, address: str):
        host, _, port = address.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)

    def request(self, body: str) -> str:
        self.sock.sendall(_packet(body))
        buf = b""
        while True:
            buf += self.sock.recv(4096)
            start = buf.find(b"$")
            if start >= 0 and b"#" in buf[start:] and len(buf) >= buf.index(b"#", start) + 3:
                self.sock.sendall(b"+")
                return buf[start + 1:buf.index(b"#", start)].decode()

    def cont(self) -> None:
        self.sock.sendall(_packet("c"))

    def die(self) -> None:
        """Close the way the kernel does for a killed process with unread data: a reset."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.sock.close()


def shm_of(pid: int) -> set[str]:
    return {n for n in os.listdir("/dev/shm") if f"-{pid}-" in n or f"_{pid}_" in n}


def one_run(rng: random.Random, target: str | None = None, action: str | None = None) -> dict:
    target = target or rng.choice(TARGETS)
    if target in FAULTS:
        return FAULT_RUNS[target](rng)
    action = "kill" if target == "gdb" else (action or rng.choice(("kill", "stop")))
    moment = rng.uniform(0.0, 0.8)
    stop_for = rng.uniform(0.05, 0.6)
    gdb = target == "gdb"
    sup = Supervisor(config(gdb), gdb="127.0.0.1:0" if gdb else None)
    ev: dict = {"target": target, "action": action, "moment": round(moment, 3)}
    running = threading.Event()
    bp = IMAGE.symbol("bp_target_a")
    original = IMAGE.read_word(bp)

    def ready(addr, _shm=None):
        def client():
            try:
                c = RspClient(addr)
                c.request("qSupported")
                ev["z0"] = c.request(f"Z0,{bp:x},4")
                c.cont()
                ev["planted"] = sup.ram.read_word(bp) != original
                time.sleep(moment)
                ev["t_kill"] = time.monotonic()
                c.die()
                while sup.ram is not None and time.monotonic() - ev["t_kill"] < 30:
                    if sup.ram.read_word(bp) == original:
                        ev["detected"] = time.monotonic() - ev["t_kill"]
                        break
                    time.sleep(0.001)
            except Exception as e:      # reported, not raised: the run goes on without its gdb
                ev["client_error"] = f"{type(e).__name__}: {e}"
        threading.Thread(target=client, daemon=True).start()

    def progress(_p):
        running.set()

    def injector():
        if not running.wait(60):
            return
        time.sleep(moment)
        p = sup.procs.get(target)
        if p is None or p.exitcode is not None:
            return
        ev["t_kill"] = time.monotonic()
        try:
            if action == "kill":
                os.kill(p.pid, signal.SIGKILL)
            else:
                os.kill(p.pid, signal.SIGSTOP)
                time.sleep(stop_for)
                os.kill(p.pid, signal.SIGCONT)
        except ProcessLookupError:
            ev.pop("t_kill")

    sup.on_gdb_ready = ready
    sup.progress = progress
    if not gdb:
        threading.Thread(target=injector, daemon=True).start()
    before = shm_of(os.getpid())
    data = sup.run()
    report = build_report(data)
    if "t_kill" not in ev:
        ev["missed"] = True             # the run ended before the moment came
        return ev
    if action == "kill" and not gdb:
        named = data.died is not None and data.died["name"] == target
        ev["survived"] = data.outcome == "child-died" and named and any(target in p for p in data.problems)
        if named:
            ev["detected"] = data.died["at"] - ev["t_kill"]
    elif gdb:
        ev["survived"] = report["ok"] and ev.get("planted", False) and "z0" in ev and ev["z0"] == "OK"
    else:
        ev["survived"] = report["ok"]
    inv = report["invariants"]
    left = {k: v for k, v in data.leftovers.items() if v}
    if shm_of(os.getpid()) - before:
        left["shm(dev)"] = sorted(shm_of(os.getpid()) - before)
    alive = [n for n, pid in data.pids.items() if psutil.pid_exists(pid)
             and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    if alive:
        left["alive"] = alive
    ev["leaked"] = left
    ev["restored"] = inv.get("code-restored-after-detach", {}).get("ok", False)
    ev["seconds"] = round(data.seconds, 2)
    ev["outcome"] = data.outcome
    if not ev["survived"]:
        ev["why"] = {"failed": report["failed"], "problems": data.problems[:3]}
    return ev



# --- faults of the host and of peers (issue 24) ------------------------------------------------------
def _leaks(pid: int, tmp: str | None = None) -> dict:
    left = {}
    if shm_of(pid):
        left["shm(dev)"] = sorted(shm_of(pid))
    if tmp is not None and os.listdir(tmp):
        left["tmp"] = sorted(os.listdir(tmp))
    return left


def fd_limit_run(rng: random.Random) -> dict:
    """run.py in a child under a low RLIMIT_NOFILE: hard 64 (must exit 2 naming the need) or soft 48
    under the hard limit (must be raised and complete)."""
    import resource
    import shutil
    import subprocess
    import tempfile
    hard_low = rng.random() < 0.5
    ev: dict = {"target": "fd-limit", "action": "hard 64" if hard_low else "soft 48", "moment": 0.0}
    tmp = tempfile.mkdtemp(prefix="cz-")
    cfg = Path(tmp) / "fd.toml"
    cfg.write_text('[machine]\ncpu = "e500mc"\nvcpus = 8\n[guest]\nprogram = "warn_storm"\n'
                   'iterations = 50\n[debug]\nstrategy = "illegal"\n[[debug.breakpoints]]\n'
                   'at = "bp_target_a"\n[limits]\nwall_seconds = 60\n')
    run_tmp = tempfile.mkdtemp(prefix="cr-")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    limit = (64, 64) if hard_low else (48, hard)
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, str(ROOT / "run.py"), str(cfg), "--json", str(Path(tmp) / "r.json")],
                         cwd=ROOT, env={**os.environ, "TMPDIR": run_tmp}, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, limit))
    try:
        out, err = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        ev["why"] = "hung"
    ev["seconds"] = round(time.monotonic() - t0, 2)
    if hard_low:
        ev["survived"] = p.returncode == 2 and "open files" in err and "Traceback" not in err
        ev["restored"] = True                 # nothing started: guest code never touched
    else:
        report = json.loads((Path(tmp) / "r.json").read_text()) if (Path(tmp) / "r.json").exists() else {}
        ev["survived"] = p.returncode == 0 and report.get("ok", False)
        ev["restored"] = report.get("invariants", {}).get("code-restored-after-detach", {}).get("ok", False)
    ev["leaked"] = _leaks(p.pid, run_tmp)
    ev["outcome"] = f"exit {p.returncode}"
    if not ev["survived"]:
        ev["why"] = {"rc": p.returncode, "stderr": err[-300:]}
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(run_tmp, ignore_errors=True)
    return ev


def small_shm_run(rng: random.Random) -> dict:
    from cosim import resources
    ev: dict = {"target": "small-shm", "action": "8 MiB free", "moment": 0.0}
    original = resources.shm_free
    resources.shm_free = lambda path=resources.SHM_DIR: 8 << 20
    before = shm_of(os.getpid())
    try:
        data = Supervisor(config(False)).run()
    finally:
        resources.shm_free = original
    ev["survived"] = data.outcome == "error" and any("/dev/shm" in p for p in data.problems) and not data.pids
    ev["restored"] = True                     # nothing started
    ev["leaked"] = {k: v for k, v in data.leftovers.items() if v}
    if shm_of(os.getpid()) - before:
        ev["leaked"]["shm(dev)"] = sorted(shm_of(os.getpid()) - before)
    ev["outcome"] = data.outcome
    ev["seconds"] = round(data.seconds, 2)
    if not ev["survived"]:
        ev["why"] = data.problems[:2]
    return ev


def stalled_gdb_run(rng: random.Random) -> dict:
    """A gdb client that plants a breakpoint, then streams `m` requests and never reads a reply."""
    from cosim.gdb.packets import encode
    sup = Supervisor(config(True), gdb="127.0.0.1:0")
    ev: dict = {"target": "stalled-gdb", "action": "stop reading", "moment": round(rng.uniform(0, 0.5), 3)}
    bp = IMAGE.symbol("bp_target_a")
    original = IMAGE.read_word(bp)

    def ready(addr, _shm=None):
        def client():
            try:
                c = RspClient(addr)
                c.request("QStartNoAckMode")
                ev["z0"] = c.request(f"Z0,{bp:x},4")
                ev["planted"] = sup.ram.read_word(bp) != original
                time.sleep(ev["moment"])
                c.sock.settimeout(2.0)
                ev["t_kill"] = time.monotonic()
                flood = encode(b"m0,800") * 64
                try:
                    while time.monotonic() - ev["t_kill"] < 30:
                        c.sock.sendall(flood)
                except OSError:
                    pass
                while sup.ram is not None and time.monotonic() - ev["t_kill"] < 60:
                    if sup.ram.read_word(bp) == original:
                        ev["dropped_after"] = round(time.monotonic() - ev["t_kill"], 2)
                        break
                    time.sleep(0.01)
                time.sleep(60)                # holds its socket, reads nothing, until the run is over
            except Exception as e:
                ev["client_error"] = f"{type(e).__name__}: {e}"
        threading.Thread(target=client, daemon=True).start()

    sup.on_gdb_ready = ready
    return _finish_fault(ev, sup, lambda data, report: report["ok"] and ev.get("planted", False)
                         and report["gdb"]["dropped_not_reading"] == 1)


def forged_run(rng: random.Random) -> dict:
    """A process of our uid, without the run's token, sends what a supervisor would."""
    import tempfile

    from cosim import wire
    from cosim.transport import Endpoint, remove_run_dir
    sup = Supervisor(config(False))
    ev: dict = {"target": "forged", "action": "no token", "moment": round(rng.uniform(0, 0.5), 3)}
    running = threading.Event()

    def injector():
        if not running.wait(60):
            return
        time.sleep(ev["moment"])
        if sup.ep is None:
            return
        d = tempfile.mkdtemp(prefix="cf-")
        intruder = Endpoint("supervisor", "ipc", d)
        try:
            intruder.set_peers({n: a for n, a in sup.ep.inboxes.items() if n != "supervisor"}
                               | {"supervisor": sup.ep.inbox_addr})
            ev["t_kill"] = time.monotonic()
            intruder.send("userspace", wire.Detach(1))
            intruder.send("supervisor", wire.Halted(0, 0, "guest halted", 0))
            intruder.send("vcpu0", wire.Pause(1))
            intruder.send("kernel", wire.ExitMsg(0, 1, "hcall", 0x100, 0x44000022, 8, 0x100))
            time.sleep(0.5)
        except Exception as e:
            ev["client_error"] = f"{type(e).__name__}: {e}"
        finally:
            intruder.close()
            remove_run_dir(d)

    sup.progress = lambda _p: running.set()
    threading.Thread(target=injector, daemon=True).start()
    return _finish_fault(ev, sup, lambda data, report: report["ok"] and
                         report["debugger_hits"]["total"] == 2 * 600 * 2 and
                         sum(c.get("no-curve", 0) for c in report["transport"]["refused"].values()) > 0)


def _finish_fault(ev: dict, sup: Supervisor, survived) -> dict:
    before = shm_of(os.getpid())
    data = sup.run()
    report = build_report(data)
    if "t_kill" not in ev:
        ev["missed"] = True
        return ev
    ev["survived"] = bool(survived(data, report)) and data.outcome == "completed"
    left = {k: v for k, v in data.leftovers.items() if v}
    if shm_of(os.getpid()) - before:
        left["shm(dev)"] = sorted(shm_of(os.getpid()) - before)
    ev["leaked"] = left
    ev["restored"] = report["invariants"].get("code-restored-after-detach", {}).get("ok", False)
    ev["seconds"] = round(data.seconds, 2)
    ev["outcome"] = data.outcome
    if not ev["survived"]:
        ev["why"] = {"failed": report["failed"], "problems": data.problems[:3], "client": ev.get("client_error")}
    return ev


FAULT_RUNS = {"fd-limit": fd_limit_run, "small-shm": small_shm_run, "stalled-gdb": stalled_gdb_run,
              "forged": forged_run}

def pct(values, q):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))]


def summary(runs: list[dict]) -> dict:
    done = [r for r in runs if not r.get("missed")]
    det = [r["detected"] for r in done if "detected" in r]
    return {"runs": len(done), "missed": len(runs) - len(done),
            "survived": sum(1 for r in done if r["survived"]),
            "leaked": sum(1 for r in done if r["leaked"]),
            "restored": sum(1 for r in done if r["restored"]),
            "detection_p50_s": pct(det, 50), "detection_p99_s": pct(det, 99),
            "detection_max_s": max(det) if det else None,
            "by_target": {t: sum(1 for r in done if r["target"] == t) for t in TARGETS}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("-n", type=int, default=40, help="runs (default 40)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--only", metavar="T,T", help=f"comma-separated targets (of {', '.join(TARGETS)})")
    args = ap.parse_args(argv)
    only = tuple(args.only.split(",")) if args.only else TARGETS
    if not set(only) <= set(TARGETS):
        ap.error(f"--only: unknown target(s) {', '.join(sorted(set(only) - set(TARGETS)))}")
    rng = random.Random(args.seed)
    runs = []
    for k in range(args.n):
        r = one_run(rng, rng.choice(only))
        runs.append(r)
        flag = "missed" if r.get("missed") else ("ok" if r["survived"] and not r["leaked"] and r["restored"]
                                                  else "BAD")
        det = f" detected in {r['detected'] * 1000:.0f} ms" if "detected" in r else ""
        print(f"[{k + 1}/{args.n}] {r['action']:4} {r['target']:9} at +{r['moment']:.2f}s: {flag}{det}"
              + (f"  {r.get('why')} leaked={r.get('leaked')}" if flag == "BAD" else ""), flush=True)
    s = summary(runs)
    n = s["runs"]
    print(f"\n{n} runs ({s['missed']} missed their moment): survived with a report {s['survived']}/{n}, "
          f"leaked {s['leaked']}, restored {s['restored']}/{n}; detection p50 "
          f"{_ms(s['detection_p50_s'])} p99 {_ms(s['detection_p99_s'])} max {_ms(s['detection_max_s'])}")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": s, "runs": runs}, indent=2) + "\n")
    ok = n and s["survived"] == n and s["leaked"] == 0 and s["restored"] == n \
        and (s["detection_p99_s"] or 0) <= 1.0
    return 0 if ok else 1


def _ms(v):
    return "-" if v is None else f"{v * 1000:.0f} ms"


if __name__ == "__main__":
    sys.exit(main())
