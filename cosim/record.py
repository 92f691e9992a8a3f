"""Record of a run (what replay compares): its schedule and a digest of what happened.

Every vCPU appends one tuple per exit that crossed to the kernel to `record-vcpuN.msgpack` in the run
directory, through an `ExitLog`: (seq, event, pc, instructions at the exit, level that answered, how
it resumed). The level and `how` are the kernel's or the debugger's decision on that exit. At the end
the supervisor writes `record.json` next to them (`write`): the config and schedule, per vCPU the
number of such exits and a hash of their list, its instruction count, exit counts by event and level
and final registers' hash, the debugger's counters, and a hash of the final guest RAM. `save` copies
the record somewhere kept (`--record DIR`; the run directory is removed at teardown), `compare` gives
the first divergence between two records.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil

import msgpack

from .outfile import Spill, lost

RECORD = "record.json"
EXITS = "record-{}.msgpack"
FIELDS = ("seq", "event", "pc", "instructions", "level", "how")


class ExitLog:
    """One vCPU's exits (buffered; flushed at close). A full disk loses the list, never the vCPU
    (outfile.Spill): `write` then says so in the record."""

    def __init__(self, spec: dict, name: str):
        self._f = Spill(os.path.join(spec["run_dir"], EXITS.format(name)))
        self._pack = msgpack.Packer().pack
        self._open: list | None = None

    def exit(self, seq: int, event: str, pc: int, instructions: int) -> None:
        self._open = [seq, event, pc, instructions]

    def resume(self, level: str, how: str) -> None:
        if self._open is not None:
            self._f.write(self._pack(self._open + [level, how]))
            self._open = None

    def close(self) -> None:
        if self._open is not None:              # the run ended with this exit unanswered
            self._f.write(self._pack(self._open + [None, None]))
            self._open = None
        self._f.close()


def read_exits(directory: str, vcpu: int) -> list[list]:
    path = os.path.join(directory, EXITS.format(f"vcpu{vcpu}"))
    out: list[list] = []
    try:
        with open(path, "rb") as f:
            try:
                out.extend(list(r) for r in msgpack.Unpacker(f, raw=False))
            except (ValueError, msgpack.OutOfData):
                pass
    except FileNotFoundError:
        pass
    return out


def _hash(obj) -> str:
    return hashlib.blake2b(msgpack.packb(obj), digest_size=16).hexdigest()


def write(run_dir: str, data, ram_bytes, registers: list[list[int]], schedule: dict) -> dict:
    """The digest of a finished run (all children gone), written to run_dir/record.json."""
    user = data.stats.get("userspace", {})
    vcpus = []
    for i, s in enumerate(data.vcpu_state):
        exits = read_exits(run_dir, i)
        why = lost(os.path.join(run_dir, EXITS.format(f"vcpu{i}")))
        vcpus.append({"vcpu": i, "crossing_exits": len(exits), "exits_hash": _hash(exits),
                      **({"exits_lost": why} if why else {}),
                      "instructions": s["instructions"], "pc": s["pc"], "state": s["state"],
                      "exits": s["exits"], "registers_hash": _hash(registers[i] if i < len(registers) else [])})
    digest = {
        "vcpus": vcpus,
        "ram_hash": hashlib.blake2b(ram_bytes, digest_size=16).hexdigest() if ram_bytes is not None else None,
        "debugger": {k: user.get(k) for k in ("hits", "hits_by_vcpu", "stale", "reinjected", "steps",
                                               "inserts", "removes")},
        "kernel_decisions": data.stats.get("kernel", {}).get("decisions", {}),
        "guest": data.guest,
        "outcome": data.outcome,
    }
    rec = {"schedule": schedule, "config": data.config.to_dict(), "source": data.config.source,
           "digest": digest, "digest_hash": _hash(json.dumps(digest, sort_keys=True))}
    with open(os.path.join(run_dir, RECORD), "w") as f:
        json.dump(rec, f, indent=1, sort_keys=True)
    return rec


def save(run_dir: str, dest: str) -> None:
    """Copy the record (record.json and the per-vCPU exit lists) to `dest` (created)."""
    os.makedirs(dest, exist_ok=True)
    for name in os.listdir(run_dir):
        if name == RECORD or (name.startswith("record-") and name.endswith(".msgpack")):
            shutil.copyfile(os.path.join(run_dir, name), os.path.join(dest, name))


def load(directory: str) -> dict:
    with open(os.path.join(directory, RECORD)) as f:
        return json.load(f)


def compare(a_dir: str, b_dir: str) -> str | None:
    """None when the two records are identical, else the first divergence in words: per vCPU the
    first exit that differs (vCPU, instruction count, which fields), else the first digest entry."""
    a, b = load(a_dir), load(b_dir)
    if a["digest_hash"] == b["digest_hash"]:
        return None
    first = None
    for i in range(max(len(a["digest"]["vcpus"]), len(b["digest"]["vcpus"]))):
        ea, eb = read_exits(a_dir, i), read_exits(b_dir, i)
        for k, (x, y) in enumerate(zip(ea, eb, strict=False)):
            if x != y:
                what = ", ".join(f"{f} {_field(f, p)} vs {_field(f, q)}"
                                 for f, p, q in zip(FIELDS, x, y, strict=False) if p != q)
                cand = (min(x[3], y[3]), i, f"vcpu{i} exit #{k + 1} at instruction {x[3]:,}: {what}")
                break
        else:
            if len(ea) == len(eb):
                continue
            k = min(len(ea), len(eb))
            longer = ea if len(ea) > k else eb
            cand = (longer[k][3], i, f"vcpu{i}: {len(ea)} vs {len(eb)} exits; exit #{k + 1} at instruction "
                                     f"{longer[k][3]:,} ({longer[k][1]} at {longer[k][2]:#010x}) only in one")
        if first is None or cand[:2] < first[:2]:
            first = cand
    if first is not None:
        return first[2]
    da, db = a["digest"], b["digest"]
    for key in sorted(set(da) | set(db)):
        if json.dumps(da.get(key), sort_keys=True) != json.dumps(db.get(key), sort_keys=True):
            return f"{key} differs: {_short(da.get(key))} vs {_short(db.get(key))}"
    return "schedules differ"


def _field(name: str, value) -> str:
    """An exit's field as a person reads it: PCs in hex (as everywhere else), the rest as they are."""
    return f"{value:#010x}" if name == "pc" and isinstance(value, int) else repr(value)


def _short(v) -> str:
    s = json.dumps(v, sort_keys=True)
    return s if len(s) <= 200 else s[:200] + "..."
