"""pytest plugin of kvmppc-cosim (entry point `pytest11`: active wherever the package is installed).

Fixtures:
  cosim_run(config, **overrides) -> report   run one scenario in this process and return its report
      (the dict `--json` writes). `config` is a Config, a path to a TOML file, or a dict in the TOML
      schema; `overrides` are `--set` style dotted keys (`cosim_run("x.toml", **{"machine.vcpus": 2})`).
      Bad input raises ConfigError before anything starts.
  cosim_gdb(config, **overrides) -> GdbSession   the scenario in a child process, stopped, serving GDB;
      gdb-multiarch attached through its machine interface (pygdbmi). `s.cmd("break bp_target")` runs one
      CLI command and returns its console text; `s.mi("-exec-continue")` sends raw MI and returns the
      records; `s.wait_stop()` waits for the next *stopped record; `s.finish()` detaches, waits for the
      scenario's end and returns its report.
  cosim_strategy, cosim_cpu                      parametrized over every strategy / CPU model, or over
      those named by the markers `@pytest.mark.cosim_strategies("illegal", "hw")` and
      `@pytest.mark.cosim_cpus("e500mc")`.
Cleanup: every run tears down its processes, shared memory and sockets even when the test fails; a gdb
session kills its gdb and its scenario's process group. Each xdist worker runs its own scenarios; nothing
is shared between workers (no fixed ports or paths: gdb listens on port 0, files go to tmp_path).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from .config import CPUS, STRATEGIES, Config, apply_overrides, load_config, parse_config

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 60.0


def _overrides(kw: dict[str, Any]) -> list[str]:
    """{"machine.vcpus": 2} -> ["machine.vcpus=2"] (values as TOML: JSON scalars and arrays are TOML)."""
    return [f"{k}={json.dumps(v)}" for k, v in kw.items()]


def to_config(config: Config | dict | str | os.PathLike, overrides: dict[str, Any] | None = None) -> Config:
    """A Config from a Config, a TOML path or a dict (ConfigError on bad input)."""
    sets = _overrides(overrides or {})
    if isinstance(config, Config):
        if not sets:
            return config
        return parse_config(apply_overrides(config.to_dict(), sets, config.source), config.source)
    if isinstance(config, dict):
        import copy
        return parse_config(apply_overrides(copy.deepcopy(config), sets, "<test>"), "<test>")
    return load_config(config, sets)


def run(config, **overrides) -> dict:
    """Run one scenario to its end in this process; returns the report."""
    from . import preflight
    from .report import build_report
    from .supervisor import run_config
    cfg = to_config(config, overrides)
    preflight.check(cfg)
    return build_report(run_config(cfg))


@pytest.fixture
def cosim_run():
    """cosim_run(config_or_path_or_dict, **{"dotted.key": value}) -> report dict."""
    return run


class GdbSession:
    """A scenario started stopped with gdb served on a free port, and gdb-multiarch attached over MI."""

    def __init__(self, cfg: Config, workdir: Path):
        from pygdbmi.gdbcontroller import GdbController
        gdb = shutil.which("gdb-multiarch")
        if gdb is None:
            pytest.skip("gdb-multiarch is not installed")
        from . import preflight
        image = preflight.check(cfg)
        self.report_path = workdir / "cosim-gdb-report.json"
        cfg_path = workdir / "cosim-gdb.json"
        cfg_path.write_text(json.dumps(cfg.to_dict()))
        self.stderr: list[str] = []
        self.address: str | None = None
        self.gdb = None
        # the scenario as a child with its own process group: killed whole on teardown
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _RUNNER, str(cfg_path), cfg.source, str(self.report_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        ready = threading.Event()

        def read():
            for line in self.proc.stderr:
                self.stderr.append(line)
                if m := re.search(r"listening on (\S+:\d+)", line):
                    self.address = m.group(1)
                    ready.set()
            ready.set()
        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(START_TIMEOUT_S) or self.address is None:
            self.close()
            raise RuntimeError("the scenario did not start listening:\n" + "".join(self.stderr))
        self.gdb = GdbController(command=[gdb, "--nx", "--quiet", "--interpreter=mi3", str(image.path)],
                                 time_to_check_for_additional_output_sec=0.05)
        self.cmd("set pagination off")
        self.cmd(f"target remote {self.address}")

    def mi(self, command: str, timeout: float = STOP_TIMEOUT_S) -> list[dict]:
        """Send one MI (or CLI) command; the records up to its result record."""
        assert self.gdb is not None
        out = self.gdb.write(command, timeout_sec=timeout, raise_error_on_timeout=True)
        records = list(out)
        while not any(r["type"] == "result" for r in records):
            records += self.gdb.get_gdb_response(timeout_sec=timeout, raise_error_on_timeout=True)
        self._pending = [r for r in records if r["type"] == "notify" and r["message"] == "stopped"]
        return records

    def cmd(self, command: str, timeout: float = STOP_TIMEOUT_S) -> str:
        """One gdb CLI command; its console output. Raises RuntimeError on an ^error result."""
        records = self.mi(f"-interpreter-exec console {json.dumps(command)}", timeout)
        for r in records:
            if r["type"] == "result" and r["message"] == "error":
                raise RuntimeError(f"gdb: {command}: {r['payload'].get('msg')}")
        return "".join(r["payload"] for r in records if r["type"] == "console" and r["payload"])

    def wait_stop(self, timeout: float = STOP_TIMEOUT_S) -> dict:
        """The payload of the next *stopped record (reason, frame, thread-id, ...)."""
        assert self.gdb is not None
        if getattr(self, "_pending", None):
            return self._pending.pop(0)["payload"]
        import time
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for r in self.gdb.get_gdb_response(timeout_sec=1, raise_error_on_timeout=False):
                if r["type"] == "notify" and r["message"] == "stopped":
                    return r["payload"]
        raise TimeoutError(f"gdb reported no stop in {timeout} s")

    def finish(self, timeout: float = 120.0) -> dict:
        """Detach gdb, let the scenario run to its end; its report."""
        self.cmd("detach")
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError("the scenario did not end after detach:\n" + "".join(self.stderr)) from None
        return json.loads(self.report_path.read_text())

    def close(self) -> None:
        if self.gdb is not None:
            try:
                self.gdb.exit()
            except Exception:
                pass
            self.gdb = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)          # the supervisor tears its run down
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


# the child: the scenario (its to_dict() as JSON) with gdb on a free port; the report as JSON at its end
_RUNNER = """
import json, sys
from cosim.config import parse_config
from cosim.jsonout import write_json
from cosim.report import build_report
from cosim.supervisor import run_config
cfg_json, source, report = sys.argv[1:4]
cfg = parse_config(json.load(open(cfg_json)), source)
def ready(addr, shm=None):
    print(f"gdb: listening on {addr}", file=sys.stderr, flush=True)
