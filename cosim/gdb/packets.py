"""GDB remote serial protocol framing: a codec with no I/O (h11 style).

Bytes from gdb go in with `PacketCodec.feed()`; events come out of `next_event()` / `events()`;
`send(payload)` and `respond(event)` return the bytes to write. Nothing here touches a socket.

Wire format: `$<body>#<two hex checksum digits>`, the checksum being the sum of the body's raw bytes
modulo 256. In a body, `}` escapes the next byte (sent xor 0x20) and `<c>*<n>` repeats c (the byte
before the `*`, after unescaping) ord(n) - 29 more times. Outside packets: `+` ack, `-` nak,
0x03 interrupt (Ctrl-C); anything else is garbage and skipped.

Invariants:
- `feed()` only appends; `next_event()` consumes whole events or nothing, so any split of the input
  across feeds yields the same events.
- A `$` inside an unfinished packet restarts framing there (the truncated packet is dropped silently).
- While acks are on, the last frame returned by `send()` is kept until gdb's `+`; `respond(Nak())`
  returns it again for retransmission. After `start_no_ack()` nothing is kept and nothing is acked.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

_DOLLAR = 0x24
_HASH = 0x23
_ESCAPE = 0x7D
_RLE = 0x2A
_PLUS = 0x2B
_MINUS = 0x2D
INTERRUPT_BYTE = 0x03
_RLE_BIAS = 29
_HEX = frozenset(b"0123456789abcdefABCDEF")
_OUTSIDE = frozenset((_DOLLAR, _PLUS, _MINUS, INTERRUPT_BYTE))

DEFAULT_MAX_PACKET = 0x10000
"""Bodies longer than this (before decoding) are dropped as BadPacket."""


@dataclass(frozen=True)
class Packet:
    """A packet with a good checksum.

    Fields: payload -- the body with escapes undone and run lengths expanded.
    """

    payload: bytes


@dataclass(frozen=True)
class Ack:
    """`+`: gdb received our last packet."""


@dataclass(frozen=True)
class Nak:
    """`-`: gdb wants our last packet again."""


@dataclass(frozen=True)
class Interrupt:
    """0x03 outside a packet: gdb's Ctrl-C."""


@dataclass(frozen=True)
class BadPacket:
    """A frame that could not be accepted (bad checksum, bad escape or run length, too long).

    Fields: reason -- a human-readable description. The remote (gdb) is at fault; while acks are on the
    answer is `-` (see PacketCodec.respond).
    """

    reason: str


Event = Packet | Ack | Nak | Interrupt | BadPacket


def checksum(data: bytes) -> int:
    """Sum of the bytes modulo 256."""
    return sum(data) & 0xFF


def escape(data: bytes) -> bytes:
    """Escape `$ # } *` as `}` + (byte xor 0x20)."""
    if not (b"$" in data or b"#" in data or b"}" in data or b"*" in data):
        return bytes(data)
    out = bytearray()
    for c in data:
        if c in (_DOLLAR, _HASH, _ESCAPE, _RLE):
            out.append(_ESCAPE)
            out.append(c ^ 0x20)
        else:
            out.append(c)
    return bytes(out)


def encode(payload: bytes) -> bytes:
    """Frame a payload for sending: `$` + escaped payload + `#` + checksum (no run-length encoding)."""
    body = escape(payload)
    return b"$%s#%02x" % (body, checksum(body))


def decode_body(body: bytes) -> bytes:
    """Undo escapes and expand run lengths of a received body. Raises ValueError if malformed."""
    if b"}" not in body and b"*" not in body:
        return bytes(body)
    out = bytearray()
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c == _ESCAPE:
            if i + 1 >= n:
                raise ValueError("escape at end of packet")
            out.append(body[i + 1] ^ 0x20)
            i += 2
        elif c == _RLE:
            if not out:
                raise ValueError("run-length marker with nothing to repeat")
            if i + 1 >= n:
                raise ValueError("run-length marker at end of packet")
            count = body[i + 1]
            if not 0x20 <= count <= 0x7E:
                raise ValueError(f"bad run-length count byte 0x{count:02x}")
            out += bytes((out[-1],)) * (count - _RLE_BIAS)
            i += 2
        else:
            out.append(c)
            i += 1
    return bytes(out)


_ACK, _NAK, _INTERRUPT = Ack(), Nak(), Interrupt()


