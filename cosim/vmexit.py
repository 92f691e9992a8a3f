"""The exit vocabulary: what an exit from the guest is. One module that the vCPU (which raises exits),
the kernel (which handles them) and userspace (which sees KVM_EXIT_DEBUG) all import, so none of them
imports another's internals. The wire form of an exit is `wire.ExitMsg`, built from `Exit` by field name.
"""
from __future__ import annotations

from dataclasses import dataclass

from .cpu_models import Event

__all__ = ["Event", "Exit", "Fault", "Until"]


@dataclass(frozen=True, slots=True)
class Exit:
    """An event that crosses to the kernel, with the interrupt the hardware would deliver for it
    (`ivor`, `srr0`, `esr`), which is what the kernel or userspace reflects if the guest owns it."""
    event: Event
    pc: int
    word: int
    ivor: int
    srr0: int
    esr: int = 0
    lev: int = 0
    oc: int = 0
    dbsr: int = 0
    addr: int = 0
    host: bool = False        # a debug event of the host's (userspace's) hardware points / step
    status: int = 0           # KVM_EXIT_DEBUG status for host debug events
    r3: int = 0
    r11: int = 0
    displaced: bool = False   # raised by the original instruction under a breakpoint, run out of line


@dataclass(frozen=True, slots=True)
class Fault:
    """The vCPU could not go on (an access outside RAM, an exception the model does not know)."""
    pc: int
    reason: str


@dataclass(frozen=True, slots=True)
class Until:
    """The vCPU reached the scenario's `guest.until` address (before executing it): its run is over."""
    pc: int


class Idle:
    """The guest halted the vCPU until an interrupt (MSR[WE] or `wait`): nothing to deliver yet."""


IDLE = Idle()
