"""A scenario serving GDB in a child process, and gdb-multiarch driving it over its machine interface:
what the pytest plugin's fixtures `cosim_gdb_server` and `cosim_gdb` hand a test (no pytest in here).

`GdbServer(cfg, workdir, running=False)`: the scenario with gdb served on 127.0.0.1, port 0, started
stopped (or running, `running=True`: attaching stops it), in a child process with its own process
group. Once it listens: `address`, and its guest RAM and run pages attached (`ram`, `pages`, `word`,
`registers`, `instructions`, `spr`) so a test can hold what gdb shows against the machine. `wait()`
returns the run's report and sets `returncode` (0 when every invariant held, 1 otherwise: as `cosim run`).

`GdbSession(server, gdb)`: gdb-multiarch (MI, `mi-async on`: it takes commands while the target runs,
`-exec-interrupt` is Ctrl-C) with the guest's ELF, connected to a server. Every record gdb writes is
appended to `log` in order, and callers take them in that order: `mi` up to its command's result
record, `wait_stop` up to the next *stopped record, `wait_for` up to the first record a predicate
accepts. A record read ahead of what a call waited for is left for the next call; one taken is never
returned again (a *stopped before a command's result is that command's).

Invariants: two servers share nothing (port 0, files in a fresh directory under `workdir`); `close()`
never raises and always ends the process: gdb by SIGKILL, the scenario by SIGINT (its supervisor tears
the run down and restores guest code) and, if it has not ended after 30 s, SIGKILL to its process group.
"""
from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .config import Config
from .isa import SPR

if TYPE_CHECKING:                   # (imported when a server starts: the plugin loads this module early)
    from .machine.guest_ram import GuestRAM
    from .vcpu.runpage import RunPages

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 60.0
CORE_REGISTERS = tuple(f"r{i}" for i in range(32)) + ("pc", "msr", "cr", "lr", "ctr", "xer")
_LISTENING = re.compile(r"gdb: listening on (\S+:\d+)")
_SHARED = re.compile(r"gdb: shared memory: ram=(\S+) ram_size=(0x[0-9a-f]+) runpages=(\S+)")

# the child: the scenario (its to_dict() as JSON), gdb on a free port; the report as JSON at its end and
# the exit status of `cosim run`
_RUNNER = """
import json, sys
from cosim.config import parse_config
from cosim.jsonout import write_json
from cosim.report import build_report
from cosim.supervisor import run_config
cfg_json, source, report_path, mode = sys.argv[1:5]
cfg = parse_config(json.load(open(cfg_json)), source)
def ready(addr, shm):
    print(f"gdb: listening on {addr}", file=sys.stderr, flush=True)
    print(f"gdb: shared memory: ram={shm['ram']} ram_size={shm['ram_size']:#x} runpages={shm['runpages']}",
          file=sys.stderr, flush=True)
report = build_report(run_config(cfg, gdb="127.0.0.1:0", on_gdb_ready=ready, gdb_running=mode == "running"))
write_json(report_path, "run", report)
sys.exit(0 if report["ok"] else 1)
"""


