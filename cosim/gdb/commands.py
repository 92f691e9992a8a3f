"""GDB remote protocol commands: a pure all-stop state machine over a `Target` (no I/O).

`GdbSession(target).receive(data)` takes bytes from gdb and returns the bytes to write back (acks and
replies); `stop_reply(StopEvent)` turns a stop the target reported into the bytes of its T packet.
The owner (the stub, the only module with a socket) writes whatever these return.

Commands are data (after QEMU's gdbstub): `COMMANDS` maps the first byte of a packet to rows of
`Command(prefix, handler, schema, reply)`; the `q`, `Q` and `v` rows are the query sub-tables. The
dispatcher picks the first row whose prefix matches (whole packet if `exact`), parses the rest of the
packet by the row's schema (see `parse_params`) and calls the handler with the parsed values.

Invariants:
- All-stop. `running` is True from a successful resume (c, s, vCont) until the owner calls
  `stop_reply()`; while running only Ctrl-C (-> one `target.interrupt()`) and acks are expected, any
  packet is answered `E01` without touching the target. Exactly one stop reply per resume.
- Every packet gets exactly one reply except resumes (the stop reply comes later) and `k` (none).
  Unknown packets get the empty reply; a malformed one `E01`; an unknown thread or register `E02`;
  `TargetError(errno)` -> `E<errno>`; `NotSupported` -> empty. The session keeps serving after any error.
- Every field is validated where it enters, before the target sees it: numbers have at most 16 hex
  digits, addresses fit the target's 32 bits (`A`), lengths are at most 32 bits (`L`); anything
  else is `E01`. An exception the target did not document (a bug) is answered `E05` and kept in
  `internal_errors` for the owner to report; it never escapes `receive()`.
- Thread ids go out as `p01.02` (multiprocess, unless gdb's qSupported left out multiprocess+) and are
  accepted as `p1.2`, `p01.02`, `p1.-1`, `p1`, `-1`, `0` or bare `2`.
- Register numbers in `p`/`P` and the `g`/`G` layout are those of the served target.xml: 0..37 in
  `g`/`G`, and up to the target's `register_count` (SPRs, read with `target.read_register`) in `p`/`P`.
- After `D` or `k`/`vKill`, `closed` is True and input is ignored: the owner should close the socket.
"""

from __future__ import annotations

import enum
import functools
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

from cosim.gdb.packets import Interrupt, Packet, PacketCodec
from cosim.gdb.target import (
    NUM_REGISTERS,
    PC,
    PID,
    REGISTER_BITS,
    REGISTER_BYTES,
    REGISTER_MASK,
    NotSupported,
    StopEvent,
    Target,
    TargetError,
)
from cosim.gdb.target_xml import ANNEXES, read_chunk
from cosim.isa import SstepFlags

_STRTOUL_HEX = re.compile(rb"[ \t\n\v\f\r]*([+-]?)(?:0[xX](?=[0-9a-fA-F]))?([0-9a-fA-F]+)")
"""What C's strtoul(s, &end, 16) reads from the start of a packet field."""

PACKET_SIZE = 0x4000
"""Advertised in qSupported (hex): the largest packet gdb may send us, and our cap on replies."""
MAX_MEMORY_READ = (PACKET_SIZE - 16) // 2
"""`m` replies are truncated to this many bytes (gdb reads the rest with another `m`)."""

ALL = -1
ANY = 0

OK = b"OK"
E_MALFORMED = b"E01"
E_NO_SUCH = b"E02"  # unknown thread, process or register number
E_INTERNAL = b"E05"  # EIO: the target failed in a way it does not document (reported by the owner)
MAX_HEX_DIGITS = 16
"""A number gdb sends has at most 64 bits; longer ones are malformed."""
MAX_LENGTH = 0xFFFFFFFF

VCONT_REPLY = b"vCont;c;C;s;S;t"


