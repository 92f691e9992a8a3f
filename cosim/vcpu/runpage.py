"""The per-vCPU run page: the model of `struct kvm_run` plus the vCPU's architected register file.

One shared-memory block per VM holds one record per vCPU (a NumPy structured array), after a header
with what the vCPUs share: the VM's virtual clock (`clock_address`), the instructions all vCPUs retired,
which their time bases follow on a machine of more than one vCPU (as QEMU's virtual clock is one for all
CPUs, and Linux requires the cores' time bases in step). The vCPU process
owns the contents while it runs; kernel and userspace read (and, for KVM_SET_REGS-like operations,
write) a record only while that vCPU is stopped (paused, halted, or blocked in an exit). Registers
live in unicorn while the guest runs and are written back here at every stop.
"""
from __future__ import annotations

from enum import IntEnum

import numpy as np

from ..cpu_models import Event
from ..machine.shm import SharedBlock

LEVELS = ("vcpu", "kernel", "userspace")
EVENTS = tuple(e.value for e in Event) + ("halt", "fault")

DAC_RANGE = 0x4
"""dbg_dac_rw[0] bit: the two DACs watch one range, DAC1 <= EA < DAC2 (DBCR2[DAC12M] = 0b10, range inclusive)."""

RUNPAGE = np.dtype([
    ("gpr", "<u4", 32), ("pc", "<u4"), ("msr", "<u4"), ("cr", "<u4"), ("lr", "<u4"), ("ctr", "<u4"),
    ("xer", "<u4"),
    ("spr", "<u4", 1024),                    # architected SPR file, indexed by SPR number
    ("dbg_control", "<u4"),                  # KVM_SET_GUEST_DEBUG control (the debug-settings block:
                                             # userspace writes it while the vCPU is stopped; it takes
                                             # effect with the next Continue/Resume, like KVM_RUN)
    ("dbg_iac", "<u4", 2), ("dbg_iac_on", "<u4", 2),   # host hardware breakpoints
    ("dbg_dac", "<u4", 2), ("dbg_dac_rw", "<u4", 2),   # host watchpoints: bit0 read, bit1 write; bit2
                                             # (DAC_RANGE) of slot 0: DAC1 <= EA < DAC2, one range
    ("dbg_table_gen", "<u4"),                # generation of the patched-address table (the ledger) that
                                             # trap-kernel's exit handler reads: bumped by userspace
    ("dbg_active", "<u4"), ("dbg_table_gen_active", "<u4"),   # the two above as the vCPU last loaded
                                             # them (Continue(reload_debug)): what the kernel judges an
                                             # exit by, so an exit in flight meets the settings it ran with
    ("state", "<u4"), ("exit_code", "<u4"),
    ("exit_event", "<u4"), ("exit_pc", "<u4"), ("exit_word", "<u4"),
    ("instructions", "<u8"),                 # retired instructions (C block hook)
    ("vclock", "<u8"),                       # deterministic traces: the exit's time at its last hop
    ("tb_offset", "<u8"),                    # time base = clock + tb_offset (the shared clock: the header)
    ("exits", "<u8", (len(EVENTS), len(LEVELS))),  # exits by event and by the level that handled them
], align=True)


class State(IntEnum):
    CREATED = 0
    RUNNING = 1
    PAUSED = 2
    IN_EXIT = 3
    HALTED = 4
    FAULTED = 5


def header_size(count: int) -> int:
    """Bytes before the first run page: the shared virtual clock (uint64) and 7 reserved, then per vCPU
    its idle state and its next timer deadline (two uint64: cosim/vcpu/idle.py), to a multiple of 64."""
    return (64 + 16 * count + 63) // 64 * 64


class RunPages:
    """All run pages of one VM in one shared-memory block."""

    def __init__(self, block: SharedBlock, count: int):
        self.block = block
        self.count = count
        size = header_size(count)
        self.header = np.frombuffer(block.buf, np.uint64, count=size // 8)
        self.idle_state = self.header[8:8 + count]           # cosim/vcpu/idle.py
        self.idle_deadline = self.header[8 + count:8 + 2 * count]
        self.pages = np.frombuffer(block.buf, RUNPAGE, count=count, offset=size)

    @classmethod
    def create(cls, count: int) -> "RunPages":
        rp = cls(SharedBlock.create(header_size(count) + RUNPAGE.itemsize * count, prefix="cosim-run"), count)
        rp.header[:] = 0
        rp.pages[:] = np.zeros(count, RUNPAGE)
        return rp

    @classmethod
    def attach(cls, name: str, count: int) -> "RunPages":
        return cls(SharedBlock.attach(name), count)

    @property
    def name(self) -> str:
        return self.block.name

    def __getitem__(self, index: int):
        """The record of vCPU `index` (a NumPy structured scalar that views the shared memory)."""
        return self.pages[index]

    def record(self, index: int) -> np.ndarray:
        """The record of vCPU `index` as a one-element structured array (fast field views)."""
        return self.pages[index:index + 1]

    @property
    def shares_clock(self) -> bool:
        """More than one vCPU: their time bases follow the header's clock, not each its own count."""
        return self.count > 1

    @property
    def clock_address(self) -> int:
        """The VM's virtual clock: a uint64 the vCPUs' block hooks advance atomically (SMP time base)."""
        return self.header.ctypes.data

    @property
    def clock(self) -> int:
        return int(self.header[0])

    def address_of(self, index: int, field: str) -> int:
        return self.pages.ctypes.data + index * RUNPAGE.itemsize + RUNPAGE.fields[field][1]

    def close(self) -> None:
        self.pages = self.header = self.idle_state = self.idle_deadline = None
        self.block.close()

