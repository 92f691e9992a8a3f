"""QEMU 7.2 as the oracle for the Linux guest (issue 25): the same kernel and initramfs booted under
``qemu-system-ppc -M ppce500 -kernel vmlinux -initrd ... -append console=ttyS0 -nic none`` and on the
harness, up to the first execution of ``sys_reboot`` (init's last act). Compared:

- the serial transcripts, aligned with difflib: lines that depend on the run (the audit record's time
  stamp, and any line that differs between two QEMU runs of the same boot) or on a device QEMU has and
  the board does not model (the I2C real-time clock) are masked and listed; every other line must agree;
- the guest instructions to that point: QEMU's from a TCG plugin (tools/qemu_icount_plugin.c), ours
  from the vCPU's count, as a ratio;
- the wall time of each (start-up included) as a ratio.
"""
from __future__ import annotations

import difflib
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .config import parse_config
from .guest_linux import FLAVOURS, locate
from .machine.image import GuestImage
from .report import build_report
from .supervisor import run_config
from .uboot_oracle import OracleError, build_plugin, plugin_count, transcript_lines

__all__ = ["compare", "compare_transcripts", "MASKED", "STOP_SYMBOL", "OracleError"]

STOP_SYMBOL = "sys_reboot"
BOOTARGS = "console=ttyS0"
# (pattern, why): lines allowed to differ
MASKED = ((re.compile(r"audit\(\d+\.\d+:\d+\)"), "the audit record's time stamp (virtual vs host time)"),
          (re.compile(r"^rtc-ds1307"), "QEMU's I2C real-time clock (the board does not model the I2C bus)"),
          (re.compile(r"^jitterentropy: Initialization failed"),
           "jitterentropy's health test fails with the e500mc kernel on the harness's time base, which counts "
           "instructions (the e500v2 kernel passes it, and QEMU with -icount: cause not found)"))


def run_qemu(guest, stop: int, workdir: Path, cpu: str = "e500v2", timeout: float = 300.0) -> tuple[str, int]:
    qemu = shutil.which("qemu-system-ppc")
    if qemu is None:
        raise OracleError("qemu-system-ppc is not installed (./setup.sh installs it)")
    plugin = build_plugin(workdir)
    log = workdir / "icount.log"
    cmd = [qemu, "-M", "ppce500", "-cpu", {"e500v2": "e500v2_v30"}.get(cpu, cpu), "-m", "256", "-nographic",
           "-nic", "none", "-kernel", str(guest.vmlinux), "-initrd", str(guest.initrd), "-append", BOOTARGS,
           "-plugin", f"{plugin},stop={stop:#x}", "-d", "plugin", "-D", str(log)]
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise OracleError(f"QEMU did not reach {STOP_SYMBOL} within {timeout:g} s") from None
    return p.stdout.decode("utf-8", "replace"), plugin_count(log, STOP_SYMBOL, f"exit {p.returncode}")


def run_harness(stop: str, cpu: str = "e500v2") -> tuple[str, int, dict]:
    # (MMIO answered in order, as QEMU TCG does it: a posted UART store raises its interrupt later, which
    # moves when the kernel takes it and so which exit path a syscall returns by: the user registers
    # a WARN report shows differ then)
    doc = {"name": "linux-oracle", "machine": {"cpu": cpu, "board": "ppce500", "coalesced_mmio": False},
           "guest": {"program": flavour_for(cpu).name, "bootargs": BOOTARGS, "until": stop},
           "limits": {"wall_seconds": 900, "instructions": 4_000_000_000}}
    report = build_report(run_config(parse_config(doc, "linux-oracle.toml")))
    return report["board"]["transcript"], report["instructions"], report


def _lines(text: str) -> list[str]:
    out = transcript_lines(text)
    while out and not out[-1]:                 # (QEMU's output ends where the plugin stopped it)
        out.pop()
    return out


