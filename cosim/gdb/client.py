"""A minimal GDB remote-protocol client (no-ack mode after the handshake), for tools and tests that
drive a gdbstub directly: QEMU's (the speed peer and the oracle, see cosim/qemu.py) or ours.

Framing comes from the pure codec in cosim/gdb/packets.py; this module only owns the socket.
"""
from __future__ import annotations

import socket
import time

from .packets import INTERRUPT_BYTE, Ack, BadPacket, Interrupt, Nak, Packet, PacketCodec, encode


class RspError(RuntimeError):
    pass


class RspClient:
    def __init__(self, sock: socket.socket, timeout: float = 30.0):
        self.sock = sock
        self.sock.settimeout(timeout)
        self.codec = PacketCodec(max_packet=1 << 20)
        self.no_ack = False

    @classmethod
    def connect(cls, address, timeout: float = 30.0, retry_for: float = 10.0) -> "RspClient":
        """`address`: (host, port) for TCP or a filesystem path for a unix socket. Retries while the
        server is still starting (for up to `retry_for` seconds)."""
        deadline = time.monotonic() + retry_for
        while True:
            family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
            s = socket.socket(family, socket.SOCK_STREAM)
            try:
                s.connect(address)
                break
            except OSError:
                s.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        if family == socket.AF_INET:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c = cls(s, timeout)
        c.handshake()
        return c

    def handshake(self) -> None:
        self.request("qSupported:multiprocess+;swbreak+;hwbreak+;vContSupported+")
        if self.request("QStartNoAckMode") == b"OK":
            self.no_ack = True

    # --- packets ------------------------------------------------------------------------------------
    def send(self, payload: bytes | str) -> None:
        if isinstance(payload, str):
            payload = payload.encode()
        self.sock.sendall(encode(payload))

    def interrupt(self) -> None:
        self.sock.sendall(bytes([INTERRUPT_BYTE]))

    def reply(self) -> bytes:
        """The next packet from the stub (console `O` packets are skipped)."""
        while True:
            for ev in self.codec.events():
                if isinstance(ev, Packet):
                    if not self.no_ack:
                        self.sock.sendall(b"+")
                    if ev.payload.startswith(b"O") and ev.payload[1:2] not in (b"", b"K"):
                        continue
                    return ev.payload
                if isinstance(ev, (Ack, Nak, Interrupt)):
                    continue
                if isinstance(ev, BadPacket):
                    raise RspError(f"bad packet from the stub: {ev}")
            data = self.sock.recv(65536)
            if not data:
                raise RspError("the stub closed the connection")
            self.codec.feed(data)

    def request(self, payload: bytes | str) -> bytes:
        self.send(payload)
        return self.reply()

    # --- conveniences -------------------------------------------------------------------------------
    def read_memory(self, addr: int, length: int) -> bytes:
        r = self.request(f"m{addr:x},{length:x}")
        if r.startswith(b"E") and len(r) == 3:
            raise RspError(f"m{addr:#x},{length}: {r.decode()}")
        return bytes.fromhex(r.decode())

    def read_word(self, addr: int) -> int:
        return int.from_bytes(self.read_memory(addr, 4), "big")

    def write_memory(self, addr: int, data: bytes) -> None:
        r = self.request(f"M{addr:x},{len(data):x}:{data.hex()}")
        if r != b"OK":
            raise RspError(f"M{addr:#x}: {r!r}")

    def write_word(self, addr: int, value: int) -> None:
        self.write_memory(addr, (value & 0xFFFFFFFF).to_bytes(4, "big"))

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
