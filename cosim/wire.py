"""The message schema: every message between processes, one frozen dataclass each, msgpack on the wire.

Messages are NamedTuples (immutable records). A message is encoded as the msgpack array
[VERSION, tag, field1, field2, ...] in field order. `decode`
validates the version, the tag, the arity and every field's type and range, and raises `WireError`
naming what is wrong: a receiver answers a malformed message with `Error` and keeps running. Pure: no
sockets.

Ranges are declared with the field, so they are checked in one place, here, for every message, the
ones to come included: `U32` (a guest address, word or register), `U63` (sequence numbers, counts),
`VCPU` (a vCPU index of this run: 0 <= v < LIMITS["vcpus"], set by each process at start with
`set_vcpus`), `Annotated[int, Range(lo, hi)]` for any other range, `Annotated[str, OneOf(...)]` for a
closed set of names. A handler may then index by a vCPU, hand an address to the engine or a name to
an enum without checking again: nothing out of range gets past `decode`.

Who may send a message is declared with it too (`@message(tag, senders=...)`): a process name, or
SELF_VCPU for "the vCPU the message names" (its `vcpu` field). `sender_ok` says whether an
authenticated sender (the transport names each peer after its key or token) may send it; the
transport refuses the others in one place, as it refuses a malformed message. A message declares no
senders when any peer may send it.

Who sends what (vCPU i is "vcpu<i>"):
  any -> supervisor   Hello, Halted, Stats, Log
  supervisor -> any   Peers, Shutdown, Detach (userspace)
  vcpu -> kernel      Exit                      kernel -> vcpu     Resume
  kernel -> user      DebugExit                 user -> vcpu       Resume, Pause, Continue
  user -> kernel      GetOneReg (SetGuestDebug, TableUpdate: taken, but userspace writes the
                      debug-settings block and the ledger in shared memory instead)  kernel -> user  OneReg, Ack
  vcpu -> user        Paused, Halted            user -> supervisor Detached, Hit
  vcpu -> user        MmioExit                  user -> vcpu       MmioDone, ReleaseVcpu, PowerOff
  supervisor -> user  SerialIn
"""
from __future__ import annotations

import types
import typing
from typing import Annotated, NamedTuple

import msgpack

from .cpu_models import Event

VERSION = 1


class Range(NamedTuple):
    """An integer field's inclusive range (in `Annotated[int, Range(lo, hi)]`)."""
    lo: int
    hi: int


class OneOf(tuple):
    """A string field's closed set of values (in `Annotated[str, OneOf((...))]`)."""


class _VcpuIndex:
    """A vCPU index of this run: 0 <= v < LIMITS["vcpus"] (read at decode time)."""


LIMITS = {"vcpus": 16}      # config.VCPUS_MAX until the process knows its run (`set_vcpus`)


def set_vcpus(n: int) -> None:
    """This process's run has `n` vCPUs: a message naming another index is refused at decode."""
    LIMITS["vcpus"] = int(n)


U32 = Annotated[int, Range(0, 0xFFFFFFFF)]
U63 = Annotated[int, Range(0, (1 << 63) - 1)]
U64 = Annotated[int, Range(0, (1 << 64) - 1)]             # an 8-byte MMIO value
PADDR = Annotated[int, Range(0, (1 << 36) - 1)]           # a 36-bit guest-physical address
S32U32 = Annotated[int, Range(-(1 << 31), 0xFFFFFFFF)]   # an exit code: the guest's r3, or -1 for a fault
VCPU = Annotated[int, _VcpuIndex()]
IVOR = Annotated[int, Range(0, 63)]
EVENT = Annotated[str, OneOf(tuple(e.value for e in Event))]
HOW = Annotated[str, OneOf(("reflect", "inject", "emulate", "continue", "step_over", "halt"))]
LEVEL = Annotated[str, OneOf(("vcpu", "kernel", "userspace"))]


class WireError(ValueError):
    """A message that cannot be accepted (the sender's fault)."""


