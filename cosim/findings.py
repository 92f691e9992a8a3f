"""The catalogue of findings a run can report: id -> what it means. A finding is what the 2010 thread
predicted (or what a run observed) about a strategy, not a bug of the harness; cosim/report.py decides
when one is reported, `[expect] findings` in a scenario may only name ids listed here, and `cosim list`
prints them. A new finding enters here first."""
from __future__ import annotations

FINDINGS: dict[str, str] = {
    "sc64-lost-hits": "breakpoint hits taken by the guest's own syscall vector (E.HV never exits on sc)",
    "hw-slots-exhausted": "more hardware breakpoints asked for than the CPU has IAC slots",
    "breakpoint-unmapped": "a breakpoint named a guest virtual address that no guest TLB entry mapped to RAM "
                           "when it was to be planted: it was not planted",
    "guest-debug-lost": "the guest's own debug events are lost while the host owns the debug facility",
    "patched-code-visible": "the guest saw its own code modified by planted breakpoints",
    "guest-traps-via-userspace": "guest-owned traps made a userspace round trip before re-injection",
    "gdb-skipped-guest-traps": "the debugger moved PC past a firing guest tw/twi (gdb's permanent-breakpoint "
                               "rule): the guest lost its trap",
    "gdb-trap-skips-delivered": "gdb moved PC past a firing guest trap; debug.keep_guest_traps delivered the "
                                "guest's program interrupt instead",
    "breakpoint-overwritten": "the guest wrote over a planted breakpoint before it was removed: its executions of "
                              "its own word there never reached the debugger",
    "timer-interrupts-lost": "decrementer expiries the guest enabled (TCR[DIE]) that never reached it: a "
                             "debugger's stop, step or breakpoint stole an asynchronous interrupt",
    "guest-disabled-host-debug": "MSRP[DEP] = 0 (machine.msrp_dep = false): the guest's MSR[DE] = 0 switched off "
                                 "the host's debug events (hardware breakpoints, watchpoints, single-steps missed)",
}
