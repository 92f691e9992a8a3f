"""Scenario configuration: one TOML file parsed once into frozen, validated dataclasses.

Invariants:
- This is the only module that reads scenario TOML or looks at raw config dicts; everything downstream
  receives a `Config` and may trust it (types, ranges, enums and cross-references already checked).
- Every problem raises `ConfigError`, whose str is exactly one line: `<file>: <dotted.key>: <problem>`
  (`<file>: line N: <problem>` for TOML syntax, `<file>: <problem>` for an unreadable file). Unknown keys
  are errors, with a close-match suggestion, so a typo never silently falls back to a default.
- Addresses are normalized to `int`; symbols stay `str`. Symbols are resolved against the guest ELF
  later, by the loader: this module never opens an ELF nor requires one to exist.
- `Config.to_dict()` returns the schema's own shape with every default filled in (unset optionals are
  None), so `parse_config(cfg.to_dict(), cfg.source) == cfg`; derived fields (`GuestConfig.elf_path`)
  and `Config.source` are left out of it.
- What the run itself judges is not a config error: e.g. strategy `hw` with more breakpoints than the CPU
  has IAC slots is accepted and reported by the run.

Schema (defaults in parentheses, see configs/demo.toml for a complete example):
    name (file stem), description ("")
    [machine]   cpu (required: e500v2|e500mc), vcpus (1; 1..16), ram ("16M"; bytes or K/M suffix,
                multiple of 4 KiB, 1M..256M), transport ("ipc"|"tcp"), msrp_dep (None = true; e500mc
                only: E.HV's MSRP[DEP]. true: while the host debugs, the guest's MSR[DE] writes are
                ignored for host debug; false: the guest's MSR[DE] gates the host's IAC/DAC/step events,
                missed ones are the finding guest-disabled-host-debug), schedule ("free" | "deterministic":
                vCPUs run one at a time in seeded quanta, replayable from `seed`), seed (1), quantum
                ([500, 20000] guest instructions per quantum, min and max)
    [guest]     program (required: bare name -> guests/<name>.elf, or a path ending .elf relative to the
                config file; any 32-bit big-endian Book E ELF), entry (None = ELF entry; symbol or
                address), iterations (None; 1..2**32-1; the ELF must define cfg_iterations),
                until (None; symbol or address: a vCPU that reaches it, before executing it, is done
                (exit code 0); the run ends when every vCPU is done, also while gdb is attached)
    [debug]     strategy ("illegal"), detach_at_end (true), keep_guest_traps (true),
                count_planted_reads (true: count guest loads of planted words; costs the fast load path)
    [[debug.breakpoints]]  at (required), action ("count"), hits (remove-after only, required there),
                steps (single-step only, required there)
    [debug.stress]  toggle (required, names breakpoints), interval_ms ([1.0, 5.0]), seed (1), toggles (200)
    [debug.race]    at (required, names a breakpoint), after_hits (1)
    [limits]    wall_seconds (60.0; > 0), instructions (0 = unlimited; per vCPU)
    [expect]    debugger_hits, guest_warns, findings, exit_code (all None = not checked)
    [[expect.memory]]  at (required; symbol or address), stride (0; bytes between two vCPUs' areas:
                vCPU i's area is at + i*stride, checked for every vCPU), words (required; expected
                32-bit words at the end of the run)
    [[expect.interrupts]]  kind (required: program, syscall, debug, dsi, ... see isa.IVOR_NAME),
                srr0 (None = any; symbol or address), count (required; per vCPU). When present, every
                interrupt the harness delivered to the guest must be accounted for: entries with srr0
                count exactly that (kind, SRR0), an entry without srr0 counts the kind's total, a kind
                listed only with srr0 entries may not be delivered at any other SRR0, and a kind not
                listed may not be delivered at all.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

from .findings import FINDINGS
from .guest_linux import FLAVOURS
from .isa import IVOR_BY_NAME

__all__ = [
    "STRATEGIES", "CPUS", "ACTIONS", "TRANSPORTS",
    "ConfigError", "Config", "MachineConfig", "GuestConfig", "DebugConfig", "BreakpointConfig",
    "StressConfig", "RaceConfig", "LimitsConfig", "ExpectConfig", "MemoryExpect", "InterruptExpect",
    "load_config", "parse_config", "apply_overrides",
]

STRATEGIES = ("sc64", "trap-user", "trap-kernel", "ehpriv", "illegal", "hw")
CPUS = ("e500v2", "e500mc")
ACTIONS = ("count", "log-registers", "remove-after", "single-step")
TRANSPORTS = ("ipc", "tcp")
BOARDS = ("bare", "ppce500")   # bare: identity-mapped RAM only; ppce500: QEMU's board (MMU, devices)
SCHEDULES = ("free", "deterministic")
DEFAULT_QUANTUM = (500, 20_000)     # guest instructions per deterministic quantum, (min, max)

KiB = 1024
MiB = 1024 * KiB
RAM_MIN, RAM_MAX, RAM_ALIGN = 1 * MiB, 256 * MiB, 4 * KiB
DEFAULT_RAM = 16 * MiB
DEFAULT_INTERVAL_MS = (1.0, 5.0)
VCPUS_MAX = 16
WORD_MAX = 2**32 - 1            # guest words (cfg_iterations) and addresses are 32-bit
COUNT_MAX = 2**63 - 1

Location = int | str            # an address (int) or a symbol name (str)

# Keys allowed in each table; drives unknown-key detection and its "belongs in [x]" hints.
_SCHEMA: dict[str, tuple[str, ...]] = {
    "": ("name", "description", "machine", "guest", "debug", "limits", "expect", "serial"),
    "machine": ("cpu", "vcpus", "ram", "transport", "msrp_dep", "schedule", "seed", "quantum", "board",
                "coalesced_mmio"),
    "serial": ("echo", "send", "end_on", "fail_on"),
    "serial.send[]": ("after", "text"),
    "guest": ("program", "entry", "iterations", "until", "kernel", "initrd", "bootargs"),
    "debug": ("strategy", "detach_at_end", "breakpoints", "stress", "race", "keep_guest_traps",
              "count_planted_reads", "step_interrupts"),
    "debug.breakpoints[]": ("at", "action", "hits", "steps", "arm_on"),
    "debug.stress": ("toggle", "interval_ms", "seed", "toggles"),
    "debug.race": ("at", "after_hits"),
    "limits": ("wall_seconds", "instructions"),
    "expect": ("debugger_hits", "guest_warns", "findings", "exit_code", "memory", "interrupts", "serial"),
    "expect.serial[]": ("line",),
    "expect.memory[]": ("at", "stride", "words"),
    "expect.interrupts[]": ("kind", "srr0", "count"),
}
# Keys only meaningful with one breakpoint action.
_ACTION_KEYS = {"hits": "remove-after", "steps": "single-step"}

_SYMBOL_RE = re.compile(r"[A-Za-z_.$][A-Za-z0-9_.$@]*(?:\+(?:0[xX][0-9a-fA-F]+|[0-9]+))?")  # symbol[+offset]
_HEX_RE = re.compile(r"0[xX][0-9a-fA-F]+(?:_[0-9a-fA-F]+)*")
LINUX_FAIL_ON = ("Rebooting in ", "---[ end Kernel panic")   # the last line of a Linux panic report
                                                             # (with a panic timeout, and without)
SOURCE_SUFFIXES = (".S", ".s", ".c", ".h", ".ld", ".inc")   # a guest's source named where its ELF belongs
# the project's Linux guests: program name -> the CPU model its kernel is built for
LINUX_GUESTS = {name: f.cpu for name, f in FLAVOURS.items()}
_PROGRAM_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
_SIZE_RE = re.compile(r"\s*(\d+)\s*([kKmM]?)\s*")
_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+(?:\[\d+\])?")     # a TOML bare key, maybe indexed
_TOML_POS_RE = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_TOML_END_RE = re.compile(r"\s*\(at end of document\)$")


class ConfigError(ValueError):
    """A configuration problem. str() is one line: `<file>: <key>: <problem>`.

    Fields: file (as the user named it), key (dotted key, or None), line (TOML syntax errors only),
    problem (the message alone).
    """

    def __init__(self, file: str, key: str | None, problem: str, line: int | None = None):
        self.file, self.key, self.problem, self.line = file, key, problem, line
        where = f"line {line}" if line is not None else key
        parts = [file, where, problem] if where else [file, problem]
        super().__init__(": ".join(_one_line(p) for p in parts))


# --- the validated configuration --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class MachineConfig:
    """cpu: one of CPUS; vcpus: 1..16; ram: bytes; transport: one of TRANSPORTS; msrp_dep: E.HV's
    MSRP[DEP] (e500mc only; None = true, see `dep`); schedule: one of SCHEDULES, with `seed` and the
    (min, max) `quantum` in guest instructions for "deterministic" (cosim/schedule.py)."""
    cpu: str
    board: str = "bare"
    coalesced_mmio: bool = True       # the board's UART stores go without an answer (KVM's coalesced MMIO;
                                      # tools/bench_uboot.py: U-Boot's boot 0.83x the wall time without)
    vcpus: int = 1
    ram: int = DEFAULT_RAM
    transport: str = "ipc"
    msrp_dep: bool | None = None
    schedule: str = "free"
    seed: int = 1
    quantum: tuple[int, int] = DEFAULT_QUANTUM

    @property
    def dep(self) -> bool:
        """MSRP[DEP] as the run uses it: true unless the scenario chose false."""
        return self.msrp_dep is not False


@dataclass(frozen=True, slots=True)
class GuestConfig:
    """program: as written in the config (bare name or .elf path); elf_path: that path made absolute
    against the config's directory, or None for a bare name (see `resolve`); entry: symbol, address or
    None (= ELF entry); iterations: value for the guest's cfg_iterations word, or None to leave it;
    until: where a vCPU's run ends (symbol or address, before executing it), or None."""
    program: str
    elf_path: Path | None = field(default=None, metadata={"derived": True})
    entry: Location | None = None
    iterations: int | None = None
    until: Location | None = None
    kernel: bool = False             # a board's payload loaded as QEMU's -kernel (no -bios): /chosen names it
    initrd: str | None = None        # a board's -initrd: a path, or "linux" (the Linux guest's initramfs)
    bootargs: str = ""               # a board's -append: /chosen/bootargs

    def resolve(self, guests_dir: str | os.PathLike[str]) -> Path:
        """The ELF to load: the explicit path, else `<guests_dir>/<program>.elf`."""
        return self.elf_path if self.elf_path is not None else Path(guests_dir) / f"{self.program}.elf"


