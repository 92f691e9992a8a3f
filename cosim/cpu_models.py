"""CPU models as data: what the silicon does with each guest event, and where debug state is saved.

`e500v2` has no hypervisor mode: the guest runs under KVM PR, so every privileged instruction, trap,
syscall and debug event exits to the host. `e500mc` has E.HV: privileged instructions run natively in
guest supervisor state, syscalls (LEV != 1) go to the guest's own vector, while program, debug and
HV-privilege interrupts always go to the hypervisor (there are no guest vectors for them).

The generic vCPU core (cosim/vcpu/core.py) reads these tables; it has no `if cpu == ...`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from .isa import SPR


class Event(str, Enum):
    """A guest event, as the silicon classifies it before routing."""
    PRIV = "priv"            # an emulated privileged instruction in guest supervisor state
    PRIV_FAULT = "priv-fault"  # a privileged instruction in guest problem state / not emulated
    TRAP = "trap"            # tw/twi whose condition held
    ILLEGAL = "illegal"      # undefined encoding (includes ehpriv on a core without E.HV)
    EHPRIV = "ehpriv"        # E.HV hypervisor-privilege interrupt
    SYSCALL = "syscall"      # sc with LEV != 1
    HCALL = "hcall"          # sc 1: ePAPR hypercall
    DEBUG = "debug"          # IAC / DAC / IC debug event
    TLB_MISS = "tlb-miss"    # the guest TLB has no entry: ITLB/DTLB miss delivered to the guest
    STORAGE = "storage"      # the guest TLB entry denies the access: ISI/DSI delivered to the guest
    TIMER = "timer"          # a decrementer, FIT or watchdog interrupt delivered to the guest
    MMIO = "mmio"            # a load or store to no memory slot: KVM_EXIT_MMIO, served by userspace
    EXTERNAL = "external"    # the interrupt controller's external/critical input delivered to the guest


class Route(str, Enum):
    NATIVE = "native"        # handled by the silicon itself, no exit (level: vcpu)
    GUEST = "guest"          # delivered straight to the guest's vector (level: vcpu)
    LOCAL = "local"          # exits to KVM, emulated in the vCPU process for speed (level: kernel)
    KERNEL = "kernel"        # crosses to the kernel process


@dataclass(frozen=True)
class CpuModel:
    name: str
    pvr: int
    has_ehpriv: bool          # E.HV: ehpriv raises HV-privilege (IVOR41) instead of illegal
    debug_srr: tuple[int, int]  # SPRs saving PC/MSR on a debug interrupt
    debug_rfi: str            # the return instruction kind for debug interrupts ("rfci" / "rfdi")
    routes: dict[Event, Route] = field(hash=False)
    iac_slots: int = 2        # KVMPPC_BOOKE_IAC_NUM
    has_spe: bool = False     # SPE (e500v2): an SPE instruction with MSR[SPE] = 0 takes IVOR32; without
                              # SPE (e500mc) it is an illegal instruction
    dac_slots: int = 2
    has_doorbell: bool = False  # msgsnd/msgclr and the doorbell interrupts (IVOR36/37): e500mc's IPIs; on
                                # e500v2 they are illegal instructions
    tlb1_entries: int = 16    # TLB1CFG[NENTRY] (QEMU's values); TLB0 is 512 entries, 4-way on both
    l1cfg: int = 0x3820       # L1CFG0/L1CFG1: 8 ways, 32 KiB (e500mc: 64-byte lines)
    cache_line: int = 32      # bytes a dcbz clears (e500mc: 64)
    msr_mask: int = 0x0606FF30  # the MSR bits the core implements (QEMU's pcc->msr_mask): e500v2 UCLE SPE
                                # WE CE EE PR FP ME FE0 DWE DE FE1 IS DS; others read 0 (Linux sets RI)

    def route(self, event: Event) -> Route:
        return self.routes[event]


E500V2 = CpuModel(
    name="e500v2", pvr=0x80210030, has_ehpriv=False, has_spe=True,
    debug_srr=(SPR["CSRR0"], SPR["CSRR1"]), debug_rfi="rfci",
    routes={
        Event.PRIV: Route.LOCAL, Event.PRIV_FAULT: Route.KERNEL, Event.TRAP: Route.KERNEL,
        Event.ILLEGAL: Route.KERNEL, Event.EHPRIV: Route.KERNEL, Event.SYSCALL: Route.KERNEL,
        Event.HCALL: Route.KERNEL, Event.DEBUG: Route.KERNEL,
        # KVM PR: guest TLB misses, storage and timer interrupts are the kernel's to reflect (its code
        # on the vCPU's thread: emulated in-process, counted as kernel exits)
        Event.TLB_MISS: Route.LOCAL, Event.STORAGE: Route.LOCAL, Event.TIMER: Route.LOCAL,
        Event.MMIO: Route.LOCAL, Event.EXTERNAL: Route.LOCAL,
    },
)

E500MC = CpuModel(
    name="e500mc", pvr=0x80230020, has_ehpriv=True, has_doorbell=True, tlb1_entries=64, l1cfg=0x1003820,
    cache_line=64,
    msr_mask=0x1402FB36,      # GS UCLE CE EE PR FP ME FE0 DE FE1 IS DS PMM RI (no SPE, WE, DWE)
    debug_srr=(SPR["DSRR0"], SPR["DSRR1"]), debug_rfi="rfdi",
    routes={
        Event.PRIV: Route.NATIVE, Event.PRIV_FAULT: Route.KERNEL, Event.TRAP: Route.KERNEL,
        Event.ILLEGAL: Route.KERNEL, Event.EHPRIV: Route.KERNEL, Event.SYSCALL: Route.GUEST,
        Event.HCALL: Route.KERNEL, Event.DEBUG: Route.KERNEL,
        # E.HV without LRAT: TLB misses exit to KVM (it owns the shadow TLB); DSI/ISI (EPCR[DSIGS,
        # ISIGS]) and the decrementer/FIT/watchdog go straight to the guest
        Event.TLB_MISS: Route.LOCAL, Event.STORAGE: Route.GUEST, Event.TIMER: Route.GUEST,
        # the MPIC is userspace's (an in-kernel one would be KVM's): KVM injects its outputs
        # (EPCR[EXTGS] = 0: the host's external interrupts are the hypervisor's)
        Event.MMIO: Route.LOCAL, Event.EXTERNAL: Route.LOCAL,
    },
)

CPU_MODELS: dict[str, CpuModel] = {m.name: m for m in (E500V2, E500MC)}


def cpu_model(name: str) -> CpuModel:
    try:
        return CPU_MODELS[name]
    except KeyError:
        raise ValueError(f"unknown CPU model {name!r} (expected one of: {', '.join(CPU_MODELS)})") from None
