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


def _bound_unix_paths() -> set[str] | None:
    """Paths of every bound unix socket still open in some process (/proc/net/unix); None if unknown.
    Read passively: connecting to a forkserver's listener would make it fork or fail."""
    try:
        with open("/proc/net/unix") as f:
            next(f)
            return {parts[7] for parts in (line.split() for line in f) if len(parts) >= 8}
    except (OSError, StopIteration):
        return None


def _dead_forkserver_dir(path: str, bound: set[str] | None) -> bool:
    """A pymp-* directory, two seconds old or more, holding only forkserver listener sockets that no
    process has open any more (a younger one may be a forkserver between mkdir and bind)."""
    if bound is None:
        return False
    try:
        if time.time() - os.stat(path).st_mtime < 2:
            return False
        names = os.listdir(path)
    except OSError:
        return False
    return bool(names) and all(n.startswith("listener-") and os.path.join(path, n) not in bound
                               for n in names)


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
    bound = _bound_unix_paths() if any(n.startswith("pymp-") for n in entries) else None
    for n in entries:
        path = os.path.join(tmp, n)
        if (_orphan(n) or (n.startswith("pymp-") and _dead_forkserver_dir(path, bound))) and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
            if not os.path.exists(path):
                removed.append(path)
    return removed
