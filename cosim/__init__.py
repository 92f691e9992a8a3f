"""kvmppc-cosim: software-breakpoint strategies for KVM on PowerPC Book E, co-simulated."""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("kvmppc-cosim")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

SCHEMA_VERSION = 1   # of every JSON document cosim writes (run report, compare, sweep)

# Before anything imports NumPy: its OpenBLAS would start a worker thread per core in every process
# (the supervisor, each vCPU), idle here (no linear algebra) and blocking no signal, so a SIGTERM or
# SIGINT sent to a process could be taken by that thread, where it only sets CPython's flag and does not
# wake a main thread blocked in a system call (a stuck teardown step then ignored the second SIGTERM).
import os as _os

_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