MESSAGES: dict[str, typing.Any] = {}   # tag -> message class (with TAG, FIELDS, REQUIRED, CHECK)


SELF_VCPU = "vcpu<vcpu>"     # in `senders`: the vCPU named by the message's own `vcpu` field


def message(tag: str, senders: tuple[str, ...] | None = None):
    """Register a NamedTuple class as the message `tag`, sent only by `senders` (None: by anyone).
    NamedTuples are immutable records that build and pack several times faster than frozen
    dataclasses: this is the exit path's hot loop."""
    def register(cls):
        hints = typing.get_type_hints(cls, include_extras=True)
        cls.SENDERS = None if senders is None else frozenset(senders)
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
    if origin is Annotated:
        base, *marks = typing.get_args(tp)
        parts = [_expr(base, x)]
        for m in marks:
            if isinstance(m, Range):
                parts.append(f"{m.lo} <= {x} <= {m.hi}")
            elif isinstance(m, OneOf):
                parts.append(f"{x} in {frozenset(m)!r}")
            elif isinstance(m, _VcpuIndex):
                parts.append(f"0 <= {x} < LIMITS['vcpus']")
        return "(" + " and ".join(parts) + ")"
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
    ns: dict = {"LIMITS": LIMITS}
    exec("\n".join(lines), ns)
    return ns["check"]


def sender_ok(msg, sender: str) -> bool:
    """May `sender` (an authenticated peer name) send `msg`?"""
    allowed = msg.SENDERS
    if allowed is None or sender in allowed:
        return True
    return SELF_VCPU in allowed and sender == f"vcpu{msg.vcpu}"


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
    pid: Annotated[int, Range(1, (1 << 31) - 1)]
    inbox: str
    kick: str = ""


@message("peers", senders=("supervisor",))
class Peers(NamedTuple):
    """Supervisor -> all: every process's inbox and kick endpoint, by name."""
    inboxes: dict
    kicks: dict


@message("start")
class Start(NamedTuple):
    """Supervisor -> all: everything is connected; vCPUs start unless told to start paused."""
    paused: bool = False


@message("shutdown", senders=("supervisor",))
class Shutdown(NamedTuple):
    """`exit_code`: set when every vCPU halted (the run completed): an attached gdb waiting for a stop
    is told the process exited with it (`W`), not that it was killed."""
    reason: str
    exit_code: Annotated[int, Range(0, 255)] | None = None


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
@message("exit", senders=(SELF_VCPU,))
class ExitMsg(NamedTuple):
    """vCPU -> kernel: an event the silicon cannot handle; carries the interrupt it would deliver."""
    vcpu: VCPU
    seq: U63
    event: EVENT
    pc: U32
    word: U32
    ivor: IVOR
    srr0: U32
    esr: U32 = 0
    lev: Annotated[int, Range(0, 127)] = 0
    oc: U32 = 0
    dbsr: U32 = 0
    addr: U32 = 0
    host: bool = False
    status: U32 = 0
    r3: U32 = 0
    r11: U32 = 0
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
    vcpu: VCPU
    seq: U63
    how: HOW
    level: LEVEL
    pc: U32 = 0
    r3: U32 | None = None
    code: U32 = 0
    word: U32 = 0
    ivor: IVOR = 0
    esr: U32 = 0
    srr0: U32 = 0
    stop: bool = False
    held: bool = False
    go: list | None = None    # Continue's fields after seq: [flush, flush_all, reload_regs, reload_debug]


@message("debug_exit", senders=("kernel",))
class DebugExit(NamedTuple):
    """Kernel -> userspace: KVM_EXIT_DEBUG {address, status} with the exit it came from."""
    vcpu: VCPU
    seq: U63
    address: U32
    status: U32
    event: EVENT
    pc: U32
    word: U32
    ivor: IVOR
    srr0: U32
    esr: U32 = 0
    displaced: bool = False   # raised by the original instruction under a breakpoint (step-over)


