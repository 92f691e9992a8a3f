"""The GDB remote stub of the userspace process: the only module that owns the TCP socket.

A thin I/O shell: bytes from gdb go to `GdbSession.receive` (cosim/gdb/commands.py), whose output is
written back; stops come from `VmTarget` (cosim/gdb/vm_target.py) and are written as stop replies once
gdb waits for one. The userspace loop puts `fds()` in the same poll as its zmq inbox, so a packet from
gdb wakes it at once, and calls `poll()` after every wake-up.

Invariants:
- One gdb at a time; a second connection is accepted and closed at once. Connecting stops the world
  (as QEMU does); `D` or a lost connection detaches (every breakpoint removed, guest code restored, the
  scenario runs on); `k`/`vKill` asks the supervisor to end the run.
- Replies are written with blocking `sendall` (they are small); reads never block.
- Stop replies carry every register of the stopped thread (expedited), so gdb sends no `g` per stop.
"""
from __future__ import annotations

import socket

from .commands import GdbSession
from .target import StopEvent, TargetError
from .vm_target import Exited, VmTarget

READ_CHUNK = 1 << 16
_EXPEDITE = {}   # register count -> one format for every `NN:VVVVVVVV;` pair of a stop reply


def parse_address(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host or "127.0.0.1", int(port)


class GdbStub:
    def __init__(self, us, addr: str):
        host, port = parse_address(addr)
        self.listener = socket.create_server((host, port), backlog=2)
        self.listener.setblocking(False)
        bound = self.listener.getsockname()
        self.address = f"{bound[0]}:{bound[1]}"
        self.conn: socket.socket | None = None
        self.session: GdbSession | None = None
        self.target = VmTarget(us, notify=self._drain)
        self.connections = 0
        self.closed = False

    # --- hooks of the userspace loop ------------------------------------------------------------------
    def fds(self) -> tuple[int, ...]:
        if self.closed:
            return ()
        if self.conn is None:
            return (self.listener.fileno(),)
        return (self.listener.fileno(), self.conn.fileno())

    def timeout(self) -> float:
        return 0.2

    def take_control(self) -> None:
        """The world is stopped at start and stays stopped until gdb resumes it."""
        self.target.take_control()

    def on_halted(self, m) -> None:
        self.target.on_halted(m)
        self._drain()

    def poll(self) -> None:
        """Non-blocking: accept, read and answer whatever gdb sent, write pending stop replies."""
        if self.closed:
            return
        self._accept()
        if self.conn is not None:
            self._read()
        self._drain()

    # --- socket -------------------------------------------------------------------------------------
    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if self.conn is not None:
                conn.close()              # one gdb at a time
                continue
            conn.setblocking(True)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conn = conn
            self.connections += 1
            self.target.take_control()
            self.session = self._new_session()

    def _new_session(self) -> GdbSession:
        """A session whose stop replies carry every register of the stopped thread (expedited, as
        gdbserver does for a few): gdb then needs no `g` after each stop."""
        session = GdbSession(self.target)
        plain = session.format_stop
        target = self.target

        def format_stop(event: StopEvent) -> bytes:
            try:
                regs = target.read_registers(event.tid)
            except TargetError:
                return plain(event)
            fmt = _EXPEDITE.get(len(regs))
            if fmt is None:
                fmt = _EXPEDITE[len(regs)] = b"".join(b"%02x:%%08x;" % n for n in range(len(regs)))
            return plain(event) + fmt % tuple(v & 0xFFFFFFFF for v in regs)

        session.format_stop = format_stop
        return session

    def _read(self) -> None:
        while self.conn is not None:
            try:
                data = self.conn.recv(READ_CHUNK, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._lost()
                return
            out = self.session.receive(data)
            if out:
                self._send(out)
            self.target.service()
            self._drain()
            self.target.after_reply()
            if self.session is not None and self.session.closed:
                self._hang_up()

    def _send(self, data: bytes) -> None:
        try:
            self.conn.sendall(data)
        except OSError:
            self._lost()

    def _drain(self) -> None:
        """Write the stop reply gdb waits for, if the target has one."""
        s = self.session
        t = self.target
        while s is not None and self.conn is not None and s.running and t.outbox:
            ev = t.outbox.pop(0)
            if isinstance(ev, StopEvent):
                self._send(s.stop_reply(ev))
                t.after_reply()
            elif isinstance(ev, Exited):
                s.running = False
                self._send(s.codec.send(b"W%02x" % ev.code))
            s = self.session

    def _lost(self) -> None:
        """gdb went away without `D` or `k`: detach (restore guest code, run on)."""
        if self.session is not None and not self.session.closed and not self.target.killed:
            self.target.detach()
        self._hang_up()

    def _hang_up(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
        self.conn = None
        self.session = None
        self.target.outbox.clear()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._hang_up()
        self.listener.close()
        self.target.close()
