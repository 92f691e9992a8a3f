"""The supervisor: builds one VM from a Config, starts and watches its processes, collects what they
report, and always tears everything down.

Invariants: guest RAM, the run pages and the breakpoint ledger are created (and unlinked) here; the
ipc sockets live in a private 0700 directory removed at teardown; every child is reaped (killed after a
grace period) whatever happened; a child that dies ends the run at once (its death is seen through the
forkserver's sentinel pipe, not through the dead process) with a report naming it and what it was doing;
once no child runs guest code any more, whatever the ledger still holds is restored, so guest code is
put back after any death. SIGTERM and SIGINT end the run the same way, with a report; children ignore
both (the supervisor shuts them down).
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from . import holdtime, mutation, record, resources, trace, wire
from .cleanup import reclaim
from .config import Config
from .baton import SPIN_NS, Baton
from .lockstep import Driver, Stuck
from .cpu_models import cpu_model
from .machine.guest_ram import GuestRAM
from .machine.guest_tlb import GuestTlb, TlbGeometry
from .machine.image import GuestImage, guest_path
from .machine.ledger import Ledger
from .schedule import Schedule
from .transport import Endpoint, Keyring, curve_available, make_run_dir, remove_run_dir
from .vcpu.runpage import EVENTS, LEVELS, RunPages, State

HELLO_TIMEOUT_S = 60.0
STATS_TIMEOUT_S = 10.0
ENDING_TIMEOUT_S = 1.0      # Stats wait once a child died or the run was interrupted
DATA_SEGMENT_MAX = 4 << 20  # writable segments kept for comparisons (tools/crosscheck_qemu.py) up to this
BATON = os.environ.get("COSIM_BATON", "1") != "0"   # deterministic: quanta handed on by the vCPUs
                                                   # (cosim/baton.py); 0: a supervisor round trip each
BATON_SPIN_NS = int(os.environ.get("COSIM_BATON_SPIN_NS", SPIN_NS))   # how long a vCPU spins for the baton
BATON_HOOK = os.environ.get("COSIM_BATON_HOOK", "1") != "0"   # the block hook runs the plan's quanta (baton.h);
                                                             # 0: each quantum's end goes back to Python
SPIN_YIELD = os.environ.get("COSIM_SPIN_YIELD", "1") != "0"   # free SMP: a vCPU spinning alone yields (_icount.c)
KILL_GRACE_S = 1.0          # children still there this long after the end are killed
CHILD_CHECK_S = 0.2         # while watching: every child's exit code asked at least this often

_ctx = None


def mp_context():
    """forkserver with the process modules preloaded: children start in ~50 ms, with no inherited
    zmq or unicorn state."""
    global _ctx
    if _ctx is None:
        _ctx = mp.get_context("forkserver")
        _ctx.set_forkserver_preload(["cosim.vcpu.process", "cosim.kernel.process",
                                     "cosim.userspace.process"])
    return _ctx


@contextlib.contextmanager
def _signals_blocked():
    """SIGINT and SIGTERM blocked in this thread: what it spawns meanwhile inherits the mask."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def start_helpers() -> None:
    """Start multiprocessing's resource tracker and forkserver with SIGINT and SIGTERM blocked. They
    inherit the mask, so a Ctrl-C to the process group while they start (the forkserver preloads numpy
    and unicorn: about a second on a loaded machine) cannot interrupt their imports and print a
    traceback; once running, both ignore these signals anyway and end when this process closes their
    pipes, and the forkserver's children (our processes) ignore them too. A signal meanwhile waits
    until the mask is restored, then reaches this process's handler."""
    from multiprocessing import forkserver, resource_tracker
    mp_context()
    resource_tracker.ensure_running()   # (first, outside: it unblocks both signals after its own spawn)
    with _signals_blocked():
        forkserver.ensure_running()


class _RunOver(Exception):
    """The run must end now (a death, gdb's kill, the wall limit): RunData already says why."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT reached the supervisor."""


def _name_thread(name: str) -> None:
    """Name the calling thread as ps, top and perf show it (Linux; 15 characters), so each process
    of a run can be told apart from outside (tools/bench_gdb.py finds them so)."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as f:
            f.write(name[:15])
    except OSError:
        pass


def _child(role: str, spec: dict) -> None:
    """Entry point of every child: a crash leaves its traceback in the run directory for the report.
    Children ignore SIGINT and SIGTERM (a Ctrl-C or a `timeout` reaches the whole process group): the
    supervisor shuts them down and reports."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _name_thread(f"cosim-vcpu{spec['index']}" if role == "vcpu" else f"cosim-{role}")
    wire.set_vcpus(spec["vcpus"])     # a message naming a vCPU this run does not have is refused at decode
    try:
        if role == "vcpu":
            from .vcpu.process import main
        elif role == "kernel":
            from .kernel.process import main
        else:
            from .userspace.process import main
        main(spec)
    except BaseException:
        if not os.path.isdir(spec["run_dir"]):
            raise SystemExit(1) from None   # the run ended while this process started: nothing to say
        import traceback
        name = f"vcpu{spec['index']}" if role == "vcpu" else role
        text = traceback.format_exc()
        try:
            with open(os.path.join(spec["run_dir"], f"{name}.crash"), "w") as f:
                f.write(text)
        except OSError:
            pass
        sys.stderr.write(f"cosim {name} crashed:\n{text}")
        raise SystemExit(1)


