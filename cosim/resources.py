"""Host resources a run needs, checked before anything starts: open files and shared memory.

A run that meets a limit half-way cannot end well: with too few file descriptors psutil, libzmq (which
aborts the process) or the teardown fail; with less room in the shared-memory filesystem than guest RAM
the first write past it is a SIGBUS. Both are known before the first process starts, so they are checked
then and reported as one line naming what is needed (exit 2 from the command line).

- Open files: each process of a run needs a few dozen descriptors (zmq sockets, their signalling
  eventfds and connections, shared-memory blocks, pipes); the supervisor and userspace grow with the vCPU
  count. Measured peaks (supervisor, the largest): 40 at 1 vCPU, 46 at 2, 62 at 4, 82 at 8, 146 at 16;
  `fds_needed` leaves a margin over those. A soft limit below it is raised to the hard limit (children
  inherit it through the forkserver); a hard limit below it is an error.
- File size: guest RAM is a file in /dev/shm, so `ulimit -f` applies to it (raised like the fds).
- Shared memory: guest RAM, the run pages and the breakpoint ledger are blocks in /dev/shm. `check_shm`
  compares their size with the free space there (`shm_free`, the probe tests replace); the blocks are then
  allocated up front (cosim/machine/shm.py `allocate`), so a shortage that appears meanwhile is an error at
  creation, never a SIGBUS later.
"""
from __future__ import annotations

import os
import resource

SHM_DIR = "/dev/shm"
FDS_BASE = 64               # a run's fixed share, with margin (measured: 40 at 1 vCPU)
FDS_PER_VCPU = 8            # per vCPU (measured: ~6.6 in the supervisor, ~4.6 in userspace)
SHM_MARGIN = 1 << 20        # run pages and ledger are well under this; plus tmpfs rounding


class ResourceShortage(RuntimeError):
    """The host cannot give a run what it needs. str() is one line: what, how much, where."""


def fds_needed(vcpus: int) -> int:
    return FDS_BASE + FDS_PER_VCPU * vcpus


def ensure_fds(vcpus: int) -> int:
    """Make sure this process (and the children it starts from now on) may open enough files: raise the
    soft limit to the hard one when it is too low. Returns the soft limit; raises ResourceShortage when
    even the hard limit is too low."""
    need = fds_needed(vcpus)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return soft
    if hard == resource.RLIM_INFINITY or hard >= need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return hard
        except (ValueError, OSError):
            pass
    raise ResourceShortage(f"open files: a run with {vcpus} vCPU(s) needs about {need} file descriptors "
                           f"per process, the limit is {soft} (hard limit {hard}); raise it, "
                           f"e.g. `ulimit -n {need}`")


def shm_free(path: str = SHM_DIR) -> int:
    """Bytes an unprivileged process may still allocate in the shared-memory filesystem."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def shm_needed(ram: int) -> int:
    return ram + SHM_MARGIN


def check_shm(ram: int, path: str = SHM_DIR) -> None:
    """Raise ResourceShortage if guest RAM (and the run's small blocks) cannot fit in `path` now."""
    need = shm_needed(ram)
    try:
        free = shm_free(path)
    except OSError as e:
        raise ResourceShortage(f"shared memory: cannot inspect {path}: {e.strerror or e}") from None
    if free < need:
        raise ResourceShortage(f"shared memory: a run with machine.ram = {_mib(ram)} needs {_mib(need)} "
                               f"free in {path}, only {_mib(free)} is free (make it larger, e.g. "
                               f"docker run --shm-size={-(-need // (1 << 20)) + 16}m, or lower machine.ram)")


def ensure_file_size(ram: int) -> None:
    """Guest RAM is a file in /dev/shm: the file-size limit (`ulimit -f`) must allow it. A soft limit
    below is raised to the hard one; a hard limit below is a ResourceShortage. (Past it, creating the
    block fails with EFBIG, and CPython's resource tracker prints a KeyError traceback.)"""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft == resource.RLIM_INFINITY or soft >= ram:
        return
    if hard == resource.RLIM_INFINITY or hard >= ram:
        try:
            resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
            return
        except (ValueError, OSError):
            pass
    raise ResourceShortage(f"file size: guest RAM (machine.ram = {_mib(ram)}) is a file in {SHM_DIR}, the "
                           f"file-size limit is {_mib(soft)} (hard limit {_mib(hard)}); raise it "
                           f"(ulimit -f unlimited)")


def check(vcpus: int, ram: int) -> None:
    """Everything a run of `vcpus` vCPUs and `ram` bytes of guest RAM needs from the host."""
    ensure_fds(vcpus)
    ensure_file_size(ram)
    check_shm(ram)


def _mib(n: int) -> str:
    if n == resource.RLIM_INFINITY:
        return "unlimited"
    return f"{n / (1 << 20):.0f} MiB" if n >= 1 << 20 else f"{n / 1024:.0f} KiB"
