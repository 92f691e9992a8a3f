"""The pytest plugin as a user meets it: a user's test file (the README's example) run by pytest in a
subprocess, with the markers, cosim_run and cosim_gdb; and xdist workers leave nothing behind."""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

USER_TEST = '''
import pytest

@pytest.mark.cosim_strategies("illegal", "trap-kernel")
@pytest.mark.cosim_cpus("e500mc")
def test_every_hit_reaches_the_debugger(cosim_run, cosim_strategy, cosim_cpu):
    report = cosim_run({"machine": {"cpu": cosim_cpu}, "guest": {"program": "warn_storm", "iterations": 20},
                        "debug": {"strategy": cosim_strategy, "breakpoints": [{"at": "bp_target_a"}]}})
    assert report["ok"], report["failed"]
    assert report["debugger_hits"]["total"] == 20
    assert report["costs"]["per_hit"]["exits_by_level"]["userspace"] == 1
'''

GDB_TEST = '''
def test_break_and_continue(cosim_gdb):
    s = cosim_gdb({"machine": {"cpu": "e500mc"}, "guest": {"program": "loop", "iterations": 50},
                   "debug": {"strategy": "illegal"}})
    assert "Breakpoint 1" in s.cmd("break bp_target")
    s.mi("-exec-continue")
    stop = s.wait_stop()
    assert stop["reason"] == "breakpoint-hit" and stop["frame"]["func"] == "bp_target"
    assert s.cmd("print $pc").strip().endswith("<bp_target>")
    report = s.finish()
    assert report["ok"], report["failed"]
    assert report["invariants"]["code-restored-after-detach"]["ok"]
'''


def pytest_in(tmp_path, source, *args):
    (tmp_path / "test_user.py").write_text(textwrap.dedent(source))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)


def test_user_test_with_markers_and_cosim_run_under_xdist(tmp_path):
    r = pytest_in(tmp_path, USER_TEST, "-n", "2", "-rA")
    assert r.returncode == 0, r.stdout + r.stderr
    for s in ("illegal", "trap-kernel"):
        assert f"PASSED test_user.py::test_every_hit_reaches_the_debugger[{s}-e500mc]" in r.stdout, r.stdout
    assert "2 passed" in r.stdout


def test_default_markers_cover_every_strategy_and_cpu(tmp_path):
    src = "def test_x(cosim_strategy, cosim_cpu):\n    pass\n"
    r = pytest_in(tmp_path, src, "--collect-only", "-q")
    from cosim.config import CPUS, STRATEGIES
    assert f"test_user.py: {len(STRATEGIES) * len(CPUS)}" in r.stdout, r.stdout


def test_bad_config_is_a_config_error(tmp_path):
    src = '''
import pytest
from cosim.config import ConfigError
def test_x(cosim_run):
    with pytest.raises(ConfigError, match="no symbol 'bp_targt'"):
        cosim_run({"machine": {"cpu": "e500mc"}, "guest": {"program": "loop"},
                   "debug": {"breakpoints": [{"at": "bp_targt"}]}})
'''
    r = pytest_in(tmp_path, src)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(shutil.which("gdb-multiarch") is None, reason="gdb-multiarch is not installed")
def test_cosim_gdb_break_continue_detach(tmp_path):
    r = pytest_in(tmp_path, GDB_TEST)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_readme_example_passes(tmp_path):
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = readme.index("```python\n") + len("```python\n")
    example = readme[start:readme.index("```", start)]
    assert len(example.strip().splitlines()) <= 10
    r = pytest_in(tmp_path, example, "-n", "2")
    assert r.returncode == 0 and "4 passed" in r.stdout, r.stdout + r.stderr
