"""The Book E SPRs gdb sees: which registers the `org.qemu.power.spr` feature lists for a CPU model, in
what order, and the rules for reading and writing them. Pure: works on a vCPU's SPR file (the `spr`
array of its run page) and its KVM_SET_GUEST_DEBUG control word, no I/O.

Layout (after QEMU 7.2's generated `power-spr.xml`): feature `org.qemu.power.spr`, one
`<reg name="<lower-case name>" bitsize="32" group="spr"/>` per SPR, in SPR-number order. Registers
already in `org.gnu.gdb.power.core` (xer, lr, ctr; msr is core too) are not repeated, and only the
SPRs this model implements are listed (QEMU also lists MMU and cache registers). The timer registers are
QEMU's `decr`, `decar`, `tsr`, `tcr`: the vCPU writes the live decrementer into its run page at every stop,
and a value gdb leaves there different from it is a write of DEC when the vCPU resumes (cosim/vcpu/core.py
`Core.load_timer_sprs`): `set $decr = 1` then `stepi` steps with the decrementer expiring.

Access rules are the guest's own (cosim/vcpu/core.py `Core.read_spr` / `write_spr`), so what gdb
shows is what `mfspr` would return and a gdb write does what `mtspr` would do:
- reading DBCR0 while the host debugs (KVM_GUESTDBG_ENABLE) shows DBCR0[EDM] set;
- PIR and PVR are read-only;
- while the host debugs, the debug SPRs (DBCR0-2, DBSR, IAC1/2, DAC1/2) belong to the external
  debugger: a write is refused (the guest's is ignored), the guest's own values stay as they were;
- otherwise DBSR is write-one-to-clear and DBCR0[RST] / DBCR0[EDM] are never set by a write;
- TSR is write-one-to-clear (gdb clears a pending timer interrupt by writing its bit);
- MSR[DE] cannot change while the host debugs (MSRP[DEP]).
A refused write raises `SprWriteRefused` (the stub answers `E0d`, EACCES; the SPR is unchanged).
The host's own points (KVM_SET_GUEST_DEBUG) are not SPRs: `monitor info debug` shows them.
"""
from __future__ import annotations

from ..isa import SPR, SPR_NAME, Dbcr0, GuestDebug, Msr

FEATURE = "org.qemu.power.spr"
GROUP = "spr"

_COMMON = (["DEC", "SRR0", "SRR1", "DECAR", "CSRR0", "CSRR1", "DEAR", "ESR", "IVPR"]
           + [f"SPRG{i}" for i in range(8)]
           + ["PIR", "PVR", "DBSR", "DBCR0", "DBCR1", "DBCR2", "IAC1", "IAC2", "DAC1", "DAC2", "TSR", "TCR"]
           + [f"IVOR{i}" for i in range(16)]
           + ["MCSRR0", "MCSRR1", "DSRR0", "DSRR1"])
MODEL_SPRS: dict[str, tuple[str, ...]] = {
    # e500v2: SPE / embedded FP (IVOR32-34) and performance monitor (IVOR35)
    "e500v2": tuple(_COMMON + [f"IVOR{i}" for i in range(32, 36)]),
    # e500mc: E.HV adds EPCR, MSRP and the hypervisor vectors; doorbells IVOR36/37
    "e500mc": tuple(_COMMON + [f"IVOR{i}" for i in (*range(32, 38), 40, 41, 42)] + ["EPCR", "MSRP"]),
}
"""CPU model -> the SPRs gdb is shown (any order here; `spr_layout` sorts by SPR number)."""

GDB_NAME = {"DEC": "decr"}
"""QEMU's gdb name where it is not the SPR's own (lower-cased)."""

READ_ONLY = frozenset({SPR["PIR"], SPR["PVR"]})
DEBUG_SPRS = frozenset(SPR[n] for n in ("DBCR0", "DBCR1", "DBCR2", "DBSR", "IAC1", "IAC2", "IAC3",
                                        "IAC4", "DAC1", "DAC2"))


class SprWriteRefused(Exception):
    """The guest could not make this write now either (the message says why)."""


def spr_layout(model: str) -> tuple[tuple[str, int], ...]:
    """(gdb name, SPR number) pairs of `model`, in SPR-number order: the order of the feature and
    of the remote register numbers after the core registers."""
    try:
        names = MODEL_SPRS[model]
    except KeyError:
        raise ValueError(f"no SPR layout for CPU model {model!r}") from None
    return tuple(sorted(((GDB_NAME.get(n, n.lower()), SPR[n]) for n in names), key=lambda p: p[1]))


def host_debugs(control: int) -> bool:
    return bool(control & GuestDebug.ENABLE)


def read_spr(spr_file, number: int, control: int) -> int:
    """What `mfspr number` returns in the guest right now."""
    value = int(spr_file[number])
    if number == SPR["DBCR0"] and host_debugs(control):
        value |= Dbcr0.EDM
    return value & 0xFFFFFFFF


def write_spr(spr_file, number: int, value: int, control: int) -> int:
    """Do what `mtspr number` would do; returns the value now held. Raises SprWriteRefused."""
    value &= 0xFFFFFFFF
    name = _name(number)
    if number in READ_ONLY:
        raise SprWriteRefused(f"{name} is read-only")
    if number in DEBUG_SPRS:
        if host_debugs(control):
            raise SprWriteRefused(f"{name}: the host debugs this vCPU (DBCR0[EDM]), the debug "
                                  "registers are not the guest's now")
        if number == SPR["DBSR"]:                 # write one to clear
            value = int(spr_file[number]) & ~value & 0xFFFFFFFF
        elif number == SPR["DBCR0"]:
            value &= ~(Dbcr0.RST | Dbcr0.EDM)
    elif number == SPR["TSR"]:                    # write one to clear
        value = int(spr_file[number]) & ~value & 0xFFFFFFFF
    spr_file[number] = value
    return value


def write_msr(old: int, value: int, control: int) -> int:
    """The MSR a write of `value` leaves: MSR[DE] is frozen while the host debugs."""
    value &= 0xFFFFFFFF
    if host_debugs(control):
        value = (value & ~Msr.DE) | (old & Msr.DE)
    return value


def _name(number: int) -> str:
    return SPR_NAME.get(number, f"SPR {number}").lower()
