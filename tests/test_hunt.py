"""`cosim hunt` through pytest-xdist (issue 22), end to end: real workers, real runs. Two popen workers
find the seeded bug's seeds, their records come back and replay; `--resume` runs only the seeds the
JSON does not have; a worker behind execnet's socket server (a real remote transport on this machine)
sends its failing seed's record back; the replay line carries `--set` and the mutation switch;
`--shrink` prints a smaller run that still fails."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import execnet

from test_deterministic import HUNT, cosim

MUTATED = {"COSIM_MUTATION": "no-stale-check"}


def test_hunt_on_two_popen_workers_then_resume(tmp_path):
    cfg = tmp_path / "hunt.toml"
    cfg.write_text(HUNT)
    js, rec = tmp_path / "h.json", tmp_path / "rec"
    out = cosim("hunt", str(cfg), "--seeds", "1-6", "--tx", "2*popen", "--record", str(rec), "--json", str(js),
                "--set", "guest.iterations=30", env=MUTATED)
    assert out.returncode == 1, out.stdout + out.stderr
    doc = json.loads(js.read_text())
    assert doc["complete"] and doc["finished"] == 6 and doc["mutations"] == ["no-stale-check"]
    failing = doc["failing"]
    assert failing and len(failing) < 6, doc["results"]
    for s in failing:
        assert (rec / f"seed-{s}" / "record.json").exists()
        line = next(x for x in out.stdout.splitlines() if f"seed {s}:" in x)
        assert (f"replay: COSIM_MUTATION=no-stale-check cosim run {cfg} --seed {s} --set guest.iterations=30"
                in line), line
    assert sorted(os.listdir(rec)) == sorted(f"seed-{s}" for s in failing)     # passing seeds: none kept
    assert re.search(r"\(\d+(\.\d+)? seeds/min\): \d+ failing", out.stdout), out.stdout
    replay = cosim("replay", str(rec / f"seed-{failing[0]}"), env=MUTATED)
    assert "identical (invariants failed:" in replay.stdout, replay.stdout + replay.stderr
    plain = cosim("replay", str(rec / f"seed-{failing[0]}"))
    assert "made with COSIM_MUTATION=no-stale-check" in plain.stderr, plain.stderr

    more = cosim("hunt", str(cfg), "--seeds", "1-8", "--tx", "2*popen", "--json", str(js), "--resume",
                 "--set", "guest.iterations=30", env=MUTATED)
    assert "hunt: 2 seed(s) of hunt-stale" in more.stderr and "(6 already done" in more.stderr, more.stderr
    doc2 = json.loads(js.read_text())
    assert [r["seed"] for r in doc2["results"]] == list(range(1, 9)) and doc2["complete"]
    assert doc2["results"][:6] == doc["results"]                      # not run again
    other = cosim("hunt", str(cfg), "--seeds", "1-8", "--json", str(js), "--resume")   # no mutation now
    assert other.returncode == 2 and "another scenario" in other.stderr


def test_hunt_on_a_socket_worker_brings_the_records_back(tmp_path):
    """xdist's socket gateway: execnet's socketserver, started here on a free port, runs the worker (the
    test file is rsynced to it, as to an ssh= host); the failing seed's record travels back packed."""
    server = os.path.join(os.path.dirname(execnet.__file__), "script", "socketserver.py")
    cwd = tmp_path / "remote"
    cwd.mkdir()
    proc = subprocess.Popen([sys.executable, "-u", server, "127.0.0.1:0"], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        port = re.search(r"'127\.0\.0\.1', (\d+)\)", line)
        assert port, line
        cfg = tmp_path / "hunt.toml"
        cfg.write_text(HUNT)
        rec = tmp_path / "rec"
        out = cosim("hunt", str(cfg), "--seeds", "1-4", "--tx", f"socket=127.0.0.1:{port.group(1)}",
                    "--record", str(rec), "--json", str(tmp_path / "h.json"), env=MUTATED)
        doc = json.loads((tmp_path / "h.json").read_text())
        assert doc["finished"] == 4, out.stdout + out.stderr
        assert out.returncode == (1 if doc["failing"] else 0)
        for s in doc["failing"]:
            assert json.loads((rec / f"seed-{s}" / "record.json").read_text())["schedule"]["seed"] == s
    finally:
        proc.kill()
        proc.wait(30)
        proc.stdout.close()


def test_shrink_prints_a_smaller_failing_run(tmp_path):
    cfg = tmp_path / "hunt.toml"
    cfg.write_text(HUNT)
    out = cosim("hunt", str(cfg), "--seeds", "1-6", "-n", "2", "--shrink", env=MUTATED)
    assert out.returncode == 1, out.stdout + out.stderr
    line = next(x for x in out.stdout.splitlines() if "shrink seed" in x)
    assert "still fails" in line and "--set limits.instructions=" in line, line
    cmd = line.split(": COSIM_MUTATION=no-stale-check cosim ", 1)[1].split()
    again = cosim(*[a.strip("'") for a in cmd], "--quiet", env=MUTATED)
    assert again.returncode == 1, again.stdout + again.stderr           # the shrunk run fails too
