"""The timeline trace (`--trace PATH`): what every process did, when, as one Chrome JSON trace-event file
(ui.perfetto.dev and chrome://tracing open it).

Each process appends compact events (msgpack tuples, buffered) to its own file in the run directory
through a `Tracer`; a process that does not trace holds `NULL`, whose methods do nothing (no clock read,
no allocation). After the run the supervisor `merge`s the files into one trace:

- one track (thread) per vCPU, then kernel, userspace and gdb, all in one process "cosim VM";
- a slice per exit on every level it crossed: on the vCPU "exit EVENT" (from sending the exit to
  receiving its resume) and "resume HOW" (applying it), on the kernel "EVENT: ACTION", on userspace
  "debug exit VCPU"; flow arrows link the slices of one exit in order (vCPU -> kernel -> userspace ->
  vCPU), keyed by `flow_id(vcpu, seq)`;
- counter tracks: instructions per vCPU (sampled at each exit), breakpoint hits (userspace);
- instants: patches (userspace), flushes and stops (vCPU), stop replies (gdb); slices for stop-all
  round trips (userspace) and gdb packets.

Timestamps are the clock the tracer is given: CLOCK_MONOTONIC nanoseconds (one clock for every process
on the machine) in free-running mode; under the deterministic schedule, virtual nanoseconds
(`VirtualClock`: 10 per guest instruction, the same for the same seed). The merge shifts them so the
trace starts at 0 and writes microseconds.
"""
from __future__ import annotations

import glob
import json
import os
import time

import msgpack

from . import outfile
from .outfile import Spill, lost

PREFIX = "trace-"
BUFFER = 1 << 16

# record kinds in the per-process files
SLICE, INSTANT, COUNTER = 0, 1, 2


def flow_id(vcpu: int, seq: int) -> int:
    """The flow of one exit: its vCPU and the vCPU's exit sequence number."""
    return (vcpu << 40) | seq


class WallClock:
    """The trace's clock in free-running mode: CLOCK_MONOTONIC nanoseconds. The moves of the
    deterministic schedule's `VirtualClock` (see, follow, receive, handoff) are no-ops here."""
    now = staticmethod(time.monotonic_ns)

    def see(self, vtime: int) -> None:
        pass

    def follow(self, vtime: int, count0: int, count) -> None:
        pass

    def receive(self, page) -> None:
        pass

    def handoff(self, page) -> None:
        pass


class NullTrace(WallClock):
    """Tracing off: every call is a no-op (no clock read either)."""
    enabled = False

    def now(self) -> int:
        return 0

    def slice(self, *args, **kw) -> None:
        pass

    def instant(self, *args, **kw) -> None:
        pass

    def counter(self, *args, **kw) -> None:
        pass

    def close(self) -> None:
        pass


NULL = NullTrace()

NS_PER_INSTRUCTION = 10     # virtual nanoseconds per guest instruction (schedule.NOMINAL_IPS)


class VirtualClock:
    """The trace's clock under the deterministic schedule, in virtual nanoseconds: a Lamport clock
    over the run, so a run's trace is the same for the same seed. It moves with the guest instructions
    of the vCPU's grant (`follow`), with the instants the schedule names (`see`), and along each exit's
    chain through the vCPU's run page: a hop writes its time plus HOP there before passing the exit on
    (`handoff`) and the next hop starts after it (`receive`), so an exit's slices follow each other."""
    HOP = 1000                 # virtual ns reserved for one hop's own events

    def __init__(self) -> None:
        self.t = 0
        self._base: tuple[int, int, object] | None = None

    def now(self) -> int:
        t = self.t + 1
        if self._base is not None:
            vtime, count0, count = self._base
            t = max(t, (vtime + count() - count0) * NS_PER_INSTRUCTION)
        self.t = t
        return t

    def see(self, vtime: int) -> None:
        self.t = max(self.t, vtime * NS_PER_INSTRUCTION)

    def follow(self, vtime: int, count0: int, count) -> None:
        self._base = (vtime, count0, count)

    def receive(self, page) -> None:
        self.t = max(self.t, int(page["vclock"]))

    def handoff(self, page) -> None:
        page["vclock"] = self.now() + self.HOP


