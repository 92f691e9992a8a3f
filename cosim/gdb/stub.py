"""The GDB remote stub of the userspace process: the only module that owns the TCP socket.

A thin I/O shell: bytes from gdb go to `GdbSession.receive` (cosim/gdb/commands.py), whose output is
written back; stops come from `VmTarget` (cosim/gdb/vm_target.py) and are written as stop replies once
gdb waits for one. The userspace loop puts `fds()` in the same poll as its zmq inbox, so a packet from
gdb wakes it at once, and calls `poll()` after every wake-up.

Invariants:
- One gdb at a time; a second connection is accepted and closed at once. Connecting stops the world
  (as QEMU does, also under `--running`); `D` or a lost connection detaches (gdb's breakpoints removed,
  guest code under them restored, the scenario's scripted breakpoints kept, the scenario runs on);
  `k`/`vKill` asks the supervisor to end the run (outcome killed-by-debugger).
- When the run ends while gdb waits for a stop, gdb is told why (`O` text) and `X09` before closing.
- No I/O blocks: reads take what is there; replies go to a bounded output buffer written as the
  socket takes them. Past OUT_MAX buffered bytes nothing more is read from that client until it drains;
  a client that takes nothing for WRITE_TIMEOUT_S while replies wait is disconnected as a lost one
  (its breakpoints removed, the scenario goes on), so a gdb that stops reading never wedges the run.
- Stop replies carry every register of the stopped thread (expedited), so gdb sends no `g` per stop.
"""
from __future__ import annotations

import socket
import time

from .commands import GdbSession
from .target import StopEvent, TargetError
from .vm_target import Exited, VmTarget

READ_CHUNK = 1 << 16
OUT_MAX = 1 << 20          # buffered reply bytes beyond which the client is not read until it drains
WRITE_TIMEOUT_S = 5.0      # a client that takes none of its waiting replies this long is dropped
DEFAULT_HOST = "127.0.0.1"
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]", "*", "0"})
_EXPEDITE = {}   # register count -> one format for every `NN:VVVVVVVV;` pair of a stop reply


def parse_address(addr: str) -> tuple[str, int]:
    """`[HOST:]PORT` -> (host, port); the host defaults to the loopback address."""
    host, _, port = addr.rpartition(":")
    return host or DEFAULT_HOST, int(port)


def wildcard_warning(host: str) -> str | None:
    """The warning for a listening address every interface reaches (the GDB protocol has no
    authentication: whoever connects can read and write guest memory and run the guest)."""
    if host.strip("[]") in WILDCARD_HOSTS or host in WILDCARD_HOSTS:
        return (f"the gdb stub listens on every interface ({host}): anyone who can reach this port can "
                "read and write guest memory and drive the guest; bind 127.0.0.1 unless you mean it")
    return None


