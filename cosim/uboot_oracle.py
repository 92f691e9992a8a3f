"""QEMU as the oracle for a real guest: Debian's U-Boot under `qemu-system-ppc -M ppce500` and under
the harness's ppce500 board, the same keys typed at the same output, compared line by line and by the
guest instructions each ran until U-Boot first enters a given command handler.

QEMU side: `-nographic -nic none` (this board has no PCI device), its serial console on pipes driven by
the same `Console` the harness's userspace uses (cosim/userspace/console.py), and a TCG plugin
(tools/qemu_icount_plugin.c, built here with the system C compiler) that counts executed instructions
and ends QEMU at the first execution of the stop address. Harness side: the same config with
`guest.until` = that address (the vCPU stops before executing it) and the same typing.

Lines that depend on wall time under QEMU (its time base follows the host clock: the countdown) are
masked and listed, never silently dropped. `compare(cpu)` returns a JSON-ready dict.
"""
from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .config import parse_config
from .machine.image import FIRMWARE
from .machine.uboot import RELOC_OFF_256M, commands
from .report import build_report
from .supervisor import run_config
from .userspace.console import Console

PLUGIN_SOURCE = Path(__file__).resolve().parent.parent / "tools" / "qemu_icount_plugin.c"
UBOOT = Path(FIRMWARE["u-boot"][0])
# the key goes in at "In:" (the console is up: U-Boot has set its UART up, which empties its FIFO),
# well before the countdown polls for it: both sides abort the countdown at its first look (typed at
# "Hit any key", QEMU saw it after a host-dependent number of polls, +-2% of the count; at "Net:", a
# loaded host still missed the first look now and then: 6.72M instead of 6.39M)
SENDS = [("In:", " "), ("=> ", "version\r")]
QEMU_CPU = {"e500v2": "e500v2_v30"}    # the ppce500 default; `-cpu e500v2` is v2.2 (PVR 0x80210022)
MASKED = (re.compile(r"^Hit any key to stop autoboot:"),)   # the countdown: wall time under QEMU


class OracleError(RuntimeError):
    pass


def build_plugin(workdir: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise OracleError("no C compiler to build the QEMU instruction-count plugin")
    out = workdir / "libicount.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(out), str(PLUGIN_SOURCE)], check=True,
                   capture_output=True)
    return out


def run_qemu(cpu: str, stop: int, workdir: Path, timeout: float = 120.0) -> tuple[str, int]:
    """U-Boot under QEMU with the script typed; (transcript, instructions before `stop` ran)."""
    qemu = shutil.which("qemu-system-ppc")
    if qemu is None:
        raise OracleError("qemu-system-ppc is not installed (./setup.sh installs it)")
    plugin = build_plugin(workdir)
    log = workdir / "icount.log"
    console = Console(list(SENDS))
    proc = subprocess.Popen([qemu, "-M", "ppce500", "-cpu", QEMU_CPU.get(cpu, cpu), "-m", "256", "-nographic", "-nic", "none",
                             "-bios", str(UBOOT), "-plugin", f"{plugin},stop={stop:#x}", "-d", "plugin",
                             "-D", str(log)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        fd = proc.stdout.fileno()
        while proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            data = os.read(fd, 4096)
            if not data:
                break
            typed = console.output(data)
            if typed:
                proc.stdin.write(typed)
                proc.stdin.flush()
        proc.wait(max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise OracleError(f"QEMU did not reach {stop:#x} within {timeout:g} s") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return console.text(), plugin_count(log, f"{stop:#x}", f"plugin log: {log}")


def plugin_count(log: Path, target: str, detail: str) -> int:
    """The instructions tools/qemu_icount_plugin.c counted until its stop address ran (its log line)."""
    m = re.search(r"icount (\d+) stop", log.read_text() if log.exists() else "")
    if m is None:
        raise OracleError(f"QEMU ended without reaching {target} ({detail})")
    return int(m.group(1))


def run_harness(cpu: str, stop: int) -> tuple[str, int, dict]:
    doc = {"name": "uboot-oracle", "machine": {"cpu": cpu, "board": "ppce500"},
           "guest": {"program": "u-boot", "until": stop},
           "serial": {"send": [{"after": a, "text": t} for a, t in SENDS]}, "limits": {"wall_seconds": 120}}
    report = build_report(run_config(parse_config(doc, "uboot-oracle.toml")))
    return report["board"]["transcript"], report["instructions"], report


def transcript_lines(text: str) -> list[str]:
    """A serial transcript as lines: CR dropped, trailing blanks stripped from each."""
    return [line.rstrip() for line in text.replace("\r", "").split("\n")]


def compare_transcripts(qemu: str, ours: str) -> dict:
    """Line by line, masked lines listed; `same` when every unmasked line agrees."""
    a, b = transcript_lines(qemu), transcript_lines(ours)
    masked, different = [], []
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else None
        y = b[i] if i < len(b) else None
        if x == y:
            continue
        if any(p.match(x or "") or p.match(y or "") for p in MASKED):
            masked.append({"line": i + 1, "qemu": x, "harness": y})
        else:
            different.append({"line": i + 1, "qemu": x, "harness": y})
    return {"same": not different, "lines": len(a), "masked": masked, "different": different}


def compare(cpu: str, command: str = "version") -> dict:
    if not UBOOT.exists():
        raise OracleError(f"{UBOOT} missing: install Debian's u-boot-qemu (./setup.sh does)")
    stop = commands(UBOOT)[command] + RELOC_OFF_256M
    with tempfile.TemporaryDirectory(prefix="cosim-oracle-") as d:
        t0 = time.monotonic()
        q_text, q_count = run_qemu(cpu, stop, Path(d))
        q_seconds = time.monotonic() - t0
    t0 = time.monotonic()
    h_text, h_count, report = run_harness(cpu, stop)
    h_seconds = time.monotonic() - t0
    return {"cpu": cpu, "stop": f"{stop:#x}", "command": command,
            "transcript": compare_transcripts(q_text, h_text),
            "instructions": {"qemu": q_count, "harness": h_count, "ratio": round(h_count / q_count, 4)},
            "seconds": {"qemu": round(q_seconds, 2), "harness": round(h_seconds, 2)},
            "harness_ok": report["ok"], "harness_failed": report["failed"]}
