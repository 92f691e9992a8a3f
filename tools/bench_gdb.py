"""Time the GDB stub against a running scenario.

    .venv/bin/python tools/bench_gdb.py [--hits 200] [--cycles 500] [--cpu e500mc] [--strategy illegal]
                                        [--json PATH]

Three figures, measured in the same run on the same machine, for this project's stub and, when
`qemu-system-ppc` is installed, for QEMU 7.2's own gdbstub on the same ELF (`-M ppce500 -cpu e500mc -S
-gdb tcp:127.0.0.1:PORT -kernel loop.elf`, cfg_iterations set huge through the stub), rounds interleaved:
  * gdb per hit: a real gdb-multiarch in one batch session, `break bp_target` then `continue` N times
    (gdb's Python times the loop of continues only, not the connection or gdb's start-up);
  * raw RSP cycle: a client on a socket, per cycle `vCont;c` -> stop, `z0`, `vCont;s` -> stop, `Z0`
    (what gdb does per hit, without gdb's own work: unwinding reads, thread list, registers);
  * bare TCP ping-pong: one byte each way between this process and a child echo process;
  * CPU per raw cycle: what every process of each side spent on a CPU during the raw cycles (the
    kernel's per-thread run time, /proc/PID/task/TID/schedstat: far steadier than wall time on a noisy
    machine), by process (the scenario's children name their threads cosim-vcpu0, cosim-kernel...).
Every session gets a fresh scenario (and a fresh QEMU), closed right after it: a guest left running
after a detach would take a core from whichever side is measured next (on 2 cores that was worth
~1 ms per raw cycle of ours).
Targets: each figure <= 1.0x QEMU's of the same run (without QEMU: the fixed 1.6 ms per gdb hit and
0.5 ms per raw cycle of ../shared/reference/gdb-rsp.md). Exit status 0 when met, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cosim.machine.image import GuestImage, guest_path  # noqa: E402

TARGET_GDB_MS = 1.6
TARGET_RAW_MS = 0.5

CONFIG = """
name = "bench-gdb"
description = "tools/bench_gdb.py: loop guest stopped for gdb"
[machine]
cpu = "{cpu}"
vcpus = 1
[guest]
program = "loop"
iterations = 4000000000   # runs on between sessions (detach): it must not finish first
[debug]
strategy = "{strategy}"
[limits]
wall_seconds = 3600.0
"""


# --- the scenario ---------------------------------------------------------------------------------------
class Scenario:
    """`run.py CONFIG --gdb 127.0.0.1:0` as a child; `address` once it listens."""

    def __init__(self, cpu: str, strategy: str):
        self.dir = tempfile.mkdtemp(prefix="bench-gdb-")
        cfg = Path(self.dir, "bench.toml")
        cfg.write_text(CONFIG.format(cpu=cpu, strategy=strategy))
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "run.py"), str(cfg), "--gdb", "127.0.0.1:0", "--quiet"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.address = None
        self.lines: list[str] = []
        ready = threading.Event()

        def read():
            for line in self.proc.stderr:
                self.lines.append(line)
                m = re.search(r"listening on (\S+:\d+)", line)
                if m:
                    self.address = m.group(1)
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(60) or self.address is None:
            self.close()
            raise RuntimeError("scenario did not start:\n" + "".join(self.lines))

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGINT)   # the supervisor tears the run down
                self.proc.wait(20)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


class QemuScenario:
    """QEMU's gdbstub on TCP with the loop guest stopped at its entry (-S); `address` as Scenario's."""

    def __init__(self, cpu: str):
        from cosim.gdb.client import RspClient
        from cosim.qemu import QEMU
        probe = socket.create_server(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()                     # (a tiny race for the port: a benchmark tool, not a test)
        self.address = f"127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [QEMU, "-M", "ppce500", "-cpu", cpu, "-m", "256", "-nographic", "-nodefaults", "-no-reboot",
             "-S", "-gdb", f"tcp:127.0.0.1:{port}", "-kernel", str(guest_path("loop"))],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        try:
            rsp = RspClient.connect(("127.0.0.1", port), retry_for=20.0)
            image = GuestImage.load(guest_path("loop"))
            rsp.write_word(image.symbol("cfg_iterations"), 0x7FFFFFFF)   # never reaches its halt
            rsp.send("D")
            rsp.reply()
            rsp.close()
        except Exception:
            self.close()
            raise

    def close(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


# --- gdb ---------------------------------------------------------------------------------------------------
GDB_SCRIPT = """
set pagination off
set confirm off
target remote {address}
break bp_target
continue
continue
python
import time
t0 = time.perf_counter()
for _ in range({hits}):
    gdb.execute("continue", to_string=True)
