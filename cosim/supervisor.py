"""The supervisor: builds one VM from a Config, starts and watches its processes, collects what they
report, and always tears everything down.

Invariants: guest RAM and the run pages are created (and unlinked) here; the ipc sockets live in a
private 0700 directory removed at teardown; every child is reaped (terminated, then killed) whatever
happened; a child that dies ends the run with a report naming it.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass, field

import psutil

from . import wire
from .config import Config
from .machine.guest_ram import GuestRAM
from .machine.image import GuestImage, guest_path
from .transport import Endpoint, make_run_dir, remove_run_dir
from .vcpu.runpage import EVENTS, LEVELS, RunPages, State

HELLO_TIMEOUT_S = 60.0
STATS_TIMEOUT_S = 10.0

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


def _child(role: str, spec: dict) -> None:
    """Entry point of every child: a crash leaves its traceback in the run directory for the report."""
    try:
        if role == "vcpu":
            from .vcpu.process import main
        elif role == "kernel":
            from .kernel.process import main
        else:
            from .userspace.process import main
        main(spec)
    except BaseException:
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
    outcome: str = "completed"     # completed | killed-by-debugger | wall-limit | child-died | error
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
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


class Supervisor:
    def __init__(self, config: Config, progress=None, gdb: str | None = None, on_gdb_ready=None,
                 gdb_running: bool = False):
        self.cfg = config
        self.progress = progress          # callable(dict) for a progress display, or None
        self.gdb = gdb
        self.gdb_running = gdb_running    # --running: start running, stop the world when gdb attaches
        self.held_since: float | None = None   # gdb holds the world stopped since (monotonic)
        self.held_total = 0.0
        self.on_gdb_ready = on_gdb_ready
        self.procs: dict[str, mp.Process] = {}
        self.ep: Endpoint | None = None
        self.ram: GuestRAM | None = None
        self.pages: RunPages | None = None
        self.run_dir: str | None = None
        self.killed = False               # gdb's k / vKill ends the run

    # --- whole run ---------------------------------------------------------------------------------
    def run(self) -> RunData:
        cfg = self.cfg
        image = GuestImage.load(cfg.guest.elf_path or guest_path(cfg.guest.program))
        data = RunData(cfg, image)
        t0 = time.monotonic()
        try:
            self._build(image)
            self._start(data)
            self._watch(data)
            self._finish(data)
        except KeyboardInterrupt:
            data.outcome = "interrupted"
            data.problems.append("interrupted by the user")
        except Exception as e:  # the run reports it; teardown below still runs
            data.outcome = "error"
            data.problems.append(f"{type(e).__name__}: {e}")
        finally:
            data.seconds = time.monotonic() - t0
            data.gdb_stopped_seconds = self.held(time.monotonic())
            self._collect_guest(data, image)
            self._teardown(data)
        return data

    def _build(self, image: GuestImage) -> None:
        cfg = self.cfg
        self.ram = GuestRAM.create(cfg.machine.ram)
        image.load_into(self.ram)
        if cfg.guest.iterations is not None:
            self.ram.write_word(image.symbol("cfg_iterations"), cfg.guest.iterations)
        self.pages = RunPages.create(cfg.machine.vcpus)
        self.run_dir = make_run_dir()
        self.ep = Endpoint("supervisor", cfg.machine.transport, self.run_dir)
        entry = image.entry if cfg.guest.entry is None else image.resolve(cfg.guest.entry)
        dbg = cfg.to_dict()["debug"]
        base = {"transport": cfg.machine.transport, "run_dir": self.run_dir,
                "supervisor": self.ep.inbox_addr, "ram_name": self.ram.name, "ram_size": self.ram.size,
                "runpages_name": self.pages.name, "vcpus": cfg.machine.vcpus, "cpu": cfg.machine.cpu,
                "strategy": cfg.debug.strategy, "image": str(image.path), "entry": entry,
                "debug": dbg, "gdb": self.gdb, "gdb_running": self.gdb_running,
                "max_instructions": cfg.limits.instructions,
                "supervisor_pid": os.getpid()}
        ctx = mp_context()
        roles = [("kernel", "kernel", {})] + [("vcpu", f"vcpu{i}", {"index": i})
                                              for i in range(cfg.machine.vcpus)]
        roles.append(("userspace", "userspace", {}))
        for role, name, extra in roles:
            p = ctx.Process(target=_child, args=(role, {**base, **extra}), name=f"cosim-{name}", daemon=True)
            p.start()
            self.procs[name] = p

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
        for n in self.procs:
            if n.startswith("vcpu"):
                self.ep.send(n, wire.Start(paused=True))   # userspace releases them when it is ready
        self.ep.send("kernel", wire.Start())
        self.ep.send("userspace", wire.Start(paused=self.gdb is not None and not self.gdb_running))

    # --- watching ----------------------------------------------------------------------------------
    def _watch(self, data: RunData) -> None:
        cfg = self.cfg
        halted: set[int] = set()
        t0 = time.monotonic()
        last_progress = 0.0
        while len(halted) < cfg.machine.vcpus:
            r = self.ep.recv(100)
            if r is not None:
                if isinstance(r.msg, wire.Halted):
                    halted.add(r.msg.vcpu)
                    data.halts[r.msg.vcpu] = (r.msg.code, r.msg.reason)
                    if r.msg.code != 0 or r.msg.reason != "guest halted":
                        data.logs.append((f"vcpu{r.msg.vcpu}", "info", f"{r.msg.reason} (code {r.msg.code})"))
                else:
                    self._other(data, r)
            if not self._check_children(data):
                return
            if self.killed:
                data.outcome = "killed-by-debugger"     # a normal end (gdb's kill), not a problem
                return
            now = time.monotonic()
            if now - t0 - self.held(now) > cfg.limits.wall_seconds:
                data.outcome = "wall-limit"
                data.problems.append(f"wall-time limit of {cfg.limits.wall_seconds:g} s reached with "
                                     f"{cfg.machine.vcpus - len(halted)} vCPU(s) still running")
                return
            if self.progress is not None and now - last_progress > 0.25:
                last_progress = now
                self.progress(self._progress(now - t0 - self.held(now), halted))

    def held(self, now: float) -> float:
        """Seconds gdb has held the world stopped so far: the wall limit does not count them."""
        return self.held_total + (now - self.held_since if self.held_since is not None else 0.0)

    def _on_hold(self, data: RunData, stopped: bool) -> None:
        now = time.monotonic()
        if stopped and self.held_since is None:
            self.held_since = now
        elif not stopped and self.held_since is not None:
            self.held_total += now - self.held_since
            self.held_since = None
        data.gdb_stopped_seconds = self.held(now)

    def _progress(self, elapsed: float, halted: set[int]) -> dict:
        pages = self.pages.pages
        return {"elapsed": elapsed, "wall_limit": self.cfg.limits.wall_seconds,
                "instructions": int(pages["instructions"].sum()),
                "halted": len(halted), "vcpus": self.cfg.machine.vcpus,
                "exits": int(pages["exits"].sum())}

    def _other(self, data: RunData, r) -> None:
        m = r.msg
        if r.error is not None:
            data.logs.append((r.sender, "error", f"malformed message: {r.error}"))
        elif isinstance(m, wire.Log) and m.level == "gdb-hold":
            self._on_hold(data, m.text == "stopped")
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

    def _check_children(self, data: RunData, starting: bool = False) -> bool:
        for name, p in self.procs.items():
            if p.exitcode is not None or not _alive(p.pid):
                data.outcome = "child-died"
                how = f"exit code {p.exitcode}" if p.exitcode is not None else "vanished"
                data.problems.append(f"process {name} (pid {p.pid}) died ({how})" + self._crash(name))
                if starting:
                    raise RuntimeError(data.problems[-1])
                return False
        return True

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
        if self.cfg.debug.detach_at_end and "userspace" in alive and "kernel" in alive:
            self.ep.send("userspace", wire.Detach(1, self._why(data)))
            deadline = time.monotonic() + STATS_TIMEOUT_S
            while time.monotonic() < deadline:
                r = self.ep.recv(100)
                if r is not None and isinstance(r.msg, wire.Detached):
                    data.detached = r.msg.restored
                    break
                if r is not None:
                    self._other(data, r)
                if self.procs["userspace"].exitcode is not None:
                    break
            else:
                data.problems.append("userspace did not detach in time")
        for n in alive:
            self.ep.send(n, wire.Shutdown(self._why(data)))
        deadline = time.monotonic() + STATS_TIMEOUT_S
        gone_since: dict[str, float] = {}
        while time.monotonic() < deadline and not alive <= set(data.stats):
            r = self.ep.recv(100)
            if r is not None:
                self._other(data, r)
            now = time.monotonic()
            for n in alive - set(data.stats):
                if self.procs[n].exitcode is not None:
                    gone_since.setdefault(n, now)
            # a child that exited may still have its Stats on the way: give it a grace period
            alive = {n for n in alive if n in data.stats or now - gone_since.get(n, now) < 1.0}

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

    def _teardown(self, data: RunData) -> None:
        for p in self.procs.values():
            p.join(timeout=2 if p.exitcode is None else 0)
        for p in self.procs.values():
            if p.exitcode is None:
                p.terminate()
        for p in self.procs.values():
            p.join(timeout=2)
            if p.exitcode is None:
                p.kill()
                p.join(timeout=2)
        data.leftovers["processes"] = [n for n, p in self.procs.items() if _alive(p.pid)]
        if self.ep is not None:
            self.ep.close()
        names = []
        for block in (self.pages, self.ram):
            if block is not None:
                names.append(block.name)
                block.close()
        self.pages = self.ram = None
        data.leftovers["shm"] = [n for n in names if os.path.exists(f"/dev/shm/{n}")]
        if self.run_dir is not None:
            remove_run_dir(self.run_dir)
            data.leftovers["sockets"] = [self.run_dir] if os.path.exists(self.run_dir) else []


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def run_config(config: Config, progress=None, gdb: str | None = None, on_gdb_ready=None,
               gdb_running: bool = False) -> RunData:
    return Supervisor(config, progress, gdb, on_gdb_ready, gdb_running).run()


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: python run.py CONFIG")
