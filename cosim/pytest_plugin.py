"""pytest plugin of kvmppc-cosim (entry point `pytest11`: active wherever the package is installed).

Fixtures:
  cosim_run(config, **overrides) -> report   run one scenario in this process and return its report
      (the dict `--json` writes). `config` is a Config, a path to a TOML file, or a dict in the TOML
      schema; `overrides` are `--set` style dotted keys (`cosim_run("x.toml", **{"machine.vcpus": 2})`).
      Bad input raises ConfigError before anything starts.
  cosim_gdb(config, **overrides) -> GdbSession   the scenario in a child process, stopped, serving GDB;
      gdb-multiarch attached through its machine interface (pygdbmi, async). `s.cmd("break bp_target")`
      runs one CLI command and returns its console text; `s.mi("-exec-continue")` sends raw MI and
      returns the records up to its result, `s.result(...)` that result's class and payload;
      `s.resume()` continues (or steps: `s.resume("-exec-step-instruction")`) and returns the *stopped
      payload, `s.wait_stop()` waits for the next one, `s.wait_for(predicate)` for any record;
      `s.monitor("info vcpus")`, `s.value("$pc")`, `s.registers()`; `s.log` holds every record and
      `s.output(since)` what gdb printed; `s.finish()` detaches, waits for the scenario's end and
      returns its report. `s.server` is the scenario (below). cosim_gdb(server) attaches to one.
  cosim_gdb_server(config, running=False, **overrides) -> GdbServer   the same scenario with no gdb
      (a raw RSP client, `gdb -batch`, or cosim_gdb later): `address`, its guest RAM and run pages
      (`word(addr)`, `registers(vcpu)`, `instructions()`, `spr(vcpu, "DBCR0")`, `ram`, `pages`);
      `wait()` returns the report once the run ended (`returncode` as `cosim run`'s exit status).
      `running=True` starts it running (`--running`): attaching stops it. See cosim/gdb_harness.py.
  cosim_strategy, cosim_cpu                      parametrized over every strategy / CPU model, or over
      those named by the markers `@pytest.mark.cosim_strategies("illegal", "hw")` and
      `@pytest.mark.cosim_cpus("e500mc")`.
Cleanup: every run tears down its processes, shared memory and sockets even when the test fails; at the
end of a test every gdb it started is killed, then every scenario ended (SIGINT: the supervisor tears it
down; SIGKILL of its process group if it has not ended in 30 s). Each xdist worker runs its own
scenarios; nothing is shared between workers or sessions (gdb listens on port 0, each scenario's files
go to its own directory under tmp_path).
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Any

import pytest

from .config import CPUS, STRATEGIES, Config, apply_overrides, load_config, parse_config
from .gdb_harness import GdbServer, GdbSession


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


def _gdb_binary() -> str:
    gdb = shutil.which("gdb-multiarch")
    if gdb is None:
        pytest.skip("gdb-multiarch is not installed")
    return gdb


@pytest.fixture
def _cosim_gdb_made():
    """Every server and gdb session a test started, closed at its end (gdbs before their servers)."""
    made: list[GdbServer | GdbSession] = []
    yield made
    failed: list[BaseException] = []
    for thing in reversed(made):
        try:
            thing.close()
        except BaseException as e:   # (close does not raise; if it did, the others still close)
            failed.append(e)
    if failed:
        raise failed[0]


@pytest.fixture
def cosim_gdb_server(_cosim_gdb_made, tmp_path):
    """cosim_gdb_server(config_or_path_or_dict, running=False, **overrides) -> GdbServer (closed after
    the test)."""
    def start(config, running: bool = False, **overrides) -> GdbServer:
        s = GdbServer(to_config(config, overrides), tmp_path, running=running)
        _cosim_gdb_made.append(s)
        return s
    return start


@pytest.fixture
def cosim_gdb(_cosim_gdb_made, cosim_gdb_server):
    """cosim_gdb(config_or_path_or_dict_or_server, **overrides) -> GdbSession (closed after the test)."""
    def start(config, **overrides) -> GdbSession:
        gdb = _gdb_binary()
        if isinstance(config, GdbServer):
            if overrides:
                raise TypeError("cosim_gdb(server): overrides apply when the server is started")
            server = config
        else:
            server = cosim_gdb_server(config, **overrides)
        s = GdbSession(server, gdb)
        _cosim_gdb_made.append(s)
        return s
    return start


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
