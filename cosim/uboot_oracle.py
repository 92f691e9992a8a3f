"""QEMU as the oracle for a real guest: Debian's U-Boot under `qemu-system-ppc -M ppce500` and under
the harness's ppce500 board, the same keys typed at the same output, compared line by line and by the
guest instructions each ran until U-Boot first enters a given command handler.

QEMU side: `-nographic -nic none` (this board has no PCI device), its serial console on pipes driven by
the same `Console` the harness's userspace uses (cosim/userspace/console.py), and a TCG plugin
(tools/qemu_icount_plugin.c, built here with the system C compiler) that counts executed instructions
and ends QEMU at the first execution of the stop address. Harness side: the same config with
`guest.until` = that address (the vCPU stops before executing it) and the same typing.

Exact on a loaded host, which takes two things, as QEMU otherwise runs U-Boot in host time:
- the gate: a key typed late (this driver descheduled) meets U-Boot already polling for it, and the
  polling counts: the autoboot countdown's (0.3 s late at "In:": 40.8M instructions instead of 6.39M;
  6.54M and 7.07M seen on a loaded CI host) and the command prompt's (0.3 s late at "=> ": 115M). So
  QEMU's vCPU waits, in the plugin, after each byte U-Boot writes to UART0's transmit register (CCSR
  0xF_E000_0000 + 0x4500, which U-Boot maps at 0xE0004500) until this driver has read it and handled
  it: typed what that output calls for and seen QEMU's main loop take it from the pipe (it feeds the
  UART's FIFO in the same step; the held vCPU thread does not hold the QEMU lock that needs), plus a
  margin. U-Boot finds the key at its first look. The plugin's log says how many transmit stores it
  held at; fewer than the bytes read, or a key due while the vCPU is not held, is an OracleError;
- `-icount` (QEMU_ICOUNT): U-Boot's 1 kHz decrementer tick follows QEMU's virtual clock, which would
  follow the host clock: the ticks taken before the stop then vary with the run's wall time (the gate's
  holds included), 146 instructions each.
Measured with both: QEMU 6,391,722 (e500v2) and 6,395,407 (e500mc) every run, alone, beside three CPU
burners on two cores and with this driver sleeping 0.3 s before it types; the harness 7 more on each.

The countdown line is masked and listed, never silently dropped (it followed the host clock before the
gate and -icount; it now agrees). `compare(cpu)` returns a JSON-ready dict.
"""
from __future__ import annotations

import array
import fcntl
import mmap
import os
import re
import select
import shutil
import struct
import subprocess
import termios
import tempfile
import time
from pathlib import Path
from typing import IO

from .board.ppce500 import CCSR_BASE, SERIAL0_OFFSET
from .config import parse_config
from .machine.image import FIRMWARE
from .machine.uboot import RELOC_OFF_256M, commands
from .report import build_report
from .supervisor import run_config
from .userspace.console import Console

