"""The deterministic schedule: which vCPU runs next, for how many guest instructions, and when an exit a
vCPU holds is delivered to the kernel, all drawn from one seed. Pure: no processes, no clocks.

Virtual time is counted in guest instructions (every vCPU's together: one runs at a time). Timers
written in milliseconds (the scripted debugger's stress interval) map onto it at NOMINAL_IPS, so a
toggle every 1-5 ms happens every 100k-500k guest instructions.

The same seed gives the same sequence of choices for the same sequence of questions (Python's
`random.Random`, a Mersenne Twister seeded from an int, is the same on every platform); the questions
are the same when every process applies what it is sent at the instants cosim/lockstep.py defines.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from typing import NamedTuple

NOMINAL_IPS = 100_000_000      # guest instructions per virtual second
DELIVER_CHANCE = 0.5           # with runnable vCPUs too, how often a held exit goes next


class Run(NamedTuple):
    vcpu: int
    instructions: int


class Deliver(NamedTuple):
    vcpu: int


def to_vtime(seconds: float) -> int:
    return int(round(seconds * NOMINAL_IPS))


def to_seconds(vtime: int) -> float:
    return vtime / NOMINAL_IPS


class Schedule:
    def __init__(self, seed: int, quantum: tuple[int, int], deliver_chance: float = DELIVER_CHANCE):
        lo, hi = quantum
        if not 1 <= lo <= hi:
            raise ValueError(f"quantum {quantum!r}: expected 1 <= min <= max")
        self.seed = seed
        self.quantum = (lo, hi)
        self.deliver_chance = deliver_chance
        self.rng = random.Random(seed)
        self.steps = 0

    def next(self, runnable: Sequence[int], held: Sequence[int]) -> Run | Deliver | None:
        """The next action: run one of `runnable` for a quantum, or deliver the exit one of `held`
        holds (an exit stays held while other vCPUs run: that is how a breakpoint gets removed while
        its exit is in flight). None when neither is possible."""
        if not runnable and not held:
            return None
        self.steps += 1
        if held and (not runnable or self.rng.random() < self.deliver_chance):
            return Deliver(self.rng.choice(sorted(held)))
        return Run(self.rng.choice(sorted(runnable)), self.rng.randint(*self.quantum))

    def runs(self, runnable: Sequence[int], n: int) -> list[Run]:
        """`n` times next(runnable, held=()), faster (the baton's plans ask thousands ahead): with
        nothing held every answer is a Run, drawn with the calls `choice` and `randint` make
        (random.Random._randbelow), so the choices are the same (tests/test_schedule.py compares)."""
        order = sorted(runnable)
        if not order or n <= 0:
            return []
        below = self.rng._randbelow             # type: ignore[attr-defined]  # (what choice and randint call)
        lo, hi = self.quantum
        k, width = len(order), hi - lo + 1
        self.steps += n
        return [Run(order[below(k)], lo + below(width)) for _ in range(n)]

    def save(self) -> tuple:
        """Where the choices are (to ask ahead and come back: the baton's plans, cosim/lockstep.py)."""
        return self.rng.getstate(), self.steps

    def restore(self, state: tuple) -> None:
        self.rng.setstate(state[0])
        self.steps = state[1]

    def describe(self) -> dict:
        return {"mode": "deterministic", "seed": self.seed, "quantum": list(self.quantum),
                "deliver_chance": self.deliver_chance, "nominal_ips": NOMINAL_IPS}
