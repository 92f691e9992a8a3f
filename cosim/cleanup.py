"""Reclaiming what a run left behind when its supervisor could not tear down (SIGKILL of the whole
process group kills the resource tracker too): shared-memory blocks and run directories whose owner is
dead, and multiprocessing forkserver directories nobody listens on any more.

Every block and run directory carries its owner's pid in its name (`cosim_<pid>_<hex>`,
`cosim-run-<pid>-<hex>`, `cosim-bp-<pid>-<hex>`; run directories `cosim-<pid>-<random>`); only those
whose owner is gone are touched, so parallel runs never reclaim each other. Each run reclaims at start;
`cosim cleanup` does it on demand.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import time

from .transport import process_alive

SHM_DIR = "/dev/shm"
_OWNED = re.compile(r"cosim(?:-[a-z]+)?[-_](\d+)[-_][0-9A-Za-z_]+")


def owner_pid(name: str) -> int | None:
    m = _OWNED.fullmatch(name)
    return int(m.group(1)) if m else None


def _orphan(name: str) -> bool:
    pid = owner_pid(name)
    return pid is not None and pid != os.getpid() and not process_alive(pid)


def _dead_forkserver_dir(path: str) -> bool:
    """A pymp-* directory, a minute old or more, holding only forkserver listener sockets that refuse
    connections (a younger one may be a forkserver between bind and listen)."""
    try:
        if time.time() - os.stat(path).st_mtime < 60:
            return False
        names = os.listdir(path)
    except OSError:
        return False
    if not names or not all(n.startswith("listener-") for n in names):
        return False
    for n in names:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(os.path.join(path, n))
            return False                         # somebody serves it
        except ConnectionRefusedError:
            pass
        except OSError:
            return False
        finally:
            s.close()
    return True


def reclaim(shm_dir: str = SHM_DIR, tmp_dir: str | None = None) -> list[str]:
    """Remove orphaned blocks and directories; returns what was removed."""
    removed = []
    try:
        shm = os.listdir(shm_dir)
    except OSError:
        shm = []
    for n in shm:
        if _orphan(n):
            try:
                os.unlink(os.path.join(shm_dir, n))
                removed.append(os.path.join(shm_dir, n))
            except OSError:
                pass
    tmp = tmp_dir or tempfile.gettempdir()
    try:
        entries = os.listdir(tmp)
    except OSError:
        entries = []
    for n in entries:
        path = os.path.join(tmp, n)
        if (_orphan(n) or (n.startswith("pymp-") and _dead_forkserver_dir(path))) and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
            if not os.path.exists(path):
                removed.append(path)
    return removed
