"""ZeroMQ transport: the only module that imports zmq.

Each process owns one PULL inbox; vCPUs own a second PULL socket, the kick line, read by a thread of
their own that stops the running core (the model of an IPI). Senders keep one PUSH socket per peer.
Frames are [sender name, msgpack message]; a receiver that cannot decode a message knows whom to
answer. Endpoints are `ipc://` paths in a private (0700) directory made per run, or
`tcp://127.0.0.1:<ephemeral>`; nothing is fixed, so runs and tests go in parallel.

Who may connect (the threat model is in the README):
- tcp: ZeroMQ CURVE. The supervisor makes one key pair per process per run (`make_keyring`) and hands
  each child its own secret and every public key at start (through the forkserver pipe, never argv or
  the environment). Every bound socket is a CURVE server; the ZAP handler of its process (`_Guard`, a
  thread) admits only the run's public keys and names the peer after its key, so a message whose sender
  frame names another process than its key is dropped as spoofed. A plain connection, or one with
  another key, never completes its handshake: nothing it sends reaches the process; it is counted as
  refused and reported.
- ipc: the socket files live in a 0700 directory, so only the same user (or root) can connect. libzmq
  passes the peer's SO_PEERCRED (`uid:gid:pid`) to ZAP as the address of an ipc peer on Linux; the ZAP
  handler refuses a peer whose uid is not ours (root included). Where the platform gives no
  credentials, the directory's mode is the only check (`peer_credentials` says which). With
  credentials of mechanism "token" (what the supervisor hands out on ipc) each connection also
  presents its process's per-run token in a PLAIN handshake; ZAP admits it only if the token's hash is
  the one the run gave that name, and names the peer after it (User-Id), as CURVE does on tcp: a
  process of our uid without the run's token never completes a handshake. ("curve" works on ipc too;
  it costs more per message and buys nothing inside a 0700 directory: see the README.)

Nothing that arrives raises (`Endpoint.recv`): a sender name that is not a known peer, a sender frame
that disagrees with the peer's key, a frame count other than 2 and a message larger than
MAX_MESSAGE_BYTES are counted by kind and dropped; undecodable bytes and oversized messages from a
known peer are also handed up as `Received.error`, so the process answers `Error` to the sender's
inbox (PUSH/PULL cannot answer on the connection itself). The first occurrence of each kind is
reported through `on_notice` (once per kind, so a flood cannot flood the log); `counters()` gives the
totals for the run's report.
"""
from __future__ import annotations

import collections
import hashlib
import hmac
import os
import secrets
import signal
import shutil
import tempfile
import threading
from dataclasses import dataclass

import zmq
from zmq.utils import z85

from . import wire

MAX_MESSAGE_BYTES = 4 << 20
"""Larger messages are dropped (the largest legitimate one, a vCPU's Stats, is well under 1 MiB);
libzmq itself cuts a connection that sends more than 4x this in one message (ZMQ_MAXMSGSIZE)."""
ZAP_DOMAIN = b"cosim"
_SNDMORE = int(zmq.SNDMORE)

DROPPED = ("unknown-sender", "spoofed-sender", "bad-frame-count", "undecodable", "oversized", "wrong-sender")
"""Kinds of message the receiver did not act on (undecodable/oversized ones from a known peer, and
messages a known peer may not send, e.g. a Detach not from the supervisor, are answered with Error)."""
REFUSED = ("wrong-key", "no-curve", "foreign-uid", "bad-mechanism")
"""Kinds of connection refused at the handshake: a CURVE key that is not the run's, a peer that does
not speak CURVE (plain tcp), an ipc peer of another user, a mechanism we never use."""


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


# --- keys -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Credentials:
    """What one process needs to be authenticated: its name and secret, and every process's public
    half by name. `mechanism` "curve": a CURVE key pair (z85 text, as libzmq takes them); "token": a
    random token sent in a ZeroMQ PLAIN handshake (ipc only), whose public half is its hash."""
    name: str
    secret: bytes
    public: dict[str, bytes]
    mechanism: str = "curve"


def token_digest(token: bytes) -> bytes:
    return hashlib.blake2b(token, digest_size=32).hexdigest().encode()