class GdbStub:
    def __init__(self, us, addr: str):
        host, port = parse_address(addr)
        self.warning = wildcard_warning(host)
        self.listener = socket.create_server((host, port), backlog=2)
        self.listener.setblocking(False)
        bound = self.listener.getsockname()
        self.address = f"{bound[0]}:{bound[1]}"
        self.conn: socket.socket | None = None
        self.session: GdbSession | None = None
        self.us = us
        self.target = VmTarget(us, notify=self._drain)
        self.trace = us.trace                 # the timeline tracer (cosim/trace.py), track "gdb"
        self.connections = 0
        self.stalled_drops = 0                # clients dropped for not reading their replies
        self.out = bytearray()                # replies the socket has not taken yet
        self.stalled_since: float | None = None   # replies waiting and none taken since (monotonic)
        self.closed = False

    # --- hooks of the userspace loop ------------------------------------------------------------------
    def fds(self) -> tuple[int, ...]:
        if self.closed:
            return ()
        if self.conn is None or len(self.out) > OUT_MAX:    # (a full buffer: read no more)
            return (self.listener.fileno(),)
        return (self.listener.fileno(), self.conn.fileno())

    def timeout(self) -> float:
        due = self.target.hold.due_in()
        wait = 0.2 if due is None else min(0.2, due)
        return min(wait, 0.01) if self.out else wait     # replies waiting: try again soon

    def take_control(self) -> None:
        """The world is stopped at start and stays stopped until gdb resumes it. Until a gdb connects
        the wall limit counts that time (QEMU's -S waits forever; a scenario with a wall limit ends)."""
        self.target.take_control(client=False)

    def on_halted(self, m) -> None:
        self.target.on_halted(m)
        self._drain()

    def poll(self, ready=None) -> None:
        """Non-blocking: accept, read and answer whatever gdb sent, write pending stop replies.
        `ready`: the fds (of `fds()`) a poll found readable, to try only those; None tries both."""
        if self.closed:
            return
        if self.out:
            self._flush()
        if self.conn is not None and (ready is None or self.conn.fileno() in ready):
            # an old session's EOF frees the slot before a new gdb is accepted; with `ready`, one
            # read (what is left makes the next poll return at once: no read that finds nothing)
            self._read(once=ready is not None)
        if ready is None or self.listener.fileno() in ready:
            before = self.conn
            self._accept()
            if self.conn is not None and self.conn is not before:
                self._read()
        self._drain()
        self.target.report_hold()      # after the replies: off the path of a stop or a resume

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
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conn = conn
            self.connections += 1
            self.target.take_control()
            self.target.client_connected()
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

    def _read(self, once: bool = False) -> None:
        while self.conn is not None and len(self.out) <= OUT_MAX:
            try:
                data = self.conn.recv(READ_CHUNK, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._lost()
                return
            tr = self.trace
            t0 = tr.now()
            out = self.session.receive(data)
            if self.session.internal_errors:
                self._report_internal_errors()
            if tr.enabled:
                tr.slice("packets", t0, args={"in": data[:40].decode("latin-1")}, track="gdb")
            if out:
                self._send(out)
            self.target.service()
            self._drain()
            self.target.after_reply()
            if self.session is not None and self.session.closed:
                self._hang_up()
            if once:
                return

    def _report_internal_errors(self) -> None:
        """A request the target failed in an undocumented way was answered E05: say so in the run's
        report (the session and the run go on)."""
        s = self.session
        if s is not None and s.internal_errors:
            for text in s.internal_errors:
                self.target.us.log("error", f"gdb request failed in the target: {text}")
            s.internal_errors.clear()

    def _send(self, data: bytes) -> None:
        """Queue `data` and write what the socket takes now (never blocks)."""
        if self.conn is None:
            return
        self.out += data
        self._flush()

    def _flush(self) -> None:
        while self.out and self.conn is not None:
            try:
                n = self.conn.send(self.out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._lost()
                return
            del self.out[:n]
            self.stalled_since = None
        if not self.out:
            self.stalled_since = None
            return
        now = time.monotonic()
        if self.stalled_since is None:
            self.stalled_since = now
        elif now - self.stalled_since > WRITE_TIMEOUT_S:
            self.stalled_drops += 1
            self.target.us.log("warn", f"gdb client took none of {len(self.out):,} bytes of replies for "
                                       f"{WRITE_TIMEOUT_S:g} s: disconnected (its breakpoints removed)")
            self.out.clear()
            self._lost()

    def _drain(self) -> None:
        """Write the stop reply gdb waits for, if the target has one."""
        s = self.session
        t = self.target
        while s is not None and self.conn is not None and s.running and t.outbox:
            ev = t.outbox.pop(0)
            if isinstance(ev, StopEvent):
                self.trace.instant("stop reply", {"thread": ev.tid}, track="gdb")
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
            if self.out:                  # (the answer to D or k, a farewell): a short last chance
                try:
                    self.conn.settimeout(0.5)
                    self.conn.sendall(self.out)
                except OSError:
                    pass
            self.out.clear()
            self.stalled_since = None
            try:
                self.conn.close()
            except OSError:
                pass
        self.conn = None
        self.session = None
        self.target.outbox.clear()

    def summary(self) -> dict:
        """For the report: how gdb used this scenario."""
        return {"address": self.address, "connections": self.connections,
                "detaches": self.target.detaches, "killed": self.target.killed,
                "dropped_not_reading": self.stalled_drops}

    def farewell(self, reason: str, exit_code: int | None = None) -> None:
        """The run ends while gdb waits for a stop: tell it why (`O` console text), then that the
        process is gone: exited with `exit_code` (`W`) when every vCPU halted (the supervisor may see
        the last halt before this process does), else killed (`X09`), as QEMU does before its
        gdbstub closes."""
        s = self.session
        if not reason or s is None or self.conn is None or not s.running:
            return
        s.running = False
        self._send(s.codec.send(b"O" + f"cosim: {reason}\n".encode().hex().encode()))
        if self.conn is not None:
            self._send(s.codec.send(b"X09" if exit_code is None else b"W%02x" % (exit_code & 0xFF)))

    def close(self, reason: str = "", exit_code: int | None = None) -> None:
        if self.closed:
            return
        self.farewell(reason, exit_code)
        self.us.gdb_summary = self.summary()
        self.closed = True
        self._hang_up()
        self.listener.close()
        self.target.close()
