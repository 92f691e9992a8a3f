"""Idle vCPUs of a machine with one shared clock: MSR[WE] (e500v2's doze, which Linux's idle loop
sets) and `wait` (e500mc) halt the vCPU until an interrupt, as QEMU halts the CPU, instead of spinning.

Time must still pass for an idle vCPU's timers. Other vCPUs' instructions move the shared clock, and the
idle vCPU watches for its deadline between messages. When no vCPU moves it (every one idle, held in the
spin table, or halted), an idle vCPU raises the clock toward the earliest deadline any idle vCPU waits
for, as QEMU's icount warps its virtual clock to the next timer when every CPU sleeps, but by at most
MAX_WARP per poll: about what a spinning vCPU would have added meanwhile. Not in one jump, because a
wake-up can be in flight (an IPI's IrqLine not yet taken by a descheduled vCPU process that still shows
idle): a jump of seconds then looks like a stalled CPU to the guest (Linux's RCU stall warnings on 4
vCPUs over 2 loaded host cores). A vCPU that is running, in an exit or paused counts as awake: the clock
never moves for idleness while any vCPU could still move it, nor while the world is stopped.

Shared state (the run pages' header, cosim/vcpu/runpage.py): per vCPU its state (AWAKE, IDLE, GONE),
written only by that vCPU, and its next deadline in clock ticks. Only for a machine of several vCPUs
running free: one vCPU keeps spinning (its clock is its own instruction count, so the instruction
counts compared with QEMU stay what they were), and the deterministic schedule grants quanta that an
idle vCPU could not use.
"""
from __future__ import annotations

import ctypes

AWAKE, IDLE, GONE = 0, 1, 2
NEVER = 2**64 - 1
POLL_MS = 1          # how often an idle vCPU looks at the clock (others move it meanwhile)
MAX_WARP = 50_000    # clock ticks one poll may add when every vCPU is idle (~50 MIPS of spinning)

try:
    from . import _icount
except ImportError:  # pragma: no cover - the extension is built by ./setup.sh
    _icount = None


class Idle:
    """One vCPU's view. `state`/`deadline`: the header's per-vCPU arrays; `clock_address`: the clock."""

    def __init__(self, state, deadline, index: int, clock_address: int):
        self.state = state
        self.deadline = deadline
        self.index = index
        self.clock_address = clock_address
        self._clock = ctypes.c_uint64.from_address(clock_address)
        self.idle = False
        self.warps = 0           # times it raised the clock (every vCPU idle)
        self.warped = 0          # ticks it added so

    def enter(self, deadline: int | None) -> None:
        """The vCPU halts until an interrupt; its next timer event is due at clock `deadline`."""
        self.deadline[self.index] = NEVER if deadline is None else deadline
        self.state[self.index] = IDLE
        self.idle = True

    def leave(self) -> None:
        self.state[self.index] = AWAKE
        self.idle = False

    def gone(self) -> None:
        """Held in the spin table, halted or faulted: moves no clock, waits for no deadline."""
        self.state[self.index] = GONE
        self.idle = False

    def warp(self) -> int:
        """Every vCPU idle or gone: the clock toward the earliest deadline an idle one waits for, by at
        most MAX_WARP. Ticks added (0: some vCPU is awake, or no idle one waits for a timer, or the clock
        is there)."""
        if _icount is None or (self.state == AWAKE).any():
            return 0
        waits = self.deadline[self.state == IDLE]
        target = int(waits.min()) if waits.size else NEVER
        if target == NEVER:
            return 0
        target = min(target, self._clock.value + MAX_WARP)
        added = _icount.raise_clock(self.clock_address, target)
        if added:
            self.warps += 1
            self.warped += added
        return added

    def stats(self) -> dict:
        return {"warps": self.warps, "warped_ticks": self.warped}
