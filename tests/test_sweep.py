"""`cosim sweep`: the matrix runs through pytest-xdist on local workers (-n 2) and on `--tx popen`
workers standing in for remote hosts (reports travel back as test properties), aggregated into one
JSON, table and plot; a bad spec exits 2 before anything runs."""
import json
import os
import subprocess
import sys

import pytest

import cosim

SPEC = """
[sweep]
strategies = ["illegal", "sc64"]
cpus = ["e500mc"]
vcpus = [1, 2]
seeds = [1, 2]
iterations = 20
"""


def sweep(tmp_path, *args, spec=SPEC):
    (tmp_path / "spec.toml").write_text(spec)
    return subprocess.run([sys.executable, "-m", "cosim", "sweep", str(tmp_path / "spec.toml"), *args,
                           "--json", str(tmp_path / "out.json"), "--plot", str(tmp_path / "out.png")],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path,
                          env={**os.environ, "COLUMNS": "160"})   # (80 columns: tests/test_plot.py)


@pytest.mark.parametrize("workers", [["-n", "2"], ["--tx", "popen", "--tx", "popen"]], ids=["n2", "tx-popen"])
def test_sweep_matrix_aggregated(tmp_path, workers):
    r = sweep(tmp_path, *workers)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads((tmp_path / "out.json").read_text())
    assert doc["schema_version"] == cosim.SCHEMA_VERSION and doc["tool"]["document"] == "sweep"
    assert len(doc["reports"]) == 8 and not doc["errors"]
    cells = {(r["strategy"], r["vcpus"]): r for r in doc["rows"]}
    assert set(cells) == {("illegal", 1), ("illegal", 2), ("sc64", 1), ("sc64", 2)}
    assert all(c["repeats"] == 2 for c in cells.values())
    assert cells[("illegal", 2)]["verdict"] == "ok" and cells[("sc64", 1)]["verdict"] == "finding"
    assert {rep["scenario"]["vcpus"] for rep in doc["reports"]} == {1, 2}
    assert (tmp_path / "out.png").read_bytes()[:4] == b"\x89PNG"
    assert "illegal e500mc x2 warn_storm" in r.stdout
    assert "8 of 8 runs reported" in r.stderr


def test_bad_spec_exit_2(tmp_path):
    r = sweep(tmp_path, "-n", "2", spec='[sweep]\nstrategies = ["ilegal"]\n')
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "sweep.strategies" in r.stderr and "ilegal" in r.stderr
    r = sweep(tmp_path, spec='[sweep]\nseed = [1]\n')
    assert r.returncode == 2 and "sweep.seed: unknown key (did you mean 'seeds'?)" in r.stderr