# --- userspace control of vCPUs ----------------------------------------------------------------------
@message("pause", senders=("userspace",))
class Pause(NamedTuple):
    """Userspace -> vCPU: stop running guest code and answer Paused (sent with a kick)."""
    seq: U63


@message("paused")
class Paused(NamedTuple):
    vcpu: VCPU
    seq: U63
    state: Annotated[int, Range(0, 15)]
    pc: U32


@message("continue", senders=("userspace",))
class Continue(NamedTuple):
    """Userspace -> vCPU: flush translations of `flush` (all when flush_all), reload registers and/or
    debug registers from the run page, then run again (unless the vCPU is in an exit or halted)."""
    seq: U63
    flush: list[U32] = ()  # type: ignore[assignment]  # () packs as [] and cannot be mutated
    flush_all: bool = False
    reload_regs: bool = False
    reload_debug: bool = False
    step: bool = False


@message("set_guest_debug")
class SetGuestDebug(NamedTuple):
    """Userspace -> kernel: KVM_SET_GUEST_DEBUG for one vCPU (vcpu stopped)."""
    vcpu: VCPU
    seq: U63
    control: U32
    iac: list[U32]
    iac_on: list[bool]
    dac: list[U32]
    dac_rw: list[U32]


@message("table_update")
class TableUpdate(NamedTuple):
    """Userspace -> kernel: addresses patched/unpatched (the in-kernel table of trap-kernel)."""
    seq: U63
    insert: list[U32]
    remove: list[U32]


@message("get_one_reg")
class GetOneReg(NamedTuple):
    seq: U63
    reg: str


@message("one_reg")
class OneReg(NamedTuple):
    seq: U63
    reg: str
    value: Annotated[int, Range(0, (1 << 64) - 1)] | None


@message("ack")
class Ack(NamedTuple):
    seq: U63
    of: str


# --- MMIO exits (KVM_EXIT_MMIO) and the board ---------------------------------------------------------
@message("mmio", senders=(SELF_VCPU,))
class MmioExit(NamedTuple):
    """vCPU -> userspace: a load or store to a guest-physical address that is no memory slot (36-bit
    `paddr`, `size` bytes); the vCPU waits for the answer (a store's too: its order with the next
    access is kept)."""
    vcpu: VCPU
    seq: U63
    paddr: PADDR
    size: Annotated[int, Range(1, 8)]
    write: bool
    value: U64 = 0
    posted: bool = False      # a store in a coalesced range: no answer, the vCPU goes on (KVM's
                              # coalesced MMIO ring; ZeroMQ keeps its order with what follows)


@message("mmio_done", senders=("userspace",))
class MmioDone(NamedTuple):
    """Userspace -> vCPU: the value a load reads (0 for a store)."""
    seq: U63
    value: U64 = 0


@message("serial_in", senders=("supervisor",))
class SerialIn(NamedTuple):
    """Supervisor -> userspace: bytes typed on the terminal (`--serial stdio`) for the board's UART."""
    data: bytes


@message("release_vcpu", senders=("userspace",))
class ReleaseVcpu(NamedTuple):
    """Userspace -> a held secondary vCPU: the spin table released it (QEMU's spin_kick, run on that
    vCPU's own thread): registers `gprs` (index -> value), `pc`, MSR 0, and the TLB1 entries to write
    as MAS0, MAS1, MAS2, MAS3, MAS7 lists; then it runs."""
    pc: U32
    gprs: dict
    tlb1: list[list[U32]]


@message("irq_line", senders=("userspace",))
class IrqLine(NamedTuple):
    """Userspace -> vCPU: an interrupt controller output to this vCPU changed (QEMU's qemu_set_irq on
    the CPU's input pins): `line` 0 external input (IVOR4, MSR[EE]), 1 critical input (IVOR0,
    MSR[CE]), 2 machine check. Sent before the MmioDone of the access that caused it."""
    line: Annotated[int, Range(0, 4)]
    level: bool