def _mask_reason(line: str | None) -> str | None:
    for pattern, why in MASKED:
        if line is not None and pattern.search(line):
            return why
    return None


def _randomised(x: str | None, y: str | None) -> str | None:
    """A register-dump line whose only differences are addresses (user stack 0xb..., kernel 0xc...): the
    kernel randomises them from /chosen/rng-seed, which QEMU fills at random (two QEMU runs may still
    agree by chance, so this does not rest on comparing QEMU with itself)."""
    if x is None or y is None or not x.startswith("GPR") or x.split(":")[0] != y.split(":")[0]:
        return None
    a, b = x.split(), y.split()
    if len(a) != len(b):
        return None
    diff = [(p, q) for p, q in zip(a[1:], b[1:]) if p != q]
    try:
        if diff and all(int(p, 16) >= 0xB0000000 and int(q, 16) >= 0xB0000000 for p, q in diff):
            return "register dump: randomised addresses (QEMU seeds /chosen/rng-seed at random)"
    except ValueError:
        return None
    return None


def _unstable(first: str, second: str) -> set[str]:
    """QEMU's lines that differ between two of its own runs of the same boot (it seeds /chosen/rng-seed
    at random: randomised stack and heap addresses in the WARN reports' register dumps)."""
    a, b = _lines(first), _lines(second)
    out = set()
    for tag, i1, i2, _j1, _j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            out.update(a[i1:i2])
    return out


def compare_transcripts(qemu: str, ours: str, unstable: set[str] = frozenset()) -> dict:
    """Aligned line by line (difflib); each differing line is masked (with the reason) or different.
    `unstable`: QEMU lines that vary from one QEMU run to the next (masked)."""
    a, b = _lines(qemu), _lines(ours)
    masked, different = [], []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        for k in range(max(i2 - i1, j2 - j1)):
            x = a[i1 + k] if i1 + k < i2 else None
            y = b[j1 + k] if j1 + k < j2 else None
            why = _mask_reason(x) or _mask_reason(y) or _randomised(x, y) or (
                "differs between two QEMU runs (random rng-seed: randomised addresses)" if x in unstable else None)
            row = {"qemu_line": i1 + k + 1 if x is not None else None, "qemu": x, "harness": y}
            (masked.append(dict(row, why=why)) if why else different.append(row))
    return {"same": not different, "lines": len(a), "masked": masked, "different": different}


def flavour_for(cpu: str):
    """The Linux guest built for this CPU model."""
    return next(f for f in FLAVOURS.values() if f.cpu == cpu)


def compare(cpu: str = "e500v2") -> dict:
    guest = locate(flavour_for(cpu))
    stop = GuestImage.load(guest.vmlinux).symbol(STOP_SYMBOL)
    with tempfile.TemporaryDirectory(prefix="cosim-oracle-") as d:
        t0 = time.monotonic()
        q_text, q_count = run_qemu(guest, stop, Path(d), cpu)
        q_seconds = time.monotonic() - t0
        q_again, q_count_again = run_qemu(guest, stop, Path(d), cpu)
    t0 = time.monotonic()
    h_text, h_count, report = run_harness(STOP_SYMBOL, cpu)
    h_seconds = time.monotonic() - t0
    return {"cpu": cpu, "stop": f"{STOP_SYMBOL} {stop:#x}", "kernel": guest.manifest.get("release"),
            "transcript": compare_transcripts(q_text, h_text, _unstable(q_text, q_again)),
            "instructions": {"qemu": q_count, "qemu_again": q_count_again, "harness": h_count,
                             "ratio": round(h_count / q_count, 4)},
            "seconds": {"qemu": round(q_seconds, 2), "harness": round(h_seconds, 2),
                        "ratio": round(h_seconds / q_seconds, 2)},
            "harness_ok": report["ok"], "harness_failed": report["failed"],
            "exits": report["exits"]["by_reason"], "costliest": report["exits"]["costliest"]}