class LocalProtocolError(Exception):
    """The session's owner misused it (e.g. stop_reply() while the target was not running)."""


class _Malformed(Exception):
    """gdb sent a packet we cannot parse -> E01."""


class _NoSuch(Exception):
    """gdb named a thread, process or register that does not exist -> E02."""


# -- thread ids -------------------------------------------------------------------------------------------


def _hex_or_minus_one(text: bytes) -> int:
    if text == b"-1":
        return ALL
    return _hex(text)


def parse_thread_id(text: bytes) -> tuple[int | None, int]:
    """Parse `p1.2`, `p01.02`, `p1.-1`, `p1` (= p1.-1), `-1`, `0`, `2` -> (pid or None, tid).

    tid is ALL (-1), ANY (0) or a thread number. Raises _Malformed."""
    if text.startswith(b"p"):
        pid_text, dot, tid_text = text[1:].partition(b".")
        pid = _hex_or_minus_one(pid_text)
        return pid, (_hex_or_minus_one(tid_text) if dot else ALL)
    return None, _hex_or_minus_one(text)


def format_thread_id(tid: int, multiprocess: bool = True) -> bytes:
    """`p01.02` style (or `02` without multiprocess)."""
    return b"p%02x.%02x" % (PID, tid) if multiprocess else b"%02x" % tid


# -- parameter schemas ------------------------------------------------------------------------------------


_HEX_DIGITS = b"0123456789abcdefABCDEF"


def _hex(text: bytes) -> int:
    if not text or len(text) > MAX_HEX_DIGITS or text.translate(None, _HEX_DIGITS):
        raise _Malformed(f"not a hex number: {text[:32]!r}")
    return int(text, 16)


def _address(text: bytes) -> int:
    """A guest address: must fit the target's 32 bits (`Z1,100000000,4` is an error, not 0)."""
    value = _hex(text)
    if value > REGISTER_MASK:
        raise _Malformed(f"address {value:#x} beyond {REGISTER_BITS} bits")
    return value


def _length(text: bytes) -> int:
    value = _hex(text)
    if value > MAX_LENGTH:
        raise _Malformed(f"length {value:#x} too large")
    return value


def _hex_bytes(text: bytes) -> bytes:
    if len(text) % 2 or text.translate(None, _HEX_DIGITS):
        raise _Malformed(f"not hex-encoded bytes: {text[:32]!r}")
    return bytes.fromhex(text.decode("ascii"))


_CONVERTERS: dict[str, Callable[[bytes], object]] = {
    "x": _hex,  # hex number
    "A": _address,  # hex guest address (32 bits)
    "L": _length,  # hex length
    "t": parse_thread_id,  # thread id -> (pid | None, tid)
    "h": _hex_bytes,  # hex-encoded bytes
    "a": bytes,  # raw field (an annex name, a feature list...)
    "b": bytes,  # raw binary (already unescaped by the codec); only last
}


def parse_params(schema: str, text: bytes) -> list[object]:
    """Parse `text` by `schema`: field codes (see _CONVERTERS) separated by literal separator
    characters, e.g. "x,x:h" for `M`. Each field runs up to the next separator; the last takes the rest.
    A trailing `?` makes the last field optional (None when the text is empty). Raises _Malformed."""
    if not schema:
        if text:
            raise _Malformed(f"unexpected parameters {text[:32]!r}")
        return []
    optional = schema.endswith("?")
    if optional:
        schema = schema[:-1]
        if not text:
            return [None]
    converters, seps = _compiled(schema)
    values: list[object] = []
    pos = 0
    for i, sep in enumerate(seps):
        end = text.find(sep, pos)
        if end < 0:
            raise _Malformed(f"missing {sep.decode()!r} in {text[:32]!r}")
        values.append(converters[i](text[pos:end]))
        pos = end + 1
    values.append(converters[-1](text[pos:]))
    return values


