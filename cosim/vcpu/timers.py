"""The Book E timer facility of one vCPU in virtual time: time base, decrementer, fixed-interval timer
and watchdog, all driven by the guest instruction count (one time-base tick per instruction), as QEMU's
icount drives its virtual clock: the same run gives the same ticks, a `--seed` replay lands them on the
same instructions, and time stands still whenever the vCPU does not run (a gdb stop, a pause).

The engine writes the time base into unicorn before every block (the guest reads it natively); here
are the registers with side effects (DEC, DECAR, TSR write-one-to-clear, TCR, TBL/TBU writes) and the
next instant the vCPU must stop for (`deadline`, an instruction count the engine's budget stops at
exactly). Pending interrupts are status bits: TSR[DIS] with TCR[DIE] (decrementer, IVOR10), TSR[FIS]
with TCR[FIE] (FIT, IVOR11), TSR[WIS] with TCR[WIE] (watchdog, IVOR12, critical). References: Power ISA
2.06 Book III-E ch. 8, e500 core reference manual (TCR[WPEXT/FPEXT]), QEMU's hw/ppc/ppc_booke.c.
"""
from __future__ import annotations

from ..isa import SPR

TSR_ENW, TSR_WIS, TSR_WRS, TSR_DIS, TSR_FIS = 0x80000000, 0x40000000, 0x30000000, 0x08000000, 0x04000000
TCR_WP, TCR_WRC, TCR_WIE, TCR_DIE = 0xC0000000, 0x30000000, 0x08000000, 0x04000000
TCR_FP, TCR_FIE, TCR_ARE = 0x03000000, 0x00800000, 0x00400000
TCR_WPEXT, TCR_FPEXT = 0x001E0000, 0x0001E000
DEC, DECAR, TSR, TCR = SPR["DEC"], SPR["DECAR"], SPR["TSR"], SPR["TCR"]
NEVER = 2**64 - 1


def _period_bit(tcr: int, fit: bool) -> int:
    """The time-base bit (0 = least significant) whose 0->1 transition is the FIT or watchdog event:
    e500 extends TCR[FP]/[WP] by FPEXT/WPEXT to a 6-bit selector of TB bit 63-n (Book E numbering),
    as QEMU's booke_get_fit_target/booke_get_wdt_target."""
    if fit:
        sel = ((tcr & TCR_FPEXT) >> 13) << 2 | (tcr & TCR_FP) >> 24
    else:
        sel = ((tcr & TCR_WPEXT) >> 17) << 2 | (tcr & TCR_WP) >> 30
    return max(0, 63 - sel)


def _next_rise(tb: int, bit: int) -> int:
    """The first time-base value > tb at which `bit` goes from 0 to 1."""
    period = 1 << (bit + 1)
    base = tb - tb % period + (1 << bit)
    return base if base > tb else base + period


