"""lwarx/stwcx. that hold across vCPU processes: the Python side of cosim/vcpu/_atomics.c (why and how
are in its header). The engine owns one `Atomics` per unicorn instance and hands it unicorn's entry
points (this module does not import unicorn); the state is a NumPy buffer the C callbacks use.

Invariants: a stwcx. succeeds only if the word still holds what this vCPU's lwarx loaded (a host
compare-and-swap on shared guest RAM); the reservation is lost by any stwcx. and by an interrupt
delivered to the guest (`lose`).
"""
from __future__ import annotations

import ctypes

import numpy as np

try:
    from . import _atomics
except ImportError:  # pragma: no cover - the extension is built by `pip install -e .`
    _atomics = None

NONE = 2**64 - 1
XO_LWARX, XO_STWCX = 20, 150


class _State(ctypes.Structure):
    """cosim_atomics of _atomics.c (before its per-page bytes)."""
    _fields_ = [("ram", ctypes.c_void_p), ("ram_size", ctypes.c_uint64),
                ("reg_read", ctypes.c_void_p), ("reg_write", ctypes.c_void_p), ("hook_add", ctypes.c_void_p),
                ("reg_gpr0", ctypes.c_int32), ("reg_pc", ctypes.c_int32), ("reg_cr", ctypes.c_int32),
                ("reg_xer", ctypes.c_int32),
                ("valid", ctypes.c_uint64), ("res_addr", ctypes.c_uint64), ("res_val", ctypes.c_uint64),
                ("skip", ctypes.c_uint64 * 4), ("dac", ctypes.c_uint64 * 2),
                ("larx", ctypes.c_uint64), ("stcx_ok", ctypes.c_uint64), ("stcx_fail", ctypes.c_uint64),
                ("passed", ctypes.c_uint64), ("sites", ctypes.c_uint64), ("hook_errors", ctypes.c_uint64)]


def is_atomic(word: int) -> bool:
    """lwarx, or stwcx. (the two the C hooks execute)."""
    xo = (word >> 1) & 0x3FF
    return word >> 26 == 31 and (xo == XO_LWARX or (xo == XO_STWCX and word & 1 == 1))


class Atomics:
    available = _atomics is not None

    def __init__(self, uch, ram_address: int, ram_size: int, entry_points: dict[str, int],
                 regs: dict[str, int]):
        """`uch`: the uc_engine handle; `entry_points`: addresses of uc_reg_read, uc_reg_write,
        uc_hook_add; `regs`: unicorn ids of gpr0, pc, cr, xer."""
        fill, exec_addr, header = _atomics.addresses()
        assert header == ctypes.sizeof(_State), (header, ctypes.sizeof(_State))
        self._buf = np.zeros(header + (ram_size + 31) // 32, np.uint8)   # + one bit per RAM word
        self.state = _State.from_address(self._buf.ctypes.data)
        s = self.state
        s.ram, s.ram_size = ram_address, ram_size
        s.reg_read, s.reg_write, s.hook_add = (entry_points[k] for k in ("reg_read", "reg_write", "hook_add"))
        s.reg_gpr0, s.reg_pc, s.reg_cr, s.reg_xer = (regs[k] for k in ("gpr0", "pc", "cr", "xer"))
        for i in range(4):
            s.skip[i] = NONE
        for i in range(2):
            s.dac[i] = NONE
        self._uch = uch
        self.fill_address = fill
        self._exec = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64,
                                      ctypes.c_uint32)(exec_addr)

    @property
    def user_data(self) -> int:
        return self._buf.ctypes.data

    def execute(self, pc: int, word: int) -> bool:
        """Execute `word` (lwarx/stwcx.) as if at `pc`; True if done (PC = pc + 4), False if it is
        not one or is left to unicorn (unaligned, outside RAM, on an armed DAC)."""
        return bool(self._exec(self._buf.ctypes.data, self._uch, pc, word))

    def lose(self) -> None:
        """The reservation is lost (an interrupt was delivered to the guest)."""
        self.state.valid = 0

    def set_skip(self, addresses) -> None:
        """Sites left to unicorn: armed IACs and the `until` address (their hooks stop first)."""
        addrs = [a for a in addresses if a is not None][:4]
        for i in range(4):
            self.state.skip[i] = addrs[i] if i < len(addrs) else NONE

    def set_dac(self, addresses) -> None:
        addrs = [a for a in addresses if a is not None][:2]
        for i in range(2):
            self.state.dac[i] = addrs[i] if i < len(addrs) else NONE

    def stats(self) -> dict[str, int]:
        s = self.state
        return {"sites": s.sites, "lwarx": s.larx, "stwcx_ok": s.stcx_ok, "stwcx_fail": s.stcx_fail,
                "left_to_unicorn": s.passed, "hook_errors": s.hook_errors}