@functools.cache
def _compiled(schema: str) -> tuple[tuple[Callable[[bytes], object], ...], tuple[bytes, ...]]:
    """A schema (without `?`) as its converters and its separators (encoded)."""
    return tuple(_CONVERTERS[c] for c in schema[0::2]), tuple(s.encode() for s in schema[1::2])


# -- the command table ------------------------------------------------------------------------------------


class Reply(enum.Enum):
    """When a command's reply is sent."""

    NOW = "now"  # handler returns the reply payload
    STOP = "stop"  # handler resumes the target; the reply is the later stop reply (errors: now)
    NONE = "none"  # no reply at all (k)


Handler = Callable[..., bytes | None]


@dataclass(frozen=True)
class Command:
    """One row of a command table.

    Fields:
      prefix  -- bytes the packet starts with
      handler -- GdbSession method taking the parsed parameters; returns the reply payload (or None)
      schema  -- how the bytes after the prefix are parsed (parse_params)
      reply   -- Reply.NOW / STOP / NONE
      exact   -- the packet must be exactly `prefix` (names that are prefixes of other names: qC, qCRC).
                 Otherwise a row with an empty schema answers trailing bytes with E01.
    """

    prefix: bytes
    handler: Handler
    schema: str = ""
    reply: Reply = Reply.NOW
    exact: bool = False

    def matches(self, payload: bytes) -> bool:
        return payload == self.prefix if self.exact else payload.startswith(self.prefix)


# -- the session ------------------------------------------------------------------------------------------