@dataclass(frozen=True, slots=True)
class BreakpointConfig:
    """at: symbol or address; action: one of ACTIONS; hits: set iff action is remove-after;
    steps: set iff action is single-step."""
    at: Location
    action: str = "count"
    hits: int | None = None
    steps: int | None = None
    arm_on: str | None = None      # planted once the serial console shows this text (a board's guest
                                   # that loads or relocates its code first: U-Boot), else at start


@dataclass(frozen=True, slots=True)
class StressConfig:
    """toggle: `at` values of debug.breakpoints to insert/remove repeatedly; interval_ms: (min, max)
    random delay between toggles, 0 < min <= max; seed: >= 0; toggles: number of toggles, >= 1."""
    toggle: tuple[Location, ...]
    interval_ms: tuple[float, float] = DEFAULT_INTERVAL_MS
    seed: int = 1
    toggles: int = 200


@dataclass(frozen=True, slots=True)
class RaceConfig:
    """at: `at` of a debug.breakpoints entry whose exit is held in flight on its `after_hits`-th hit
    while userspace removes it."""
    at: Location
    after_hits: int = 1


@dataclass(frozen=True, slots=True)
class DebugConfig:
    """strategy: one of STRATEGIES; breakpoints: distinct `at`s; stress/race: None when absent."""
    strategy: str = "illegal"
    detach_at_end: bool = True
    breakpoints: tuple[BreakpointConfig, ...] = ()
    stress: StressConfig | None = None
    race: RaceConfig | None = None
    keep_guest_traps: bool = True     # gdb stub: deliver a guest trap gdb would skip (README)
    count_planted_reads: bool = True  # vCPUs count guest loads of planted words (issue 20; README)
    step_interrupts: str = "held"     # a single step (scripted or gdb's): "held" = the guest's interrupts
                                      # and timers wait for the next resume (QEMU's gdbstub default),
                                      # "taken" = a pending one is the step (Qqemu.sstep=0x1)

    def breakpoint_at(self, at: Location) -> BreakpointConfig | None:
        return next((bp for bp in self.breakpoints if bp.at == at), None)


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """wall_seconds: > 0; instructions: per vCPU, 0 = unlimited."""
    wall_seconds: float = 60.0
    instructions: int = 0


