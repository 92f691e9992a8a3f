"""PowerPC Book E facts as data: SPR numbers, register bits, instruction encodings, and the
classification of a faulting instruction word.

Pure: no unicorn, no I/O. Values from ../shared/reference/book-e.md (Linux reg_booke.h, Power ISA 2.06
Book III-E). Every other module takes its numbers from here.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

# --- SPR numbers -----------------------------------------------------------------------------------
SPR = {
    "XER": 1, "LR": 8, "CTR": 9,
    "SRR0": 26, "SRR1": 27, "CSRR0": 58, "CSRR1": 59, "DEAR": 61, "ESR": 62, "IVPR": 63,
    "SPRG0": 272, "SPRG1": 273, "SPRG2": 274, "SPRG3": 275, "SPRG4": 276, "SPRG5": 277,
    "SPRG6": 278, "SPRG7": 279, "PIR": 286, "PVR": 287,
    "DBSR": 304, "EPCR": 307, "DBCR0": 308, "DBCR1": 309, "DBCR2": 310, "MSRP": 311,
    "IAC1": 312, "IAC2": 313, "IAC3": 314, "IAC4": 315, "DAC1": 316, "DAC2": 317,
    "DVC1": 318, "DVC2": 319,
    **{f"IVOR{n}": 400 + n for n in range(16)},
    **{f"IVOR{n}": 528 + (n - 32) for n in range(32, 38)},
    **{f"IVOR{n}": 432 + (n - 38) for n in range(38, 43)},
    "MCSRR0": 570, "MCSRR1": 571, "DSRR0": 574, "DSRR1": 575,
    # memory management (Book E 2.06 / e500)
    "PID": 48, "PID1": 633, "PID2": 634, "MAS0": 624, "MAS1": 625, "MAS2": 626, "MAS3": 627, "MAS4": 628,
    "MAS6": 630, "MAS7": 944, "TLB0CFG": 688, "TLB1CFG": 689, "MMUCSR0": 1012, "MMUCFG": 1015,
    # timers: DEC, DECAR, TSR, TCR; the time base is written through 284/285 and read through 268/269
    "DEC": 22, "DECAR": 54, "TSR": 336, "TCR": 340, "TBL": 284, "TBU": 285, "TBL_R": 268, "TBU_R": 269,
    # e500 core registers
    "USPRG0": 256, "HID0": 1008, "HID1": 1009, "L1CSR0": 1010, "L1CSR1": 1011, "L1CFG0": 515, "L1CFG1": 516,
    "BUCSR": 1013, "SVR": 1023, "MCSR": 572, "MCAR": 573, "EPR": 702,
}
SPR_NAME = {num: name for name, num in SPR.items()}
IVOR_SPR = {int(name[4:]): num for name, num in SPR.items() if name.startswith("IVOR")}

# SPRs readable in problem state (unicorn handles these natively; never emulated)
USER_SPRS = frozenset({1, 8, 9, 256, 259, 260, 261, 262, 263, 268, 269})

# --- interrupt vectors (IVOR index) -----------------------------------------------------------------
class Ivor:
    CRITICAL = 0
    MACHINE_CHECK = 1
    DSI = 2
    ISI = 3
    EXTERNAL = 4
    ALIGNMENT = 5
    PROGRAM = 6
    FP_UNAVAILABLE = 7
    SYSCALL = 8
    DECREMENTER = 10
    DTLB_MISS = 13
    ITLB_MISS = 14
    DEBUG = 15
    SPE_UNAVAILABLE = 32
    DOORBELL = 36
    DOORBELL_CRITICAL = 37
    HV_SYSCALL = 40
    HV_PRIV = 41


# interrupt kinds by name (report, [[expect.interrupts]] kind): "program", "syscall", "debug", ...
IVOR_NAME = {v: k.lower() for k, v in vars(Ivor).items() if k.isupper()}
IVOR_BY_NAME = {name: ivor for ivor, name in IVOR_NAME.items()}


# --- register bits ----------------------------------------------------------------------------------
class Msr:
    CM = 1 << 31
    GS = 1 << 28
    UCLE = 1 << 26
    SPE = 1 << 25
    WE = 1 << 18
    CE = 0x20000
    EE = 0x8000
    PR = 0x4000
    FP = 0x2000
    ME = 0x1000
    DE = 0x200
    IS = 0x20
    DS = 0x10


class Esr:
    PIL = 0x08000000
    PPR = 0x04000000
    PTR = 0x02000000
    FP = 0x01000000
    ST = 0x00800000
    PUO = 0x00040000
    SPV = 0x80


class Msrp:
    UCLEP = 0x04000000
    DEP = 0x200
    PMMP = 0x4


class Dbcr0:
    EDM = 0x80000000
    IDM = 0x40000000
    RST = 0x30000000
    IC = 0x08000000
    BT = 0x04000000
    IRPT = 0x02000000
    TRAP = 0x01000000
    IAC1 = 0x00800000
    IAC2 = 0x00400000
    IAC3 = 0x00200000
    IAC4 = 0x00100000
    DAC1R = 0x80000
    DAC1W = 0x40000
    DAC2R = 0x20000
    DAC2W = 0x10000
    RET = 0x8000
    FT = 0x1


class Dbsr:
    IDE = 0x80000000
    MRR = 0x30000000
    IC = 0x08000000
    BT = 0x04000000
    IRPT = 0x02000000
    TRAP = 0x01000000
    IAC1 = 0x00800000
    IAC2 = 0x00400000
    IAC3 = 0x00200000
    IAC4 = 0x00100000
    DAC1R = 0x80000
    DAC1W = 0x40000
    DAC2R = 0x20000
    DAC2W = 0x10000
    RET = 0x8000


IAC_BITS = (Dbcr0.IAC1, Dbcr0.IAC2, Dbcr0.IAC3, Dbcr0.IAC4)  # same positions in DBCR0 and DBSR
DAC_R_BITS = (Dbcr0.DAC1R, Dbcr0.DAC2R)
DAC_W_BITS = (Dbcr0.DAC1W, Dbcr0.DAC2W)


class GuestDebug:
    """KVM_SET_GUEST_DEBUG control flags."""
    ENABLE = 0x1
    SINGLESTEP = 0x2
    USE_SW_BP = 0x10000
    USE_HW_BP = 0x20000
    BLOCKIRQ = 0x100000        # a single step takes no asynchronous interrupt (x86 KVM_GUESTDBG_BLOCKIRQ;
                               # QEMU's gdbstub SSTEP_NOIRQ): the interrupt waits for the next resume
    NOTIMER = 0x200000         # ... and its timers do not fire during it (QEMU's SSTEP_NOTIMER)


class SstepFlags:
    """QEMU's gdbstub single-step flags (`maintenance packet qqemu.sstepbits`); default all three."""
    ENABLE = 0x1
    NOIRQ = 0x2
    NOTIMER = 0x4
    DEFAULT = 0x7


