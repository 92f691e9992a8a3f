"""The interface the GDB stub drives: what a debuggable machine must offer.

The userspace process ("QEMU") implements `Target`; `cosim.gdb.commands.GdbSession` calls it. Nothing in
this module does I/O.

Invariants:
- Thread ids are vCPU index + 1 (thread 0 and -1 are reserved by the protocol for "any" and "all"); every
  thread belongs to process 1, so gdb shows them as `p1.1`, `p1.2`, ...
- Register numbers are the indices of `REGISTER_NAMES` (0..37): r0..r31, pc, msr, cr, lr, ctr, xer, all
  32 bits. These are the remote numbers of the target description we serve (`cosim.gdb.target_xml`),
  which are what `p`/`P` use and the order of the `g` packet. (Inside gdb the same registers are gdb's
  rs6000 numbers 0-31, 64 pc, 65 msr, 66 cr, 67 lr, 68 ctr, 69 xer; gdb maps them by name.)
- Calls are only made while the target is stopped, except `interrupt()` (only while running).
  `resume()` returns at once; the stop comes later, reported by the stub's owner through
  `GdbSession.stop_reply(StopEvent(...))`.
- Failures: `TargetError(errno)` -> the stub replies `E<errno>`; `NotSupported` -> empty reply.
- Optional, used by `GdbSession` when present (the VM target has them, test fakes need not):
  `annexes` (qXfer documents, e.g. a target.xml with the SPR feature), `register_count` (> NUM_REGISTERS:
  remote registers past the core ones, read with `read_register(tid, regno)` and written with
  `write_register`), `monitor(command) -> str` (gdb's `monitor`, qRcmd).
"""

from __future__ import annotations

import enum
import errno as _errno
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

REGISTER_NAMES: tuple[str, ...] = tuple(f"r{i}" for i in range(32)) + ("pc", "msr", "cr", "lr", "ctr", "xer")
"""Remote register numbers: index into this tuple."""
NUM_REGISTERS = len(REGISTER_NAMES)  # 38
REGISTER_BITS = 32
REGISTER_BYTES = REGISTER_BITS // 8
REGISTER_MASK = (1 << REGISTER_BITS) - 1
PC, MSR, CR, LR, CTR, XER = range(32, 38)

PID = 1
"""The one process every thread (vCPU) belongs to."""

SIGINT = 2
SIGTRAP = 5


class BreakpointKind(enum.IntEnum):
    """The `type` field of Z/z packets."""

    SOFTWARE = 0
    HARDWARE = 1
    WRITE_WATCH = 2
    READ_WATCH = 3
    ACCESS_WATCH = 4


class TargetError(Exception):
    """The target could not do what was asked (bad address, no free debug register...).

    Fields: errno -- a POSIX errno value, sent to gdb as `E<errno in two hex digits>`.
    """

    def __init__(self, errno: int = _errno.EFAULT, message: str = "") -> None:
        super().__init__(message or _errno.errorcode.get(errno, str(errno)))
        self.errno = errno


class NotSupported(Exception):
    """The target does not implement this request at all; the stub answers with an empty packet."""


WATCH_REASONS = ("watch", "rwatch", "awatch")
StopReason = None | str | tuple[str, int]


@dataclass(frozen=True)
class StopEvent:
    """The target stopped (all vCPUs, all-stop); reported to `GdbSession.stop_reply`.

    Fields:
      tid    -- the thread (vCPU index + 1) that caused the stop
      signal -- the signal number gdb is told: 5 (SIGTRAP) for breakpoints/steps, 2 (SIGINT) after
                `interrupt()`
      reason -- None, 'swbreak', 'hwbreak', or ('watch' | 'rwatch' | 'awatch', data address)
    """

    tid: int
    signal: int = SIGTRAP
    reason: StopReason = None

    def __post_init__(self) -> None:
        if self.tid <= 0:
            raise ValueError(f"stop thread id must be positive, got {self.tid}")
        if not 0 <= self.signal <= 0xFF:
            raise ValueError(f"signal out of range: {self.signal}")
        r = self.reason
        if r is None or r in ("swbreak", "hwbreak"):
            return
        if isinstance(r, tuple) and len(r) == 2 and r[0] in WATCH_REASONS and isinstance(r[1], int):
            return
        raise ValueError(f"bad stop reason: {r!r}")


@runtime_checkable
class Target(Protocol):
    """What `GdbSession` drives. Implemented by the userspace process (and by fakes in tests)."""

    def threads(self) -> list[int]:
        """Thread ids, ascending: vCPU index + 1."""
        ...

    def thread_extra_info(self, tid: int) -> str:
        """A short human-readable state, e.g. "vCPU 0 running" / "vCPU 1 halted"."""
        ...

    def read_registers(self, tid: int) -> list[int]:
        """NUM_REGISTERS 32-bit values in REGISTER_NAMES order."""
        ...

    def read_register(self, tid: int, regno: int) -> int:
        """One register beyond the core ones (regno >= NUM_REGISTERS: the target's SPRs); only asked
        of a target whose `register_count` says it has them."""
        ...

    def write_register(self, tid: int, regno: int, value: int) -> None:
        """Set one register (regno indexes REGISTER_NAMES)."""
        ...

    def read_memory(self, addr: int, length: int) -> bytes:
        """Guest memory as the guest should see it: original words under planted breakpoints.
        Raise TargetError on a bad address."""
        ...

    def write_memory(self, addr: int, data: bytes) -> None:
        """Raise TargetError on a bad address."""
        ...

    def insert_breakpoint(self, kind: int, addr: int, length: int) -> None:
        """kind: a BreakpointKind value. Raise TargetError if impossible now (e.g. no free IAC/DAC
        slot), NotSupported if this kind is never supported."""
        ...

    def remove_breakpoint(self, kind: int, addr: int, length: int) -> None:
        """Same kinds and errors as insert_breakpoint."""
        ...

    def resume(self, actions: dict[int, str], default: str | None) -> None:
        """Resume: actions maps tid -> 'c' (continue) or 's' (single-step); every other thread does
        `default` ('c', 's', or None = stay stopped). Returns at once; the stop is reported later."""
        ...

    def interrupt(self) -> None:
        """Request an all-stop (Ctrl-C); the target later reports a stop with signal 2."""
        ...

    def detach(self) -> None:
        """Remove all breakpoints/watchpoints and let the guest run free."""
        ...

    def kill(self) -> None:
        """End the guest."""
        ...