class Tracer:
    """One process's event file. `track` defaults to the process's own (its name)."""
    enabled = True

    def __init__(self, path: str, track: str, clock: WallClock | VirtualClock | None = None):
        self.track = track
        self.clock = clock if clock is not None else WallClock()
        self.now = self.clock.now
        self.see, self.follow = self.clock.see, self.clock.follow
        self.receive, self.handoff = self.clock.receive, self.clock.handoff
        self._f = Spill(path, BUFFER)        # a full disk loses this file, never the process
        self._pack = msgpack.Packer().pack

    def slice(self, name: str, t0: int, t1: int | None = None, flow_in: int | None = None,
              flow_out: int | None = None, args: dict | None = None, track: str | None = None) -> None:
        """A slice [t0, t1] (t1 defaults to now); `flow_in`/`flow_out` bind it to an exit's flow."""
        self._f.write(self._pack((SLICE, track or self.track, name, t0, self.now() if t1 is None else t1,
                                  flow_in, flow_out, args)))

    def instant(self, name: str, args: dict | None = None, track: str | None = None) -> None:
        self._f.write(self._pack((INSTANT, track or self.track, name, self.now(), args)))

    def counter(self, name: str, value: int | float, track: str | None = None) -> None:
        self._f.write(self._pack((COUNTER, track or self.track, name, self.now(), value)))

    def close(self) -> None:
        self._f.close()


def open_trace(spec: dict, name: str):
    """The tracer of process `name` (NULL unless the run traces: spec["trace"] true)."""
    if not spec.get("trace"):
        return NULL
    virtual = spec.get("schedule", {}).get("mode") == "deterministic"
    return Tracer(os.path.join(spec["run_dir"], f"{PREFIX}{name}.msgpack"), name,
                  VirtualClock() if virtual else None)


# --- merging (supervisor) -------------------------------------------------------------------------------
def lost_files(run_dir: str) -> dict[str, str]:
    """Processes whose event file was lost (a full disk), with the reason."""
    out = {}
    for path in sorted(glob.glob(os.path.join(run_dir, f"{PREFIX}*.msgpack"))):
        why = lost(path)
        if why:
            out[os.path.basename(path)[len(PREFIX):-len(".msgpack")]] = why
    return out


def read_events(run_dir: str) -> list[tuple]:
    """Every record of every process file (a process that died keeps what it had flushed)."""
    out = []
    for path in sorted(glob.glob(os.path.join(run_dir, f"{PREFIX}*.msgpack"))):
        with open(path, "rb") as f:
            unpacker = msgpack.Unpacker(f, raw=False, strict_map_key=False)
            try:
                for rec in unpacker:
                    out.append(tuple(rec))
            except (ValueError, msgpack.OutOfData):   # a truncated tail (process killed mid-write)
                pass
    return out


def _track_order(name: str) -> tuple:
    if name.startswith("vcpu") and name[4:].isdigit():
        return (0, int(name[4:]))
    return (1, ("kernel", "userspace", "gdb").index(name) if name in ("kernel", "userspace", "gdb") else 9,
            name)