write_json(report, "run", build_report(run_config(cfg, gdb="127.0.0.1:0", on_gdb_ready=ready)))
"""


@pytest.fixture
def cosim_gdb(tmp_path):
    """cosim_gdb(config_or_path_or_dict, **overrides) -> GdbSession (closed after the test)."""
    sessions: list[GdbSession] = []

    def start(config, **overrides) -> GdbSession:
        s = GdbSession(to_config(config, overrides), tmp_path)
        sessions.append(s)
        return s
    yield start
    for s in sessions:
        s.close()


def _marked(metafunc, name: str, default: tuple[str, ...]) -> list[str]:
    m = metafunc.definition.get_closest_marker(name)
    if m is None or not m.args:
        return list(default)
    bad = [a for a in m.args if a not in default]
    if bad:
        raise pytest.UsageError(f"@pytest.mark.{name}: unknown {bad} (expected one of: {', '.join(default)})")
    return list(m.args)


def pytest_configure(config):
    config.addinivalue_line("markers", "cosim_strategies(*names): parametrize cosim_strategy over these "
                                       "breakpoint strategies (default: all)")
    config.addinivalue_line("markers", "cosim_cpus(*names): parametrize cosim_cpu over these CPU models "
                                       "(default: all)")


def pytest_generate_tests(metafunc):
    if "cosim_strategy" in metafunc.fixturenames:
        metafunc.parametrize("cosim_strategy", _marked(metafunc, "cosim_strategies", STRATEGIES))
    if "cosim_cpu" in metafunc.fixturenames:
        metafunc.parametrize("cosim_cpu", _marked(metafunc, "cosim_cpus", CPUS))
