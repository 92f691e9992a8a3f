#!/usr/bin/env python3
"""Benchmark of the co-simulation (issue 3): exit round trips and guest speed, each beside a floor
measured in the same run on the same machine (these machines are noisy: only ratios mean anything).

  kernel-handled exit    a guest WARN (trap) that the kernel process reflects: vCPU -> kernel -> vCPU,
                         beside a raw pyzmq PUSH/PULL ping-pong over the same transport, 2 hops
  userspace-handled exit a breakpoint hit that userspace resumes: vCPU -> kernel -> userspace -> vCPU,
                         beside a raw pyzmq ring of 3 processes, 3 hops
  guest MIPS             the `loop` guest on one vCPU in the multiprocess harness (steady state, from the
                         run page's instruction counter), beside raw unicorn on the same loop body
                         (tools/bench_mips.py's raw runner)

Round trips are measured by the vCPU from sending the exit to receiving the resume (p50 of every exit
of the run); the floor sends a message of the same size (an encoded exit) around the same number of
hops. Measurements alternate floor/harness --repeat times; the median of each is reported.
Each p50 is also shown beside a plain-socket floor of the same hop count (unix SOCK_SEQPACKET
socketpairs, blocking reads: the transport without ZeroMQ's I/O threads).
Targets: p50 within 1.2x of the pyzmq floor; MIPS at least 0.5x raw.

    .venv/bin/python tools/bench_cosim.py [--repeat 3] [--json PATH] [--transport ipc|tcp]
    .venv/bin/python tools/bench_cosim.py --curve-cost [--repeat 3] [--transport tcp|ipc]   # with and without CURVE
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cosim import wire  # noqa: E402
from cosim.config import parse_config  # noqa: E402
from cosim.report import build_report  # noqa: E402
from cosim.supervisor import Supervisor, mp_context  # noqa: E402
from cosim.machine.image import GuestImage, guest_path  # noqa: E402
from cosim.transport import make_run_dir, remove_run_dir  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_mips import RawLoop  # noqa: E402  (the raw unicorn runner of the same loop)

PAYLOAD = wire.encode(wire.ExitMsg(0, 1, "trap", 0x10760, 0x7FE00008, 6, 0x10760, 0x02000000))


# --- floor: raw pyzmq ring --------------------------------------------------------------------------
def _hop(addr_in: str, addr_out: str) -> None:
    ctx = zmq.Context()
    i = ctx.socket(zmq.PULL)
    i.bind(addr_in)
    o = ctx.socket(zmq.PUSH)
    o.connect(addr_out)
    while True:
        frames = i.recv_multipart()
        if frames[-1] == b"quit":
            o.send_multipart(frames)
            break
        o.send_multipart(frames)
    o.close(linger=1000)
    i.close(0)
    ctx.term()


def raw_ring(hops: int, n: int, transport: str, pace_us: int = 0) -> list[int]:
    """Round trips (ns) of a message through `hops` hops: this process and hops-1 echo processes.
    With `pace_us`, this process stays busy that long between round trips, as a vCPU running guest
    code between exits does (the echo processes then sleep between messages, as the kernel does)."""
    run_dir = make_run_dir()
    ctx = zmq.Context()
    home = ctx.socket(zmq.PULL)
    if transport == "ipc":
        home_addr = f"ipc://{run_dir}/home"
        home.bind(home_addr)
        addrs = [f"ipc://{run_dir}/hop{k}" for k in range(hops - 1)]
    else:
        home.bind("tcp://127.0.0.1:0")
        home_addr = home.getsockopt(zmq.LAST_ENDPOINT).decode()
        import socket
        addrs = []
        for _ in range(hops - 1):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            addrs.append(f"tcp://127.0.0.1:{s.getsockname()[1]}")
            s.close()
    procs = []
    for k in range(hops - 1):
        nxt = addrs[k + 1] if k + 1 < len(addrs) else home_addr
        p = mp_context().Process(target=_hop, args=(addrs[k], nxt), daemon=True)
        p.start()
        procs.append(p)
    out = ctx.socket(zmq.PUSH)
    out.connect(addrs[0])
    samples = []
    try:
        for _ in range(50):                       # warm up the connections
            out.send_multipart([b"vcpu0", PAYLOAD])
            home.poll(5000)
            home.recv_multipart()
        for _ in range(n):
            if pace_us:
                end = time.perf_counter_ns() + pace_us * 1000
                while time.perf_counter_ns() < end:
                    pass
            t0 = time.perf_counter_ns()
            out.send_multipart([b"vcpu0", PAYLOAD])
            home.poll(5000)                       # the harness waits with poll too
            home.recv_multipart()
            samples.append(time.perf_counter_ns() - t0)
        out.send_multipart([b"x", b"quit"])
        home.poll(5000)
    finally:
        for p in procs:
            p.join(5)
            if p.exitcode is None:
                p.kill()
        out.close(0)
        home.close(0)
        ctx.term()
        remove_run_dir(run_dir)
    return samples


# --- floor: plain sockets --------------------------------------------------------------------------
def _sock_hop(rx, tx) -> None:
    while True:
        data = rx.recv(4096)
        tx.send(data)
        if data == b"quit":
            return


def socket_ring(hops: int, n: int) -> list[int]:
    """As `raw_ring`, over plain unix SOCK_SEQPACKET socketpairs with blocking reads: no ZeroMQ, no
    I/O threads (the floor of the transport itself: one wake-up per hop)."""
    import multiprocessing
    import socket
    links = [socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) for _ in range(hops)]
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_sock_hop, args=(links[k][1], links[k + 1][0]), daemon=True)
             for k in range(hops - 1)]
    for p in procs:
        p.start()
    out, home = links[0][0], links[-1][1]
    samples = []
    try:
        for _ in range(50):
            out.send(PAYLOAD)
            home.recv(4096)
        for _ in range(n):
            t0 = time.perf_counter_ns()
            out.send(PAYLOAD)
            home.recv(4096)
            samples.append(time.perf_counter_ns() - t0)
        out.send(b"quit")
        home.recv(4096)
    finally:
        for p in procs:
            p.join(5)
            if p.exitcode is None:
                p.kill()
        for a, b in links:
            a.close()
            b.close()
    return samples


# --- the harness -------------------------------------------------------------------------------------
def harness(strategy: str, breakpoints: list[str], iterations: int, transport: str,
            program: str = "warn_storm", curve: bool = True, ipc_auth: str = "token") -> dict:
    cfg = parse_config({
        "machine": {"cpu": "e500mc", "vcpus": 1, "transport": transport},
        "guest": {"program": program, "iterations": iterations},
        "debug": {"strategy": strategy, "breakpoints": [{"at": b} for b in breakpoints]},
        "limits": {"wall_seconds": 300.0},
    }, "<bench>")
    samples = []
    sup = Supervisor(cfg, progress=lambda p: samples.append((p["elapsed"], p["instructions"])), curve=curve,
                     ipc_auth=ipc_auth)
    data = sup.run()
    report = build_report(data)
    if not report["ok"]:
        raise SystemExit(f"benchmark run failed: {report['failed']} {report['problems']}")
    return {"report": report, "progress": samples}


def p50(v):
    return statistics.median(v) / 1000.0


def steady_mips(progress: list[tuple[float, int]]) -> float:
    running = [(t, i) for t, i in progress if i > 0]
    if len(running) < 3:   # the run was shorter than three progress samples: raise --mips-iterations
        return 0.0
    (t0, i0), (t1, i1) = running[0], running[-1]
    return (i1 - i0) / (t1 - t0) / 1e6


def curve_cost(args) -> int:
    """Exit round trips over --transport with each authentication and without, alternating in one run:
    tcp: CURVE vs none; ipc: a per-run token (ZeroMQ PLAIN checked by ZAP: handshake only), CURVE
    (every message encrypted) and the uid check alone."""
    variants = {"curve": {"curve": True, "ipc_auth": "curve"}}
    if args.transport == "ipc":
        variants["token"] = {"curve": True, "ipc_auth": "token"}
    variants["plain"] = {"curve": False}
    rows: dict = {(v, lv): [] for v in variants for lv in ("kernel", "userspace")}
    for r in range(args.repeat):
        print(f"round {r + 1}/{args.repeat} ...", file=sys.stderr, flush=True)
        for v, kw in variants.items():
            k = harness("illegal", [], args.iterations, args.transport, **kw)["report"]
            rows[(v, "kernel")].append(k["exits"]["latency_us"]["kernel"]["p50"])
            u = harness("illegal", ["bp_target_a", "bp_target_b"], args.iterations, args.transport,
                        **kw)["report"]
            rows[(v, "userspace")].append(u["exits"]["latency_us"]["userspace"]["p50"])
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"{args.transport + ' exit round trip p50 (us)':<30}" + "".join(f"{v:>10}" for v in variants)
          + "".join(f"{v + '/plain':>14}" for v in variants if v != "plain"))
    for lv in ("kernel", "userspace"):
        print(f"{lv + '-handled':<30}" + "".join(f"{med[(v, lv)]:>10.1f}" for v in variants)
              + "".join(f"{med[(v, lv)] / med[('plain', lv)]:>14.2f}" for v in variants if v != "plain"))
    if args.json:
        Path(args.json).write_text(json.dumps({f"{v}_{lv}_p50_us": x for (v, lv), x in med.items()}
                                              | {"samples": {f"{v}_{lv}": x for (v, lv), x in rows.items()}},
                                              indent=2) + "\n")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--round-trips", type=int, default=3000, help="raw ping-pongs per floor measurement")
    ap.add_argument("--iterations", type=int, default=1000, help="warn_storm iterations per harness run")
    ap.add_argument("--mips-iterations", type=int, default=100_000_000,
                    help="loop iterations of the MIPS run (default 100M: the engine runs 20M in under a "
                         "second, too short for three 0.25 s progress samples)")
    ap.add_argument("--transport", choices=("ipc", "tcp"), default="ipc")
    ap.add_argument("--pace-us", type=int, default=150,
                    help="busy time between round trips of the paced floor (guest work between exits)")
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--curve-cost", action="store_true",
                    help="only measure exit round trips over tcp with and without CURVE (same run)")
    args = ap.parse_args(argv)
    if args.curve_cost:
        return curve_cost(args)

    rows = {"floor2": [], "kernel": [], "floor3": [], "user": [], "harness_mips": [], "raw_mips": [],
            "paced2": [], "paced3": [], "sock2": [], "sock3": []}
    for r in range(args.repeat):
        print(f"round {r + 1}/{args.repeat} ...", file=sys.stderr, flush=True)
        rows["floor2"].append(p50(raw_ring(2, args.round_trips, args.transport)))
        rows["sock2"].append(p50(socket_ring(2, args.round_trips)))
        rows["sock3"].append(p50(socket_ring(3, args.round_trips)))
        rows["paced2"].append(p50(raw_ring(2, args.round_trips // 3, args.transport, args.pace_us)))
        rows["paced3"].append(p50(raw_ring(3, args.round_trips // 3, args.transport, args.pace_us)))
        k = harness("illegal", [], args.iterations, args.transport)["report"]
        rows["kernel"].append(k["exits"]["latency_us"]["kernel"]["p50"])
        rows["floor3"].append(p50(raw_ring(3, args.round_trips, args.transport)))
        u = harness("illegal", ["bp_target_a", "bp_target_b"], args.iterations, args.transport)["report"]
        rows["user"].append(u["exits"]["latency_us"]["userspace"]["p50"])
        m = harness("illegal", [], args.mips_iterations, args.transport, program="loop")
        rows["harness_mips"].append(steady_mips(m["progress"]))
        raw = RawLoop(GuestImage.load(guest_path("loop")))
        rows["raw_mips"].append(raw.run(args.mips_iterations, raw.instructions_per_iteration())["mips"])

    med = {k: statistics.median(v) for k, v in rows.items()}
    result = {
        "transport": args.transport,
        "kernel_exit_p50_us": med["kernel"], "floor_2hop_p50_us": med["floor2"],
        "kernel_ratio": med["kernel"] / med["floor2"],
        "userspace_exit_p50_us": med["user"], "floor_3hop_p50_us": med["floor3"],
        "userspace_ratio": med["user"] / med["floor3"],
        "paced_floor_2hop_p50_us": med["paced2"], "kernel_ratio_paced": med["kernel"] / med["paced2"],
        "paced_floor_3hop_p50_us": med["paced3"], "userspace_ratio_paced": med["user"] / med["paced3"],
        "socket_floor_2hop_p50_us": med["sock2"], "kernel_ratio_socket": med["kernel"] / med["sock2"],
        "socket_floor_3hop_p50_us": med["sock3"], "userspace_ratio_socket": med["user"] / med["sock3"],
        "harness_mips": med["harness_mips"], "raw_mips": med["raw_mips"],
        "mips_ratio": med["harness_mips"] / med["raw_mips"] if med["raw_mips"] else 0.0,
        "samples": rows,
    }
    ok = {"kernel": result["kernel_ratio"] <= 1.2, "userspace": result["userspace_ratio"] <= 1.2,
          "mips": result["mips_ratio"] >= 0.5}
    result["pass"] = ok
    print(f"{'measure':<26}{'harness':>12}{'floor':>12}{'ratio':>8}  target")
    print(f"{'kernel exit p50 (us)':<26}{med['kernel']:>12.1f}{med['floor2']:>12.1f}"
          f"{result['kernel_ratio']:>8.2f}  <= 1.2  {'PASS' if ok['kernel'] else 'FAIL'}")
    print(f"{'  vs paced 2-hop floor':<26}{'':>12}{med['paced2']:>12.1f}{result['kernel_ratio_paced']:>8.2f}")
    print(f"{'  vs plain-socket 2-hop':<26}{'':>12}{med['sock2']:>12.1f}{result['kernel_ratio_socket']:>8.2f}")
    print(f"{'userspace exit p50 (us)':<26}{med['user']:>12.1f}{med['floor3']:>12.1f}"
          f"{result['userspace_ratio']:>8.2f}  <= 1.2  {'PASS' if ok['userspace'] else 'FAIL'}")
    print(f"{'  vs paced 3-hop floor':<26}{'':>12}{med['paced3']:>12.1f}{result['userspace_ratio_paced']:>8.2f}")
    print(f"{'  vs plain-socket 3-hop':<26}{'':>12}{med['sock3']:>12.1f}{result['userspace_ratio_socket']:>8.2f}")
    print(f"{'guest MIPS (loop)':<26}{med['harness_mips']:>12.1f}{med['raw_mips']:>12.1f}"
          f"{result['mips_ratio']:>8.2f}  >= 0.5  {'PASS' if ok['mips'] else 'FAIL'}")
    print(f"(paced floor: the pinging process stays busy {args.pace_us} us between round trips, as a vCPU "
          "runs guest code between exits)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 1 if args.strict and not all(ok.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
