"""QEMU as the peer and the oracle: `qemu-system-ppc -M ppce500 -cpu e500mc` (TCG, bare metal) running a
guest ELF, stopped before its first instruction, with its gdbstub on a private unix socket.

    with QemuGuest("guests/loop.elf", vcpus=1) as q:     # q.rsp is an RspClient (cosim/gdb/client.py)
        q.rsp.write_word(addr, value)
        q.rsp.send("c"); time.sleep(1); q.rsp.interrupt(); q.rsp.reply()

With `-kernel ELF` and no `-bios`, QEMU's ppce500 board loads the ELF and starts CPU 0 at its entry in
supervisor state (MSR = 0) with an identity TLB1 mapping of low memory; other vCPUs wait in a spin
table, which the project's guests do not use (they start every vCPU at once), so under QEMU only
vCPU 0 runs them. QEMU is not a hypervisor: `sc 1` (the ePAPR hypercall the guests halt with) is a
system call into the guest's own vectors there, so measure a running guest (stop it, read its memory)
rather than waiting for a halt.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from .gdb.client import RspClient

QEMU = "qemu-system-ppc"


def qemu_available() -> str | None:
    """Why QEMU cannot be used here, or None."""
    if shutil.which(QEMU) is None:
        return f"{QEMU} is not installed (./setup.sh installs it: Debian package qemu-system-ppc)"
    return None


class QemuGuest:
    def __init__(self, elf: str, vcpus: int = 1, cpu: str = "e500mc", ram_mb: int = 256,
                 extra: tuple[str, ...] = ()):
        self.elf, self.vcpus, self.cpu, self.ram_mb, self.extra = str(elf), vcpus, cpu, ram_mb, extra
        self.dir: str | None = None
        self.proc: subprocess.Popen | None = None
        self.rsp: RspClient | None = None

    def __enter__(self) -> "QemuGuest":
        why = qemu_available()
        if why:
            raise RuntimeError(why)
        self.dir = tempfile.mkdtemp(prefix="cosim-qemu-")
        sock = os.path.join(self.dir, "gdb.sock")
        cmd = [QEMU, "-M", "ppce500", "-cpu", self.cpu, "-smp", str(self.vcpus), "-m", str(self.ram_mb),
               "-nographic", "-nodefaults", "-no-reboot", "-S",
               "-chardev", f"socket,id=gdb0,path={sock},server=on,wait=off", "-gdb", "chardev:gdb0",
               "-kernel", self.elf, *self.extra]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        try:
            self.rsp = RspClient.connect(sock, retry_for=20.0)
        except Exception:
            err = b""
            if self.proc.poll() is not None and self.proc.stderr is not None:
                err = self.proc.stderr.read()
            self.__exit__(None, None, None)
            raise RuntimeError(f"QEMU's gdbstub did not answer: {err.decode(errors='replace').strip()}")
        return self

    def run_for(self, seconds: float) -> None:
        """Continue every vCPU for `seconds` of wall time, then stop them all."""
        import time
        self.rsp.send("c")
        time.sleep(seconds)
        self.rsp.interrupt()
        self.rsp.reply()

    def __exit__(self, *exc) -> None:
        if self.rsp is not None:
            self.rsp.close()
            self.rsp = None
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            if self.proc.stderr is not None:
                self.proc.stderr.close()
            self.proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