class GdbSession:
    """One gdb connection's protocol state over a Target. Pure: returns bytes, never writes them."""

    def __init__(self, target: Target, codec: PacketCodec | None = None) -> None:
        self.target = target
        self.codec = codec or PacketCodec()
        self.running = False
        """True while the target runs and gdb waits for a stop reply."""
        self.closed = False
        """True after detach or kill: the owner should close the connection."""
        self.multiprocess = True
        self.gdb_features: frozenset[bytes] = frozenset()
        """Features gdb offered with `+` in qSupported (e.g. b"swbreak")."""
        self.general_thread: int | None = None  # Hg; None = first thread
        self.cont_thread: int = ALL  # Hc: ALL, ANY or a thread
        self.last_stop: StopEvent | None = None
        self._interrupt_sent = False
        self.internal_errors: list[str] = []
        """Undocumented target failures answered E05, oldest first (the owner reports and clears)."""

    # -- I/O-free entry points --------------------------------------------------------------------------
    def receive(self, data: bytes) -> bytes:
        """Bytes from gdb -> bytes to send back (acks, replies, retransmissions)."""
        if self.closed:
            return b""
        payload = self.codec.whole_packet(data)
        if payload is not None:                 # (one plain packet, the usual input: no framing loop)
            ack = b"" if self.codec.no_ack else b"+"
            return ack + self._handle(payload)
        self.codec.feed(data)
        out = bytearray()
        for event in self.codec.events():
            out += self.codec.respond(event)
            if isinstance(event, Packet):
                out += self._handle(event.payload)
            elif isinstance(event, Interrupt):
                if self.running and not self._interrupt_sent:
                    self._interrupt_sent = True
                    self.target.interrupt()
            if self.closed:
                break
        return bytes(out)

    def stop_reply(self, event: StopEvent) -> bytes:
        """The target stopped: record it and return the T packet bytes to send to gdb."""
        if not self.running:
            raise LocalProtocolError("stop_reply() while the target is not running")
        self.running = False
        self._interrupt_sent = False
        self.last_stop = event
        self.general_thread = event.tid
        return self.codec.send(self.format_stop(event))

    def format_stop(self, event: StopEvent) -> bytes:
        """`T<sig>thread:p01.01;` + `swbreak:;`/`hwbreak:;` (if gdb offered it) or `watch:ADDR;`."""
        out = b"T%02xthread:%s;" % (event.signal, format_thread_id(event.tid, self.multiprocess))
        reason = event.reason
        if isinstance(reason, tuple):
            out += b"%s:%08x;" % (reason[0].encode(), reason[1])
        elif reason is not None and reason.encode() in self.gdb_features:
            out += reason.encode() + b":;"
        return out

    # -- dispatch ---------------------------------------------------------------------------------------
    def _handle(self, payload: bytes) -> bytes:
        if self.running:
            return self.codec.send(E_MALFORMED)  # all-stop: gdb must wait for the stop reply
        row = _lookup(payload)
        if row is None:
            return self.codec.send(b"")
        try:
            params = parse_params(row.schema, payload[len(row.prefix) :])
            reply = row.handler(self, *params)
        except _Malformed:
            reply = E_MALFORMED
        except _NoSuch:
            reply = E_NO_SUCH
        except TargetError as e:
            reply = b"E%02x" % (e.errno & 0xFF)
        except NotSupported:
            reply = b""
        except Exception as e:  # a target bug must not end the session (nor the process serving it)
            self.internal_errors.append(f"{payload[:40]!r}: {type(e).__name__}: {e}")
            reply = E_INTERNAL
        if reply is None:
            if row.reply is Reply.STOP:
                self.running = True
            return b""
        after = _AFTER_REPLY.get(row.prefix)
        frame = self.codec.send(reply)
        if after is not None and reply == OK:
            after(self)
        return frame

    # -- helpers ----------------------------------------------------------------------------------------
    def _threads(self) -> list[int]:
        return list(self.target.threads())

    def _specific(self, spec: tuple[int | None, int]) -> int:
        """A thread id that must name one existing thread."""
        pid, tid = spec
        if pid not in (None, PID) or tid in (ALL, ANY) or tid not in self._threads():
            raise _NoSuch
        return tid

    def _selection(self, spec: tuple[int | None, int]) -> int:
        """ALL, ANY or an existing thread."""
        pid, tid = spec
        if pid not in (None, PID, ALL, ANY):
            raise _NoSuch
        if pid == ALL:
            tid = ALL if tid in (ALL, ANY) else tid
        if tid in (ALL, ANY):
            return tid
        return self._specific((None, tid))

    def _current(self) -> int:
        """The thread g/G/p/P/m operate on (Hg), defaulting to the first."""
        threads = self._threads()
        if self.general_thread in threads:
            return self.general_thread
        return threads[0]

    # -- handlers: status and registers -----------------------------------------------------------------
    def _stop_status(self) -> bytes:
        stop = self.last_stop or StopEvent(self._current())
        return self.format_stop(stop)

    def _read_all_registers(self) -> bytes:
        values = self.target.read_registers(self._current())
        if len(values) != NUM_REGISTERS:
            raise TargetError(message=f"target returned {len(values)} registers")
        try:   # one C call for the usual 32-bit values (a Python loop costs ~10x as much)
            return struct.pack(">%dI" % len(values), *values).hex().encode()
        except struct.error:
            return b"".join(b"%08x" % (v & REGISTER_MASK) for v in values)

    def _write_all_registers(self, data: bytes) -> bytes:
        if len(data) != NUM_REGISTERS * REGISTER_BYTES:
            raise _Malformed(f"G with {len(data)} bytes")
        tid = self._current()
        for regno in range(NUM_REGISTERS):
            chunk = data[regno * REGISTER_BYTES : (regno + 1) * REGISTER_BYTES]
            self.target.write_register(tid, regno, int.from_bytes(chunk, "big"))
        return OK

    def _register_count(self) -> int:
        """Core registers, plus the target's extra ones (SPRs) if it serves them."""
        return getattr(self.target, "register_count", NUM_REGISTERS)

    def _read_register(self, regno: int) -> bytes:
        if regno >= self._register_count():
            raise _NoSuch
        if regno >= NUM_REGISTERS:
            return b"%08x" % (self.target.read_register(self._current(), regno) & REGISTER_MASK)
        return b"%08x" % (self.target.read_registers(self._current())[regno] & REGISTER_MASK)

    def _write_register(self, regno: int, data: bytes) -> bytes:
        if regno >= self._register_count():
            raise _NoSuch
        if len(data) != REGISTER_BYTES:
            raise _Malformed(f"P with {len(data)} bytes")
        self.target.write_register(self._current(), regno, int.from_bytes(data, "big"))
        return OK

    # -- handlers: memory -------------------------------------------------------------------------------
    def _read_memory(self, addr: int, length: int) -> bytes:
        return self.target.read_memory(addr, min(length, MAX_MEMORY_READ)).hex().encode()

    def _write_memory(self, addr: int, length: int, data: bytes) -> bytes:
        if len(data) != length:
            raise _Malformed(f"write of {length} bytes carries {len(data)}")
        if length:
            self.target.write_memory(addr, data)
        return OK

    # -- handlers: breakpoints --------------------------------------------------------------------------
    def _insert_breakpoint(self, kind: int, addr: int, length: int) -> bytes:
        if kind > 4:
            raise NotSupported
        self.target.insert_breakpoint(kind, addr, length)
        return OK

    def _remove_breakpoint(self, kind: int, addr: int, length: int) -> bytes:
        if kind > 4:
            raise NotSupported
        self.target.remove_breakpoint(kind, addr, length)
        return OK

    # -- handlers: threads ------------------------------------------------------------------------------
    def _set_general_thread(self, spec: tuple[int | None, int]) -> bytes:
        tid = self._selection(spec)
        if tid not in (ALL, ANY):
            self.general_thread = tid
        return OK

    def _set_cont_thread(self, spec: tuple[int | None, int]) -> bytes:
        self.cont_thread = self._selection(spec)
        return OK

    def _thread_alive(self, spec: tuple[int | None, int]) -> bytes:
        self._specific(spec)
        return OK

    def _current_thread(self) -> bytes:
        return b"QC" + format_thread_id(self._current(), self.multiprocess)

    def _thread_info_first(self) -> bytes:
        return b"m" + b",".join(format_thread_id(t, self.multiprocess) for t in self._threads())

    def _thread_info_next(self) -> bytes:
        return b"l"

    def _thread_extra_info(self, spec: tuple[int | None, int]) -> bytes:
        return self.target.thread_extra_info(self._specific(spec)).encode().hex().encode()

    # -- handlers: execution ----------------------------------------------------------------------------
    def _resume_legacy(self, action: str, addr: int | None) -> bytes | None:
        """c/s [addr], gdbserver's rules: with Hc naming a thread, only that thread resumes; otherwise
        the current thread does `action` and all others continue."""
        if self.cont_thread in (ALL, ANY):
            tid, default = self._current(), "c"
        else:
            tid, default = self.cont_thread, None
        if addr is not None:
            self.target.write_register(tid, PC, addr & REGISTER_MASK)
        self.target.resume({tid: action}, default)
        return None

    def _continue(self, addr: int | None) -> bytes | None:
        return self._resume_legacy("c", addr)

    def _step(self, addr: int | None) -> bytes | None:
        return self._resume_legacy("s", addr)

    def _vcont_query(self) -> bytes:
        return VCONT_REPLY

    def _vcont(self, text: bytes) -> bytes | None:
        """vCont;ACTION[:TID];... The leftmost action that applies to a thread wins."""
        actions: dict[int, str] = {}
        claimed: set[int] = set()
        default: str | None = None
        default_set = False
        for item in text.split(b";"):
            verb, _, thread = item.partition(b":")
            if not verb:
                raise _Malformed("empty vCont action")
            letter = chr(verb[0])
            if letter in "CS":
                _hex(verb[1:])  # the signal is ignored
            elif letter not in "cst" or len(verb) != 1:
                raise _Malformed(f"vCont action {verb!r}")
            action = {"C": "c", "S": "s"}.get(letter, letter)
            tid = self._selection(parse_thread_id(thread)) if thread else ALL
            if tid == ANY:
                tid = self._current()
            if tid == ALL:
                if not default_set:
                    default, default_set = (None if action == "t" else action), True
                continue
            if default_set or tid in claimed:
                continue
            claimed.add(tid)
            if action != "t":
                actions[tid] = action
        if not actions and default is None:
            raise _Malformed("vCont resumes no thread")
        self.target.resume(actions, default)
        return None

    # -- handlers: session ------------------------------------------------------------------------------
    def _supported(self, text: bytes) -> bytes:
        features = text[1:].split(b";") if text.startswith(b":") else []
        self.gdb_features = frozenset(f[:-1] for f in features if f.endswith(b"+"))
        self.multiprocess = b"multiprocess" in self.gdb_features
        reply = [
            b"PacketSize=%x" % PACKET_SIZE,
            b"qXfer:features:read+",
            b"vContSupported+",
            b"multiprocess+",
            b"QStartNoAckMode+",
        ]
        reply += [f + b"+" for f in (b"swbreak", b"hwbreak") if f in self.gdb_features]
        return b";".join(reply)

    def _xfer_features(self, annex: bytes, offset: int, length: int) -> bytes:
        document = getattr(self.target, "annexes", ANNEXES).get(annex)
        if document is None:
            return b"E00"
        return read_chunk(document, offset, length)

    def _monitor(self, command: bytes) -> bytes:
        """qRcmd (gdb's `monitor`): the target's text answer, hex-encoded in the reply itself
        (gdb prints it); `OK` when the answer is empty. Targets without `monitor` -> empty reply."""
        run = getattr(self.target, "monitor", None)
        if run is None:
            raise NotSupported
        text = run(command.decode("utf-8", "replace")).encode("utf-8", "replace")
        limit = MAX_MEMORY_READ - 64
        if len(text) > limit:
            text = text[:limit] + b"\n... (output truncated)\n"
        return text.hex().encode() if text else OK

    def _attached(self, text: bytes) -> bytes:
        return b"1"

    def _empty(self, text: bytes = b"") -> bytes:
        return b""

    # -- QEMU's single-step flags (gdbstub.c: qqemu.sstepbits, qqemu.sstep, Qqemu.sstep) ----------------
    def _sstep_bits(self) -> bytes:
        return b"ENABLE=%x,NOIRQ=%x,NOTIMER=%x" % (SstepFlags.ENABLE, SstepFlags.NOIRQ, SstepFlags.NOTIMER)

    def _sstep_get(self) -> bytes:
        get = getattr(self.target, "sstep_flags", None)
        if get is None:
            raise NotSupported
        return b"0x%x" % get()

    def _sstep_set(self, text: bytes) -> bytes:
        """`Qqemu.sstep=N`, parsed as QEMU 7.2's gdbstub parses it (schema `l`, qemu_strtoul base 16: leading
        blanks, a sign, an optional 0x, the longest run of hex digits, anything after it ignored; the
        value kept in an `int`). No digits: an empty reply, as QEMU's (whose stub sends nothing at all for
        an empty value); a bit it does not know: E22, the flags unchanged. tests/test_sstep_qemu.py runs
        the same packets against QEMU itself."""
        setter = getattr(self.target, "set_sstep_flags", None)
        if setter is None:
            raise NotSupported
        m = _STRTOUL_HEX.match(text)
        if m is None:
            return b""
        value = int(m.group(2), 16)
        if m.group(1) == b"-":
            value = -value
        flags = value & 0xFFFFFFFF                     # QEMU: `int new_sstep_flags = val_ul`
        if flags & ~SstepFlags.DEFAULT:
            return b"E22"
        setter(flags)
        return OK

    def _start_no_ack(self) -> bytes:
        return OK

    def _detach(self, pid: int | None = None) -> bytes:
        if pid is not None and pid != PID:
            raise _NoSuch
        self.target.detach()
        self.closed = True
        return OK

    def _kill(self) -> None:
        self.target.kill()
        self.closed = True
        return None

    def _vkill(self, pid: int) -> bytes:
        if pid != PID:
            raise _NoSuch
        self.target.kill()
        self.closed = True
        return OK