@dataclass
class RunData:
    """Everything a run produced, for cosim/report.py."""
    config: Config
    image: GuestImage
    outcome: str = "completed"  # completed | killed-by-debugger | wall-limit | child-died | interrupted | error
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    started_seconds: float | None = None   # when the vCPUs were told to start, from the run's start
    stats: dict[str, dict] = field(default_factory=dict)
    halts: dict[int, tuple[int, str]] = field(default_factory=dict)   # vCPU -> (exit code, why)
    guest: dict[str, list[int]] = field(default_factory=dict)
    vcpu_state: list[dict] = field(default_factory=list)
    code_diff: list[tuple[int, int, int]] = field(default_factory=list)
    detached: int | None = None
    logs: list[tuple[str, str, str]] = field(default_factory=list)
    leftovers: dict[str, list] = field(default_factory=dict)
    gdb_address: str | None = None
    gdb_stopped_seconds: float = 0.0            # time gdb held the world stopped (not run time)
    pids: dict[str, int] = field(default_factory=dict)
    died: dict | None = None            # the first child seen dead: name, pid, how, doing, at (monotonic)
    restored_by_supervisor: list[dict] = field(default_factory=list)   # ledger entries put back
    stopped: list[str] = field(default_factory=list)   # children seen stopped (SIGSTOP)
    transport: dict[str, dict] = field(default_factory=dict)   # process -> dropped/refused counters
    memory: list[list[list[int]]] = field(default_factory=list)   # [[expect.memory]] k -> vCPU -> words
    data_segments: list[tuple[int, bytes]] = field(default_factory=list)  # writable segments at the end
    trace: dict | None = None           # --trace: where the timeline went (cosim/trace.py merge)
    record: dict | None = None          # schedule and digest (cosim/record.py)
    unwritten: list[str] = field(default_factory=list)   # outputs that could not be written (not the run's fault)


def _initrd_bytes(initrd: str | None) -> bytes | None:
    """A board's -initrd: a file, or "linux"/"linux-e500mc" (a Linux guest's initramfs, found as its kernel is)."""
    if initrd is None:
        return None
    from .guest_linux import FLAVOURS, locate
    if initrd in FLAVOURS:
        return locate(initrd).initrd.read_bytes()
    return Path(initrd).read_bytes()


