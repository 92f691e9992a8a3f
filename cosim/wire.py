"""The message schema: every message between processes, one frozen dataclass each, msgpack on the wire.

Messages are NamedTuples (immutable records). A message is encoded as the msgpack array
[VERSION, tag, field1, field2, ...] in field order. `decode`
validates the version, the tag, the arity and every field's type, and raises `WireError` naming what
is wrong: a receiver answers a malformed message with `Error` and keeps running. Pure: no sockets.

Who sends what (vCPU i is "vcpu<i>"):
  any -> supervisor   Hello, Halted, Stats, Log
  supervisor -> any   Peers, Shutdown, Detach (userspace)
  vcpu -> kernel      Exit                      kernel -> vcpu     Resume
  kernel -> user      DebugExit                 user -> vcpu       Resume, Pause, Continue
  user -> kernel      GetOneReg (SetGuestDebug, TableUpdate: taken, but userspace writes the
                      debug-settings block and the ledger in shared memory instead)  kernel -> user  OneReg, Ack
  vcpu -> user        Paused, Halted            user -> supervisor Detached, Hit
"""
from __future__ import annotations

import types
import typing
from typing import NamedTuple

import msgpack

VERSION = 1


class WireError(ValueError):
    """A message that cannot be accepted (the sender's fault)."""


MESSAGES: dict[str, typing.Any] = {}   # tag -> message class (with TAG, FIELDS, REQUIRED, CHECK)


def message(tag: str):
    """Register a NamedTuple class as the message `tag`. NamedTuples are immutable records that build
    and pack several times faster than frozen dataclasses: this is the exit path's hot loop."""
    def register(cls):
        hints = typing.get_type_hints(cls)
        cls.TAG = tag
        cls.FIELDS = tuple(cls._fields)
        cls.REQUIRED = len(cls._fields) - len(cls._field_defaults)
        cls.CHECK = _compile_check(tag, [(n, hints[n]) for n in cls._fields])
        MESSAGES[tag] = cls
        return cls
    return register