class DebugStatus:
    """KVM_EXIT_DEBUG status values (booke)."""
    SOFTWARE = 0
    BREAKPOINT = 1 << 1
    WATCH_WRITE = 1 << 2
    WATCH_READ = 1 << 3


# --- encodings --------------------------------------------------------------------------------------
class Word:
    SC = 0x44000002
    SC1 = 0x44000022
    SC64 = 0x44000802
    TRAP = 0x7FE00008          # tw 31,0,0
    TWI_TRAP = 0x0FE00000      # twi 31,0,0
    EHPRIV = 0x7C00021C
    EHPRIV1 = 0x7C000A1C
    ILLEGAL_BP = 0x00DDDD00    # KVMPPC_INST_SW_BREAKPOINT
    RFI = 0x4C000064
    RFCI = 0x4C000066
    RFDI = 0x4C00004E
    RFMCI = 0x4C00004C
    NOP = 0x60000000


def mtspr(spr: int, rs: int) -> int:
    return 0x7C0003A6 | rs << 21 | spr_field(spr)


def mfspr(rd: int, spr: int) -> int:
    return 0x7C0002A6 | rd << 21 | spr_field(spr)


def spr_field(spr: int) -> int:
    return ((spr & 0x1F) << 16) | ((spr >> 5) << 11)