@dataclass(frozen=True, slots=True)
class MemoryExpect:
    """words: expected at `at` + i*stride for every vCPU i (stride 0: one area)."""
    at: Location
    words: tuple[int, ...]
    stride: int = 0


@dataclass(frozen=True, slots=True)
class InterruptExpect:
    """count: per vCPU, interrupts of `kind` delivered with SRR0 `srr0` (None = any SRR0)."""
    kind: str
    count: int
    srr0: Location | None = None


@dataclass(frozen=True, slots=True)
class ExpectConfig:
    """Expectations checked at the end of the run; None = not checked."""
    debugger_hits: int | None = None
    guest_warns: int | None = None
    findings: tuple[str, ...] | None = None
    exit_code: int | None = None
    memory: tuple[MemoryExpect, ...] | None = None
    interrupts: tuple[InterruptExpect, ...] | None = None
    serial: tuple[str, ...] | None = None    # lines the serial transcript must contain

    @property
    def empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in dataclasses.fields(self))


@dataclass(frozen=True, slots=True)
class SerialSend:
    """Type `text` (\r for Enter) once the transcript shows `after` (after the previous send)."""
    after: str
    text: str


@dataclass(frozen=True, slots=True)
class SerialConfig:
    """The board's serial console (a board with a UART): `echo` prints it on the terminal; `send`,
    in order, what to type when given output appears; `end_on`: the run ends (exit 0) when this text
    appears after every send was typed; `fail_on`: the run ends as failed (exit 1) when any of these
    appears (a kernel's panic; the default for program = "linux")."""
    echo: bool = False
    send: tuple[SerialSend, ...] = ()
    end_on: str | None = None
    fail_on: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Config:
    """A whole scenario. source: the file it came from, as named by the caller."""
    name: str
    description: str
    source: str = field(metadata={"derived": True})
    machine: MachineConfig
    guest: GuestConfig
    debug: DebugConfig = DebugConfig()
    limits: LimitsConfig = LimitsConfig()
    expect: ExpectConfig = ExpectConfig()
    serial: SerialConfig = SerialConfig()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict in the schema's shape (lists, ints, floats, str, bool, None)."""
        return _plain(self)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name))
                for f in dataclasses.fields(value) if not f.metadata.get("derived")}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


# --- entry points -----------------------------------------------------------------------------------