class Timers:
    """`spr` is the vCPU's architected SPR file (the run page), `clock()` its instruction count,
    `timebase()`/`set_timebase(tb)` the engine's time base."""

    def __init__(self, spr, clock, timebase, set_timebase):
        self.spr = spr
        self.clock = clock
        self.timebase = timebase
        self.set_timebase = set_timebase
        self.dec_start = 0           # clock when DEC was last written (or reloaded)
        self.dec_value = 0           # what it was written to
        self.fired = {"dec": 0, "fit": 0, "wdt": 0}
        self.merged = {"dec": 0}     # expiries while the last one was still pending (one interrupt for both:
                                     # the guest kept MSR[EE] off that long; not a loss)
        self.owed = {"dec": False}   # an expiry that raised TSR[DIS] not delivered yet (a delivered one's
                                     # handler may not have cleared DIS yet: that one is not owed)
        self._fit_seen = 0           # time base when FIT/watchdog status was last brought up to date
        self._wdt_seen = 0

    # --- registers ---------------------------------------------------------------------------------
    def read_dec(self) -> int:
        left = self.dec_value - (self.clock() - self.dec_start)
        return left if left > 0 else 0

    def write_dec(self, value: int) -> None:
        self.dec_value = value & 0xFFFFFFFF
        self.dec_start = self.clock()
        self.spr[DEC] = self.dec_value

    def read_tsr(self) -> int:
        self._update_status()
        return int(self.spr[TSR])

    def write_tsr(self, value: int) -> None:
        """Write one to clear."""
        self._update_status()
        self.spr[TSR] = int(self.spr[TSR]) & ~value & 0xFFFFFFFF

    def write_tcr(self, value: int) -> None:
        self._update_status()
        self.spr[TCR] = value & 0xFFFFFFFF

    def write_tbl(self, value: int) -> None:
        self._update_status()
        self.set_timebase((self.timebase() & ~0xFFFFFFFF) | (value & 0xFFFFFFFF))
        self._fit_seen = self._wdt_seen = self.timebase()

    def write_tbu(self, value: int) -> None:
        self._update_status()
        self.set_timebase((self.timebase() & 0xFFFFFFFF) | (value & 0xFFFFFFFF) << 32)
        self._fit_seen = self._wdt_seen = self.timebase()

    # --- events ------------------------------------------------------------------------------------
    def deadline(self) -> int | None:
        """The instruction count at which the next event the guest can observe as an interrupt
        happens (None: none is armed). Status bits nobody waits on are brought up to date lazily."""
        now = self.clock()
        out = NEVER
        if self.dec_value:            # (already past when other vCPUs moved the shared clock: due now)
            out = self.dec_start + self.dec_value
        tcr = int(self.spr[TCR])
        tb = self.timebase()
        if tcr & TCR_FIE:
            out = min(out, now + _next_rise(tb, _period_bit(tcr, True)) - tb)
        if tcr & (TCR_WIE | TCR_WRC):
            out = min(out, now + _next_rise(tb, _period_bit(tcr, False)) - tb)
        return None if out == NEVER else out

    def advance(self) -> str | None:
        """Called when the clock reached the deadline: apply what happened (status bits, auto-reload).
        Returns "reset" when the watchdog asks for a reset, else None."""
        if self.dec_value and self.read_dec() == 0 and self.dec_start + self.dec_value <= self.clock():
            if int(self.spr[TCR]) & TCR_DIE:          # an expiry the guest will take as an interrupt
                self.fired["dec"] += 1
                if int(self.spr[TSR]) & TSR_DIS:
                    self.merged["dec"] += 1
                else:
                    self.owed["dec"] = True           # until the core delivers it (`delivered`)
            self.spr[TSR] = int(self.spr[TSR]) | TSR_DIS
            end = self.dec_start + self.dec_value
            if int(self.spr[TCR]) & TCR_ARE and int(self.spr[DECAR]):
                period = int(self.spr[DECAR])
                behind = (self.clock() - end) // period   # whole periods the shared clock already passed
                if behind and int(self.spr[TCR]) & TCR_DIE:   # (another vCPU ran meanwhile): each an expiry,
                    self.fired["dec"] += behind                # merged into the one interrupt pending
                    self.merged["dec"] += behind
                self.dec_value = period
                self.dec_start = end + behind * period
            else:
                self.dec_value = 0
                self.dec_start = end
        return self._update_status()

    def _update_status(self) -> str | None:
        tb = self.timebase()
        tcr = int(self.spr[TCR])
        tsr = int(self.spr[TSR])
        if tb > self._fit_seen and _next_rise(self._fit_seen, _period_bit(tcr, True)) <= tb:
            tsr |= TSR_FIS
            self.fired["fit"] += 1
        self._fit_seen = tb
        out = None
        if tb > self._wdt_seen and _next_rise(self._wdt_seen, _period_bit(tcr, False)) <= tb:
            self.fired["wdt"] += 1
            if not tsr & TSR_ENW:
                tsr |= TSR_ENW
            elif not tsr & TSR_WIS:
                tsr |= TSR_WIS
            elif tcr & TCR_WRC:
                tsr = (tsr & ~TSR_WRS) | ((tcr & TCR_WRC) & TSR_WRS)
                out = "reset"
        self._wdt_seen = tb
        self.spr[TSR] = tsr
        return out

    def pending_at_end(self) -> dict[str, bool]:
        """What the report counts as still pending: FIT and watchdog as asserted, the decrementer only
        for an expiry not yet delivered whose status bit is still up (a delivered one's handler may not
        have cleared TSR[DIS] yet; one cleared without its interrupt is lost)."""
        dec, fit, wdt = self.pending()
        return {"dec": dec and self.owed["dec"], "fit": fit, "wdt": wdt}

    def pending(self) -> tuple[bool, bool, bool]:
        """(decrementer, FIT, watchdog) interrupts asserted by TSR & TCR (before MSR[EE]/[CE])."""
        tsr, tcr = int(self.spr[TSR]), int(self.spr[TCR])
        return bool(tsr & TSR_DIS and tcr & TCR_DIE), bool(tsr & TSR_FIS and tcr & TCR_FIE), \
            bool(tsr & TSR_WIS and tcr & TCR_WIE)