def spr_of(word: int) -> int:
    f = (word >> 11) & 0x3FF
    return ((f & 0x1F) << 5) | (f >> 5)


# --- classification ---------------------------------------------------------------------------------
class Kind(str, Enum):
    """What a faulting instruction word is, decided from the word alone."""
    TRAP = "trap"                  # tw / twi (condition already known to be true when it faulted)
    SYSCALL = "syscall"            # sc LEV
    EHPRIV = "ehpriv"              # ehpriv OC
    ILLEGAL = "illegal"            # no such instruction (primary opcode 0, reserved encodings)
    MTSPR = "mtspr"
    MFSPR = "mfspr"
    MTMSR = "mtmsr"
    MFMSR = "mfmsr"
    WRTEE = "wrtee"
    WRTEEI = "wrteei"
    RFI = "rfi"
    RFCI = "rfci"
    RFDI = "rfdi"
    RFMCI = "rfmci"
    TLBWE = "tlbwe"
    TLBRE = "tlbre"
    TLBSX = "tlbsx"
    TLBIVAX = "tlbivax"
    TLBILX = "tlbilx"
    TLBSYNC = "tlbsync"
    CACHE = "cache"                # dcbi, cache locking (dcbtls, icbtls, dcblc, icblc): no-ops here
    WAIT = "wait"                  # e500mc `wait`: sleep until an interrupt
    MSGSND = "msgsnd"              # e500mc processor control: send a doorbell (to PIRTAG, or broadcast)
    MSGCLR = "msgclr"              # ... clear this processor's pending doorbell of a type
    PRIV_OTHER = "privileged"      # privileged but not emulated


PRIVILEGED_KINDS = frozenset({Kind.MTSPR, Kind.MFSPR, Kind.MTMSR, Kind.MFMSR, Kind.WRTEE,
                              Kind.WRTEEI, Kind.RFI, Kind.RFCI, Kind.RFDI, Kind.RFMCI,
                              Kind.TLBWE, Kind.TLBRE, Kind.TLBSX, Kind.TLBIVAX, Kind.TLBILX, Kind.TLBSYNC,
                              Kind.CACHE, Kind.WAIT, Kind.MSGSND, Kind.MSGCLR, Kind.PRIV_OTHER})
DOORBELL_KINDS = frozenset({Kind.MSGSND, Kind.MSGCLR})


@dataclass(frozen=True, slots=True)
class Decoded:
    """A classified instruction word. `rs`/`rd` register, `spr` number, `lev` (sc), `oc` (ehpriv),
    `e` (wrteei immediate) are set where the kind has them."""
    word: int
    kind: Kind
    reg: int = 0
    spr: int = 0
    lev: int = 0
    oc: int = 0
    e: int = 0
    ra: int = 0
    rb: int = 0


# X-form extended opcodes under primary opcode 31
_XO31 = {
    467: Kind.MTSPR, 339: Kind.MFSPR, 146: Kind.MTMSR, 83: Kind.MFMSR, 131: Kind.WRTEE,
    163: Kind.WRTEEI, 4: Kind.TRAP, 270: Kind.EHPRIV,
    978: Kind.TLBWE, 946: Kind.TLBRE, 914: Kind.TLBSX, 786: Kind.TLBIVAX, 18: Kind.TLBILX, 566: Kind.TLBSYNC,
    470: Kind.CACHE, 166: Kind.CACHE, 486: Kind.CACHE, 390: Kind.CACHE, 230: Kind.CACHE,  # dcbi, *tls, *lc
    62: Kind.WAIT, 206: Kind.MSGSND, 238: Kind.MSGCLR,
}
# XL-form under primary opcode 19
_XO19 = {50: Kind.RFI, 51: Kind.RFCI, 39: Kind.RFDI, 38: Kind.RFMCI}