def load_config(path: str | os.PathLike[str], overrides: tuple[str, ...] | list[str] = ()) -> Config:
    """Read and validate one scenario file, after applying `overrides` (`key=value` strings, see
    `apply_overrides`). Raises ConfigError (one line, naming file and key)."""
    from . import bundled
    file = os.fspath(path)
    try:
        raw = (bundled.find(file) or Path(file)).read_bytes()    # (or a shipped example, by name)
    except FileNotFoundError:
        near = bundled.near(file)
        raise ConfigError(file, None, "no such file" + (f" (shipped configs: did you mean {', '.join(near)}?)"
                                                         if near else "")) from None
    except IsADirectoryError:
        raise ConfigError(file, None, "is a directory, not a TOML file") from None
    except OSError as e:
        raise ConfigError(file, None, f"cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8-sig")       # (a byte-order mark, as some editors write, is skipped)
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ConfigError(file, None, "not valid UTF-8", line=line) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise _syntax_error(file, text, e) from None
    except RecursionError:        # (tomllib recurses per nesting level: a = [[[[...]]]] 1000 deep)
        raise ConfigError(file, None, f"arrays or inline tables nested too deeply (more than {MAX_DEPTH} "
                                      "levels)") from None
    return parse_config(apply_overrides(data, overrides, file), file)


MAX_DEPTH = 32      # a scenario needs 4; deeper is a mistake (and Python's recursion limit is near 1000)


def _check_depth(value: Any, source: str, key: str | None = None) -> None:
    """Refuse a value nested more than MAX_DEPTH levels (without recursing: any depth is safe)."""
    stack = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ConfigError(source, key, f"arrays or inline tables nested too deeply (more than "
                                           f"{MAX_DEPTH} levels)")
        if isinstance(v, dict):
            stack.extend((x, depth + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, depth + 1) for x in v)


_OVERRIDE_KEY_RE = re.compile(r"([A-Za-z0-9_-]+)(?:\[(\d+)\])?")


def apply_overrides(data: dict[str, Any], overrides: tuple[str, ...] | list[str], source: str) -> dict[str, Any]:
    """`data` with each `dotted.key=value` of `overrides` set (`--set machine.vcpus=4`,
    `--set debug.breakpoints[0].at=bp_target_b`); the value is read as a TOML value, else taken as a
    string. Tables on the way are created; the result is validated by parse_config like the file."""
    for item in overrides:
        key, eq, text = item.partition("=")
        key = key.strip()
        parts = key.split(".")
        if not eq or not all(_OVERRIDE_KEY_RE.fullmatch(p) for p in parts):
            raise ConfigError(source, None, f"--set {item!r}: expected dotted.key=value")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        except RecursionError:
            raise ConfigError(source, key, f"--set: value nested too deeply (more than {MAX_DEPTH} "
                                           "levels)") from None
        _check_depth(value, source, key)
        node: Any = data
        for i, part in enumerate(parts):
            m = _OVERRIDE_KEY_RE.fullmatch(part)
            assert m is not None
            name, index, last = m[1], m[2], i == len(parts) - 1
            if index is None:
                if last:
                    node[name] = value
                else:
                    node = node.setdefault(name, {})
            else:
                items = node.get(name)
                if not isinstance(items, list) or int(index) >= len(items):
                    raise ConfigError(source, key, f"--set: {name} has no entry [{index}]")
                if last:
                    items[int(index)] = value
                else:
                    node = items[int(index)]
            if not last and not isinstance(node, dict):
                raise ConfigError(source, key, f"--set: {'.'.join(parts[:i + 1])} is not a table")
    return data


def parse_config(data: dict[str, Any], source: str) -> Config:
    """Validate an already-parsed TOML document (or a `Config.to_dict()`); `source` names the file in
    errors, gives the default name (its stem), and anchors relative .elf paths. None values count as
    absent."""
    source = os.fspath(source)
    if not isinstance(data, dict):
        raise ConfigError(source, None, f"expected a table at the top level, got {_kind(data)}")
    _check_depth(data, source)
    root = _Table(source, "", "", data)
    name = root.string("name", default=Path(source).stem)
    if not name.strip():
        raise root.error("name", "must not be empty")
    description = root.string("description", default="")

    machine = _machine(root.table("machine", required=True))
    if machine.msrp_dep is not None and machine.cpu != "e500mc":
        raise ConfigError(source, "machine.msrp_dep", f"only valid with cpu = 'e500mc' (E.HV's MSRP), "
                                                     f"cpu is {machine.cpu!r}")
    guest = _guest(root.table("guest", required=True), source)
    debug = _debug(root.table("debug"))
    limits = _limits(root.table("limits"))
    expect = _expect(root.table("expect"))
    serial = _serial(root.table("serial"), LINUX_FAIL_ON if guest.program in LINUX_GUESTS else ())
    if guest.program in LINUX_GUESTS and LINUX_GUESTS[guest.program] != machine.cpu:
        built_for = LINUX_GUESTS[guest.program]
        other = next((n for n, c in LINUX_GUESTS.items() if c == machine.cpu), None)
        raise ConfigError(source, "guest.program", f"{guest.program!r} is a kernel built for {built_for}, and "
                                                   f"cpu is {machine.cpu!r}" + (f": use program = {other!r}"
                                                                                 if other else ""))
    if machine.board == "bare" and any(bp.arm_on for bp in debug.breakpoints):
        raise ConfigError(source, "debug.breakpoints", "arm_on waits for serial output: it needs a board with "
                                                       "a UART ([machine] board = 'ppce500')")
    if machine.board == "bare" and (guest.kernel or guest.initrd is not None or guest.bootargs):
        raise ConfigError(source, "guest", "kernel, initrd and bootargs are a board's ([machine] board = "
                                           "'ppce500')")
    if machine.board == "bare" and (serial != SerialConfig() or expect.serial is not None):
        raise ConfigError(source, "serial", "a serial console needs a board with a UART "
                                            "([machine] board = 'ppce500')")
    return Config(name=name, description=description, source=source, machine=machine, guest=guest,
                  debug=debug, limits=limits, expect=expect, serial=serial)