t1 = time.perf_counter()
hits = int(gdb.parse_and_eval("*(unsigned int *)&cnt_hits"))
print("BENCH %.9f %d" % (t1 - t0, hits))
end
detach
"""


def bench_gdb(address: str, hits: int) -> dict:
    gdb = shutil.which("gdb-multiarch")
    if gdb is None:
        raise RuntimeError("gdb-multiarch not found")
    with tempfile.NamedTemporaryFile("w", suffix=".gdb", delete=False) as f:
        f.write(GDB_SCRIPT.format(address=address, hits=hits))
        script = f.name
    try:
        out = subprocess.run([gdb, "-q", "-nx", "-batch", str(guest_path("loop")), "-x", script],
                             capture_output=True, text=True, timeout=120 + hits * 0.1)
    finally:
        os.unlink(script)
    m = re.search(r"BENCH ([\d.]+) (\d+)", out.stdout)
    if m is None:
        raise RuntimeError(f"gdb run failed:\n{out.stdout}\n{out.stderr}")
    seconds, cnt = float(m.group(1)), int(m.group(2))
    return {"hits": hits, "seconds": seconds, "per_hit_ms": seconds / hits * 1e3, "cnt_hits": cnt}


# --- raw RSP ---------------------------------------------------------------------------------------------
class Rsp:
    """A minimal RSP client with acks on (as gdb against QEMU)."""

    def __init__(self, address: str):
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.no_ack = False

    def send(self, payload: str) -> None:
        body = payload.encode()
        self.sock.sendall(b"$%s#%02x" % (body, sum(body) & 0xFF))

    def reply(self) -> str:
        """The next packet (acks skipped; ours sent)."""
        while True:
            i = self.buf.find(b"$")
            j = self.buf.find(b"#", i) if i >= 0 else -1
            if i >= 0 and j >= 0 and len(self.buf) >= j + 3:
                body = self.buf[i + 1:j]
                self.buf = self.buf[j + 3:]
                if not self.no_ack:
                    self.sock.sendall(b"+")
                return body.decode()
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("stub closed the connection")
            self.buf += data

    def cmd(self, payload: str) -> str:
        self.send(payload)
        return self.reply()

    def close(self):
        self.sock.close()


def _on_cpu_ns(root: int) -> dict[str, int]:
    """Nanoseconds on a CPU so far, every thread of `root` and its descendants, by process name."""
    import psutil
    out: dict[str, int] = {}
    try:
        procs = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
    except psutil.NoSuchProcess:
        return out
    for p in procs:
        try:
            name = p.name()
            total = 0
            for task in os.listdir(f"/proc/{p.pid}/task"):
                with open(f"/proc/{p.pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
        except (OSError, psutil.Error, ValueError, IndexError):
            continue
        name = name if name.startswith(("cosim-", "qemu")) else "supervisor"
        out[name] = out.get(name, 0) + total
    return out


def _cycles(c: Rsp, z: str, cycles: int) -> list[float]:
    samples = []
    for _ in range(cycles):
        t0 = time.perf_counter()
        assert c.cmd(f"z0,{z}") == "OK"
        assert c.cmd("vCont;s:p1.1").startswith("T05")
        assert c.cmd(f"Z0,{z}") == "OK"
        stop = c.cmd("vCont;c:p1.-1")
        samples.append(time.perf_counter() - t0)
        assert stop.startswith("T05"), stop
    return samples


def bench_raw(address: str, cycles: int, addr: int, pid: int | None = None) -> dict:
    """The minimal cycle with acks on (as gdb against QEMU, which has no QStartNoAckMode), then
    without (as gdb against this stub, which offers it). With `pid` (the scenario's or QEMU's), also
    the CPU time of its processes per acked cycle."""
    c = Rsp(address)
    cpu_us = {}
    try:
        r = c.cmd("qSupported:multiprocess+;swbreak+;hwbreak+;vContSupported+")
        while r.startswith(("T", "S")):   # QEMU stops the VM on connect and says so unasked
            r = c.reply()
        c.cmd("?")
        z = f"{addr:x},4"
        assert c.cmd(f"Z0,{z}") == "OK"
        for _ in range(2):   # warm-up: reach the breakpoint, one full cycle
            assert c.cmd("vCont;c:p1.-1").startswith("T05")
        before = _on_cpu_ns(pid) if pid else {}
        acked = _cycles(c, z, cycles)
        if pid:
            after = _on_cpu_ns(pid)
            cpu_us = {k: (after[k] - before.get(k, 0)) / cycles / 1e3 for k in sorted(after)}
        t0 = time.perf_counter()
        for _ in range(cycles):
            c.cmd("g")
        g_rtt = (time.perf_counter() - t0) / cycles
        no_ack = None
        if c.cmd("QStartNoAckMode") == "OK":   # (QEMU 7.2 has no no-ack mode)
            c.no_ack = True
            no_ack = _cycles(c, z, cycles)
        c.send("D;1")
        c.reply()
    finally:
        c.close()
    return {"cycles": cycles, "per_cycle_ms": statistics.fmean(acked) * 1e3,
            "p50_ms": statistics.median(acked) * 1e3, "g_roundtrip_us": g_rtt * 1e6,
            "no_ack_per_cycle_ms": statistics.fmean(no_ack) * 1e3 if no_ack else None,
            "cpu_us_per_cycle": cpu_us}


# --- bare TCP ----------------------------------------------------------------------------------------------
def _echo(sock_fd: int) -> None:
    srv = socket.socket(fileno=sock_fd)
    conn, _ = srv.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        data = conn.recv(64)
        if not data:
            return
        conn.sendall(data)


def bench_tcp(rounds: int) -> dict:
    srv = socket.create_server(("127.0.0.1", 0))
    child = mp.get_context("fork").Process(target=_echo, args=(srv.fileno(),), daemon=True)
    child.start()
    try:
        s = socket.create_connection(srv.getsockname(), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(100):
            s.sendall(b"x")
            s.recv(1)
        t0 = time.perf_counter()
        for _ in range(rounds):
            s.sendall(b"x")
            s.recv(1)
        rtt = (time.perf_counter() - t0) / rounds
        s.close()
    finally:
        child.join(5)
        if child.is_alive():
            child.kill()
        srv.close()
    return {"rounds": rounds, "rtt_us": rtt * 1e6}


def _median_cpu(raws: list[dict]) -> dict[str, float]:
    """Per process, the median over rounds of its CPU time per raw cycle."""
    names = sorted({k for r in raws for k in r.get("cpu_us_per_cycle", {})})
    return {k: statistics.median(r["cpu_us_per_cycle"].get(k, 0.0) for r in raws) for k in names}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hits", type=int, default=200, help="gdb hits per session")
    ap.add_argument("--cycles", type=int, default=300, help="raw cycles per session")
    ap.add_argument("--rounds", type=int, default=3000, help="TCP ping-pong round trips per measure")
    ap.add_argument("--repeat", type=int, default=3,
                    help="alternate TCP / gdb / raw this many times; medians are reported")
    ap.add_argument("--cpu", default="e500mc")
    ap.add_argument("--strategy", default="illegal")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON ('-' for stdout)")
    ap.add_argument("--no-qemu", action="store_true", help="measure this project's stub only")
    args = ap.parse_args(argv)
    from cosim.qemu import qemu_available
    use_qemu = not args.no_qemu and qemu_available() is None
    image = GuestImage.load(guest_path("loop"))
    tcps, gdbs, raws, qgdbs, qraws = [], [], [], [], []

    def session(make, measure):
        """A fresh scenario (or QEMU) per session, closed right after: a detached guest left running
        in the background would take a core from whichever side is measured next."""
        sc = make()
        try:
            return measure(sc)
        finally:
            sc.close()

    ours = lambda: Scenario(args.cpu, args.strategy)         # noqa: E731
    peer = lambda: QemuScenario(args.cpu)                     # noqa: E731
    bp = image.symbol("bp_target")
    for _ in range(args.repeat):
        tcps.append(bench_tcp(args.rounds))
        gdbs.append(session(ours, lambda s: bench_gdb(s.address, args.hits)))
        if use_qemu:
            qgdbs.append(session(peer, lambda s: bench_gdb(s.address, args.hits)))
        raws.append(session(ours, lambda s: bench_raw(s.address, args.cycles, bp, s.proc.pid)))
        if use_qemu:
            qraws.append(session(peer, lambda s: bench_raw(s.address, args.cycles, bp, s.proc.pid)))
    med = statistics.median
    gdb_ms = med(g["per_hit_ms"] for g in gdbs)
    raw_ms = med(r["per_cycle_ms"] for r in raws)
    no_ack_ms = med(r["no_ack_per_cycle_ms"] for r in raws)
    g_us = med(r["g_roundtrip_us"] for r in raws)
    rtt_us = med(t["rtt_us"] for t in tcps)
    cpu = _median_cpu(raws)
    qemu = None
    if use_qemu:
        qemu = {"gdb_hit_ms": med(g["per_hit_ms"] for g in qgdbs),
                "raw_cycle_ms": med(r["per_cycle_ms"] for r in qraws),
                "raw_g_roundtrip_us": med(r["g_roundtrip_us"] for r in qraws),
                "cpu_us_per_cycle": _median_cpu(qraws)}
    result = {
        "cpu": args.cpu, "strategy": args.strategy, "repeat": args.repeat,
        "gdb_hit_ms": gdb_ms, "raw_cycle_ms": raw_ms, "raw_cycle_no_ack_ms": no_ack_ms,
        "raw_g_roundtrip_us": g_us, "tcp_rtt_us": rtt_us, "cpu_us_per_cycle": cpu, "qemu": qemu,
        "ratios": {"gdb_hit_per_tcp_rtt": gdb_ms * 1e3 / rtt_us,
                   "raw_cycle_per_tcp_rtt": raw_ms * 1e3 / rtt_us,
                   "gdb_hit_vs_target": gdb_ms / TARGET_GDB_MS,
                   "raw_cycle_vs_target": raw_ms / TARGET_RAW_MS},
        "targets_ms": {"gdb_hit": TARGET_GDB_MS, "raw_cycle": TARGET_RAW_MS},
        "runs": {"gdb": gdbs, "raw": raws, "tcp": tcps, "qemu_gdb": qgdbs, "qemu_raw": qraws},
    }
    if qemu is not None:
        result["ratios"].update({k + "_vs_qemu": result[k] / qemu[k] for k in qemu
                                 if k != "cpu_us_per_cycle"})
        ours_cpu, qemu_cpu = sum(cpu.values()), sum(qemu["cpu_us_per_cycle"].values())
        if qemu_cpu:
            result["ratios"]["cpu_per_cycle_vs_qemu"] = ours_cpu / qemu_cpu
        result["ok"] = all(result[k] <= qemu[k] for k in ("gdb_hit_ms", "raw_cycle_ms", "raw_g_roundtrip_us"))
    else:
        result["ok"] = gdb_ms <= TARGET_GDB_MS and raw_ms <= TARGET_RAW_MS
    if args.json == "-":
        print(json.dumps(result, indent=2))
        return 0 if result["ok"] else 1
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    r = result["ratios"]
    print(f"bench_gdb: loop guest, {args.cpu}, strategy {args.strategy}; medians of {args.repeat} "
          f"rounds of {args.hits} gdb hits, {args.cycles} raw cycles, {args.rounds} TCP round trips")
    if qemu is not None:
        rows = [("", "kvmppc-cosim", "QEMU 7.2", "ratio")]
        for name, key, unit, scale in (("gdb break + continue, per hit", "gdb_hit_ms", "ms", 1),
                                       ("raw RSP cycle (c, z0, s, Z0)", "raw_cycle_ms", "ms", 1),
                                       ("raw `g` round trip", "raw_g_roundtrip_us", "us", 1)):
            fmt = "{:.3f} " + unit if unit == "ms" else "{:.1f} " + unit
            rows.append((name, fmt.format(result[key]), fmt.format(qemu[key]),
                         f"{result[key] / qemu[key]:.2f}x"))
        if ours_cpu and qemu_cpu:
            rows.append(("CPU per raw cycle, all processes", f"{ours_cpu:.0f} us", f"{qemu_cpu:.0f} us",
                         f"{ours_cpu / qemu_cpu:.2f}x"))
        rows.append(("raw cycle, QStartNoAckMode", f"{no_ack_ms:.3f} ms", "(none)", ""))
        rows.append(("bare TCP ping-pong round trip", f"{rtt_us:.1f} us", "", ""))
    else:
        rows = [
            ("gdb break + continue, per hit", f"{gdb_ms:.3f} ms", f"<= {TARGET_GDB_MS} ms",
             f"{r['gdb_hit_vs_target']:.2f}x target, {r['gdb_hit_per_tcp_rtt']:.0f} TCP RTTs"),
            ("raw RSP cycle (c, z0, s, Z0)", f"{raw_ms:.3f} ms", f"<= {TARGET_RAW_MS} ms",
             f"{r['raw_cycle_vs_target']:.2f}x target, {r['raw_cycle_per_tcp_rtt']:.0f} TCP RTTs"),
            ("raw cycle, QStartNoAckMode", f"{no_ack_ms:.3f} ms", "", ""),
            ("raw `g` round trip", f"{g_us:.1f} us", "", f"{g_us / rtt_us:.1f} TCP RTTs"),
            ("bare TCP ping-pong round trip", f"{rtt_us:.1f} us", "", ""),
        ]
    w = max(len(x[0]) for x in rows)
    for name, value, target, note in rows:
        print(f"  {name:<{w}}  {value:>12}  {target:>12}  {note}")
    print("  per round: gdb " + ", ".join(f"{g['per_hit_ms']:.2f}" for g in gdbs) + " ms; raw "
          + ", ".join(f"{x['per_cycle_ms']:.2f}" for x in raws) + " ms; TCP "
          + ", ".join(f"{t['rtt_us']:.0f}" for t in tcps) + " us")
    if cpu:
        print("  CPU per raw cycle by process: " + ", ".join(f"{k.removeprefix('cosim-')} {v:.0f} us"
                                                             for k, v in cpu.items()))
    if qemu is not None:
        print("  per round, QEMU: gdb " + ", ".join(f"{g['per_hit_ms']:.2f}" for g in qgdbs) + " ms; raw "
              + ", ".join(f"{x['per_cycle_ms']:.2f}" for x in qraws) + " ms")
    print("targets met" if result["ok"] else "TARGETS MISSED")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