PLUGIN_SOURCE = Path(__file__).resolve().parent.parent / "tools" / "qemu_icount_plugin.c"
UBOOT = Path(FIRMWARE["u-boot"][0])
# the key goes in at "In:" (the console is up: U-Boot has set its UART up for the last time, which
# empties its FIFO), before the countdown's first look for it; the gate holds QEMU until it is in the FIFO
SENDS = [("In:", " "), ("=> ", "version\r")]
QEMU_CPU = {"e500v2": "e500v2_v30"}    # the ppce500 default; `-cpu e500v2` is v2.2 (PVR 0x80210022)
MASKED = (re.compile(r"^Hit any key to stop autoboot:"),)   # the countdown (host time under QEMU once)
# QEMU's virtual clock (its time base, U-Boot's 1 kHz decrementer tick) in guest instructions, 1 ns each,
# never warped to the host clock: in host time the ticks U-Boot takes before the stop vary from run to run
# (146 instructions each; gate only, e500v2: 6,392,744 to 6,394,058 alone)
QEMU_ICOUNT = "shift=0,sleep=off"
UART0_THR = CCSR_BASE + SERIAL0_OFFSET     # physical: the plugin matches the store's physical address
GATE_SIZE = 4096                           # the page shared with the plugin: 8-byte words
BUSY, SEEN, HELD = 0, 1, 2                 # driver busy; transmit stores seen; the one held at (0: none)
TYPED_MARGIN = 0.005                       # s after QEMU read the typed text from the pipe
HOLD_WAIT = 10.0                           # s for the plugin to hold the vCPU after the byte that was read


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
    """U-Boot under QEMU with the script typed through the plugin's gate (module docstring);
    (transcript, instructions before `stop` ran)."""
    qemu = shutil.which("qemu-system-ppc")
    if qemu is None:
        raise OracleError("qemu-system-ppc is not installed (./setup.sh installs it)")
    plugin = build_plugin(workdir)
    log, errors, gate_path = workdir / "icount.log", workdir / "qemu.stderr", workdir / "gate"
    gate_path.write_bytes(bytes(GATE_SIZE))
    console = Console(list(SENDS))
    with open(gate_path, "r+b") as f:
        gate = mmap.mmap(f.fileno(), GATE_SIZE)
    with open(errors, "wb") as err:
        proc = subprocess.Popen([qemu, "-M", "ppce500", "-cpu", QEMU_CPU.get(cpu, cpu), "-m", "256", "-nographic",
                                 "-nic", "none", "-bios", str(UBOOT), "-icount", QEMU_ICOUNT, "-plugin",
                                 f"{plugin},stop={stop:#x},gate={gate_path},uart={UART0_THR:#x}",
                                 "-d", "plugin", "-D", str(log)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
    assert proc.stdin is not None and proc.stdout is not None
    deadline = time.monotonic() + timeout
    try:
        fd = proc.stdout.fileno()
        while proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            _gate_word(gate, BUSY, 1)          # before the read: the plugin reads the pipe, then this word
            data = os.read(fd, 4096)
            if not data:
                break
            typed = console.output(data)
            if typed:
                _type_held(proc, proc.stdin, gate, typed, console, deadline)
            _gate_word(gate, BUSY, 0)
        proc.wait(max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise OracleError(f"QEMU did not reach {stop:#x} within {timeout:g} s") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        gate.close()
    stderr = errors.read_text(errors="replace").strip()
    count = plugin_count(log, f"{stop:#x}", f"plugin log: {log}" + (f"; QEMU: {stderr}" if stderr else ""))
    m = re.search(r"uart-stores (\d+)", log.read_text())
    if m is None or int(m.group(1)) < len(console.transcript):
        raise OracleError(f"the plugin saw {m.group(1) if m else 'no'} transmit stores at {UART0_THR:#x} for "
                          f"{len(console.transcript)} bytes of output: the gate did not hold QEMU at each byte")
    return console.text(), count


def _gate_word(gate: mmap.mmap, index: int, value: int | None = None) -> int:
    """Read (or write) one of the gate page's 8-byte words (tools/qemu_icount_plugin.c)."""
    if value is not None:
        struct.pack_into("=Q", gate, 8 * index, value)
    return struct.unpack_from("=Q", gate, 8 * index)[0]


def _type_held(proc: subprocess.Popen, stdin: IO[bytes], gate: mmap.mmap, typed: bytes, console: Console,
               deadline: float) -> None:
    """Type `typed` while QEMU's vCPU waits after the byte that asked for it; return once QEMU has read
    it from the pipe (its main loop puts it in the UART's FIFO in the same step) plus a margin."""
    held_by = min(deadline, time.monotonic() + HOLD_WAIT)
    while _gate_word(gate, HELD) == 0:     # the plugin's callback runs just after the byte went out
        if proc.poll() is not None or time.monotonic() > held_by:
            tail = console.text()[-60:]
            raise OracleError(f"QEMU's vCPU was not held at the output {tail!r} when {typed!r} was due (the "
                              f"plugin saw {_gate_word(gate, SEEN)} transmit stores at {UART0_THR:#x}): "
                              "the key would race U-Boot's polling")
        time.sleep(0.0005)
    stdin.write(typed)
    stdin.flush()
    unread = array.array("i", [0])
    while True:
        fcntl.ioctl(stdin.fileno(), termios.FIONREAD, unread)
        if unread[0] == 0:
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            raise OracleError(f"QEMU did not read {typed!r} from its stdin")
        time.sleep(0.0005)
    time.sleep(TYPED_MARGIN)


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