def _expect_serial(t: _Table) -> tuple[str, ...] | None:
    """[[expect.serial]] line = "..." tables, or (a Config's to_dict()) a plain list of lines."""
    raw = t.get("serial", False)
    if raw is None:
        return None
    if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        return tuple(raw)
    return tuple(x.string("line", required=True) for x in t.tables("serial"))


def _serial(t: _Table | None, fail_default: tuple[str, ...] = ()) -> SerialConfig:
    if t is None:
        return SerialConfig(fail_on=fail_default)
    sends = []
    for x in (t.tables("send") if t.get("send", False) is not None else ()):
        after, text = x.string("after", required=True), x.string("text", required=True)
        sends.append(SerialSend(after, text.replace("\\r", "\r").replace("\\n", "\n")))
    end_on = t.string("end_on")
    if end_on is not None and not end_on:
        raise t.error("end_on", "must not be empty")
    fail_on = t.get("fail_on", False)
    if fail_on is None:
        fail_on = fail_default
    elif isinstance(fail_on, str):
        fail_on = (fail_on,)
    if not isinstance(fail_on, (list, tuple)) or not all(isinstance(x, str) and x for x in fail_on):
        raise t.error("fail_on", f"expected a non-empty string or a list of them, got {_describe(fail_on)}")
    return SerialConfig(echo=t.boolean("echo", default=False), send=tuple(sends), end_on=end_on,
                        fail_on=tuple(fail_on))


# --- sections ---------------------------------------------------------------------------------------

def _machine(t: _Table) -> MachineConfig:
    board = t.choice("board", BOARDS, "board", default="bare")
    ram = _ram(t, "ram", default=DEFAULT_RAM if board == "bare" else 256 * MiB)
    if board == "ppce500":
        if ram % (64 * MiB):
            raise t.error("ram", f"{ram} bytes: the ppce500 board needs a multiple of 64 MiB (as QEMU's)")
    return MachineConfig(
        board=board,
        coalesced_mmio=t.boolean("coalesced_mmio", default=True),
        cpu=t.choice("cpu", CPUS, "cpu", required=True),
        vcpus=t.integer("vcpus", default=1, lo=1, hi=VCPUS_MAX),
        ram=ram,
        transport=t.choice("transport", TRANSPORTS, "transport", default="ipc"),
        msrp_dep=t.boolean("msrp_dep", default=None),
        schedule=t.choice("schedule", SCHEDULES, "schedule", default="free"),
        seed=t.integer("seed", default=1, lo=0, hi=2**63 - 1),
        quantum=_quantum(t, "quantum"),
    )


def _quantum(t: _Table, key: str) -> tuple[int, int]:
    value = t.array(key)
    if value is None:
        return DEFAULT_QUANTUM
    if len(value) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
        raise t.error(key, f"expected [min, max] in guest instructions, got {_describe(value)}")
    lo, hi = value
    if not 1 <= lo <= hi <= 2**32:
        raise t.error(key, f"[{lo}, {hi}] out of range (1 <= min <= max <= 2**32)")
    return lo, hi


def _guest(t: _Table, source: str) -> GuestConfig:
    program = t.string("program", required=True)
    elf_path = None
    if program.endswith(".elf") or ("/" in program and not program.endswith(SOURCE_SUFFIXES)):
        # a path: a guest's ELF, or a kernel (.../vmlinux)
        p = Path(program)
        elf_path = Path(os.path.abspath(p if p.is_absolute() else Path(source).parent / p))
    elif not _PROGRAM_RE.fullmatch(program):
        raise t.error("program", f"expected a guest name like 'warn_storm' or a path ending in .elf, "
                                 f"got {program!r}")
    linux = program in LINUX_GUESTS  # the project's Linux guest: a kernel with its initramfs and console
    initrd = t.string("initrd", default=program if linux else None)
    if initrd is not None and initrd not in LINUX_GUESTS:
        p = Path(initrd)
        initrd = os.path.abspath(p if p.is_absolute() else Path(source).parent / p)
        if not os.path.isfile(initrd):
            raise t.error("initrd", f"{initrd}: no such file")
    return GuestConfig(
        program=program,
        elf_path=elf_path,
        entry=t.location("entry"),
        iterations=t.integer("iterations", lo=1, hi=WORD_MAX),
        until=t.location("until"),
        kernel=t.boolean("kernel", default=linux),
        initrd=initrd,
        bootargs=t.string("bootargs", default="console=ttyS0" if linux else ""),
    )


