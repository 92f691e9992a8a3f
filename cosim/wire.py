"""The message schema: every message between processes, one frozen dataclass each, msgpack on the wire.

A message is encoded as the msgpack array [VERSION, tag, field1, field2, ...] in field order. `decode`
validates the version, the tag, the arity and every field's type, and raises `WireError` naming what
is wrong: a receiver answers a malformed message with `Error` and keeps running. Pure: no sockets.

Who sends what (vCPU i is "vcpu<i>"):
  any -> supervisor   Hello, Halted, Stats, Log
  supervisor -> any   Peers, Shutdown, Detach (userspace)
  vcpu -> kernel      Exit                      kernel -> vcpu     Resume
  kernel -> user      DebugExit                 user -> vcpu       Resume, Pause, Continue
  user -> kernel      SetGuestDebug, TableUpdate, GetOneReg        kernel -> user  OneReg, Ack
  vcpu -> user        Paused, Halted            user -> supervisor Detached, Hit
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field

import msgpack

VERSION = 1


class WireError(ValueError):
    """A message that cannot be accepted (the sender's fault)."""


MESSAGES: dict[str, type] = {}


def message(tag: str):
    def register(cls):
        cls = dataclass(frozen=True, slots=True)(cls)
        cls.TAG = tag
        hints = typing.get_type_hints(cls)
        cls.FIELDS = tuple((f.name, _checker(hints[f.name])) for f in dataclasses.fields(cls))
        cls.REQUIRED = sum(1 for f in dataclasses.fields(cls)
                           if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        MESSAGES[tag] = cls
        return cls
    return register


def _checker(tp):
    """A predicate for a field's annotated type (int, bool, str, float, list[...], dict, X | None)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        subs = [_checker(a) for a in typing.get_args(tp)]
        return lambda v: any(c(v) for c in subs)
    if tp is type(None):
        return lambda v: v is None
    if tp is bool:
        return lambda v: isinstance(v, bool)
    if tp is int:
        return lambda v: isinstance(v, int) and not isinstance(v, bool)
    if tp is float:
        return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    if tp is str:
        return lambda v: isinstance(v, str)
    if origin is list or tp is list:
        args = typing.get_args(tp)
        inner = _checker(args[0]) if args else (lambda v: True)
        return lambda v: isinstance(v, list) and all(inner(x) for x in v)
    if origin is dict or tp is dict:
        return lambda v: isinstance(v, dict)
    raise TypeError(f"unsupported field type {tp!r}")


def encode(msg) -> bytes:
    return msgpack.packb([VERSION, msg.TAG, *(getattr(msg, n) for n, _ in msg.FIELDS)],
                         use_bin_type=True)


def decode(data: bytes):
    try:
        items = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as e:
        raise WireError(f"not msgpack: {e}") from None
    if not isinstance(items, list) or len(items) < 2:
        raise WireError("not a message: expected [version, tag, fields...]")
    version, tag, values = items[0], items[1], items[2:]
    if version != VERSION:
        raise WireError(f"version {version!r} not supported (this side speaks {VERSION})")
    cls = MESSAGES.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise WireError(f"unknown message type {tag!r}")
    if not cls.REQUIRED <= len(values) <= len(cls.FIELDS):
        raise WireError(f"{tag}: expected {len(cls.FIELDS)} fields, got {len(values)}")
    for (name, ok), value in zip(cls.FIELDS, values):
        if not ok(value):
            raise WireError(f"{tag}.{name}: bad value {value!r}")
    return cls(*values)


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
class Hello:
    """A process is up: its role ("vcpu", "kernel", "userspace"), name, pid and bound endpoints."""
    name: str
    pid: int
    inbox: str
    kick: str = ""


@message("peers")
class Peers:
    """Supervisor -> all: every process's inbox and kick endpoint, by name."""
    inboxes: dict
    kicks: dict


@message("start")
class Start:
    """Supervisor -> all: everything is connected; vCPUs start unless told to start paused."""
    paused: bool = False


@message("shutdown")
class Shutdown:
    reason: str


@message("stats")
class Stats:
    """Any -> supervisor, in answer to Shutdown: the process's own counters for the report."""
    name: str
    data: dict


@message("log")
class Log:
    name: str
    level: str
    text: str


@message("error")
class Error:
    """Reply to a malformed or unexpected message; the receiver keeps running."""
    tag: str
    reason: str


# --- the exit path ------------------------------------------------------------------------------------
@message("exit")
class ExitMsg:
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


@message("resume")
class Resume:
    """Kernel or userspace -> vCPU: how to leave the exit `seq`.
    how: "reflect" (deliver the exit's natural interrupt), "inject" (deliver ivor/esr/srr0),
    "emulate" (resume at pc, r3 set when not None), "continue" (resume at pc), "step_over" (execute
    `word` as the instruction at pc, then continue), "halt" (stop for good with `code`).
    `level` names who handled the exit, for the report."""
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


@message("debug_exit")
class DebugExit:
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


# --- userspace control of vCPUs ----------------------------------------------------------------------
@message("pause")
class Pause:
    """Userspace -> vCPU: stop running guest code and answer Paused (sent with a kick)."""
    seq: int


@message("paused")
class Paused:
    vcpu: int
    seq: int
    state: int
    pc: int


@message("continue")
class Continue:
    """Userspace -> vCPU: flush translations of `flush` (all when flush_all), reload registers and/or
    debug registers from the run page, then run again (unless the vCPU is in an exit or halted)."""
    seq: int
    flush: list[int] = field(default_factory=list)
    flush_all: bool = False
    reload_regs: bool = False
    reload_debug: bool = False
    step: bool = False


@message("set_guest_debug")
class SetGuestDebug:
    """Userspace -> kernel: KVM_SET_GUEST_DEBUG for one vCPU (vcpu stopped)."""
    vcpu: int
    seq: int
    control: int
    iac: list[int]
    iac_on: list[bool]
    dac: list[int]
    dac_rw: list[int]


@message("table_update")
class TableUpdate:
    """Userspace -> kernel: addresses patched/unpatched (the in-kernel table of trap-kernel)."""
    seq: int
    insert: list[int]
    remove: list[int]


@message("get_one_reg")
class GetOneReg:
    seq: int
    reg: str


@message("one_reg")
class OneReg:
    seq: int
    reg: str
    value: int | None


@message("ack")
class Ack:
    seq: int
    of: str


@message("halted")
class Halted:
    """vCPU -> supervisor and userspace: the vCPU stopped for good (guest halt or fault)."""
    vcpu: int
    code: int
    reason: str
    pc: int


@message("detach")
class Detach:
    """Supervisor -> userspace: remove every breakpoint, restore guest code, report."""
    seq: int


@message("detached")
class Detached:
    seq: int
    restored: int
