"""The Freescale MPIC as QEMU 7.2's hw/intc/openpic.c (models FSL_MPIC_20 and FSL_MPIC_42).

QEMU's ppce500 board under TCG instantiates FSL_MPIC_42 (e500plat.c; it falls back to FSL_MPIC_20
only under KVM without EPR), so that is the board's default here; both are modelled. They differ in
BRR1 (0x00400200 / 0x00400402), FRR's source count (80 / 196), the mode bits GCR keeps (mixed
0x20000000 / proxy 0x60000000), and critical-interrupt routing (20: IDR's CI bits; 42: ILR per source).

Windows inside the 256 KiB (big-endian, 4-byte registers; QEMU's flat view):

    +0x00000 glb      BRR1 (0x0), per-CPU aliases of the accessing CPU (0x40-0xB0), FRR (0x1000),
                      GCR (0x1020; writing the reset bit resets the controller, which then reads 0:
                      U-Boot polls it), VIR (0x1080), PIR (0x1090, reads 0), IPI vector/priority
                      (0x10A0-0x10D0), spurious vector (0x10E0)
    +0x010F0 tmr      TFRR, then per timer TCCR/TBCR/TVPR/TDR (stride 0x40)
    +0x01600 msi      MSIR0-7 (clear on read), MSISR (0x120), MSIIR (0x140, write raises an MSI)
    +0x03800 summary  reads 0 (QEMU's TODO)
    +0x10000 src      per source (stride 0x20): IVPR (+0), IDR (+0x10), ILR (+0x18, MPIC 4.2 only)
    +0x20000 cpu      per CPU (stride 0x1000): IPIDR 0x40-0x70, CTPR 0x80, WHOAMI 0x90, IACK 0xA0,
                      EOI 0xB0
    the rest of the 256 KiB is unassigned (the bus counts it)

Source numbering as QEMU: 0-255 external/internal sources (0-11 external, 16-255 internal, always
level), 256-259 IPIs, 260-263 timers; MSIs are sources 224-231. Priorities, the per-CPU raised and
in-service queues, IACK/EOI, directed and distributed delivery, IPI multicast, critical (CINT)
routing and the RESET outputs (PIR) follow openpic.c line by line.

Outputs: ``on_output(cpu, line, level)`` with line OUTPUT_INT (external interrupt pending), OUTPUT_CINT,
OUTPUT_MCK, OUTPUT_DEBUG or OUTPUT_RESET; like QEMU's qemu_irq_raise/lower it may be called again
with the level it already has. ``on_proxy(enabled)`` when GCR selects external proxy mode (the CPU
then acknowledges through ``iack(cpu)`` itself and puts the vector in EPR). Inputs: ``set_irq(n,
level)`` from devices (the UART is source 42).

Timers count at QEMU's 25 MHz against ``clock()`` (virtual nanoseconds; default: time stands still);
``next_deadline()`` and ``advance(now_ns)`` fire them, for whoever owns virtual time. Left out: the
summary registers (EISR/EIMR), which QEMU leaves out too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .device import Device, Window

__all__ = ["OpenPIC", "FSL_MPIC_20", "FSL_MPIC_42", "OUTPUT_INT", "OUTPUT_CINT", "OUTPUT_MCK",
           "OUTPUT_DEBUG", "OUTPUT_RESET", "MPIC_SIZE", "IACK_OFFSET"]

FSL_MPIC_20, FSL_MPIC_42 = "fsl_mpic_20", "fsl_mpic_42"
OUTPUT_INT, OUTPUT_CINT, OUTPUT_MCK, OUTPUT_DEBUG, OUTPUT_RESET = range(5)
MPIC_SIZE = 0x40000
IACK_OFFSET = 0xA0                     # env->mpic_iack = CCSR + MPIC + 0xa0 (the glb alias)

MAX_CPU, MAX_SRC, MAX_IPI, MAX_TMR, MAX_MSI = 32, 256, 4, 4, 8
MAX_IRQ = MAX_SRC + MAX_IPI + MAX_TMR
IRQ_IPI0, IRQ_TIM0, IRQ_MSI = MAX_SRC, MAX_SRC + MAX_IPI, 224
FLAG_IDR_CRIT, FLAG_ILR = 1, 2
VID_REVISION_1_2 = 2
GCR_RESET, GCR_MODE_MIXED, GCR_MODE_PROXY = 0x80000000, 0x20000000, 0x60000000
TBCR_CI, TCCR_TOG = 0x80000000, 0x80000000
IVPR_MASK, IVPR_ACTIVITY, IVPR_MODE = 1 << 31, 1 << 30, 1 << 29
IVPR_POLARITY, IVPR_SENSE, IVPR_PRIORITY = 1 << 23, 1 << 22, 0xF << 16
IDR_EP, IDR_EP_SHIFT, IDR_CI0_SHIFT = 0x80000000, 31, 30
ILR_INTTGT = {0x00: OUTPUT_INT, 0x01: OUTPUT_CINT, 0x02: OUTPUT_MCK}
NS_PER_TICK = 1000 // 25                # OPENPIC_TIMER_FREQ_MHZ
TYPE_NORMAL, TYPE_FSLINT, TYPE_FSLSPECIAL = 0, 1, 2

MODELS = {   # brr1, flags, nb_irqs, mode mask
    FSL_MPIC_20: (0x00400200, FLAG_IDR_CRIT, 80, GCR_MODE_MIXED),
    FSL_MPIC_42: (0x00400402, FLAG_ILR, 196, GCR_MODE_PROXY),
}


def _priority(ivpr: int) -> int:
    return (ivpr & IVPR_PRIORITY) >> 16


@dataclass
class Source:
    type: int = TYPE_NORMAL
    level: bool = False
    ivpr: int = 0
    idr: int = 0
    destmask: int = 0
    last_cpu: int = 0
    output: int = OUTPUT_INT
    pending: bool = False
    nomask: bool = False


@dataclass
class Queue:
    irqs: set[int] = field(default_factory=set)
    next: int = -1
    priority: int = 0


@dataclass
class Dest:
    ctpr: int = 15
    raised: Queue = field(default_factory=Queue)
    servicing: Queue = field(default_factory=Queue)
    outputs_active: list[int] = field(default_factory=lambda: [0] * 5)


@dataclass
class Timer:
    tccr: int = 0
    tbcr: int = TBCR_CI
    active: bool = False
    origin_ns: int = 0


class OpenPIC(Device):
    size = MPIC_SIZE

    def __init__(self, nb_cpus: int = 1, model: str = FSL_MPIC_42, name: str = "mpic",
                 on_output: Callable[[int, int, bool], None] | None = None,
                 on_proxy: Callable[[bool], None] | None = None,
                 clock: Callable[[], int] | None = None):
        if not 1 <= nb_cpus <= MAX_CPU:
            raise ValueError(f"nb_cpus {nb_cpus} outside 1..{MAX_CPU}")
        if model not in MODELS:
            raise ValueError(f"unknown MPIC model {model!r} (expected one of: {', '.join(MODELS)})")
        self.name = name
        self.model = model
        self.nb_cpus = nb_cpus
        self.brr1, self.flags, self.nb_irqs, self.mode_mask = MODELS[model]
        self.on_output = on_output or (lambda cpu, line, level: None)
        self.on_proxy = on_proxy or (lambda enabled: None)
        self.clock = clock or (lambda: 0)
        self.vector_mask = 0xFFFF
        self.src = [Source() for _ in range(MAX_IRQ)]
        for i in range(16, MAX_SRC):           # internal interrupts, message and MSI: level only
            self.src[i].type, self.src[i].level = TYPE_FSLINT, True
        for i in range(MAX_SRC, MAX_IRQ):      # timers and IPIs: edge, no sense or polarity
            self.src[i].type = TYPE_FSLSPECIAL
        self.dst = [Dest() for _ in range(nb_cpus)]
        self.timers = [Timer() for _ in range(MAX_TMR)]
        self.msir = [0] * MAX_MSI
        super().__init__([
            Window("glb", 0x0, 0x10F0, self._gbl_read, self._gbl_write, 4, 4),
            Window("tmr", 0x10F0, 0x220, self._tmr_read, self._tmr_write, 4, 4),
            Window("msi", 0x1600, 0x200, self._msi_read, self._msi_write, 4, 4),
            Window("summary", 0x3800, 0x800, lambda o, s, c: 0, lambda o, s, v, c: None, 4, 4),
            Window("src", 0x10000, MAX_SRC * 0x20, self._src_read, self._src_write, 4, 4),
            Window("cpu", 0x20000, 0x100 + (MAX_CPU - 1) * 0x1000, self._cpu_read, self._cpu_write, 4, 4),
        ])
        self._gbl_reads: dict[int, Callable[[int], int]] = {
            0x0000: lambda cpu: self.brr1, 0x1000: lambda cpu: self.frr, 0x1020: lambda cpu: self.gcr,
            0x1080: lambda cpu: 0, 0x1090: lambda cpu: 0, 0x10E0: lambda cpu: self.spve}
        self._gbl_writes: dict[int, Callable[[int, int], None]] = {
            0x1020: lambda v, cpu: self._gcr_write(v), 0x1090: lambda v, cpu: self._pir_write(v),
            0x10E0: lambda v, cpu: setattr(self, "spve", v & self.vector_mask)}
        self.reset()

    # -- outputs ---------------------------------------------------------------------------------------
    def _raise(self, cpu: int, line: int = OUTPUT_INT) -> None:
        self.on_output(cpu, line, True)

    def _lower(self, cpu: int, line: int = OUTPUT_INT) -> None:
        self.on_output(cpu, line, False)

    # -- queues (IRQ_check) ----------------------------------------------------------------------------
    def _check(self, q: Queue) -> int:
        nxt, prio = -1, -1
        for irq in sorted(q.irqs):
            p = _priority(self.src[irq].ivpr)
            if p > prio:
                nxt, prio = irq, p
        q.next, q.priority = nxt, prio
        return nxt

    # -- delivery (IRQ_local_pipe / openpic_update_irq / openpic_set_irq) -----------------------------
    def _local_pipe(self, n_cpu: int, n_irq: int, active: bool, was_active: bool) -> None:
        dst, src = self.dst[n_cpu], self.src[n_irq]
        if src.output != OUTPUT_INT:
            # critical interrupts ignore priority, IACK and EOI
            if active:
                if not was_active:
                    dst.outputs_active[src.output] += 1
                    if dst.outputs_active[src.output] == 1:
                        self._raise(n_cpu, src.output)
            elif was_active:
                dst.outputs_active[src.output] -= 1
                if dst.outputs_active[src.output] == 0:
                    self._lower(n_cpu, src.output)
            return
        priority = _priority(src.ivpr)
        if active:
            dst.raised.irqs.add(n_irq)
        else:
            dst.raised.irqs.discard(n_irq)
        self._check(dst.raised)
        if active and priority <= dst.ctpr:
            active = False
        if active:
            if not (self._check(dst.servicing) >= 0 and priority <= dst.servicing.priority):
                self._raise(n_cpu)
        else:
            self._check(dst.servicing)
            if not (dst.raised.priority > dst.ctpr and dst.raised.priority > dst.servicing.priority):
                self._lower(n_cpu)

    def _update_irq(self, n_irq: int) -> None:
        src = self.src[n_irq]
        active = src.pending
        if (src.ivpr & IVPR_MASK) and not src.nomask:
            active = False
        was_active = bool(src.ivpr & IVPR_ACTIVITY)
        if not active and not was_active:
            return
        if active:
            src.ivpr |= IVPR_ACTIVITY
        else:
            src.ivpr &= ~IVPR_ACTIVITY
        if src.destmask == 0:
            return
        if src.destmask == (1 << src.last_cpu):
            self._local_pipe(src.last_cpu, n_irq, active, was_active)
        elif not src.ivpr & IVPR_MODE:                       # directed delivery
            for i in range(self.nb_cpus):
                if src.destmask & (1 << i):
                    self._local_pipe(i, n_irq, active, was_active)
        else:                                                # distributed delivery
            i = src.last_cpu + 1
            while i != src.last_cpu:
                if i == self.nb_cpus:
                    i = 0
                if src.destmask & (1 << i):
                    self._local_pipe(i, n_irq, active, was_active)
                    src.last_cpu = i
                    break
                i += 1

    def set_irq(self, n_irq: int, level: bool | int) -> None:
        """An interrupt source's input line (a device's output)."""
        if not 0 <= n_irq < MAX_IRQ:
            raise ValueError(f"MPIC source {n_irq} out of range")
        src = self.src[n_irq]
        if src.level:
            src.pending = bool(level)
            self._update_irq(n_irq)
        else:
            if level:
                src.pending = True
                self._update_irq(n_irq)
            if src.output != OUTPUT_INT:
                src.pending = False
                self._update_irq(n_irq)

    # -- source registers ------------------------------------------------------------------------------
    def _write_idr(self, n_irq: int, val: int) -> None:
        src = self.src[n_irq]
        normal = (1 << self.nb_cpus) - 1
        mask, crit = normal, 0
        if self.flags & FLAG_IDR_CRIT:
            crit = normal << (IDR_EP_SHIFT - self.nb_cpus)
            mask |= crit | IDR_EP
        src.idr = val & mask
        if self.flags & FLAG_IDR_CRIT:
            if src.idr & crit:
                src.output, src.nomask, src.destmask = OUTPUT_CINT, True, 0
                for i in range(self.nb_cpus):
                    if src.idr & (1 << (IDR_CI0_SHIFT - i)):
                        src.destmask |= 1 << i
            else:
                src.output, src.nomask, src.destmask = OUTPUT_INT, False, src.idr & normal
        else:
            src.destmask = src.idr

    def _read_ilr(self, n_irq: int) -> int:
        if self.flags & FLAG_ILR:
            return {v: k for k, v in ILR_INTTGT.items()}[self.src[n_irq].output]
        return 0xFFFFFFFF

    def _write_ilr(self, n_irq: int, val: int) -> None:
        if self.flags & FLAG_ILR:
            self.src[n_irq].output = ILR_INTTGT.get(val & 0xFF, OUTPUT_INT)

    def _write_ivpr(self, n_irq: int, val: int) -> None:
        src = self.src[n_irq]
        mask = IVPR_MASK | IVPR_PRIORITY | IVPR_SENSE | IVPR_POLARITY | self.vector_mask
        src.ivpr = (src.ivpr & IVPR_ACTIVITY) | (val & mask)
        if src.type == TYPE_NORMAL:
            src.level = bool(src.ivpr & IVPR_SENSE)
        elif src.type == TYPE_FSLINT:
            src.ivpr &= ~IVPR_SENSE
        else:
            src.ivpr &= ~(IVPR_POLARITY | IVPR_SENSE)
        self._update_irq(n_irq)

    # -- reset / global ----------------------------------------------------------------------------------
    def reset(self) -> None:
        self.gcr = GCR_RESET
        self.frr = ((self.nb_irqs - 1) << 16) | ((self.nb_cpus - 1) << 8) | VID_REVISION_1_2
        self.pir = 0
        self.spve = 0xFFFFFFFF & self.vector_mask
        self.tfrr = 0
        for i, src in enumerate(self.src):
            src.ivpr = IVPR_MASK
            if src.type == TYPE_NORMAL:
                src.level = False
            elif src.type == TYPE_FSLINT:
                src.ivpr |= IVPR_POLARITY
            self._write_idr(i, 0 if IRQ_IPI0 <= i < IRQ_TIM0 else 1)
        for d in self.dst:
            d.ctpr = 15
            d.raised, d.servicing = Queue(), Queue()
        for t in self.timers:
            t.tccr, t.tbcr, t.active = 0, TBCR_CI, False
        self.gcr = 0                           # out of reset (MSIRs keep their bits, as in QEMU)

    def _gcr_write(self, val: int) -> None:
        if val & GCR_RESET:
            self.reset()
            return
        self.gcr = (self.gcr & ~self.mode_mask) | (val & self.mode_mask)
        self.on_proxy((val & self.mode_mask) == GCR_MODE_PROXY)

    def _pir_write(self, val: int) -> None:
        for i in range(self.nb_cpus):
            if val & (1 << i) and not self.pir & (1 << i):
                self._raise(i, OUTPUT_RESET)
            elif not val & (1 << i) and self.pir & (1 << i):
                self._lower(i, OUTPUT_RESET)
        self.pir = val

    def _gbl_read(self, offset: int, size: int, cpu: int) -> int:
        if offset & 0xF:
            return 0xFFFFFFFF
        if 0x40 <= offset <= 0xB0:
            return self._cpu_read_internal(offset, cpu)
        if 0x10A0 <= offset <= 0x10D0:
            return self.src[IRQ_IPI0 + ((offset - 0x10A0) >> 4)].ivpr
        handler = self._gbl_reads.get(offset)
        return handler(cpu) if handler else 0xFFFFFFFF

    def _gbl_write(self, offset: int, size: int, val: int, cpu: int) -> None:
        if offset & 0xF:
            return
        if 0x40 <= offset <= 0xB0:
            self._cpu_write_internal(offset, val, cpu)
        elif 0x10A0 <= offset <= 0x10D0:
            self._write_ivpr(IRQ_IPI0 + ((offset - 0x10A0) >> 4), val)
        elif offset in self._gbl_writes:
            self._gbl_writes[offset](val, cpu)

    # -- timers --------------------------------------------------------------------------------------------
    def _set_timer(self, t: Timer, val: int, enabled: bool, now: int | None = None) -> None:
        ns = (val & ~TCCR_TOG) * NS_PER_TICK
        if ns == 0 or not enabled:
            t.active = False
            t.tccr &= TCCR_TOG
        else:
            t.active = True
            t.origin_ns = self.clock() if now is None else now

    def _timer_count(self, t: Timer) -> int:
        if not t.active:
            return t.tccr
        used = (self.clock() - t.origin_ns) // NS_PER_TICK
        count = ((t.tccr & ~TCCR_TOG) - used) & 0xFFFFFFFF
        return (t.tccr & TCCR_TOG) | (count & ~TCCR_TOG)

    def _deadline(self, t: Timer) -> int:
        return t.origin_ns + (t.tccr & ~TCCR_TOG) * NS_PER_TICK

    def next_deadline(self) -> int | None:
        """Virtual time (ns) at which the earliest running timer expires, or None."""
        times = [self._deadline(t) for t in self.timers if t.active]
        return min(times) if times else None

    def advance(self, now_ns: int) -> None:
        """Fire every timer that expired by ``now_ns`` (QEMU's qemu_timer_cb, at its expiry time)."""
        while True:
            due = [(self._deadline(t), i) for i, t in enumerate(self.timers) if t.active]
            due = [d for d in due if d[0] <= now_ns]
            if not due:
                return
            when, i = min(due)
            t = self.timers[i]
            val = t.tbcr & ~TBCR_CI
            tog = (t.tccr & TCCR_TOG) ^ TCCR_TOG
            t.tccr = val | tog
            self._set_timer(t, val, True, now=when)
            n_irq = IRQ_TIM0 + i
            self.src[n_irq].destmask = self.src[n_irq].idr
            self.set_irq(n_irq, 1)
            self.set_irq(n_irq, 0)

    def _tmr_read(self, offset: int, size: int, cpu: int) -> int:
        if offset & 0xF:
            return 0xFFFFFFFF
        if offset == 0:
            return self.tfrr
        offset -= 0x10
        idx, reg = (offset >> 6) & 3, offset & 0x30
        t = self.timers[idx]
        return {0x00: lambda: self._timer_count(t), 0x10: lambda: t.tbcr,
                0x20: lambda: self.src[IRQ_TIM0 + idx].ivpr, 0x30: lambda: self.src[IRQ_TIM0 + idx].idr}[reg]()

    def _tmr_write(self, offset: int, size: int, val: int, cpu: int) -> None:
        if offset & 0xF:
            return
        if offset == 0:
            self.tfrr = val
            return
        offset -= 0x10
        idx, reg = (offset >> 6) & 3, offset & 0x30
        t = self.timers[idx]
        if reg == 0x10:
            if (t.tbcr & TBCR_CI) != (val & TBCR_CI):
                if not val & TBCR_CI:
                    t.tccr = val & ~TCCR_TOG
                self._set_timer(t, val & ~TBCR_CI, not val & TBCR_CI)
            t.tbcr = val
        elif reg == 0x20:
            self._write_ivpr(IRQ_TIM0 + idx, val)
        elif reg == 0x30:
            self._write_idr(IRQ_TIM0 + idx, val)

    # -- sources -------------------------------------------------------------------------------------------
    def _src_read(self, offset: int, size: int, cpu: int) -> int:
        idx, reg = (offset & 0xFFFF) >> 5, offset & 0x1F
        if reg == 0x00:
            return self.src[idx].ivpr
        if reg == 0x10:
            return self.src[idx].idr
        if reg == 0x18:
            return self._read_ilr(idx)
        return 0xFFFFFFFF

    def _src_write(self, offset: int, size: int, val: int, cpu: int) -> None:
        idx, reg = (offset & 0xFFFF) >> 5, offset & 0x1F
        handler = {0x00: self._write_ivpr, 0x10: self._write_idr, 0x18: self._write_ilr}.get(reg)
        if handler:
            handler(idx, val)

    # -- MSI -----------------------------------------------------------------------------------------------
    def _msi_read(self, offset: int, size: int, cpu: int) -> int:
        if offset & 0xF:
            return 0xFFFFFFFF
        if offset <= 0x70:
            srs = offset >> 4
            r = self.msir[srs]
            self.msir[srs] = 0
            self.set_irq(IRQ_MSI + srs, 0)
            return r
        if offset == 0x120:
            return sum(1 << i for i, m in enumerate(self.msir) if m)
        return 0

    def _msi_write(self, offset: int, size: int, val: int, cpu: int) -> None:
        if offset == 0x140:
            srs = (val >> 29) & 7
            self.msir[srs] |= 1 << ((val >> 24) & 0x1F)
            self.set_irq(IRQ_MSI + srs, 1)

    # -- per-CPU registers ---------------------------------------------------------------------------------
    def _cpu_read(self, offset: int, size: int, cpu: int) -> int:
        return self._cpu_read_internal(offset, (offset & 0x1F000) >> 12)

    def _cpu_write(self, offset: int, size: int, val: int, cpu: int) -> None:
        self._cpu_write_internal(offset, val, (offset & 0x1F000) >> 12)

    def _cpu_write_internal(self, offset: int, val: int, idx: int) -> None:
        if not 0 <= idx < self.nb_cpus or offset & 0xF:
            return
        dst = self.dst[idx]
        reg = offset & 0xFF0
        if 0x40 <= reg <= 0x70:                               # IPIDR
            n_irq = IRQ_IPI0 + ((reg - 0x40) >> 4)
            self.src[n_irq].destmask |= val
            self.set_irq(n_irq, 1)
            self.set_irq(n_irq, 0)
        elif reg == 0x80:                                     # CTPR
            dst.ctpr = val & 0xF
            if dst.raised.priority <= dst.ctpr:
                self._lower(idx)
            elif dst.raised.priority > dst.servicing.priority:
                self._raise(idx)
        elif reg == 0xB0:                                     # EOI
            s_irq = self._check(dst.servicing)
            if s_irq < 0:
                return
            dst.servicing.irqs.discard(s_irq)
            s_irq = self._check(dst.servicing)
            n_irq = self._check(dst.raised)
            if n_irq != -1 and (s_irq == -1 or _priority(self.src[n_irq].ivpr) > dst.servicing.priority):
                self._raise(idx)

    def _cpu_read_internal(self, offset: int, idx: int) -> int:
        if not 0 <= idx < self.nb_cpus or offset & 0xF:
            return 0xFFFFFFFF
        reg = offset & 0xFF0
        if reg == 0x80:
            return self.dst[idx].ctpr
        if reg == 0x90:
            return idx
        if reg == 0xA0:
            return self.iack(idx)
        if reg == 0xB0:
            return 0
        return 0xFFFFFFFF

    def iack(self, cpu: int) -> int:
        """Interrupt acknowledge by ``cpu``: the vector of the highest raised source (it enters
        service), or the spurious vector. What a read of IACK returns, and what a CPU in proxy mode
        loads into EPR when it takes the external interrupt."""
        dst = self.dst[cpu]
        self._lower(cpu)
        irq = self._check(dst.raised)
        if irq == -1:
            return self.spve
        src = self.src[irq]
        if not src.ivpr & IVPR_ACTIVITY or not _priority(src.ivpr) > dst.ctpr:
            self._update_irq(irq)
            ret = self.spve
        else:
            dst.servicing.irqs.add(irq)
            ret = src.ivpr & self.vector_mask
        if not src.level:
            src.ivpr &= ~IVPR_ACTIVITY
            src.pending = False
            dst.raised.irqs.discard(irq)
        if IRQ_IPI0 <= irq < IRQ_TIM0 + MAX_TMR:              # timers and IPIs are multicast
            src.destmask &= ~(1 << cpu)
            if src.destmask and not src.level:
                self.set_irq(irq, 1)
                self.set_irq(irq, 0)
                src.ivpr |= IVPR_ACTIVITY
        return ret