S = GdbSession

QUERIES: tuple[Command, ...] = (
    Command(b"qSupported", S._supported, "a"),
    Command(b"qXfer:features:read:", S._xfer_features, "a:L,L"),
    Command(b"qfThreadInfo", S._thread_info_first, exact=True),
    Command(b"qsThreadInfo", S._thread_info_next, exact=True),
    Command(b"qThreadExtraInfo,", S._thread_extra_info, "t"),
    Command(b"qC", S._current_thread, exact=True),
    Command(b"qAttached", S._attached, "a"),
    Command(b"qRcmd,", S._monitor, "h"),
    Command(b"qqemu.sstepbits", S._sstep_bits, exact=True),
    Command(b"qqemu.sstep", S._sstep_get, exact=True),
    Command(b"qTStatus", S._empty, exact=True),
    Command(b"qOffsets", S._empty, exact=True),
    Command(b"qSymbol", S._empty, "a"),
)
"""`q` packets (general queries)."""

SET_QUERIES: tuple[Command, ...] = (
    Command(b"QStartNoAckMode", S._start_no_ack, exact=True),
    Command(b"Qqemu.sstep=", S._sstep_set, "a"),
)
"""`Q` packets (general sets)."""

V_COMMANDS: tuple[Command, ...] = (
    Command(b"vCont?", S._vcont_query, exact=True),
    Command(b"vCont;", S._vcont, "a", reply=Reply.STOP),
    Command(b"vMustReplyEmpty", S._empty, exact=True),
    Command(b"vKill;", S._vkill, "x"),
)
"""`v` packets (multi-letter commands)."""

