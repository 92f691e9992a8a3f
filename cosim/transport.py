"""ZeroMQ transport: the only module that imports zmq.

Each process owns one PULL inbox; vCPUs own a second PULL socket, the kick line, read by a thread of
their own that stops the running core (the model of an IPI). Senders keep one PUSH socket per peer.
Frames are [sender name, msgpack message]; a receiver that cannot decode a message knows whom to
answer. Endpoints are `ipc://` paths in a private (0700) directory made per run, or
`tcp://127.0.0.1:<ephemeral>`; nothing is fixed, so runs and tests go in parallel.
"""
from __future__ import annotations

import os
import shutil
import tempfile

import zmq

from . import wire


def process_alive(pid: int | None) -> bool:
    """Is `pid` still running? (A child whose supervisor died must not linger: it checks this when
    idle and exits.)"""
    if not pid:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def make_run_dir() -> str:
    """A private directory for one run's ipc sockets (mkdtemp makes it 0700)."""
    return tempfile.mkdtemp(prefix=f"cosim-{os.getpid()}-")   # owner pid: see cosim/cleanup.py


def remove_run_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


class Received:
    """A message, or the bytes that failed to decode (`error` set), with its sender."""
    __slots__ = ("sender", "msg", "error", "raw")

    def __init__(self, sender: str, msg=None, error: str | None = None, raw: bytes = b""):
        self.sender, self.msg, self.error, self.raw = sender, msg, error, raw


class Endpoint:
    def __init__(self, name: str, kind: str = "ipc", run_dir: str | None = None, kick: bool = False):
        self.name = name
        self.ctx = zmq.Context()
        self.inbox = self.ctx.socket(zmq.PULL)
        self.inbox.setsockopt(zmq.LINGER, 0)
        self.inbox_addr = self._bind(self.inbox, kind, run_dir, "in")
        self.kick_sock = None
        self.kick_addr = ""
        if kick:
            self.kick_sock = self.ctx.socket(zmq.PULL)
            self.kick_sock.setsockopt(zmq.LINGER, 0)
            self.kick_addr = self._bind(self.kick_sock, kind, run_dir, "kick")
        self._out: dict[str, zmq.Socket] = {}
        self._kick_out: dict[str, zmq.Socket] = {}
        self.inboxes: dict[str, str] = {}
        self.kicks: dict[str, str] = {}
        self._name_frame = name.encode()
        self.sent: dict[str, int] = {}        # messages sent, by tag (machine-independent costs)
        self._fd_poller: tuple[tuple[int, ...], zmq.Poller] | None = None

    def _bind(self, sock, kind: str, run_dir: str | None, suffix: str) -> str:
        if kind == "tcp":
            sock.bind("tcp://127.0.0.1:0")
        elif kind == "ipc":
            if run_dir is None:
                raise ValueError("ipc transport needs a run directory")
            sock.bind(f"ipc://{os.path.join(run_dir, f'{self.name}.{suffix}')}")
        else:
            raise ValueError(f"unknown transport {kind!r} (expected ipc or tcp)")
        return sock.getsockopt(zmq.LAST_ENDPOINT).decode()

    def set_peers(self, inboxes: dict[str, str], kicks: dict[str, str] | None = None) -> None:
        self.inboxes.update(inboxes)
        self.kicks.update(kicks or {})

    def _push(self, table: dict, addrs: dict, dest: str) -> zmq.Socket:
        sock = table.get(dest)
        if sock is None:
            sock = self.ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 1000)
            sock.setsockopt(zmq.IMMEDIATE, 0)
            try:
                sock.connect(addrs[dest])
            except KeyError:
                sock.close(0)
                raise KeyError(f"{self.name}: no endpoint known for {dest!r}") from None
            table[dest] = sock
        return sock

    def send(self, dest: str, msg) -> None:
        self._push(self._out, self.inboxes, dest).send_multipart([self._name_frame, wire.encode(msg)])
        if dest != "supervisor":
            self.sent[msg.TAG] = self.sent.get(msg.TAG, 0) + 1

    def send_raw(self, dest: str, payload: bytes) -> None:
        """Send bytes that may not be a valid message (tests of the receivers' validation)."""
        self._push(self._out, self.inboxes, dest).send_multipart([self._name_frame, payload])

    def answer_malformed(self, r: "Received") -> str:
        """Answer an undecodable message with Error (when its sender is known); returns a log line."""
        if r.sender in self.inboxes:
            self.send(r.sender, wire.error_for(r.raw, r.error))
        return f"malformed message from {r.sender}: {r.error}"

    def kick(self, dest: str) -> None:
        self._push(self._kick_out, self.kicks, dest).send(b"k")
        self.sent["kick"] = self.sent.get("kick", 0) + 1

    def recv(self, timeout_ms: int | None = None, fds: tuple[int, ...] = ()) -> Received | None:
        """The next message (None on timeout; timeout_ms=0 polls). With `fds` (plain file descriptors,
        e.g. a TCP socket), also wake when one of them is readable: None is then returned at once so
        the caller can serve it (the caller must drain it, or the next call returns at once again)."""
        if fds:
            ready = self._poller(fds).poll(timeout_ms)
            if not any(s is self.inbox for s, _ in ready):
                return None
        elif timeout_ms is not None and not self.inbox.poll(timeout_ms):
            return None
        frames = self.inbox.recv_multipart()
        sender = frames[0].decode(errors="replace") if len(frames) == 2 else "?"
        raw = frames[-1]
        try:
            return Received(sender, wire.decode(raw))
        except wire.WireError as e:
            return Received(sender, error=str(e), raw=raw)

    def _poller(self, fds: tuple[int, ...]) -> zmq.Poller:
        """One cached zmq.Poller over the inbox and `fds` (rebuilt when the set of fds changes)."""
        key = tuple(fds)
        if self._fd_poller is None or self._fd_poller[0] != key:
            poller = zmq.Poller()
            poller.register(self.inbox, zmq.POLLIN)
            for fd in key:
                poller.register(fd, zmq.POLLIN)
            self._fd_poller = (key, poller)
        return self._fd_poller[1]

    def wait_kick(self, timeout_ms: int) -> bool:
        """For the kick thread only: True when a kick arrived (drains queued kicks)."""
        if not self.kick_sock.poll(timeout_ms):
            return False
        while True:
            try:
                self.kick_sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return True

    def close(self) -> None:
        # outgoing messages (a last Stats, say) still get up to a second to leave
        for s in self._out.values():
            s.close(linger=1000)
        for s in self._kick_out.values():
            s.close(0)
        self.inbox.close(0)
        if self.kick_sock is not None:
            self.kick_sock.close(0)
        self.ctx.term()