@message("doorbell", senders=(SELF_VCPU,))
class Doorbell(NamedTuple):
    """vCPU -> another vCPU: the guest's msgsnd (e500mc), emulated as KVM's kvmppc_e500_emul_msgsnd does in
    the sender's exit path: the message goes to every vCPU, which takes it when `broadcast` or `pir` is
    its own PIR (then a doorbell of `kind` is pending until the guest takes it or msgclr clears it).
    `vcpu` is the sender's index."""
    vcpu: VCPU
    kind: Annotated[int, Range(0, 1)]
    broadcast: bool
    pir: Annotated[int, Range(0, 0x3FFF)]


@message("irq_proxy", senders=("userspace",))
class IrqProxy(NamedTuple):
    """Userspace -> every vCPU: the interrupt controller entered (or left) external proxy mode (the
    MPIC's GCR): the CPU acknowledges an external input as it takes it, reading `iack` (guest-physical)
    into EPR (QEMU's env->mpic_proxy / mpic_iack; Linux's MPIC_ENABLE_COREINT)."""
    enabled: bool
    iack: PADDR


@message("power_off", senders=("userspace",))
class PowerOff(NamedTuple):
    """Userspace -> vCPU: the board is switched off (the serial console saw its end text, or the
    guest asked for a reset): the vCPU halts with `code`."""
    code: S32U32
    reason: str


@message("halted", senders=(SELF_VCPU,))
class Halted(NamedTuple):
    """vCPU -> supervisor and userspace: the vCPU stopped for good (guest halt or fault)."""
    vcpu: VCPU
    code: S32U32
    reason: str
    pc: U32


@message("detach", senders=("supervisor",))
class Detach(NamedTuple):
    """Supervisor -> userspace: remove every breakpoint, restore guest code, report. `reason`: why
    the run ends (told to an attached gdb before its connection closes); `exit_code` as in Shutdown."""
    seq: U63
    reason: str = ""
    exit_code: Annotated[int, Range(0, 255)] | None = None


@message("detached")
class Detached(NamedTuple):
    seq: U63
    restored: U63


# --- the deterministic schedule (cosim/schedule.py, cosim/lockstep.py) --------------------------------
# `after` maps a peer's name to a number of messages: the receiver first takes (and handles) at least
# that many from each named peer, so everything the supervisor knows was sent to it is applied first.

@message("sync")
class Sync(NamedTuple):
    """Supervisor -> any: answer Synced once `after` is met and everything taken is handled. `vtime`:
    the virtual instant (guest instructions run, all vCPUs) at which userspace runs its due timers."""
    seq: U63
    after: dict
    vtime: U63 = 0


@message("synced")
class Synced(NamedTuple):
    """Any -> supervisor: `sent`, messages this process has sent so far by destination; `next_due`:
    (userspace) the virtual instant its next timer is due, or None."""
    name: str
    seq: U63
    sent: dict
    next_due: U63 | None = None


@message("run_for")
class RunFor(NamedTuple):
    """Supervisor -> vcpu: once `after` is met, run `instructions` guest instructions (fewer if the
    vCPU exits, halts or is paused), then answer Ran. An exit is held, not sent, until Deliver."""
    seq: U63
    instructions: U63
    after: dict
    vtime: U63 = 0


@message("deliver")
class Deliver(NamedTuple):
    """Supervisor -> vcpu: once `after` is met, send the held exit to the kernel; answer Ran.
    (`vtime` in both: the virtual instant now, for the trace's clock.)"""
    seq: U63
    after: dict
    vtime: U63 = 0


@message("ran")
class Ran(NamedTuple):
    """Vcpu -> supervisor: how a RunFor or Deliver ended (`why`: budget | exit | halted | paused |
    in-exit | delivered | nothing), the vCPU's instruction count, and its sent-message counts. At the
    end of a baton's run (cosim/baton.py): `steps`, how many of its steps were taken (this one the
    last), and `counts`, every vCPU's instruction count."""
    vcpu: VCPU
    seq: U63
    why: str
    instructions: U63
    sent: dict
    steps: U63 = 0
    counts: list[U63] = []