COMMANDS: dict[int, tuple[Command, ...]] = {
    ord("?"): (Command(b"?", S._stop_status),),
    ord("g"): (Command(b"g", S._read_all_registers),),
    ord("G"): (Command(b"G", S._write_all_registers, "h"),),
    ord("p"): (Command(b"p", S._read_register, "x"),),
    ord("P"): (Command(b"P", S._write_register, "x=h"),),
    ord("m"): (Command(b"m", S._read_memory, "A,L"),),
    ord("M"): (Command(b"M", S._write_memory, "A,L:h"),),
    ord("X"): (Command(b"X", S._write_memory, "A,L:b"),),
    ord("Z"): (Command(b"Z", S._insert_breakpoint, "x,A,L"),),
    ord("z"): (Command(b"z", S._remove_breakpoint, "x,A,L"),),
    ord("H"): (Command(b"Hg", S._set_general_thread, "t"), Command(b"Hc", S._set_cont_thread, "t")),
    ord("T"): (Command(b"T", S._thread_alive, "t"),),
    ord("c"): (Command(b"c", S._continue, "A?", reply=Reply.STOP),),
    ord("s"): (Command(b"s", S._step, "A?", reply=Reply.STOP),),
    ord("D"): (Command(b"D;", S._detach, "x"), Command(b"D", S._detach)),
    ord("k"): (Command(b"k", S._kill, reply=Reply.NONE),),
    ord("q"): QUERIES,
    ord("Q"): SET_QUERIES,
    ord("v"): V_COMMANDS,
}
"""First byte of a packet -> its rows, tried in order."""
del S

_AFTER_REPLY: dict[bytes, Callable[[GdbSession], None]] = {
    b"QStartNoAckMode": lambda s: s.codec.start_no_ack(),
}
"""Link changes that take effect only after the reply went out with the old settings."""


def _lookup(payload: bytes) -> Command | None:
    if not payload:
        return None
    for row in COMMANDS.get(payload[0], ()):
        if row.matches(payload):
            return row
    return None