class Keyring:
    """One run's secrets, one per process name (made by the supervisor, handed to each child through
    the forkserver pipe): CURVE key pairs, or tokens (`mechanism="token"`)."""

    def __init__(self, names, mechanism: str = "curve"):
        self.mechanism = mechanism
        self.public: dict[str, bytes] = {}
        self._secret: dict[str, bytes] = {}
        for n in names:
            if mechanism == "curve":
                self.public[n], self._secret[n] = zmq.curve_keypair()
            else:
                self._secret[n] = secrets.token_hex(32).encode()
                self.public[n] = token_digest(self._secret[n])

    def credentials(self, name: str) -> Credentials:
        return Credentials(name, self._secret[name], dict(self.public), self.mechanism)


def curve_available() -> bool:
    return bool(zmq.has("curve"))


class Received:
    """A message, or the bytes that failed to decode (`error` set), with its sender."""
    __slots__ = ("sender", "msg", "error", "raw")

    def __init__(self, sender: str, msg=None, error: str | None = None, raw: bytes = b""):
        self.sender, self.msg, self.error, self.raw = sender, msg, error, raw


# --- the ZAP handler --------------------------------------------------------------------------------
class _Guard(threading.Thread):
    """ZAP handler (RFC 27) of one process's context, plus the monitor of its bound sockets: admits
    the run's CURVE keys (tcp) or peers of our own uid (ipc), counts what it refuses. Its sockets are
    used by this thread only; it writes only `refused` and `notices` (read by the owner's thread)."""

    def __init__(self, ctx: zmq.Context, credentials: Credentials | None):
        super().__init__(name="cosim-zap", daemon=True)
        curve = credentials is not None and credentials.mechanism == "curve"
        self.by_key = {k: n for n, k in credentials.public.items()} if curve else {}
        self.tokens = dict(credentials.public) if credentials is not None and not curve else {}
        self.uid = os.getuid()
        self.refused: collections.Counter = collections.Counter()
        self.notices: collections.deque = collections.deque()
        self.peer_credentials: bool | None = None     # ipc: did libzmq give SO_PEERCRED?
        self.zap = ctx.socket(zmq.REP)
        self.zap.setsockopt(zmq.LINGER, 0)
        self.zap.bind("inproc://zeromq.zap.01")
        self.control = ctx.socket(zmq.PAIR)
        self.control.setsockopt(zmq.LINGER, 0)
        self._control_addr = f"inproc://cosim-guard-{id(self)}"
        self.control.bind(self._control_addr)
        self.stopper = ctx.socket(zmq.PAIR)
        self.stopper.setsockopt(zmq.LINGER, 0)
        self.stopper.connect(self._control_addr)
        self.monitors: list[zmq.Socket] = []

    def watch(self, sock: zmq.Socket) -> None:
        """Count handshakes that fail before ZAP is asked (a peer without CURVE); call before start."""
        self.monitors.append(sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL))

    def _refuse(self, kind: str, detail: str) -> None:
        if not self.refused[kind]:
            self.notices.append(("refused", kind, detail))
        self.refused[kind] += 1

    def run(self) -> None:
        # SIGINT/SIGTERM go to the owner's main thread, whose Python handler ends the run: a signal the
        # kernel gave this thread would only set a flag, and a main thread blocked in a system call
        # (a stuck teardown step) would not be woken to run the handler
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        poller = zmq.Poller()
        for s in (self.zap, self.control, *self.monitors):
            poller.register(s, zmq.POLLIN)
        try:
            while True:
                ready = dict(poller.poll())
                if self.control in ready:
                    return
                if self.zap in ready:
                    self._answer(self.zap.recv_multipart())
                for m in self.monitors:
                    if m in ready:
                        self._monitor_event(m.recv_multipart())
        except zmq.ContextTerminated:
            return
        finally:
            for s in (self.zap, self.control, *self.monitors):
                s.close(0)

    def _monitor_event(self, frames) -> None:
        from zmq.utils.monitor import parse_monitor_message
        try:
            ev = parse_monitor_message(frames)
        except Exception:
            return
        self._refuse("no-curve", f"handshake failed on {ev['endpoint'].decode(errors='replace')} "
                                 f"(protocol error {ev['value']:#x}: the peer does not authenticate "
                                 "with the run's keys or tokens)")

    def _answer(self, frames) -> None:
        if len(frames) < 6:
            return
        version, request_id, _domain, address, _identity, mechanism = frames[:6]
        status, user = b"400", b""
        if mechanism == b"CURVE" and len(frames) >= 7 and self.by_key:
            name = self.by_key.get(z85.encode(frames[6]))
            uid = _peer_uid(address)              # (ipc: SO_PEERCRED; tcp: None)
            if uid is not None:
                self.peer_credentials = True
            if name is not None and uid is not None and uid != self.uid:
                self._refuse("foreign-uid", f"an ipc peer of uid {uid} (we are {self.uid})")
            elif name is not None:
                status, user = b"200", name.encode()
            else:
                self._refuse("wrong-key", f"a CURVE key that is not this run's, from "
                                          f"{address.decode(errors='replace')}")
        elif mechanism == b"PLAIN" and len(frames) >= 8 and self.tokens:
            name, token = frames[6].decode(errors="replace"), frames[7]
            uid = _peer_uid(address)
            self.peer_credentials = uid is not None
            want = self.tokens.get(name)
            if uid is not None and uid != self.uid:
                self._refuse("foreign-uid", f"an ipc peer of uid {uid} (we are {self.uid})")
            elif want is not None and hmac.compare_digest(token_digest(token), want):
                status, user = b"200", name.encode()
            else:
                self._refuse("wrong-key", f"a token that is not this run's (as {name[:40]!r}), from "
                                          f"{address.decode(errors='replace')}")
        elif mechanism == b"NULL" and not self.by_key and not self.tokens:
            uid = _peer_uid(address)
            self.peer_credentials = uid is not None
            if uid is None or uid == self.uid:
                status = b"200"
            else:
                self._refuse("foreign-uid", f"an ipc peer of uid {uid} (we are {self.uid})")
        else:
            self._refuse("bad-mechanism", f"{mechanism.decode(errors='replace')} from "
                                          f"{address.decode(errors='replace')}")
        self.zap.send_multipart([version, request_id, status, b"OK" if status == b"200" else b"refused",
                                 user, b""])

    def stop(self) -> None:
        try:
            self.stopper.send(b"")
        except zmq.ZMQError:
            pass
        self.join(2)
        self.stopper.close(0)