def to_chrome(records: list[tuple], unit: str = "ns") -> dict:
    """Chrome JSON trace-event format. `unit` "ns" (wall clock: written as microseconds) or
    "instructions" (virtual time: one guest instruction per microsecond of the display)."""
    tracks = sorted({r[1] for r in records}, key=_track_order)
    tid = {t: i + 1 for i, t in enumerate(tracks)}
    t0 = min((r[3] for r in records), default=0)
    scale = 1000.0 if unit == "ns" else 1.0

    def ts(t):
        return round((t - t0) / scale, 3)

    ev: list[dict] = [{"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "cosim VM"}}]
    for t, i in tid.items():
        ev.append({"ph": "M", "pid": 1, "tid": i, "name": "thread_name", "args": {"name": t}})
        ev.append({"ph": "M", "pid": 1, "tid": i, "name": "thread_sort_index", "args": {"sort_index": i}})
    for r in records:
        kind, track = r[0], r[1]
        if kind == SLICE:
            _, _, name, a, b, fin, fout, args = r
            e = {"ph": "X", "pid": 1, "tid": tid[track], "name": name, "cat": "exit" if
                 (fin is not None or fout is not None) else "cosim", "ts": ts(a), "dur": max(ts(b) - ts(a), 0.001)}
            if args:
                e["args"] = args
            fid = fout if fout is not None else fin
            if fid is not None:
                e["bind_id"] = f"{fid:#x}"
                if fin is not None:
                    e["flow_in"] = True
                if fout is not None:
                    e["flow_out"] = True
            ev.append(e)
        elif kind == INSTANT:
            _, _, name, t, args = r
            e = {"ph": "i", "s": "t", "pid": 1, "tid": tid[track], "name": name, "ts": ts(t)}
            if args:
                e["args"] = args
            ev.append(e)
        elif kind == COUNTER:
            _, _, name, t, value = r
            ev.append({"ph": "C", "pid": 1, "name": f"{name} {track}" if track.startswith("vcpu") else name,
                       "ts": ts(t), "args": {"value": value}})
    ev.sort(key=lambda e: (e.get("ts", -1), -e.get("dur", 0)))   # parents before the slices they hold
    return {"traceEvents": ev, "displayTimeUnit": "ns",
            "otherData": {"clock": "CLOCK_MONOTONIC" if unit == "ns" else "guest instructions"}}


def merge(run_dir: str, out_path: str, unit: str = "ns") -> dict:
    """Merge the run's event files into `out_path`; returns a summary (events by kind)."""
    records = read_events(run_dir)
    trace = to_chrome(records, unit)
    outfile.write(out_path, json.dumps(trace, separators=(",", ":")))   # OutputError (one line)
    return {"path": out_path, "events": len(records),
            "slices": sum(1 for r in records if r[0] == SLICE), "lost": lost_files(run_dir)}


# --- reading a trace back (tests, tools): the semantics ui.perfetto.dev applies -----------------------
def summarize(trace: dict) -> dict:
    """Slices per track and name prefix, flows (chains of slices linked by bind_id, in time order),
    counters and instants of a Chrome JSON trace written by `to_chrome`."""
    ev = trace["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in ev if e.get("ph") == "M" and e["name"] == "thread_name"}
    slices: dict[str, int] = {}
    chains: dict[str, list[tuple[float, str, str, bool, bool]]] = {}
    counters: dict[str, int] = {}
    instants: dict[str, int] = {}
    for e in ev:
        ph = e.get("ph")
        if ph == "X":
            track = names[e["tid"]]
            slices[track] = slices.get(track, 0) + 1
            if "bind_id" in e:
                chains.setdefault(e["bind_id"], []).append(
                    (e["ts"], track, e["name"], bool(e.get("flow_in")), bool(e.get("flow_out"))))
        elif ph == "C":
            counters[e["name"]] = counters.get(e["name"], 0) + 1
        elif ph == "i":
            instants[e["name"].split()[0]] = instants.get(e["name"].split()[0], 0) + 1
    # a flow arrow joins a slice with flow_out to the next slice (in time) of the same id with flow_in
    arrows = 0
    paths: dict[str, int] = {}
    for chain in chains.values():
        chain.sort()
        path = [chain[0][1]]
        for a, b in zip(chain, chain[1:], strict=False):
            if a[4] and b[3]:
                arrows += 1
                path.append(b[1])
        key = "->".join("vcpu" if p.startswith("vcpu") else p for p in path)
        paths[key] = paths.get(key, 0) + 1
    return {"slices": slices, "flows": len(chains), "arrows": arrows, "paths": paths,
            "counters": counters, "instants": instants}