def _debug(t: _Table | None) -> DebugConfig:
    if t is None:
        return DebugConfig()
    strategy = t.choice("strategy", STRATEGIES, "strategy", default="illegal")
    detach_at_end = t.boolean("detach_at_end", default=True)
    keep_guest_traps = t.boolean("keep_guest_traps", default=True)
    count_planted_reads = t.boolean("count_planted_reads", default=True)
    breakpoints: list[BreakpointConfig] = []
    seen: dict[Location, str] = {}
    for bt in t.tables("breakpoints"):
        bp = _breakpoint(bt)
        if bp.at in seen:
            raise bt.error("at", f"duplicate breakpoint {_show_loc(bp.at)} (also {seen[bp.at]})")
        seen[bp.at] = bt.path
        breakpoints.append(bp)
    known = tuple(bp.at for bp in breakpoints)
    return DebugConfig(
        strategy=strategy,
        detach_at_end=detach_at_end,
        breakpoints=tuple(breakpoints),
        stress=_stress(t.table("stress"), known),
        race=_race(t.table("race"), breakpoints),
        keep_guest_traps=keep_guest_traps,
        count_planted_reads=count_planted_reads,
        step_interrupts=t.choice("step_interrupts", ("held", "taken"), "step_interrupts", default="held"),
    )


def _breakpoint(t: _Table) -> BreakpointConfig:
    at = t.location("at", required=True)
    action = t.choice("action", ACTIONS, "action", default="count")
    extra: dict[str, int] = {}
    for key, needs in _ACTION_KEYS.items():
        if action == needs:
            extra[key] = t.integer(key, required=True, lo=1, hi=COUNT_MAX)
        elif t.has(key):
            raise t.error(key, f"only valid with action = {needs!r} (action is {action!r})")
    arm_on = t.string("arm_on")
    if arm_on is not None and not arm_on:
        raise t.error("arm_on", "must not be empty")
    return BreakpointConfig(at=at, action=action, arm_on=arm_on, **extra)


def _stress(t: _Table | None, known: tuple[Location, ...]) -> StressConfig | None:
    if t is None:
        return None
    items = t.array("toggle", required=True)
    if not items:
        raise t.error("toggle", "must name at least one breakpoint")
    toggle: list[Location] = []
    for i, item in enumerate(items):
        key = f"toggle[{i}]"
        loc = _to_location(t, key, item)
        _check_known(t, key, loc, known)
        if loc in toggle:
            raise t.error(key, f"{_show_loc(loc)} listed twice")
        toggle.append(loc)
    interval = _interval(t, "interval_ms", default=DEFAULT_INTERVAL_MS)
    return StressConfig(
        toggle=tuple(toggle),
        interval_ms=interval,
        seed=t.integer("seed", default=1, lo=0, hi=2**64 - 1),
        toggles=t.integer("toggles", default=200, lo=1, hi=COUNT_MAX),
    )


def _race(t: _Table | None, breakpoints: list[BreakpointConfig]) -> RaceConfig | None:
    if t is None:
        return None
    at = t.location("at", required=True)
    _check_known(t, "at", at, tuple(bp.at for bp in breakpoints))
    after_hits = t.integer("after_hits", default=1, lo=1, hi=COUNT_MAX)
    bp = next(bp for bp in breakpoints if bp.at == at)
    if bp.action == "remove-after" and bp.hits < after_hits:
        raise t.error("after_hits", f"breakpoint {_show_loc(at)} is removed after {bp.hits} hits, "
                                    f"so it never reaches hit {after_hits}")
    return RaceConfig(at=at, after_hits=after_hits)


def _limits(t: _Table | None) -> LimitsConfig:
    if t is None:
        return LimitsConfig()
    return LimitsConfig(
        wall_seconds=t.number("wall_seconds", default=60.0, positive=True),
        instructions=t.integer("instructions", default=0, lo=0, hi=COUNT_MAX),
    )


def _memory_expect(t: _Table) -> MemoryExpect:
    at = t.location("at", required=True)
    words = t.array("words", required=True)
    if not words:
        raise t.error("words", "must list at least one word")
    for i, w in enumerate(words):
        if isinstance(w, bool) or not isinstance(w, int) or not 0 <= w <= WORD_MAX:
            raise t.error(f"words[{i}]", f"expected a 32-bit word (0..0xffffffff), got {_describe(w)}")
    stride = t.integer("stride", default=0, lo=0, hi=WORD_MAX)
    if stride % 4:
        raise t.error("stride", f"{stride} is not a multiple of 4")
    return MemoryExpect(at=at, words=tuple(words), stride=stride)


def _interrupt_expect(t: _Table, seen: dict) -> InterruptExpect:
    kind = t.choice("kind", tuple(IVOR_BY_NAME), "interrupt kind", required=True)
    srr0 = t.location("srr0")
    if (kind, srr0) in seen:
        raise t.error("srr0" if srr0 is not None else "kind",
                      f"{kind} at {'any SRR0' if srr0 is None else _show_loc(srr0)} listed twice "
                      f"(also {seen[kind, srr0]})")
    seen[kind, srr0] = t.path
    return InterruptExpect(kind=kind, count=t.integer("count", required=True, lo=0, hi=COUNT_MAX), srr0=srr0)


