"""Exits over time: each vCPU's number of exits per time bin, kept in every run (no trace needed).

Invariants:
  - A vCPU's `ExitRate.tick()` is called once per exit the run page counts (`Core.count`: every event
    at every handling level), so the sum over its bins equals the vCPU's exit count in the report.
  - Bins are measured from the run's start: the supervisor's CLOCK_MONOTONIC when the run began, handed
    to every vCPU in its spec (one clock for all processes on the machine), so the vCPUs' bins line up.
  - Memory is bounded: a bin is BIN_NS (10 ms) wide until a run outgrows MAX_BINS bins; then adjacent
    bins are merged in pairs and the width doubles (10, 20, 40 ms, ...), so a vCPU keeps at most
    MAX_BINS counts however long the run.
  - `tick()` is the only call in the vCPU's loop: one clock read, one division, one increment.

`align(series)` brings the vCPUs' series (as sent in their stats) to one width and one length: the
report's `exits.over_time`.
"""
from __future__ import annotations

import time
from typing import Callable

BIN_NS = 10_000_000
MAX_BINS = 1024


class ExitRate:
    """One vCPU's exit counts per time bin since `origin_ns` (default: now)."""
    __slots__ = ("origin", "width", "bins", "_clock")

    def __init__(self, origin_ns: int | None = None, clock: Callable[[], int] = time.monotonic_ns):
        self._clock = clock
        self.origin = clock() if origin_ns is None else origin_ns
        self.width = BIN_NS
        self.bins: list[int] = []

    def tick(self) -> None:
        i = (self._clock() - self.origin) // self.width
        if 0 <= i < len(self.bins):
            self.bins[i] += 1
        else:
            self._extend(i)

    def _extend(self, i: int) -> None:
        i = max(i, 0)             # (a clock read before the origin counts in the first bin)
        while i >= MAX_BINS:
            self.bins = _coarsen(self.bins, 2)
            self.width *= 2
            i //= 2               # floor(floor(t / w) / 2) == floor(t / 2w)
        self.bins.extend([0] * (i + 1 - len(self.bins)))
        self.bins[i] += 1

    def snapshot(self) -> dict:
        """What the vCPU sends in its stats: {"bin_ns": width, "counts": [exits per bin]}."""
        return {"bin_ns": self.width, "counts": list(self.bins)}


def _coarsen(counts: list[int], factor: int) -> list[int]:
    return [sum(counts[k:k + factor]) for k in range(0, len(counts), factor)]


def align(series: list[dict | None]) -> dict:
    """The vCPUs' snapshots at the widest bin among them, padded with zeros to one length:
    {"bin_seconds": width, "by_vcpu": [counts or None (no stats from that vCPU)]}."""
    present = [s for s in series if s]
    width = max((s["bin_ns"] for s in present), default=BIN_NS)
    by_vcpu: list[list[int] | None] = [_coarsen(s["counts"], width // s["bin_ns"]) if s else None
                                       for s in series]
    length = max((len(c) for c in by_vcpu if c is not None), default=0)
    for c in by_vcpu:
        if c is not None:
            c.extend([0] * (length - len(c)))
    return {"bin_seconds": width / 1e9, "by_vcpu": by_vcpu}