class PacketCodec:
    """Framing plus ack/retransmit bookkeeping for one connection. No I/O."""

    def __init__(self, max_packet: int = DEFAULT_MAX_PACKET) -> None:
        self._buf = bytearray()
        self._in_packet = False
        self._scan = 1  # where to resume looking for '#' in the current packet
        self._max_packet = max_packet
        self._no_ack = False
        self._unacked: bytes | None = None

    # -- state ---------------------------------------------------------------------------------------
    @property
    def no_ack(self) -> bool:
        """True after start_no_ack(): no `+`/`-` are sent or expected."""
        return self._no_ack

    @property
    def unacked(self) -> bool:
        """A sent frame is waiting for gdb's `+`."""
        return self._unacked is not None

    def start_no_ack(self) -> None:
        """Enter no-ack mode. Call right after send()ing the `OK` to QStartNoAckMode; gdb's `+` for that
        `OK` is still accepted (acks arriving in no-ack mode are harmless)."""
        self._no_ack = True

    # -- receiving ------------------------------------------------------------------------------------
    def whole_packet(self, data: bytes) -> bytes | None:
        """The common case in one step: when nothing is buffered and `data` is, after any `+` acks,
        exactly one packet whose body needs no decoding (no escape, no run length) and whose
        checksum is good, consume the acks and return its payload. Otherwise None, consuming
        nothing: the caller feeds `data` and takes `events()`, which yield the same."""
        if self._buf or self._in_packet:
            return None
        start, n = 0, len(data)
        while start < n and data[start] == _PLUS:
            start += 1
        if n - start < 4 or data[start] != _DOLLAR or data[n - 3] != _HASH:
            return None
        body = data[start + 1:n - 3]
        if (b"$" in body or b"#" in body or b"}" in body or b"*" in body or len(body) > self._max_packet
                or data[n - 2] not in _HEX or data[n - 1] not in _HEX
                or int(data[n - 2:], 16) != checksum(body)):
            return None
        if start:
            self._unacked = None
        return bytes(body)

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        self._buf += data

    def events(self) -> Iterator[Event]:
        """Every complete event in the buffered input."""
        while (ev := self.next_event()) is not None:
            yield ev

    def next_event(self) -> Event | None:
        """The next complete event, or None if more input is needed."""
        buf = self._buf
        while True:
            if not self._in_packet:
                i, n = 0, len(buf)
                while i < n and buf[i] not in _OUTSIDE:
                    i += 1
                if i:
                    del buf[:i]
                if not buf:
                    return None
                c = buf[0]
                if c == _DOLLAR:
                    self._in_packet = True
                    self._scan = 1
                    continue
                del buf[:1]
                if c == _PLUS:
                    self._unacked = None
                    return _ACK
                if c == _MINUS:
                    return _NAK
                return _INTERRUPT

            end = buf.find(b"#", self._scan)
            restart = buf.find(b"$", self._scan, end if end >= 0 else len(buf))
            if restart >= 0:
                del buf[:restart]  # drop the truncated packet, start over at the new '$'
                self._scan = 1
                continue
            if end < 0:
                self._scan = len(buf)
                if len(buf) - 1 > self._max_packet:
                    del buf[:]
                    self._in_packet = False
                    return BadPacket(f"packet longer than {self._max_packet} bytes")
                return None
            if len(buf) < end + 3:
                self._scan = end
                return None
            body = bytes(buf[1:end])
            digits = bytes(buf[end + 1 : end + 3])
            del buf[: end + 3]
            self._in_packet = False
            if digits[0] not in _HEX or digits[1] not in _HEX:
                return BadPacket(f"checksum digits {digits!r} are not hex")
            if int(digits, 16) != checksum(body):
                return BadPacket(f"bad checksum: got {digits.decode()}, computed {checksum(body):02x}")
            try:
                return Packet(decode_body(body))
            except ValueError as e:
                return BadPacket(str(e))

    # -- sending --------------------------------------------------------------------------------------
    def respond(self, event: Event) -> bytes:
        """Link-level bytes answering a received event: `+` for a Packet, `-` for a BadPacket (both
        nothing in no-ack mode), the last unacknowledged frame for a Nak, nothing otherwise."""
        if isinstance(event, Packet):
            return b"" if self._no_ack else b"+"
        if isinstance(event, BadPacket):
            return b"" if self._no_ack else b"-"
        if isinstance(event, Nak):
            return self._unacked or b""
        return b""

    def send(self, payload: bytes) -> bytes:
        """Frame a payload; while acks are on, remember it for retransmission until gdb's `+`."""
        frame = encode(payload)
        if not self._no_ack:
            self._unacked = frame
        return frame