def _expr(tp, x: str) -> str:
    """A Python expression true when `x` is a valid value of the annotated type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return "(" + " or ".join(_expr(a, x) for a in typing.get_args(tp)) + ")"
    if tp is type(None):
        return f"{x} is None"
    if tp in (bool, int, str, dict, bytes):
        return f"type({x}) is {tp.__name__}"
    if tp is float:
        return f"type({x}) in (int, float)"
    if origin is list or tp is list:
        args = typing.get_args(tp)
        inner = _expr(args[0], "e") if args else "True"
        return f"(type({x}) in (list, tuple) and all({inner} for e in {x}))"
    raise TypeError(f"unsupported field type {tp!r}")


def _compile_check(tag: str, fields) -> typing.Callable:
    """Compile one function that checks every field and names the first bad one."""
    lines = ["def check(v):"]
    for i, (name, tp) in enumerate(fields):
        lines.append(f"    if len(v) > {i} and not ({_expr(tp, f'v[{i}]')}):")
        lines.append(f"        return {name!r}")
    lines.append("    return None")
    ns: dict = {}
    exec("\n".join(lines), ns)
    return ns["check"]


def encode(msg) -> bytes:
    """Raises WireError (never msgpack's OverflowError/TypeError) for a value msgpack cannot carry,
    e.g. an integer beyond 64 bits: the sender's bug is reported, the message is not sent."""
    try:
        return _pack([VERSION, msg.TAG, *msg])
    except (OverflowError, TypeError, ValueError) as e:
        raise WireError(f"{msg.TAG}: cannot encode {msg!r:.200}: {e}") from None


_pack = msgpack.Packer(use_bin_type=True).pack


def decode(data: bytes):
    try:
        items = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as e:
        raise WireError(f"not msgpack: {e}") from None
    if type(items) is not list or len(items) < 2:
        raise WireError("not a message: expected [version, tag, fields...]")
    version, tag = items[0], items[1]
    if version != VERSION:
        raise WireError(f"version {version!r} not supported (this side speaks {VERSION})")
    cls = MESSAGES.get(tag) if type(tag) is str else None
    if cls is None:
        raise WireError(f"unknown message type {tag!r}")
    values = items[2:]
    if not cls.REQUIRED <= len(values) <= len(cls.FIELDS):
        raise WireError(f"{tag}: expected {len(cls.FIELDS)} fields, got {len(values)}")
    bad = cls.CHECK(values)
    if bad is not None:
        raise WireError(f"{tag}.{bad}: bad value {values[cls.FIELDS.index(bad)]!r}")
    return cls._make(values) if len(values) == len(cls.FIELDS) else cls(*values)


def error_for(data: bytes, reason: str):
    """The Error reply to a message that failed to decode."""
    try:
        tag = msgpack.unpackb(data, raw=False)[1]
        tag = tag if isinstance(tag, str) else "?"
    except Exception:
        tag = "?"
    return Error(tag=tag, reason=reason)


# --- process lifecycle --------------------------------------------------------------------------------
@message("hello")
class Hello(NamedTuple):
    """A process is up: its role ("vcpu", "kernel", "userspace"), name, pid and bound endpoints."""
    name: str
    pid: int
    inbox: str
    kick: str = ""


@message("peers")
class Peers(NamedTuple):
    """Supervisor -> all: every process's inbox and kick endpoint, by name."""
    inboxes: dict
    kicks: dict


@message("start")
class Start(NamedTuple):
    """Supervisor -> all: everything is connected; vCPUs start unless told to start paused."""
    paused: bool = False


@message("shutdown")
class Shutdown(NamedTuple):
    """`exit_code`: set when every vCPU halted (the run completed): an attached gdb waiting for a stop
    is told the process exited with it (`W`), not that it was killed."""
    reason: str
    exit_code: int | None = None


@message("stats")
class Stats(NamedTuple):
    """Any -> supervisor, in answer to Shutdown: the process's own counters for the report."""
    name: str
    data: dict


@message("log")
class Log(NamedTuple):
    name: str
    level: str
    text: str


@message("error")
class Error(NamedTuple):
    """Reply to a malformed or unexpected message; the receiver keeps running."""
    tag: str
    reason: str


# --- the exit path ------------------------------------------------------------------------------------
@message("exit")
class ExitMsg(NamedTuple):
    """vCPU -> kernel: an event the silicon cannot handle; carries the interrupt it would deliver."""
    vcpu: int
    seq: int
    event: str
    pc: int
    word: int
    ivor: int
    srr0: int
    esr: int = 0
    lev: int = 0
    oc: int = 0
    dbsr: int = 0
    addr: int = 0
    host: bool = False
    status: int = 0
    r3: int = 0
    r11: int = 0
    displaced: bool = False   # raised by the original instruction under a breakpoint (step-over)


@message("resume")
class Resume(NamedTuple):
    """Kernel or userspace -> vCPU: how to leave the exit `seq`.
    how: "reflect" (deliver the exit's natural interrupt), "inject" (deliver ivor/esr/srr0),
    "emulate" (resume at pc, r3 set when not None), "continue" (resume at pc), "step_over" (execute
    `word` as the instruction at pc, then continue), "halt" (stop for good with `code`).
    `level` names who handled the exit, for the report. `held`: a debugger (gdb) kept the world
    stopped while this exit waited, so its wait is not a handling latency.
    `go` (userspace only) carries a Continue
    with the Resume, applied first (flushes, registers, debug registers): one message, not two."""
    vcpu: int
    seq: int
    how: str
    level: str
    pc: int = 0
    r3: int | None = None
    code: int = 0
    word: int = 0
    ivor: int = 0
    esr: int = 0
    srr0: int = 0
    stop: bool = False
    held: bool = False
    go: list | None = None    # Continue's fields after seq: [flush, flush_all, reload_regs, reload_debug]


@message("debug_exit")
class DebugExit(NamedTuple):
    """Kernel -> userspace: KVM_EXIT_DEBUG {address, status} with the exit it came from."""
    vcpu: int
    seq: int
    address: int
    status: int
    event: str
    pc: int
    word: int
    ivor: int
    srr0: int
    esr: int = 0
    displaced: bool = False   # raised by the original instruction under a breakpoint (step-over)


# --- userspace control of vCPUs ----------------------------------------------------------------------
@message("pause")
class Pause(NamedTuple):
    """Userspace -> vCPU: stop running guest code and answer Paused (sent with a kick)."""
    seq: int


@message("paused")
class Paused(NamedTuple):
    vcpu: int
    seq: int
    state: int
    pc: int


@message("continue")
class Continue(NamedTuple):
    """Userspace -> vCPU: flush translations of `flush` (all when flush_all), reload registers and/or
    debug registers from the run page, then run again (unless the vCPU is in an exit or halted)."""
    seq: int
    flush: list[int] = ()  # type: ignore[assignment]  # () packs as [] and cannot be mutated
    flush_all: bool = False
    reload_regs: bool = False
    reload_debug: bool = False
    step: bool = False


@message("set_guest_debug")
class SetGuestDebug(NamedTuple):
    """Userspace -> kernel: KVM_SET_GUEST_DEBUG for one vCPU (vcpu stopped)."""
    vcpu: int
    seq: int
    control: int
    iac: list[int]
    iac_on: list[bool]
    dac: list[int]
    dac_rw: list[int]


@message("table_update")
class TableUpdate(NamedTuple):
    """Userspace -> kernel: addresses patched/unpatched (the in-kernel table of trap-kernel)."""
    seq: int
    insert: list[int]
    remove: list[int]


@message("get_one_reg")
class GetOneReg(NamedTuple):
    seq: int
    reg: str


@message("one_reg")
class OneReg(NamedTuple):
    seq: int
    reg: str
    value: int | None


@message("ack")
class Ack(NamedTuple):
    seq: int
    of: str


# --- MMIO exits (KVM_EXIT_MMIO) and the board ---------------------------------------------------------
@message("mmio")
class MmioExit(NamedTuple):
    """vCPU -> userspace: a load or store to a guest-physical address that is no memory slot (36-bit
    `paddr`, `size` bytes); the vCPU waits for the answer (a store's too: its order with the next
    access is kept)."""
    vcpu: int
    seq: int
    paddr: int
    size: int
    write: bool
    value: int = 0
    posted: bool = False      # a store in a coalesced range: no answer, the vCPU goes on (KVM's
                              # coalesced MMIO ring; ZeroMQ keeps its order with what follows)


@message("mmio_done")
class MmioDone(NamedTuple):
    """Userspace -> vCPU: the value a load reads (0 for a store)."""
    seq: int
    value: int = 0


@message("serial_in")
class SerialIn(NamedTuple):
    """Supervisor -> userspace: bytes typed on the terminal (`--serial stdio`) for the board's UART."""
    data: bytes


@message("release_vcpu")
class ReleaseVcpu(NamedTuple):
    """Userspace -> a held secondary vCPU: the spin table released it (QEMU's spin_kick, run on that
    vCPU's own thread): registers `gprs` (index -> value), `pc`, MSR 0, and the TLB1 entries to write
    as MAS0, MAS1, MAS2, MAS3, MAS7 lists; then it runs."""
    pc: int
    gprs: dict
    tlb1: list


@message("power_off")
class PowerOff(NamedTuple):
    """Userspace -> vCPU: the board is switched off (the serial console saw its end text, or the
    guest asked for a reset): the vCPU halts with `code`."""
    code: int
    reason: str


@message("halted")
class Halted(NamedTuple):
    """vCPU -> supervisor and userspace: the vCPU stopped for good (guest halt or fault)."""
    vcpu: int
    code: int
    reason: str
    pc: int


@message("detach")
class Detach(NamedTuple):
    """Supervisor -> userspace: remove every breakpoint, restore guest code, report. `reason`: why
    the run ends (told to an attached gdb before its connection closes); `exit_code` as in Shutdown."""
    seq: int
    reason: str = ""
    exit_code: int | None = None


@message("detached")
class Detached(NamedTuple):
    seq: int
    restored: int


# --- the deterministic schedule (cosim/schedule.py, cosim/lockstep.py) --------------------------------
# `after` maps a peer's name to a number of messages: the receiver first takes (and handles) at least
# that many from each named peer, so everything the supervisor knows was sent to it is applied first.

@message("sync")
class Sync(NamedTuple):
    """Supervisor -> any: answer Synced once `after` is met and everything taken is handled. `vtime`:
    the virtual instant (guest instructions run, all vCPUs) at which userspace runs its due timers."""
    seq: int
    after: dict
    vtime: int = 0


@message("synced")
class Synced(NamedTuple):
    """Any -> supervisor: `sent`, messages this process has sent so far by destination; `next_due`:
    (userspace) the virtual instant its next timer is due, or None."""
    name: str
    seq: int
    sent: dict
    next_due: int | None = None


@message("run_for")
class RunFor(NamedTuple):
    """Supervisor -> vcpu: once `after` is met, run `instructions` guest instructions (fewer if the
    vCPU exits, halts or is paused), then answer Ran. An exit is held, not sent, until Deliver."""
    seq: int
    instructions: int
    after: dict
    vtime: int = 0


@message("deliver")
class Deliver(NamedTuple):
    """Supervisor -> vcpu: once `after` is met, send the held exit to the kernel; answer Ran.
    (`vtime` in both: the virtual instant now, for the trace's clock.)"""
    seq: int
    after: dict
    vtime: int = 0


@message("ran")
class Ran(NamedTuple):
    """Vcpu -> supervisor: how a RunFor or Deliver ended (`why`: budget | exit | halted | paused |
    in-exit | delivered | nothing), the vCPU's instruction count, and its sent-message counts."""
    vcpu: int
    seq: int
    why: str
    instructions: int
    sent: dict