def classify(word: int) -> Decoded:
    """Classify a 32-bit instruction word that raised an exception."""
    op = word >> 26
    if op == 3:
        return Decoded(word, Kind.TRAP)
    if op == 17 and word & 2:
        return Decoded(word, Kind.SYSCALL, lev=(word >> 5) & 0x7F)
    if op == 19:
        kind = _XO19.get((word >> 1) & 0x3FF)
        if kind is not None:
            return Decoded(word, kind)
    if op == 31:
        xo = (word >> 1) & 0x3FF
        kind = _XO31.get(xo)
        reg = (word >> 21) & 0x1F
        if kind is Kind.EHPRIV:
            return Decoded(word, kind, oc=(word >> 11) & 0x7FFF)
        if kind in (Kind.MTSPR, Kind.MFSPR):
            return Decoded(word, kind, reg=reg, spr=spr_of(word))
        if kind is Kind.WRTEEI:
            return Decoded(word, kind, e=(word >> 15) & 1)
        if kind in (Kind.MSGSND, Kind.MSGCLR):
            return Decoded(word, kind, rb=(word >> 11) & 0x1F)
        if kind in (Kind.TLBSX, Kind.TLBIVAX, Kind.TLBILX):   # EA = (rA|0) + rB; tlbilx's T in rD's field
            return Decoded(word, kind, reg=reg, ra=(word >> 16) & 0x1F, rb=(word >> 11) & 0x1F)
        if kind is not None:
            return Decoded(word, kind, reg=reg)
    return Decoded(word, Kind.ILLEGAL)


# TO field bits of tw/twi: trap if a < b, a > b, a == b (signed), a < b, a > b (unsigned)
_TO_TESTS = ((0x10, lambda a, b: _s32(a) < _s32(b)), (0x08, lambda a, b: _s32(a) > _s32(b)),
             (0x04, lambda a, b: a == b), (0x02, lambda a, b: a < b), (0x01, lambda a, b: a > b))


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def trap_taken(word: int, gprs) -> bool | None:
    """Would `tw`/`twi` `word` trap with these GPR values? None when `word` is not tw/twi."""
    op = word >> 26
    if op == 3:                                                  # twi TO, rA, SIMM
        b = word & 0xFFFF
        b = (b - 0x10000 if b & 0x8000 else b) & 0xFFFFFFFF
    elif op == 31 and (word >> 1) & 0x3FF == 4:                   # tw TO, rA, rB
        b = int(gprs[(word >> 11) & 0x1F]) & 0xFFFFFFFF
    else:
        return None
    to = (word >> 21) & 0x1F
    a = int(gprs[(word >> 16) & 0x1F]) & 0xFFFFFFFF
    return any(to & bit and test(a, b) for bit, test in _TO_TESTS)


# msgsnd/msgclr rB (Power ISA 2.06 Book III-E, processor control; Linux's asm/dbell.h): the message type in
# bits 32:36, BRDCAST bit 37, PIRTAG bits 50:63 (64-bit numbering of rB's low word)
DBELL_TYPE_SHIFT = 27
DBELL_BROADCAST = 0x04000000
DBELL_PIR_MASK = 0x3FFF
DBELL, DBELL_CRIT = 0, 1          # the types a guest sends (the G_DBELL* types are a hypervisor's)


def doorbell_message(rb: int) -> tuple[int, bool, int]:
    """(type, broadcast, PIR tag) of a msgsnd/msgclr operand."""
    return (rb >> DBELL_TYPE_SHIFT) & 0x1F, bool(rb & DBELL_BROADCAST), rb & DBELL_PIR_MASK


def interrupt_vector(ivpr: int, ivor: int) -> int:
    return (ivpr & 0xFFFF0000) | (ivor & 0xFFF0)