def _expect(t: _Table | None) -> ExpectConfig:
    if t is None:
        return ExpectConfig()
    memory = None if t.get("memory", False) is None else tuple(_memory_expect(m) for m in t.tables("memory"))
    seen: dict = {}
    interrupts = None if t.get("interrupts", False) is None else tuple(
        _interrupt_expect(x, seen) for x in t.tables("interrupts"))
    findings = t.array("findings")
    if findings is not None:
        for i, f in enumerate(findings):
            key = f"findings[{i}]"
            if not isinstance(f, str):
                raise t.error(key, f"expected a finding id (string), got {_describe(f)}")
            if not f.strip():
                raise t.error(key, "must not be empty")
            if f in findings[:i]:
                raise t.error(key, f"{f!r} listed twice")
        for i, f in enumerate(findings):
            if f not in FINDINGS:
                close = difflib.get_close_matches(f, list(FINDINGS), n=1)
                raise t.error(f"findings[{i}]", f"unknown finding {f!r} (" + (
                    f"did you mean {close[0]!r}?)" if close else f"expected one of: {', '.join(FINDINGS)})"))
    return ExpectConfig(
        debugger_hits=t.integer("debugger_hits", lo=0, hi=COUNT_MAX),
        guest_warns=t.integer("guest_warns", lo=0, hi=COUNT_MAX),
        findings=None if findings is None else tuple(findings),
        exit_code=t.integer("exit_code", lo=-2**31, hi=2**32 - 1),
        memory=memory,
        interrupts=interrupts,
        serial=_expect_serial(t),
    )


# --- typed access to one table ----------------------------------------------------------------------

class _Table:
    """One table of the document: its dotted path, schema name and data. Checks for unknown keys on
    construction, so a misspelt key is reported before it could look like a missing one."""

    def __init__(self, file: str, path: str, schema: str, data: dict[str, Any]):
        self.file, self.path, self.data = file, path, data
        allowed = _SCHEMA[schema]
        for key in data:
            if key not in allowed:
                raise self.error(key, _unknown_key(key, schema))

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.file, _join(self.path, key), problem)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def get(self, key: str, required: bool) -> Any:
        value = self.data.get(key)
        if value is None and required:
            raise self.error(key, "missing required key")
        return value

    def string(self, key: str, default: str | None = None, required: bool = False) -> Any:
        value = self.get(key, required)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_describe(value)}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], what: str,
               default: str | None = None, required: bool = False) -> Any:
        value = self.string(key, default, required)
        if value not in choices:
            raise self.error(key, f"unknown {what} {value!r} (expected one of: {', '.join(choices)})")
        return value

    def boolean(self, key: str, default: Any) -> Any:
        value = self.get(key, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {_describe(value)}")
        return value

    def integer(self, key: str, default: int | None = None, required: bool = False,
                lo: int | None = None, hi: int | None = None) -> Any:
        value = self.get(key, required)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {_describe(value)}")
        _check_range(self, key, value, lo, hi)
        return value

    def number(self, key: str, default: float, positive: bool = False) -> float:
        value = self.get(key, False)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"expected a number, got {_describe(value)}")
        value = float(value)
        if positive and not value > 0 or value != value or value in (float("inf"), float("-inf")):
            raise self.error(key, f"{value:g} out of range (must be > 0 and finite)")
        return value

    @overload
    def location(self, key: str, required: Literal[True]) -> Location: ...
    @overload
    def location(self, key: str, required: bool = False) -> Location | None: ...

    def location(self, key: str, required: bool = False) -> Location | None:
        value = self.get(key, required)
        return None if value is None else _to_location(self, key, value)

    def array(self, key: str, required: bool = False) -> list[Any] | None:
        value = self.get(key, required)
        if value is not None and not isinstance(value, list):
            raise self.error(key, f"expected an array, got {_describe(value)}")
        return value

    @overload
    def table(self, key: str, required: Literal[True]) -> _Table: ...
    @overload
    def table(self, key: str, required: bool = False) -> _Table | None: ...

    def table(self, key: str, required: bool = False) -> _Table | None:
        value = self.get(key, False)
        if value is None:
            if required:
                raise self.error(key, f"missing required table [{_join(self.path, key)}]")
            return None
        if not isinstance(value, dict):
            raise self.error(key, f"expected a table [{_join(self.path, key)}], got {_describe(value)}")
        path = _join(self.path, key)
        return _Table(self.file, path, path, value)

    def tables(self, key: str) -> list[_Table]:
        value = self.get(key, False)
        if value is None:
            return []
        path = _join(self.path, key)
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(key, f"expected an array of tables ([[{path}]]), got {_describe(value)}")
        return [_Table(self.file, f"{path}[{i}]", f"{path}[]", v) for i, v in enumerate(value)]