class GdbServer:
    """A scenario serving GDB in a child process (see the module docstring)."""

    def __init__(self, cfg: Config, workdir: Path, running: bool = False):
        from . import preflight
        self.image = preflight.check(cfg)           # bad input: ConfigError, before anything starts
        self.vcpus = cfg.machine.vcpus
        d = Path(tempfile.mkdtemp(prefix="cosim-gdb-", dir=workdir))
        self.report_path = d / "report.json"
        (d / "config.json").write_text(json.dumps(cfg.to_dict()))
        self.stderr: list[str] = []
        self.address: str | None = None
        self.ram: GuestRAM | None = None
        self.pages: RunPages | None = None
        self.returncode: int | None = None
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _RUNNER, str(d / "config.json"), cfg.source, str(self.report_path),
             "running" if running else "stopped"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            from .machine.guest_ram import GuestRAM
            from .vcpu.runpage import RunPages
            shm = self._serving()
            self.ram = GuestRAM.attach(shm[0], int(shm[1], 16))
            self.pages = RunPages.attach(shm[2], self.vcpus)
        except BaseException:
            self.close()
            raise

    def _serving(self) -> tuple[str, ...]:
        """Read the child's stderr (kept in `stderr`) until it listens; its shared-memory names."""
        ready = threading.Event()
        shm: list[tuple[str, ...]] = []

        def read():
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.stderr.append(line)
                if m := _LISTENING.search(line):
                    self.address = m.group(1)
                if m := _SHARED.search(line):
                    shm.append(m.groups())
                    ready.set()
            ready.set()
        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(START_TIMEOUT_S) or not shm or self.address is None:
            raise RuntimeError("the scenario did not start serving gdb:\n" + "".join(self.stderr))
        return shm[0]

    def word(self, addr: int) -> int:
        assert self.ram is not None
        return self.ram.read_word(addr)

    def registers(self, vcpu: int) -> dict[str, int]:
        """The vCPU's core registers as its run page holds them (gdb's names)."""
        assert self.pages is not None
        p = self.pages[vcpu]
        values = [int(x) for x in p["gpr"]] + [int(p[n]) for n in CORE_REGISTERS[32:]]
        return dict(zip(CORE_REGISTERS, values, strict=True))

    def instructions(self) -> list[int]:
        assert self.pages is not None
        return [int(x) for x in self.pages.pages["instructions"]]

    def spr(self, vcpu: int, name: str) -> int:
        assert self.pages is not None
        return int(self.pages[vcpu]["spr"][SPR[name]])

    def wait(self, timeout: float = 120.0) -> dict:
        """The run's report, once the scenario has ended (by itself, a detach, a kill)."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError("the scenario did not end:\n" + "".join(self.stderr)) from None
        if not self.report_path.exists():
            raise RuntimeError("the scenario wrote no report:\n" + "".join(self.stderr))
        return json.loads(self.report_path.read_text())

    def close(self) -> None:
        for block in (self.ram, self.pages):
            if block is not None:
                try:
                    block.close()
                except Exception:
                    pass
        self.ram = self.pages = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)          # the supervisor tears its run down
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(10)


class GdbSession:
    """gdb-multiarch attached to a GdbServer over MI (see the module docstring)."""

    def __init__(self, server: GdbServer, gdb: str = "gdb-multiarch"):
        from pygdbmi.gdbcontroller import GdbController
        self.server = server
        self.log: list[dict] = []
        self._next = 0                 # the first record of `log` no call has taken
        self.gdb: GdbController | None = None
        try:
            self.gdb = GdbController(command=[gdb, "--nx", "--quiet", "--interpreter=mi3", str(server.image.path)],
                                     time_to_check_for_additional_output_sec=0)
            self._expect("-gdb-set mi-async on", "done")
            self.cmd("set pagination off")
            self._expect(f"-target-select remote {server.address}", "connected")
        except BaseException:
            self.close()
            raise

    @property
    def address(self) -> str | None:
        return self.server.address

    # --- reading -------------------------------------------------------------------------------------
    def _read(self, timeout: float) -> None:
        """Append what gdb writes within `timeout` to the log."""
        assert self.gdb is not None and self.gdb.gdb_process is not None
        proc = self.gdb.gdb_process
        assert proc.stdout is not None and proc.stderr is not None
        ready, _, _ = select.select([proc.stdout, proc.stderr], [], [], timeout)
        if ready:
            got = self.gdb.get_gdb_response(timeout_sec=0, raise_error_on_timeout=False)
            self.log.extend(got)
            if not got and proc.poll() is not None:
                raise RuntimeError(f"gdb exited ({proc.returncode}); last output:\n{self._tail()}")

    def _take(self, until: Callable[[dict], bool], timeout: float, what: str) -> list[dict]:
        """The records from the first not yet taken up to the first that `until` accepts."""
        start = i = self._next
        deadline = time.monotonic() + timeout
        while True:
            while i < len(self.log):
                if until(self.log[i]):
                    self._next = i + 1
                    return self.log[start:i + 1]
                i += 1
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"gdb: no {what} in {timeout:g} s; last output:\n{self._tail()}")
            self._read(min(left, 1.0))

    def _tail(self) -> str:
        return "\n".join(f"{r['type']} {r.get('message') or ''} {r.get('payload')!r}" for r in self.log[-40:])

    def wait_stop(self, timeout: float = STOP_TIMEOUT_S) -> dict:
        """The payload of the next *stopped record (reason, frame, thread-id, ...)."""
        return self._take(lambda r: r["type"] == "notify" and r["message"] == "stopped", timeout,
                          "*stopped record")[-1]["payload"]

    def wait_for(self, until: Callable[[dict], bool], timeout: float = STOP_TIMEOUT_S) -> list[dict]:
        """The records up to the next one `until` accepts (e.g. an ^error after a ^running)."""
        return self._take(until, timeout, "record as expected")

    def output(self, since: int = 0) -> str:
        """What gdb printed (console and target streams) in `log[since:]`."""
        return _text(self.log[since:], ("console", "target"))

    # --- commands ------------------------------------------------------------------------------------
    def send(self, command: str) -> None:
        """Write one command and wait for nothing (e.g. one gdb may not live to answer)."""
        assert self.gdb is not None
        self.gdb.write(command, read_response=False)

    def mi(self, command: str, timeout: float = STOP_TIMEOUT_S) -> list[dict]:
        """Send one MI (or CLI) command; the records up to its result record."""
        self.send(command)
        return self._take(lambda r: r["type"] == "result", timeout, f"result of {command!r}")

    def result(self, command: str, timeout: float = STOP_TIMEOUT_S) -> tuple[str, dict]:
        """One MI command's result: its class (done, running, connected, error, exit) and payload."""
        r = self.mi(command, timeout)[-1]
        return r["message"], r["payload"] or {}

    def _expect(self, command: str, cls: str) -> dict:
        got, payload = self.result(command)
        if got != cls:
            raise RuntimeError(f"gdb: {command}: {got} {payload}")
        return payload

    def cmd(self, command: str, timeout: float = STOP_TIMEOUT_S) -> str:
        """One gdb CLI command; its console output. Raises RuntimeError on an ^error result."""
        records = self.mi(f"-interpreter-exec console {json.dumps(command)}", timeout)
        if records[-1]["message"] == "error":
            raise RuntimeError(f"gdb: {command}: {(records[-1]['payload'] or {}).get('msg')}")
        return _text(records, ("console",))

    def monitor(self, command: str) -> str:
        """`monitor COMMAND`: the text the stub sent back (target stream), then any console text."""
        records = self.mi(f"-interpreter-exec console {json.dumps('monitor ' + command)}")
        if records[-1]["message"] == "error":
            raise RuntimeError(f"gdb: monitor {command}: {(records[-1]['payload'] or {}).get('msg')}")
        return _text(records, ("target",)) + _text(records, ("console",))

    def resume(self, command: str = "-exec-continue", timeout: float = STOP_TIMEOUT_S) -> dict:
        """Resume (continue, step, ...) and wait for the stop: the *stopped payload."""
        self._expect(command, "running")
        return self.wait_stop(timeout)

    def value(self, expr: str) -> int:
        """An expression's value as a 32-bit unsigned integer."""
        payload = self._expect(f"-data-evaluate-expression {json.dumps(expr)}", "done")
        return int(payload["value"].split()[0], 0) & 0xFFFFFFFF

    def registers(self) -> dict[str, int]:
        """The selected thread's core registers (`info registers`)."""
        regs = {}
        for line in self.cmd("info registers").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] in CORE_REGISTERS:
                regs[parts[0]] = int(parts[1], 16)
        return regs

    def finish(self, timeout: float = 120.0) -> dict:
        """Detach gdb, let the scenario run to its end; its report."""
        self.cmd("detach")
        return self.server.wait(timeout)

    def kill_gdb(self) -> None:
        """SIGKILL gdb, as a crash: the stub sees its connection lost (no detach packet)."""
        proc = self.gdb.gdb_process if self.gdb is not None else None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def close(self) -> None:
        proc = self.gdb.gdb_process if self.gdb is not None else None
        if proc is None:
            return
        try:
            self.kill_gdb()
        except Exception:
            pass
        for f in (proc.stdin, proc.stdout, proc.stderr):
            try:
                if f is not None:
                    f.close()
            except Exception:
                pass
        assert self.gdb is not None
        self.gdb.gdb_process = None


def _text(records: list[dict], kinds: tuple[str, ...]) -> str:
    return "".join(r["payload"] for r in records if r["type"] in kinds and r["payload"])