class Supervisor:
    EXTRA_IDENTITIES: tuple[str, ...] = ()   # more names the run's keyring holds (tests: a peer they add)

    def __init__(self, config: Config, progress=None, gdb: str | None = None, on_gdb_ready=None,
                 curve: bool = True, gdb_running: bool = False, trace: str | None = None,
                 record_dir: str | None = None, serial: str | None = None, ipc_auth: str = "token"):
        """`curve=False` runs without per-run secrets (tcp: no CURVE; ipc: the uid check only), and
        `ipc_auth` chooses ipc's ("token" or "curve"): only to measure what they cost."""
        self.cfg = config
        self.curve = curve
        self.ipc_auth = ipc_auth
        self.keyring: Keyring | None = None
        self.data: RunData | None = None
        self.trace_path = trace           # --trace: merge the processes' timelines there
        self.record_dir = record_dir      # --record: keep the run's record there
        self.serial = serial              # --serial: "stdio" (this terminal types into the UART) or
                                          # "tcp:HOST:PORT" (userspace serves the UART there), or None
        self._stdin: int | None = None
        self.progress = progress          # callable(dict) for a progress display, or None
        self.gdb = gdb
        self.gdb_running = gdb_running    # --running: start running, stop the world when gdb attaches
        self.held_since: float | None = None   # gdb holds the world stopped since (monotonic)
        self.held_total = 0.0
        self.start_ns = 0                 # CLOCK_MONOTONIC when run() began (the vCPUs' exit-rate origin)
        self.on_gdb_ready = on_gdb_ready
        self.procs: dict[str, mp.Process] = {}
        self.ep: Endpoint | None = None
        self.ram: GuestRAM | None = None
        self.pages: RunPages | None = None
        self.run_dir: str | None = None
        self.ledger: Ledger | None = None
        self.baton: Baton | None = None     # the deterministic schedule's runs of quanta (cosim/baton.py)
        self.guest_tlb: GuestTlb | None = None
        self.killed = False               # gdb's k / vKill ends the run
        self.shut_down = False            # Shutdown sent to every child
        self._ending = False              # past the point where a signal may interrupt
        self._hurry = False               # a second signal: every child killed, teardown waits no more
        self._closed = False              # teardown done
        self._defer = False               # signals noted, not raised (while children start)
        self._pending_signal: str | None = None
        self._last_status = 0.0
        self._last_child_check = 0.0
        self._last_progress = 0.0
        self._sentinels: tuple = ()
        self.driver: Driver | None = None  # the deterministic schedule's (cosim/lockstep.py)

    # --- whole run ---------------------------------------------------------------------------------
    def run(self) -> RunData:
        cfg = self.cfg
        image = GuestImage.load(cfg.guest.elf_path or guest_path(cfg.guest.program))
        data = self.data = RunData(cfg, image)
        self.start_ns = time.monotonic_ns()
        t0 = self.start_ns / 1e9
        saved = self._catch_signals()
        vcpus_before = wire.LIMITS["vcpus"]    # (set for this run in _build; this process may run others)
        try:
            try:
                reclaim()              # what a run killed with its whole process group left behind
                if mutation.ACTIVE:
                    data.logs.append(("supervisor", "warn", "test-only mutation(s) active (COSIM_MUTATION): "
                                                            + ", ".join(sorted(mutation.ACTIVE))))
                resources.check(cfg.machine.vcpus, cfg.machine.ram)
                self._build(image)
                self._start(data)
                self._watch(data)
                self._finish(data)
            except KeyboardInterrupt as e:
                data.outcome = "interrupted"
                data.problems.append(f"interrupted by {e.args[0] if e.args else 'SIGINT'}")
            except Exception as e:  # the run reports it; teardown below still runs
                data.outcome = "error"
                data.problems.append(f"{type(e).__name__}: {e}")
            finally:
                self._ending = True
                self._end(data, image, t0)
        finally:
            self._closed = True
            self._kill_children()      # whatever happened above, nothing of the run outlives it
            self._restore_signals(saved)
            wire.set_vcpus(vcpus_before)
        return data

    def _end(self, data: RunData, image: GuestImage, t0: float) -> None:
        """Teardown, step by step: each step is tried whatever the previous one did, and a failure is
        a problem in the report, never an exception out of the run. A signal during teardown (the
        second of the run) kills what is left at once and abandons the step it interrupted."""
        def shutdown(data: RunData) -> None:
            if not self.shut_down and not self._hurry:
                self._shutdown(data, ENDING_TIMEOUT_S)

        def timing(data: RunData) -> None:
            data.seconds = time.monotonic() - t0
            data.gdb_stopped_seconds = self.held(time.monotonic())

        steps = [("shutdown", shutdown), ("timing", timing), ("stopping the processes", self._stop_children),
                 ("restoring guest code", self._restore_code),
                 ("reading guest state", lambda d: self._collect_guest(d, image)),
                 ("writing the trace", self._write_trace), ("writing the record", self._write_record),
                 ("closing the transport", self._close_transport),
                 ("removing shared memory", self._remove_shm), ("removing the run directory", self._remove_run_dir)]
        i = 0
        while i < len(steps):
            name = steps[i][0]
            try:
                while i < len(steps):
                    name, step = steps[i]
                    i += 1
                    try:
                        step(data)
                    except Interrupted as e:
                        data.problems.append(f"teardown: {name} abandoned: {e.args[0] if e.args else 'signal'} "
                                             "again; every process was killed")
                    except Exception as e:
                        data.problems.append(f"teardown: {name}: {type(e).__name__}: {e}")
            except Interrupted as e:      # (between two steps)
                data.problems.append(f"teardown: {e.args[0] if e.args else 'signal'} again during {name}; "
                                     "every process was killed")

    def _catch_signals(self):
        """SIGTERM and SIGINT raise Interrupted in the main thread. The first ends the run (with a
        report); one during the run's end (a second) kills every child at once and abandons the
        teardown step it interrupts; after that the default action is back, so one more ends this
        process whatever it is doing."""
        if threading.current_thread() is not threading.main_thread():
            return None

        def on_signal(signum, _frame):
            name = signal.Signals(signum).name
            if self._closed:              # the run is over: nothing left to abandon
                self._kill_children()
                return
            if self._defer and not self._ending:
                self._pending_signal = name
                return
            if not self._ending:
                self._ending = True
                raise Interrupted(name)
            if not self._hurry:
                self._hurry = True
                self._kill_children()
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)
                raise Interrupted(name)

        return {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    @contextlib.contextmanager
    def _signals_deferred(self):
        """A SIGINT/SIGTERM meanwhile is noted by the handler (whichever thread the kernel gave it to)
        and ends the run when the block is over, not inside it."""
        self._defer = True
        try:
            yield
        finally:
            self._defer = False
        if self._pending_signal is not None and not self._ending:
            self._ending = True
            raise Interrupted(self._pending_signal)

    def _kill_children(self) -> None:
        """SIGKILL every child still there (by pid: needs no file descriptor, works on stopped ones)."""
        for p in list(self.procs.values()):
            pid = p.pid
            if pid is None:
                continue
            try:
                if p.exitcode is not None:
                    continue
            except Exception:
                pass
            try:
                os.kill(pid, signal.SIGKILL)   # (p.kill() does nothing once the forkserver is gone)
            except OSError:
                pass

    @staticmethod
    def _restore_signals(saved) -> None:
        for sig, handler in (saved or {}).items():
            signal.signal(sig, handler)

    def _board(self, image: GuestImage) -> dict:
        """A board with devices (QEMU's role at start-up, as `-bios ELF` does it): the device tree in
        guest RAM, the shared guest TLB with the boot entries, and each vCPU's boot registers."""
        cfg = self.cfg
        if cfg.machine.board == "bare":
            return {}
        from .board.ppce500 import Ppce500
        model = cpu_model(cfg.machine.cpu)
        board = Ppce500(cfg.machine.ram, cfg.machine.vcpus, cfg.machine.cpu)
        initrd = _initrd_bytes(cfg.guest.initrd)
        fb = board.firmware_boot(image.segments, image.entry, kernel=cfg.guest.kernel, bootargs=cfg.guest.bootargs,
                                 initrd_size=None if initrd is None else len(initrd))
        self.ram.write(fb.dt_address, fb.dt_blob)
        if initrd is not None:
            self.ram.write(fb.initrd_address, initrd)
        geometry = TlbGeometry(model.tlb1_entries)
        self.guest_tlb = GuestTlb.create(geometry, cfg.machine.vcpus)
        boot = []
        for st in fb.states:
            tlb = self.guest_tlb.tlb(st.cpu)
            for e in st.tlb1:
                i = (e.mas0 >> 16) & 0xFFF
                tlb[i]["mas1"], tlb[i]["mas2"], tlb[i]["mas3"], tlb[i]["mas7"] = e.mas1, e.mas2, e.mas3, e.mas7
            boot.append({"pc": st.pc, "msr": st.msr, "gprs": [st.gpr(n) for n in range(32)], "halted": st.halted})
        # KVM_REGISTER_COALESCED_MMIO for the UART (stores only): measured by tools/bench_uboot.py
        coalesced = [[b.base, b.base + b.device.size] for b in board.bus.mappings
                      if b.device.name.startswith("serial")] if cfg.machine.coalesced_mmio else []
        return {"board": cfg.machine.board, "tlb_name": self.guest_tlb.name, "coalesced_mmio": coalesced, "tlb1_entries": geometry.tlb1_entries,
                "boot": boot, "dt_address": fb.dt_address,
                "serial": {"echo": cfg.serial.echo or self.serial == "stdio",
                           "sends": [(x.after, x.text) for x in cfg.serial.send],
                           "end_on": cfg.serial.end_on, "fail_on": list(cfg.serial.fail_on),
                           "tcp": self.serial[4:] if self.serial and self.serial.startswith("tcp:") else None}}

    def _build(self, image: GuestImage) -> None:
        cfg = self.cfg
        wire.set_vcpus(cfg.machine.vcpus)
        with self._signals_deferred():
            start_helpers()
        self.ram = GuestRAM.create(cfg.machine.ram)
        image.load_into(self.ram)
        board = self._board(image)
        if cfg.guest.iterations is not None:
            self.ram.write_word(image.symbol("cfg_iterations"), cfg.guest.iterations)
        self.pages = RunPages.create(cfg.machine.vcpus)
        self.ledger = Ledger.create()
        self.run_dir = make_run_dir()
        names = ["kernel"] + [f"vcpu{i}" for i in range(cfg.machine.vcpus)] + ["userspace"]
        if cfg.machine.transport == "tcp" and self.curve:
            if not curve_available():
                raise RuntimeError("transport tcp needs libzmq with CURVE (libsodium); use ipc")
            self.keyring = Keyring(["supervisor", *names, *self.EXTRA_IDENTITIES])
        elif cfg.machine.transport == "ipc" and self.curve:
            # per-run secrets on ipc too: a process of our uid that is not of this run is refused
            self.keyring = Keyring(["supervisor", *names, *self.EXTRA_IDENTITIES], self.ipc_auth)
        self.ep = Endpoint("supervisor", cfg.machine.transport, self.run_dir,
                           credentials=self._credentials("supervisor"), on_notice=self._notice)
        self.ep.admit(names)
        entry = image.entry if cfg.guest.entry is None else image.resolve(cfg.guest.entry)
        until = None if cfg.guest.until is None else image.resolve(cfg.guest.until)
        dbg = cfg.to_dict()["debug"]
        base = {"transport": cfg.machine.transport, "run_dir": self.run_dir,
                "supervisor": self.ep.inbox_addr, "ram_name": self.ram.name, "ram_size": self.ram.size,
                "runpages_name": self.pages.name, "ledger_name": self.ledger.name, "vcpus": cfg.machine.vcpus, "cpu": cfg.machine.cpu,
                "strategy": cfg.debug.strategy, "image": str(image.path), "entry": entry,
                "until": until, "msrp_dep": cfg.machine.dep,
                "debug": dbg, "gdb": self.gdb, "gdb_running": self.gdb_running,
                "max_instructions": cfg.limits.instructions, "schedule": self.schedule(),
                "supervisor_pid": os.getpid(), "trace": self.trace_path is not None,
                "start_ns": self.start_ns, "spin_yield": SPIN_YIELD, **board}
        self._sentinels = ()
        if cfg.machine.schedule == "deterministic":
            if BATON:
                self.baton = Baton.create(cfg.machine.vcpus, self.run_dir)
                base["baton_name"] = self.baton.name
                base["baton_spin_ns"] = BATON_SPIN_NS
                base["baton_hook"] = BATON_HOOK
            self.driver = Driver(Schedule(cfg.machine.seed, cfg.machine.quantum), cfg.machine.vcpus,
                                 ["kernel", "userspace"], self.ep.send,
                                 self.baton.start if self.baton is not None else None,
                                 self.baton.extend if self.baton is not None else None)
        ctx = mp_context()
        roles = [("kernel", "kernel", {})] + [("vcpu", f"vcpu{i}", {"index": i})
                                              for i in range(cfg.machine.vcpus)]
        roles.append(("userspace", "userspace", {}))
        # a signal while a child starts would leave it forked but not recorded (never killed, holding the
        # forkserver alive): signals wait until every child is recorded, then end the run as usual
        with self._signals_deferred():
            for role, name, extra in roles:
                extra = {**extra, "credentials": self._credentials(name)}
                p = ctx.Process(target=_child, args=(role, {**base, **extra}), name=f"cosim-{name}",
                                daemon=True)
                p.start()
                self.procs[name] = p
        self._sentinels = tuple(p.sentinel for p in self.procs.values())

    def _credentials(self, name: str):
        return self.keyring.credentials(name) if self.keyring is not None else None

    def _notice(self, text: str) -> None:
        if self.data is not None:
            self.data.logs.append(("supervisor", "warn", text))

    def _start(self, data: RunData) -> None:
        hellos = {}
        deadline = time.monotonic() + HELLO_TIMEOUT_S
        while len(hellos) < len(self.procs):
            self._check_children(data, starting=True)
            r = self.ep.recv(100)
            if r is not None and isinstance(r.msg, wire.Hello):
                hellos[r.msg.name] = r.msg
            elif r is not None:
                self._other(data, r)
            if time.monotonic() > deadline:
                missing = sorted(set(self.procs) - set(hellos))
                raise RuntimeError(f"processes did not start: {', '.join(missing)}")
        data.pids = {n: h.pid for n, h in hellos.items()}
        inboxes = {n: h.inbox for n, h in hellos.items()}
        inboxes["supervisor"] = self.ep.inbox_addr
        kicks = {n: h.kick for n, h in hellos.items() if h.kick}
        self.ep.set_peers(inboxes, kicks)
        for n in self.procs:
            self.ep.send(n, wire.Peers(inboxes, kicks))
        # nobody may be messaged before it knows whom to answer: wait for every process's ack
        acked: set[str] = set()
        while len(acked) < len(self.procs):
            self._check_children(data, starting=True)
            r = self.ep.recv(100)
            if r is not None and isinstance(r.msg, wire.Ack) and r.msg.of == "peers":
                acked.add(r.sender)
            elif r is not None:
                self._other(data, r)
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes did not connect: {', '.join(sorted(set(self.procs) - acked))}")
        data.started_seconds = (time.monotonic_ns() - self.start_ns) / 1e9
        for n in self.procs:
            if n.startswith("vcpu"):
                self.ep.send(n, wire.Start(paused=True))   # userspace releases them when it is ready
        self.ep.send("kernel", wire.Start())
        self.ep.send("userspace", wire.Start(paused=self.gdb is not None and not self.gdb_running))

    # --- watching ----------------------------------------------------------------------------------
    def _watch(self, data: RunData) -> None:
        """Until every vCPU halted (or the run must end): free-running, the processes run by themselves
        and this only listens; deterministic, the lockstep driver runs the schedule through `_turn`."""
        halted: set[int] = set()
        t0 = time.monotonic()
        self._last_progress = 0.0
        try:
            if self.driver is not None:
                def wait(pred, timeout_ms=None):
                    while True:
                        m = self._turn(data, halted, t0, 1000 if timeout_ms is None else timeout_ms)
                        if m is not None and pred(m):
                            return m
                        if timeout_ms is not None and (m is None or not self.ep.pending()):
                            return None
                try:
                    self.driver.run(wait)
                except Stuck as e:
                    data.outcome = "error"
                    data.problems.append(str(e))
                    return
            while len(halted) < self.cfg.machine.vcpus:
                self._turn(data, halted, t0, 100)
        except _RunOver:
            return

    def _turn(self, data: RunData, halted: set[int], t0: float, wait_ms: int):
        """Take one message (or time out): halts and the others recorded; a death, gdb's kill or the
        wall limit raise _RunOver. Returns the message, for the lockstep driver's replies."""
        cfg = self.cfg
        if self.serial == "stdio" and self._stdin is None and not getattr(self, "_stdin_done", False):
            self._stdin = sys.stdin.fileno()
        fds = self._sentinels + ((self._stdin,) if self._stdin is not None else ())
        r = self.ep.recv(wait_ms, fds)   # a child's death wakes this at once
        if self._stdin is not None and self._stdin in self.ep.ready_fds:
            self._forward_stdin()
        m = None
        if r is not None:
            m = r.msg
            if isinstance(m, wire.Halted):
                halted.add(m.vcpu)
                data.halts[m.vcpu] = (m.code, m.reason)
                if m.code != 0 or m.reason != "guest halted":
                    data.logs.append((f"vcpu{m.vcpu}", "info", f"{m.reason} (code {m.code})"))
            elif not isinstance(m, (wire.Ran, wire.Synced)):
                self._other(data, r)
        # (a death makes its sentinel readable, which woke the poll above: asking every child's exit
        # code costs ~80 us for five, as much as a deterministic step's round trip, so only then, and
        # every CHILD_CHECK_S in case)
        now = time.monotonic()
        if (not self._sentinels or any(fd in self._sentinels for fd in self.ep.ready_fds)
                or now - self._last_child_check > CHILD_CHECK_S):
            self._last_child_check = now
            if not self._check_children(data):
                raise _RunOver
        if self.killed:
            data.outcome = "killed-by-debugger"     # a normal end (gdb's kill), not a problem
            raise _RunOver
        now = time.monotonic()
        if now - t0 - self.held(now) > cfg.limits.wall_seconds:
            data.outcome = "wall-limit"
            data.problems.append(f"wall-time limit of {cfg.limits.wall_seconds:g} s reached with "
                                 f"{cfg.machine.vcpus - len(halted)} vCPU(s) still running")
            raise _RunOver
        if self.progress is not None and now - self._last_progress > 0.25:
            self._last_progress = now
            self.progress(self._progress(now - t0 - self.held(now), halted))
        return m

    def _forward_stdin(self) -> None:
        """--serial stdio: what the terminal typed goes to the board's UART (userspace)."""
        try:
            data = os.read(self._stdin, 4096)
        except OSError:
            data = b""
        if not data:                     # end of input: stop watching it
            self._stdin, self._stdin_done = None, True
            return
        self.ep.send("userspace", wire.SerialIn(data))

    def held(self, now: float) -> float:
        """Seconds gdb has held the world stopped so far: the wall limit does not count them."""
        return self.held_total + (now - self.held_since if self.held_since is not None else 0.0)

    def _on_hold(self, data: RunData, text: str) -> None:
        """Userspace's report of gdb's hold (cosim/holdtime.py): the total so far, and since when."""
        try:
            self.held_total, self.held_since = holdtime.parse(text)
        except ValueError:
            data.logs.append(("userspace", "warn", f"unreadable gdb-hold report {text[:60]!r}"))
            return
        data.gdb_stopped_seconds = self.held(time.monotonic())

    def _progress(self, elapsed: float, halted: set[int]) -> dict:
        pages = self.pages.pages
        return {"elapsed": elapsed, "wall_limit": self.cfg.limits.wall_seconds,
                "instructions": int(pages["instructions"].sum()),
                "halted": len(halted), "vcpus": self.cfg.machine.vcpus,
                "exits": int(pages["exits"].sum())}

    def _other(self, data: RunData, r) -> None:
        m = r.msg
        if r.error is not None:
            pass                          # counted and noted once by the transport
        elif isinstance(m, wire.Log) and m.level == holdtime.LEVEL:
            self._on_hold(data, m.text)
        elif isinstance(m, wire.Log):
            data.logs.append((m.name, m.level, m.text))
            if m.level == "gdb":
                data.gdb_address = m.text
                if self.on_gdb_ready is not None:
                    self.on_gdb_ready(m.text, {"ram": self.ram.name, "ram_size": self.ram.size,
                                               "runpages": self.pages.name,
                                               "vcpus": self.cfg.machine.vcpus})
            elif m.level == "gdb-kill":
                self.killed = True
        elif isinstance(m, wire.Stats):
            data.stats[m.name] = m.data
            if isinstance(m.data.get("transport"), dict):
                data.transport[m.name] = m.data["transport"]

    def _check_children(self, data: RunData, starting: bool = False) -> bool:
        for name, p in self.procs.items():
            if p.exitcode is not None:
                at = time.monotonic()
                code = p.exitcode
                how = (f"killed by {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals()
                       else f"exit code {code}")
                if _alive(p.pid):    # the forkserver died: no death can be seen any more, end the run
                    name, how = "forkserver", f"its sentinel closed; {name} still alive"
                doing = self._doing(name)
                data.outcome = "child-died"
                data.died = {"name": name, "pid": p.pid, "how": how, "doing": doing, "at": at}
                data.problems.append(f"process {name} (pid {p.pid}) died ({how}) while {doing}"
                                     + self._crash(name))
                if starting:
                    raise RuntimeError(data.problems[-1])
                return False
        self._note_stopped(data)
        return True

    def _note_stopped(self, data: RunData) -> None:
        """A stopped child (SIGSTOP) is not dead: say so once. Checked every 0.5 s while watching and
        while the run ends (detach, shutdown), so a stop late in the run is named too."""
        now = time.monotonic()
        if now - self._last_status > 0.5:
            self._last_status = now
            for name, p in self.procs.items():
                if name not in data.stopped and _status(p.pid) == psutil.STATUS_STOPPED:
                    data.stopped.append(name)
                    data.logs.append(("supervisor", "warn", f"process {name} (pid {p.pid}) is stopped"))

    def _doing(self, name: str) -> str:
        """What a process was doing, from the shared state it leaves behind (run pages, ledger)."""
        try:
            pages = self.pages.pages
            states = [State(int(s)).name.lower() for s in pages["state"]]
            if name.startswith("vcpu"):
                i = int(name[4:])
                p = pages[i]
                what = {"running": "running guest code", "in_exit": "in an exit to the kernel",
                        "paused": "paused", "halted": "halted", "faulted": "faulted"}.get(states[i], states[i])
                return f"{what} (last stop at pc {int(p['pc']):#010x}, {int(p['instructions']):,} instructions)"
            waiting = [f"vcpu{i}" for i, st in enumerate(states) if st == "in_exit"]
            planted = len(self.ledger.entries()) if self.ledger is not None else 0
            if name == "kernel":
                return (f"serving exits ({', '.join(waiting)} waiting in one)" if waiting
                        else "idle (no vCPU waiting in an exit)")
            return (f"debugging with {planted} breakpoint word(s) planted"
                    + (f", {', '.join(waiting)} in an exit" if waiting else ""))
        except Exception as e:  # pragma: no cover - the report must not fail for this
            return f"(state unreadable: {e})"

    def _crash(self, name: str) -> str:
        try:
            with open(os.path.join(self.run_dir, f"{name}.crash")) as f:
                lines = f.read().strip().splitlines()
        except (OSError, TypeError):
            return ""
        return ": " + (lines[-1] if lines else "?") + "".join(f"\n    {x}" for x in lines[-6:-1])

    # --- ending ------------------------------------------------------------------------------------
    def _finish(self, data: RunData) -> None:
        alive = {n for n, p in self.procs.items() if p.exitcode is None}
        if data.outcome == "child-died" or self.killed:
            # a dead peer cannot take part in a detach (userspace would wait for it): shut everyone down
            # at once; the ledger restores guest code once nobody runs it
            self._shutdown(data, ENDING_TIMEOUT_S)
            return
        if self.cfg.debug.detach_at_end and len(alive) == len(self.procs):
            self.ep.send("userspace", wire.Detach(1, self._why(data), self._exit_code(data)))
            deadline = time.monotonic() + STATS_TIMEOUT_S
            while time.monotonic() < deadline:
                r = self.ep.recv(100)
                if r is not None and isinstance(r.msg, wire.Detached):
                    data.detached = r.msg.restored
                    break
                if r is not None:
                    self._other(data, r)
                self._note_stopped(data)
                if self.procs["userspace"].exitcode is not None:
                    break
            else:
                data.problems.append("userspace did not detach in time")
        self._shutdown(data, STATS_TIMEOUT_S)

    def _shutdown(self, data: RunData, timeout: float) -> None:
        """Shutdown to every live child (kicked, so a vCPU inside guest code sees it), then wait up to
        `timeout` for their Stats."""
        self.shut_down = True
        if self.ep is None:
            return
        alive = {n for n, p in self.procs.items() if _alive(p.pid) and n in self.ep.inboxes}
        for n in alive:
            self.ep.send(n, wire.Shutdown(self._why(data), self._exit_code(data)))
            if n in self.ep.kicks:
                self.ep.kick(n)
        deadline = time.monotonic() + timeout
        gone_since: dict[str, float] = {}
        while time.monotonic() < deadline and not alive <= set(data.stats):
            r = self.ep.recv(100)
            if r is not None:
                self._other(data, r)
            self._note_stopped(data)
            now = time.monotonic()
            for n in alive - set(data.stats):
                if not _alive(self.procs[n].pid):
                    gone_since.setdefault(n, now)
            # a child that exited may still have its Stats on the way: give it a grace period
            alive = {n for n in alive if n in data.stats or now - gone_since.get(n, now) < 1.0}

    def _exit_code(self, data: RunData) -> int | None:
        """The guest's exit code when the run completed with every vCPU halted (the last to halt
        gives it, as gdb's target reports it), else None."""
        if data.outcome != "completed" or len(data.halts) < self.cfg.machine.vcpus:
            return None
        return list(data.halts.values())[-1][0] & 0xFF

    @staticmethod
    def _why(data: RunData) -> str:
        """Why the run ends, in a line (an attached gdb is told before its connection closes)."""
        return f"run over: {data.outcome}" + (f" ({data.problems[0]})" if data.problems else "")

    def _collect_guest(self, data: RunData, image: GuestImage) -> None:
        if self.ram is None or self.pages is None:
            return
        n = self.cfg.machine.vcpus
        try:
            data.guest = image.read_counters(self.ram, n)
            if "warn_log" in image:
                data.guest["warn_log_head"] = [self.ram.read_u32s(image.symbol("warn_log") + 1024 * i, 16)
                                               for i in range(n)]
            data.code_diff = image.code_diff(self.ram)
            for m in self.cfg.expect.memory or ():
                base = image.resolve(m.at)
                data.memory.append([self.ram.read_u32s(base + i * m.stride, len(m.words)) for i in range(n)])
            data.data_segments = [(seg.addr, self.ram.read(seg.addr, seg.memsz))
                                  for seg in image.segments if seg.writable and seg.memsz <= DATA_SEGMENT_MAX]
            for i in range(n):
                p = self.pages[i]
                data.vcpu_state.append({
                    "state": State(int(p["state"])).name.lower(),
                    "instructions": int(p["instructions"]),
                    "exits": {EVENTS[e]: {LEVELS[lv]: int(p["exits"][e, lv]) for lv in range(len(LEVELS))
                                          if p["exits"][e, lv]}
                              for e in range(len(EVENTS)) if p["exits"][e].any()},
                    "pc": int(p["pc"]),
                })
        except Exception as e:
            data.problems.append(f"could not read guest state: {e}")

    def _stop_children(self, data: RunData) -> None:
        """Every child gone: those still there after a grace period (children ignore SIGTERM) are
        killed, stopped ones included. Needs no spare file descriptor (a run at its fd limit still
        ends): a failed wait falls back to polling."""
        self._wait_gone(0.0 if self._hurry else KILL_GRACE_S)
        self._kill_children()
        self._wait_gone(2.0)
        data.leftovers["processes"] = [n for n, p in self.procs.items() if _alive(p.pid)]

    def _wait_gone(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        for p in self.procs.values():
            try:
                p.join(timeout=max(0.0, deadline - time.monotonic()))
            except (OSError, ValueError):
                break                     # (no descriptor for the wait: poll below)
        while time.monotonic() < deadline and any(_alive(p.pid) for p in self.procs.values()):
            time.sleep(0.01)              # forkserver gone: not our children, poll their state

    def _restore_code(self, data: RunData) -> None:
        """With no child left, put back every word the ledger still holds (userspace died, or could not
        detach). After a clean detach the ledger is empty."""
        if self.ledger is None or self.ram is None:
            return
        try:
            done = self.ledger.restore(self.ram)
        except Exception as e:
            data.problems.append(f"could not restore guest code from the breakpoint ledger: {e}")
            return
        data.restored_by_supervisor = done
        if done:
            owners = sorted({e["owner"] for e in done})
            data.logs.append(("supervisor", "info", f"restored {len(done)} planted word(s) from the breakpoint "
                                                    f"ledger (planted by {', '.join(owners)})"))
            if data.detached is not None:
                data.problems.append(f"userspace detached but left {len(done)} planted word(s); "
                                     "the supervisor restored them")
        if data.detached is None:
            data.detached = len(done)

    def _write_trace(self, data: RunData) -> None:
        if self.trace_path is None or self.run_dir is None:
            return
        try:
            data.trace = trace.merge(self.run_dir, self.trace_path)
        except OSError as e:          # (outfile.OutputError: one line) a full disk costs the trace, not the run
            data.unwritten.append(f"--trace {e}")
            return
        except Exception as e:
            data.problems.append(f"could not write the trace to {self.trace_path}: {e}")
            return
        lost = data.trace.get("lost") or {}
        if lost:
            data.unwritten.append(f"--trace {self.trace_path}: incomplete: the events of "
                                  + ", ".join(f"{n} ({why})" for n, why in sorted(lost.items()))
                                  + " could not be written in the run directory")

    def schedule(self) -> dict:
        """What decides the interleaving: in free-running mode the OS scheduler (not recorded) and the
        scripted debugger's seeded toggle times (wall clock); deterministic, the seed (and what the
        driver did, once it ran)."""
        stress = self.cfg.debug.stress
        out = {"stress_seed": stress.seed if stress is not None else None}
        m = self.cfg.machine
        if mutation.ACTIVE:
            out["mutations"] = sorted(mutation.ACTIVE)      # test-only seeded bugs (cosim/mutation.py)
        if m.schedule != "deterministic":
            return {"mode": "free-running", **out}
        out.update(self.driver.summary() if self.driver is not None   # (what it did, once it ran)
                   else Schedule(m.seed, m.quantum).describe())
        return out

    def _write_record(self, data: RunData) -> None:
        if self.run_dir is None or self.ram is None or self.pages is None:
            return
        try:
            regs = [self.pages[i]["gpr"].tolist() + [int(self.pages[i][f]) for f in ("pc", "msr", "cr", "lr",
                                                                                      "ctr", "xer")]
                    for i in range(self.cfg.machine.vcpus)]
            data.record = record.write(self.run_dir, data, self.ram.bytes, regs, self.schedule())
            if self.record_dir is not None:
                record.save(self.run_dir, self.record_dir)
        except OSError as e:          # a full disk costs the record, not the run
            self._unwritten(data, f"could not write: {e.strerror or e}")
            return
        except Exception as e:
            data.problems.append(f"could not write the run's record: {type(e).__name__}: {e}")
            return
        lost = [f"vcpu{v['vcpu']} ({v['exits_lost']})" for v in data.record["digest"]["vcpus"]
                if v.get("exits_lost")] if isinstance(data.record.get("digest"), dict) else []
        if lost:
            self._unwritten(data, "incomplete: the exit lists of " + ", ".join(lost)
                            + " could not be written in the run directory")

    def _unwritten(self, data: RunData, what: str) -> None:
        """The run's record could not be (wholly) written: the user's --record output is lost (exit 2);
        without --record, only replay loses it (a warning)."""
        if self.record_dir is not None:
            data.unwritten.append(f"--record {self.record_dir}: {what}")
        else:
            data.logs.append(("supervisor", "warn", f"the run's record: {what}"))

    def _close_transport(self, data: RunData) -> None:
        if self.ep is not None:
            ep, self.ep = self.ep, None
            data.transport["supervisor"] = ep.counters()
            ep.close()

    def _remove_shm(self, data: RunData) -> None:
        names, problems = [], []
        for block in (self.ledger, self.pages, self.ram, self.guest_tlb, self.baton):
            if block is not None:
                names.append(block.name)
                try:
                    block.close()
                except Exception as e:    # the next block is still removed
                    problems.append(f"{block.name}: {type(e).__name__}: {e}")
        self.ledger = self.pages = self.ram = self.guest_tlb = self.baton = None
        data.leftovers["shm"] = [n for n in names if os.path.exists(f"/dev/shm/{n}")]
        if problems:
            raise RuntimeError("; ".join(problems))

    def _remove_run_dir(self, data: RunData) -> None:
        if self.run_dir is not None:
            remove_run_dir(self.run_dir)
            data.leftovers["sockets"] = [self.run_dir] if os.path.exists(self.run_dir) else []


def _alive(pid: int | None) -> bool:
    s = _status(pid)
    return s is not None and s != psutil.STATUS_ZOMBIE


def _status(pid: int | None) -> str | None:
    if pid is None:
        return None
    try:
        return psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return None
    except (psutil.Error, OSError):   # /proc unreadable (e.g. no descriptor left): a signal-0 probe
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except OSError:
            pass
        return psutil.STATUS_RUNNING


def run_config(config: Config, progress=None, gdb: str | None = None, on_gdb_ready=None,
               gdb_running: bool = False, trace: str | None = None, record_dir: str | None = None,
               serial: str | None = None) -> RunData:
    return Supervisor(config, progress, gdb, on_gdb_ready, gdb_running=gdb_running, trace=trace,
                      record_dir=record_dir, serial=serial).run()


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: python run.py CONFIG")