def _check_range(t: _Table, key: str, value: int, lo: int | None, hi: int | None) -> None:
    if lo is not None and value < lo or hi is not None and value > hi:
        if lo is not None and hi is not None:
            bounds = f"{lo}..{hi}"
        elif lo is not None:
            bounds = f"must be >= {lo}"
        else:
            bounds = f"must be <= {hi}"
        raise t.error(key, f"{value} out of range ({bounds})")


def _to_location(t: _Table, key: str, value: Any) -> Location:
    if isinstance(value, str) and _HEX_RE.fullmatch(value):
        value = int(value, 16)
    elif isinstance(value, str):
        if _SYMBOL_RE.fullmatch(value):
            return value
        raise t.error(key, f"expected a symbol name or an address (integer or '0x...'), got {value!r}")
    elif isinstance(value, bool) or not isinstance(value, int):
        raise t.error(key, f"expected a symbol name or an address (integer or '0x...'), "
                           f"got {_describe(value)}")
    if not 0 <= value <= WORD_MAX:
        raise t.error(key, f"address {value:#x} out of range (32-bit)")
    if value % 4:
        raise t.error(key, f"address {value:#x} is not 4-byte aligned")
    return value


def _check_known(t: _Table, key: str, loc: Location, known: tuple[Location, ...]) -> None:
    if loc in known:
        return
    if not known:
        hint = "there are none"
    else:
        names = [_show_loc(k, quote=False) for k in known]
        close = difflib.get_close_matches(_show_loc(loc, quote=False), names, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"have: {', '.join(names)}"
    raise t.error(key, f"{_show_loc(loc)} is not one of debug.breakpoints ({hint})")


def _ram(t: _Table, key: str, default: int) -> int:
    value = t.get(key, False)
    if value is None:
        return default
    if isinstance(value, str):
        m = _SIZE_RE.fullmatch(value)
        if not m:
            raise t.error(key, f"invalid size {value!r} (expected bytes or a number with K or M suffix, "
                               f"e.g. '16M')")
        size = int(m[1]) * {"": 1, "k": KiB, "m": MiB}[m[2].lower()]
    elif isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        raise t.error(key, f"expected bytes (integer) or a size string like '16M', got {_describe(value)}")
    shown = repr(value) if isinstance(value, str) else str(value)
    if not RAM_MIN <= size <= RAM_MAX:
        raise t.error(key, f"{shown} out of range (1M..256M)")
    if size % RAM_ALIGN:
        raise t.error(key, f"{shown} is not a multiple of 4 KiB")
    return size


def _interval(t: _Table, key: str, default: tuple[float, float]) -> tuple[float, float]:
    value = t.array(key)
    if value is None:
        return default
    if len(value) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
        raise t.error(key, f"expected [min, max] in milliseconds, got {_describe(value)}")
    lo, hi = float(value[0]), float(value[1])
    if not (0 < lo < float("inf") and 0 < hi < float("inf")):
        raise t.error(key, f"[{lo:g}, {hi:g}] out of range (both must be > 0 and finite)")
    if lo > hi:
        raise t.error(key, f"min {lo:g} is greater than max {hi:g}")
    return lo, hi


# --- messages ---------------------------------------------------------------------------------------

def _unknown_key(key: str, schema: str) -> str:
    allowed = _SCHEMA[schema]
    close = difflib.get_close_matches(key, allowed, n=2)
    if close:
        return f"unknown key (did you mean {' or '.join(map(repr, close))}?)"
    for other, keys in _SCHEMA.items():
        if other != schema and key in keys:
            if other == "":
                return f"unknown key ({key!r} belongs at the top level, before any [table])"
            where = f"[[{other[:-2]}]]" if other.endswith("[]") else f"[{other}]"
            return f"unknown key ({key!r} belongs in {where})"
    return f"unknown key (expected one of: {', '.join(allowed)})"


def _syntax_error(file: str, text: str, e: tomllib.TOMLDecodeError) -> ConfigError:
    msg = str(e)
    m = _TOML_POS_RE.search(msg)
    if m:
        return ConfigError(file, None, f"{msg[:m.start()]} (column {m[2]})", line=int(m[1]))
    m = _TOML_END_RE.search(msg)
    if m:
        return ConfigError(file, None, f"{msg[:m.start()]} (at end of file)",
                           line=max(1, text.count("\n") + (not text.endswith("\n"))))
    return ConfigError(file, None, f"invalid TOML: {msg}")


def _join(path: str, key: str) -> str:
    if not _BARE_KEY_RE.fullmatch(key):
        key = json.dumps(key)
    return f"{path}.{key}" if path else key


_KINDS = {str: "string", bool: "boolean", int: "integer", float: "float", list: "array", dict: "table"}


def _kind(value: Any) -> str:
    return _KINDS.get(type(value), type(value).__name__)


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "table"
    text = repr(value)
    if isinstance(value, bool):
        text = "true" if value else "false"
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{_kind(value)} {text}"


def _show_loc(loc: Location, quote: bool = True) -> str:
    if isinstance(loc, int):
        return f"{loc:#x}"
    return repr(loc) if quote else loc


def _one_line(text: str) -> str:
    return " ".join(text.split()) if ("\n" in text or "\r" in text) else text
