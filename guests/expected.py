"""Python reference for what the guest programs compute (see README.md).

Standalone (no imports from cosim) so a test can load it by path:

    spec = importlib.util.spec_from_file_location("guest_expected", REPO / "guests/expected.py")
"""

from __future__ import annotations

MASK = 0xFFFFFFFF
MAX_VCPUS = 16
WARN_LOG_LEN = 256
CFG_ITERATIONS_DEFAULT = 1000
WARNS_PER_ITER = {"warn_storm": 3, "smp_workers": 1}

EXIT_OK, EXIT_BUG, EXIT_BAD_PROG, EXIT_BAD_PIR, EXIT_UNEXPECTED = 0, 2, 3, 4, 0xDEAD
NOT_SET = 0xFFFFFFFF  # initial value of exit_code[] and unexpected_ivor[]


def rotl32(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & MASK


def smp_workers(pir: int, iterations: int) -> tuple[int, list[int]]:
    """(work_result[pir], final work_data[pir][0:256]) after *iterations* iterations."""
    a = [((pir << 16) + i) & MASK for i in range(256)]
    acc = 0
    for k in range(1, iterations + 1):
        for i in range(256):
            acc = ((rotl32(acc, 5) ^ a[i]) + k) & MASK
            a[i] = acc
    return acc, a


def checksum(code: bytes) -> int:
    """selfcheck's checksum of a word-aligned code region (big-endian words)."""
    c = 0
    for off in range(0, len(code) - len(code) % 4, 4):
        c = rotl32(c, 1) ^ int.from_bytes(code[off:off + 4], "big")
    return c


def counters(program: str, iterations: int = CFG_ITERATIONS_DEFAULT) -> dict[str, int]:
    """Per-vCPU counter values after an undisturbed run (no debugger, no planted breakpoints)."""
    n = iterations
    base = dict(cnt_iter=n, cnt_hits=n, cnt_warn=0, cnt_bug=0, cnt_bad_prog=0, cnt_syscall=0,
                cnt_debug=0, cnt_mismatch=0, exit_code=EXIT_OK, unexpected_ivor=NOT_SET)
    if program == "warn_storm":
        base.update(cnt_hits=2 * n, cnt_warn=WARNS_PER_ITER["warn_storm"] * n)
    elif program == "smp_workers":
        base.update(cnt_warn=n)
    elif program == "guest_iac":
        base.update(cnt_debug=2 * n)
    elif program not in ("loop", "selfcheck", "atomics"):
        raise KeyError(f"unknown guest program {program!r}")
    return base
