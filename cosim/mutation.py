"""Test-only mutations: seeded bugs that the race hunt must find (tests/test_hunt.py, `cosim hunt`).

A mutation is switched on for a whole run by the environment variable COSIM_MUTATION (comma-separated
names), read once when a process imports this module. Never set it in normal use: a run with one says
so in its report's schedule and its record.

  no-stale-check   the stale-exit check is gone: an exit whose breakpoint was removed while the exit
                   was in flight is taken for the guest's own trap (kernel: reflected; userspace:
                   re-injected), the bug the 2010 thread warned about.
  lose-timer-irq   a decrementer interrupt due while a single step runs is dropped (TSR[DIS] cleared
                   behind the guest's back): the loss the async-interrupts-delivered-once invariant
                   must name.
"""
from __future__ import annotations

import os

KNOWN = ("no-stale-check", "lose-timer-irq")
ACTIVE = frozenset(n for n in os.environ.get("COSIM_MUTATION", "").split(",") if n)


def active(name: str) -> bool:
    return name in ACTIVE


def set_active(names) -> None:
    """Switch these mutations on for this process and the processes it starts from now on (a hunt's
    worker, maybe on another machine, takes the controlling machine's)."""
    global ACTIVE
    ACTIVE = frozenset(names)
    if ACTIVE:
        os.environ["COSIM_MUTATION"] = ",".join(sorted(ACTIVE))
    else:
        os.environ.pop("COSIM_MUTATION", None)
