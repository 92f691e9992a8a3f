"""kvmppc-cosim: software-breakpoint strategies for KVM on PowerPC Book E, co-simulated."""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("kvmppc-cosim")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

SCHEMA_VERSION = 1   # of every JSON document cosim writes (run report, compare, sweep)