def _peer_uid(address: bytes) -> int | None:
    """libzmq's ZAP address of an ipc peer on Linux: `<host>:<uid>:<gid>:<pid>` (SO_PEERCRED)."""
    parts = address.split(b":")
    if len(parts) >= 4 and parts[-3].isdigit():
        return int(parts[-3])
    return None


# --- endpoints --------------------------------------------------------------------------------------
class Endpoint:
    """One process's sockets. `credentials` turns CURVE on for tcp (required to be authenticated:
    without them a tcp endpoint is open to every local process, see the module docstring)."""

    def __init__(self, name: str, kind: str = "ipc", run_dir: str | None = None, kick: bool = False,
                 credentials: Credentials | None = None, on_notice=None):
        if kind not in ("ipc", "tcp"):
            raise ValueError(f"unknown transport {kind!r} (expected ipc or tcp)")
        if kind == "ipc" and run_dir is None:
            raise ValueError("ipc transport needs a run directory")
        self.name = name
        self.kind = kind
        self.on_notice = on_notice          # callable(text): the first drop/refusal of each kind
        self.curve = credentials            # CURVE (tcp, or ipc if asked) or a token (ipc)
        self.ctx = zmq.Context()
        self.guard = _Guard(self.ctx, self.curve) if kind == "ipc" or self.curve else None
        self.inbox = self._server_socket()
        self._inbox_poller = zmq.Poller()     # made once (Socket.poll makes one per call: 5 -> 3 us)
        self._inbox_poller.register(self.inbox, zmq.POLLIN)
        self.inbox_addr = self._bind(self.inbox, run_dir, "in")
        self.kick_sock = None
        self.kick_addr = ""
        if kick:
            self.kick_sock = self._server_socket()
            self.kick_addr = self._bind(self.kick_sock, run_dir, "kick")
        if self.guard is not None:
            if self.curve is not None:
                for s in (self.inbox, self.kick_sock):
                    if s is not None:
                        self.guard.watch(s)
            self.guard.start()
        self._out: dict[str, zmq.Socket] = {}
        self._kick_out: dict[str, zmq.Socket] = {}
        self.inboxes: dict[str, str] = {}
        self.kicks: dict[str, str] = {}
        self.known: set[str] = set()        # names whose messages are accepted
        self.dropped: collections.Counter = collections.Counter()
        self._noticed: set[str] = set()
        self._name_frame = name.encode()
        self.sent: dict[str, int] = {}        # messages sent, by tag (machine-independent costs)
        self.to: dict[str, int] = {}          # messages sent, by destination  } what a deterministic
        self.got: dict[str, int] = {}         # messages taken, by sender     } barrier waits for
        self._fd_poller: tuple[tuple[int, ...], zmq.Poller] | None = None
        self.ready_fds: list[int] = []        # of the last recv(fds=...): which fds were readable

    def _server_socket(self) -> zmq.Socket:
        sock = self.ctx.socket(zmq.PULL)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, 4 * MAX_MESSAGE_BYTES)
        if self.guard is not None:
            sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
        if self.curve is not None and self.curve.mechanism == "curve":
            sock.setsockopt(zmq.CURVE_SERVER, 1)
            sock.setsockopt(zmq.CURVE_SECRETKEY, self.curve.secret)
            sock.setsockopt(zmq.CURVE_PUBLICKEY, self.curve.public[self.name])
        elif self.curve is not None:
            sock.setsockopt(zmq.PLAIN_SERVER, 1)
        return sock

    def _bind(self, sock, run_dir: str | None, suffix: str) -> str:
        if self.kind == "tcp":
            sock.bind("tcp://127.0.0.1:0")
        else:
            sock.bind(f"ipc://{os.path.join(run_dir, f'{self.name}.{suffix}')}")
        return sock.getsockopt(zmq.LAST_ENDPOINT).decode()

    def set_peers(self, inboxes: dict[str, str], kicks: dict[str, str] | None = None) -> None:
        self.inboxes.update(inboxes)
        self.kicks.update(kicks or {})
        self.known.update(inboxes)

    def admit(self, names) -> None:
        """Accept messages from `names` before their inboxes are known (the supervisor's Hellos)."""
        self.known.update(names)

    def _push(self, table: dict, addrs: dict, dest: str) -> zmq.Socket:
        sock = table.get(dest)
        if sock is None:
            addr = addrs.get(dest)
            if addr is None:
                raise KeyError(f"{self.name}: no endpoint known for {dest!r}")
            sock = self.ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 1000)
            sock.setsockopt(zmq.IMMEDIATE, 0)
            if self.curve is not None and self.curve.mechanism != "curve":
                sock.setsockopt(zmq.PLAIN_USERNAME, self.name.encode())
                sock.setsockopt(zmq.PLAIN_PASSWORD, self.curve.secret)
            elif self.curve is not None:
                server_key = self.curve.public.get(dest)
                if server_key is None:
                    sock.close(0)
                    raise KeyError(f"{self.name}: no CURVE key for {dest!r}")
                sock.setsockopt(zmq.CURVE_SERVERKEY, server_key)
                sock.setsockopt(zmq.CURVE_PUBLICKEY, self.curve.public[self.name])
                sock.setsockopt(zmq.CURVE_SECRETKEY, self.curve.secret)
            sock.connect(addr)
            table[dest] = sock
        return sock

    def send(self, dest: str, msg) -> None:
        sock = self._push(self._out, self.inboxes, dest)
        payload = wire.encode(msg)
        sock.send(self._name_frame, _SNDMORE)   # (pyzmq's send_multipart: ~2.5 us more, enum flags)
        sock.send(payload)
        self.to[dest] = self.to.get(dest, 0) + 1
        if dest != "supervisor":
            self.sent[msg.TAG] = self.sent.get(msg.TAG, 0) + 1

    def send_raw(self, dest: str, payload: bytes) -> None:
        """Send bytes that may not be a valid message (tests of the receivers' validation)."""
        self._push(self._out, self.inboxes, dest).send_multipart([self._name_frame, payload])

    def send_frames(self, dest: str, frames: list[bytes]) -> None:
        """Send arbitrary frames, sender frame included (tests of the receivers' validation)."""
        self._push(self._out, self.inboxes, dest).send_multipart(frames)

    def answer_malformed(self, r: "Received") -> str:
        """Answer an undecodable message with Error (its sender is a known peer); returns a log line."""
        if r.sender in self.inboxes:
            self.send(r.sender, wire.error_for(r.raw, r.error))
        return f"malformed message from {r.sender}: {r.error}"

    def kick(self, dest: str) -> None:
        self._push(self._kick_out, self.kicks, dest).send(b"k")
        self.sent["kick"] = self.sent.get("kick", 0) + 1

    # --- receiving ----------------------------------------------------------------------------------
    def recv(self, timeout_ms: int | None = None, fds: tuple[int, ...] = ()) -> Received | None:
        """The next message (None on timeout; timeout_ms=0 polls). With `fds` (plain file descriptors,
        e.g. a TCP socket), also wake when one of them is readable: None is then returned at once so
        the caller can serve it (the caller must drain it, or the next call returns at once again);
        `ready_fds` then names the ones that were readable (a level-triggered poll: one left unread
        wakes the next call at once). Never raises on what arrives: what cannot be accepted is counted
        and dropped (None when nothing acceptable is queued behind it)."""
        if self.guard is not None and self.guard.notices:
            self._relay_guard_notices()
        if fds:
            ready = self._poller(fds).poll(timeout_ms)
            self.ready_fds = [s for s, _ in ready if s is not self.inbox]
            if len(self.ready_fds) == len(ready):
                return None
        elif timeout_ms is not None and not self._inbox_poller.poll(timeout_ms):
            return None
        while True:
            r = self._take()
            if r is not None or not self.pending():
                return r

    def pending(self) -> bool:
        """Is a message waiting in the inbox?"""
        return bool(self._inbox_poller.poll(0))

    def _take(self) -> Received | None:
        if self.curve is None:
            inbox = self.inbox                       # (frames: `more` costs no getsockopt call)
            frame = inbox.recv(copy=False)
            frames = [frame]
            while frame.more:
                frame = inbox.recv(copy=False)
                frames.append(frame)
            if len(frames) != 2:
                return self._drop("bad-frame-count", f"{len(frames)} frame(s)")
            sender_b, raw = frames[0].bytes, frames[1].bytes
        else:
            frames = self.inbox.recv_multipart(copy=False)
            if len(frames) != 2:
                return self._drop("bad-frame-count", f"{len(frames)} frame(s)")
            sender_b, raw = frames[0].bytes, frames[1].bytes
            if frames[0].get("User-Id") != sender_b.decode(errors="replace"):
                return self._drop("spoofed-sender", f"key of {frames[0].get('User-Id')!r} sent as "
                                                    f"{sender_b[:40]!r}")
        sender = sender_b.decode(errors="replace")
        if sender not in self.known:
            return self._drop("unknown-sender", f"sender {sender_b[:40]!r}")
        self.got[sender] = self.got.get(sender, 0) + 1
        if len(raw) > MAX_MESSAGE_BYTES:
            self._drop("oversized", f"{len(raw)} bytes from {sender}")
            return Received(sender, error=f"message of {len(raw)} bytes exceeds {MAX_MESSAGE_BYTES}",
                            raw=raw[:64])
        try:
            msg = wire.decode(raw)
        except wire.WireError as e:
            self._drop("undecodable", f"from {sender}: {e}")
            return Received(sender, error=str(e), raw=raw)
        if msg.SENDERS is not None and not wire.sender_ok(msg, sender):
            self._drop("wrong-sender", f"{msg.TAG} from {sender}")
            return Received(sender, error=f"{msg.TAG} is not accepted from {sender}", raw=raw)
        return Received(sender, msg)

    def _drop(self, kind: str, detail: str) -> None:
        self.dropped[kind] += 1
        if kind not in self._noticed:
            self._noticed.add(kind)
            self._notice(f"dropped a message ({kind}: {detail}); further ones are only counted")
        return None

    def _relay_guard_notices(self) -> None:
        while self.guard.notices:
            _, kind, detail = self.guard.notices.popleft()
            self._notice(f"refused a connection ({kind}: {detail}); further ones are only counted")

    def _notice(self, text: str) -> None:
        if self.on_notice is not None:
            try:
                self.on_notice(text)
            except Exception:
                pass

    def counters(self) -> dict:
        """Totals for the report: messages dropped and connections refused, by kind."""
        if self.guard is not None and self.guard.notices:
            self._relay_guard_notices()
        return {"dropped": dict(self.dropped),
                "refused": dict(self.guard.refused) if self.guard is not None else {},
                "auth": self.auth()}

    def auth(self) -> str:
        if self.curve is not None:
            kind = "curve" if self.curve.mechanism == "curve" else "token"
            uid = "+uid" if self.guard is not None and self.guard.peer_credentials else ""
            return kind if self.kind == "tcp" else f"ipc-0700{uid}+{kind}"
        if self.kind == "ipc":
            return "ipc-0700+uid" if self.guard and self.guard.peer_credentials else "ipc-0700"
        return "none"

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
        if self.guard is not None:
            self.guard.stop()
        self.ctx.term()
