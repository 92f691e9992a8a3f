"""`cosim sweep SPEC.toml`: a matrix of scenarios (strategies x CPU models x vCPU counts x programs x
seeds) run as pytest items through pytest-xdist, so it runs on one machine (`-n auto`) or on several
(`--tx ssh=host//python=...`: each worker needs kvmppc-cosim installed; the generated test file is
rsynced), then aggregated into one JSON, one table and one plot.

Spec (every key optional except none; defaults in parentheses):
    [sweep]  strategies (all), cpus (all), vcpus ([1]), programs (["warn_storm"]), seeds ([1]),
             iterations (100), breakpoints (the program's bp_target_a/bp_target_b, else bp_target)
    [base]   a scenario table merged under every run (e.g. [base.limits], [base.debug.stress]); a
             cell's seed sets debug.stress.seed when [base.debug.stress] exists, else it is a repeat.
Every cell is validated (config and guest image) before any worker starts: a bad spec exits 2 with one
line naming the file, the key and the problem. Reports travel back to the controller as the test's
user property `cosim_report`, so remote workers need no shared filesystem.
"""
from __future__ import annotations

import copy
import difflib
import json
import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from .config import CPUS, STRATEGIES, ConfigError, parse_config

SPEC_KEYS = ("strategies", "cpus", "vcpus", "programs", "seeds", "iterations", "breakpoints")


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_spec(path: str) -> dict:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ConfigError(path, None, "no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, None, f"invalid TOML: {e}") from None
    except RecursionError:
        raise ConfigError(path, None, "arrays or inline tables nested too deeply") from None
    for k in data:
        if k not in ("sweep", "base"):
            raise ConfigError(path, k, "unknown table (expected [sweep] and [base])")
    sw = data.get("sweep", {})
    for k in sw:
        if k not in SPEC_KEYS:
            close = difflib.get_close_matches(k, SPEC_KEYS, n=1)
            raise ConfigError(path, f"sweep.{k}", "unknown key" + (f" (did you mean {close[0]!r}?)" if close
                                                                   else f" (expected one of: {', '.join(SPEC_KEYS)})"))
    for k in ("strategies", "cpus", "vcpus", "programs", "seeds"):
        if k in sw and (not isinstance(sw[k], list) or not sw[k]):
            raise ConfigError(path, f"sweep.{k}", "expected a non-empty array")
    return {"source": os.path.abspath(path), "sweep": sw, "base": data.get("base", {})}


TX_GATEWAYS = ("popen", "ssh", "socket", "vagrant_ssh")


def check_workers(n: str | None, tx: list[str]) -> None:
    """`-n` and `--tx` as pytest-xdist will read them (ConfigError naming the option): -n a count, `auto`
    or `logical`; each --tx an execnet spec naming its gateway (popen, ssh=HOST, socket=HOST:PORT,
    vagrant_ssh=HOST), with `//key=value` options."""
    if n is not None and n not in ("auto", "logical") and not (n.isdigit() and int(n) >= 0):
        raise ConfigError("-n", None, f"{n!r}: expected a number of workers, auto or logical")
    for spec in tx:
        parts = spec.split("//")
        gateway = parts[0].split("=", 1)[0]
        mult, star, rest = gateway.partition("*")      # 3*popen: three workers
        if star:
            if not mult.isdigit():
                raise ConfigError("--tx", None, f"{spec!r}: {mult!r} is not a count (N*popen)")
            gateway = rest
        if gateway not in TX_GATEWAYS:
            raise ConfigError("--tx", None, f"{spec!r}: expected popen, ssh=HOST, socket=HOST:PORT or "
                              "vagrant_ssh=HOST first, then //python=PATH, //chdir=DIR, ... "
                              "(execnet's XSpec)")
        for opt in parts[1:]:
            if not opt:
                raise ConfigError("--tx", None, f"{spec!r}: an empty //option")


def cells(spec: dict) -> list[tuple[str, dict]]:
    """(id, scenario dict) of every run of the matrix, validated (ConfigError naming the spec's key)."""
    from . import preflight
    from .machine.image import GuestImage, ImageError, guest_path
    sw, base, src = spec["sweep"], spec["base"], spec["source"]
    out = []
    for program in sw.get("programs", ["warn_storm"]):
        try:
            image = GuestImage.load(guest_path(program))
        except ImageError as e:
            raise ConfigError(src, "sweep.programs", str(e)) from None
        bps = sw.get("breakpoints") or [s for s in ("bp_target_a", "bp_target_b") if s in image] or ["bp_target"]
        for strategy in sw.get("strategies", list(STRATEGIES)):
            for cpu in sw.get("cpus", list(CPUS)):
                for vcpus in sw.get("vcpus", [1]):
                    for seed in sw.get("seeds", [1]):
                        d = _merge({"limits": {"wall_seconds": 120.0}}, base)
                        d = _merge(d, {"name": f"{strategy}-{cpu}-x{vcpus}-{program}-s{seed}",
                                       "machine": {"cpu": cpu, "vcpus": vcpus},
                                       "guest": {"program": program, "iterations": sw.get("iterations", 100)},
                                       "debug": {"strategy": strategy,
                                                 "breakpoints": base.get("debug", {}).get("breakpoints")
                                                 or [{"at": b} for b in bps]}})
                        if "stress" in d["debug"]:
                            d["debug"]["stress"]["seed"] = seed
                        try:
                            preflight.check(parse_config(d, src))
                        except ConfigError as e:
                            key = {"machine.cpu": "sweep.cpus", "machine.vcpus": "sweep.vcpus",
                                   "debug.strategy": "sweep.strategies", "guest.iterations": "sweep.iterations",
                                   "guest.program": "sweep.programs"}.get(e.key or "", e.key)
                            raise ConfigError(src, key, f"{d['name']}: {e.problem}") from None
                        out.append((d["name"], d))
    return out


TEST_FILE = '''"""Generated by cosim sweep: one test per cell of the matrix."""
import json

import pytest

from cosim.pytest_plugin import run

CELLS = json.loads({cells!r})
SOURCE = {source!r}


@pytest.mark.parametrize("cell", [c[1] for c in CELLS], ids=[c[0] for c in CELLS])
def test_cell(cell, record_property):
    from cosim.config import parse_config
    report = run(parse_config(cell, SOURCE))
    record_property("cosim_report", json.dumps(report))
    assert report["ok"], report["failed"]
'''


class Collector:
    """pytest plugin on the controller: the reports of every cell, whichever worker ran it."""

    def __init__(self):
        self.reports: dict[str, dict] = {}
        self.errors: dict[str, str] = {}

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or (report.when == "setup" and report.failed):
            name = report.nodeid.rpartition("[")[2].rstrip("]")
            props = dict(report.user_properties)
            if "cosim_report" in props:
                self.reports[name] = json.loads(props["cosim_report"])
            elif report.failed:
                self.errors[name] = str(report.longrepr)[-2000:]


def run_sweep(spec: dict, matrix: list[tuple[str, dict]], workers: str | None, tx: list[str],
              quiet: bool) -> tuple[list[dict], dict[str, str]]:
    """Run the matrix with pytest (+xdist); the reports in matrix order and errors by cell id."""
    import pytest
    with tempfile.TemporaryDirectory(prefix="cosim-sweep-") as d:
        (Path(d) / "test_cosim_sweep.py").write_text(
            TEST_FILE.format(cells=json.dumps(matrix), source=spec["source"]))
        (Path(d) / "conftest.py").write_text("")
        args = [d, "-p", "no:cacheprovider", "-q" if not quiet else "-qq", "--rootdir", d,
                "-o", "addopts=", "-o", "testpaths="]
        if workers is not None:
            args += ["-n", workers]
        for t in tx:
            args += ["--tx", t]
        if any(t.startswith("ssh=") for t in tx):
            args += ["--rsyncdir", d]
        if tx and workers is None:
            args += ["--dist", "load"]
        collector = Collector()
        pytest.main(args, plugins=[collector])
    ordered = [collector.reports[name] for name, _ in matrix if name in collector.reports]
    return ordered, collector.errors


def group(reports: list[dict]) -> list[tuple[tuple, list[dict]]]:
    """Reports grouped by cell without the seed: (strategy, cpu, vcpus, program) -> its runs."""
    out: dict[tuple, list[dict]] = {}
    for r in reports:
        sc = r["scenario"]
        out.setdefault((sc["strategy"], sc["cpu"], sc["vcpus"], sc["program"]), []).append(r)
    return list(out.items())


def as_dict(spec: dict, rows: list[dict], reports: list[dict], errors: dict[str, str]) -> dict[str, Any]:
    return {"spec": {"source": spec["source"], **spec["sweep"]}, "rows": rows, "reports": reports,
            "errors": errors}
