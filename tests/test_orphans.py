"""A supervisor killed with SIGKILL (no teardown at all): its children notice and exit, and its shared
memory is reclaimed by the resource tracker. Nothing outlives the run, even then."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import sys
from cosim.config import parse_config
from cosim.supervisor import run_config
if __name__ == "__main__":
    cfg = parse_config({"machine": {"cpu": "e500mc", "vcpus": 2},
                        "guest": {"program": "warn_storm", "iterations": 100000000},
                        "debug": {"breakpoints": [{"at": "bp_target_a"}]},
                        "limits": {"wall_seconds": 120}}, "<orphan>")
    run_config(cfg, progress=lambda p: print("running", flush=True) if p["instructions"] else None)
"""


def test_children_exit_when_the_supervisor_is_killed(tmp_path):
    script = tmp_path / "sup.py"
    script.write_text(SCRIPT)
    sup = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert sup.stdout.readline().strip() == "running"
        family = psutil.Process(sup.pid).children(recursive=True)
        blocks = [n for n in os.listdir("/dev/shm") if f"-{sup.pid}-" in n or f"_{sup.pid}_" in n]
        assert len(family) >= 5 and len(blocks) == 3     # 5+ processes; RAM, run pages, ledger
        sup.send_signal(signal.SIGKILL)
        sup.wait(10)
        deadline = time.monotonic() + 20
        alive = family
        while alive and time.monotonic() < deadline:
            time.sleep(0.2)
            alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not alive, [(p.pid, p.cmdline()) for p in alive]
        while time.monotonic() < deadline and any(os.path.exists(f"/dev/shm/{b}") for b in blocks):
            time.sleep(0.2)
        assert not [b for b in blocks if os.path.exists(f"/dev/shm/{b}")]
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait(10)
