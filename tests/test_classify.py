"""cosim.isa.classify against DESIGN.md's strategy table and the Book E privileged instructions, cross-
checked against capstone's decoder, and the same words run through the real vCPU core on both CPU
models (the `bench` fixture) to see which Event each one produces and at which level it is handled.

Capstone 5 (CS_MODE_32 | CS_MODE_BIG_ENDIAN) has no E.HV instructions: it cannot decode `ehpriv`
(0x7c00021c / 0x7c000a1c), exactly as it cannot decode 0x00dddd00 (primary opcode 0, an illegal
instruction by design). It names SPR 528 (IVOR32 on Book E) by its classic-PowerPC name IBAT0U."""
import pytest
from capstone import CS_ARCH_PPC, CS_MODE_32, CS_MODE_BIG_ENDIAN, Cs
from capstone import ppc_const as C

from asm import NOP, li, load32, mfmsr, mtmsr, sc, twnei, wrtee, wrteei
from cosim.cpu_models import Event
from cosim.isa import (PRIVILEGED_KINDS, SPR, Dbcr0, Decoded, Esr, Ivor, Kind, Msr, Word, classify, mfspr, mtspr, spr_field,
                       spr_of)
from cosim.vcpu.core import EVENT_INDEX, LEVEL_INDEX
from cosim.vmexit import Exit

MD = Cs(CS_ARCH_PPC, CS_MODE_32 | CS_MODE_BIG_ENDIAN)
MD.detail = True

VEC = 0x20000
HANDLER = {6: 0x160, 8: 0x180, 15: 0x1F0, 41: 0x290}
CODE = 0x1000


def disasm(word):
    """(mnemonic, operands) from capstone, registers as names; None if capstone cannot decode it."""
    insns = list(MD.disasm(word.to_bytes(4, "big"), CODE))
    if not insns:
        return None
    i = insns[0]
    return i.mnemonic, [MD.reg_name(o.reg) if o.type == C.PPC_OP_REG else o.imm for o in i.operands]


# --- the words --------------------------------------------------------------------------------------
# (id, word, expected decode, capstone (mnemonic, operands) or None = capstone cannot decode it)
STRATEGY_WORDS = [
    ("sc64", Word.SC64, Decoded(Word.SC64, Kind.SYSCALL, lev=64), ("sc", [64])),
    ("sc", Word.SC, Decoded(Word.SC, Kind.SYSCALL, lev=0), ("sc", [])),
    ("sc1", Word.SC1, Decoded(Word.SC1, Kind.SYSCALL, lev=1), ("sc", [1])),
    ("tw", Word.TRAP, Decoded(Word.TRAP, Kind.TRAP), ("trap", [])),
    ("twi", Word.TWI_TRAP, Decoded(Word.TWI_TRAP, Kind.TRAP), ("twui", ["r0", 0])),
    ("warn_on", twnei(29, 0), Decoded(twnei(29, 0), Kind.TRAP), ("twnei", ["r29", 0])),
    ("ehpriv", Word.EHPRIV, Decoded(Word.EHPRIV, Kind.EHPRIV, oc=0), None),
    ("ehpriv1", Word.EHPRIV1, Decoded(Word.EHPRIV1, Kind.EHPRIV, oc=1), None),
    ("illegal", Word.ILLEGAL_BP, Decoded(Word.ILLEGAL_BP, Kind.ILLEGAL), None),
    ("zero", 0x00000000, Decoded(0, Kind.ILLEGAL), None),
]
RFI_WORDS = [
    ("rfi", Word.RFI, Decoded(Word.RFI, Kind.RFI), ("rfi", [])),
    ("rfci", Word.RFCI, Decoded(Word.RFCI, Kind.RFCI), ("rfci", [])),
    ("rfdi", Word.RFDI, Decoded(Word.RFDI, Kind.RFDI), ("rfdi", [])),
    ("rfmci", Word.RFMCI, Decoded(Word.RFMCI, Kind.RFMCI), ("rfmci", [])),
]
MSR_WORDS = [
    ("mtmsr", mtmsr(3), Decoded(mtmsr(3), Kind.MTMSR, reg=3), ("mtmsr", ["r3"])),
    ("mfmsr", mfmsr(4), Decoded(mfmsr(4), Kind.MFMSR, reg=4), ("mfmsr", ["r4"])),
    ("wrtee", wrtee(5), Decoded(wrtee(5), Kind.WRTEE, reg=5), ("wrtee", ["r5"])),
    ("wrteei1", wrteei(1), Decoded(wrteei(1), Kind.WRTEEI, e=1), ("wrteei", [1])),
    ("wrteei0", wrteei(0), Decoded(wrteei(0), Kind.WRTEEI, e=0), ("wrteei", [0])),
]
PRIV_SPRS = ["SRR0", "SRR1", "CSRR0", "CSRR1", "DEAR", "ESR", "IVPR", "SPRG0", "SPRG3", "PIR", "PVR",
             "DBSR", "EPCR", "DBCR0", "DBCR1", "MSRP", "IAC1", "IAC2", "DAC1", "IVOR6", "IVOR8",
             "IVOR15", "IVOR32", "IVOR41", "MCSRR0", "DSRR0", "DSRR1"]
USER_SPRS = ["XER", "LR", "CTR"]
# capstone's extended mnemonics for some SPRs (everything else is "mtspr N, rS" / "mfspr rD, N")
CS_EXTENDED = {
    ("mt", 1): ("mtxer", ["r3"]), ("mf", 1): ("mfxer", ["r4"]),
    ("mt", 8): ("mtlr", ["r3"]), ("mf", 8): ("mflr", ["r4"]),
    ("mt", 9): ("mtctr", ["r3"]), ("mf", 9): ("mfctr", ["r4"]),
    ("mf", 287): ("mfpvr", ["r4"]),
    ("mt", 528): ("mtibatu", ["r3"]), ("mf", 528): ("mfibatu", ["r4"]),   # classic BAT0U == IVOR32
}


def spr_words(names):
    out = []
    for name in names:
        n = SPR[name]
        out.append((f"mtspr-{name}", mtspr(n, 3), Decoded(mtspr(n, 3), Kind.MTSPR, reg=3, spr=n),
                    CS_EXTENDED.get(("mt", n), ("mtspr", [n, "r3"]))))
        out.append((f"mfspr-{name}", mfspr(4, n), Decoded(mfspr(4, n), Kind.MFSPR, reg=4, spr=n),
                    CS_EXTENDED.get(("mf", n), ("mfspr", ["r4", n]))))
    return out


ALL_WORDS = STRATEGY_WORDS + RFI_WORDS + MSR_WORDS + spr_words(PRIV_SPRS + USER_SPRS)


def ids(cases):
    return [c[0] for c in cases]


# --- classify ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,word,want,_cs", ALL_WORDS, ids=ids(ALL_WORDS))
def test_classify(name, word, want, _cs):
    got = classify(word)
    if want.kind is Kind.TRAP:
        # tw/twi have no register operand of interest (RA is compared, not named): check the rest
        assert (got.kind, got.spr, got.lev, got.oc, got.e) == (Kind.TRAP, 0, 0, 0, 0)
    else:
        assert got == want


@pytest.mark.parametrize("name,word,want,cs", ALL_WORDS, ids=ids(ALL_WORDS))
def test_capstone_agrees(name, word, want, cs):
    got = disasm(word)
    if cs is None:
        assert got is None, f"capstone decodes {word:#010x} as {got}"
        return
    assert got == cs
    mnemonic, ops = got
    # the mnemonic family matches classify's kind
    family = {Kind.SYSCALL: ("sc",), Kind.TRAP: ("tw", "trap"), Kind.MTSPR: ("mt",), Kind.MFSPR: ("mf",)}
    assert mnemonic.startswith(family.get(want.kind, (want.kind.value,)))
    if want.kind is Kind.SYSCALL:
        assert want.lev == (ops[0] if ops else 0)
    if mnemonic in ("mtspr", "mfspr"):
        assert want.spr in ops and f"r{want.reg}" in ops


def test_spr_field_all_numbers():
    """The split SPR field, every SPR number: ours round-trips and capstone reads the same number."""
    generic = 0
    for spr in range(1024):
        assert spr_of(spr_field(spr)) == spr
        for word, kind in ((mtspr(spr, 7), Kind.MTSPR), (mfspr(7, spr), Kind.MFSPR)):
            d = classify(word)
            assert (d.kind, d.spr, d.reg) == (kind, spr, 7), spr
            mnemonic, ops = disasm(word)
            assert mnemonic.startswith(kind.value[:2]), (spr, mnemonic)
            if mnemonic in ("mtspr", "mfspr"):
                assert mnemonic == kind.value and spr in ops and "r7" in ops, (spr, mnemonic, ops)
                generic += 1
    assert generic > 1500          # capstone names only a few SPRs with extended mnemonics


@pytest.mark.parametrize("word,mnemonic,kind", [(0x7C0003AC, "dcbi", Kind.CACHE), (0x7C00046C, "tlbsync", Kind.TLBSYNC),
                                                (0x7C0007A4, "tlbwe", Kind.TLBWE), (0x7C001F24, "tlbsx", Kind.TLBSX)],
                         ids=["dcbi", "tlbsync", "tlbwe", "tlbsx"])
def test_other_privileged_instructions(word, mnemonic, kind):
    """The MMU and cache instructions: privileged (a fault in problem state, ESR[PPR]), never ILLEGAL;
    emulated in supervisor state on a board with the guest MMU."""
    assert disasm(word)[0] == mnemonic
    assert classify(word).kind is kind and kind in PRIVILEGED_KINDS


def test_sc_every_lev_and_ehpriv_oc():
    for lev in range(128):
        word = 0x44000002 | lev << 5
        assert classify(word) == Decoded(word, Kind.SYSCALL, lev=lev)
        mnemonic, ops = disasm(word)
        assert mnemonic == "sc" and (ops or [0])[0] == lev
    for oc in (0, 1, 2, 0x1234, 0x7FFF):
        word = 0x7C00021C | oc << 11
        assert classify(word) == Decoded(word, Kind.EHPRIV, oc=oc)
        assert disasm(word) is None


# --- the real core ----------------------------------------------------------------------------------

def setup_vectors(bench):
    bench.set_spr("IVPR", VEC)
    for n, off in HANDLER.items():
        bench.page["spr"][SPR[f"IVOR{n}"]] = off
        bench.put(VEC + off, [sc(1)])


def run_to_exit(bench, limit=20):
    for _ in range(limit):
        out = bench.core.run()
        if out is not None:
            return out
    raise AssertionError("no exit")


def exits(bench, event, level):
    return int(bench.page["exits"][EVENT_INDEX[event.value], LEVEL_INDEX[level]])


def is_hcall_at(out, pc):
    return isinstance(out, Exit) and out.event is Event.HCALL and out.pc == pc


@pytest.mark.parametrize("name,word,want,_cs", STRATEGY_WORDS, ids=ids(STRATEGY_WORDS))
def test_core_event_for_strategy_words(bench, name, word, want, _cs):
    setup_vectors(bench)
    bench.core.msr = Msr.ME
    bench.engine.set_gpr(29, 5)                      # WARN_ON(r29) fires
    bench.put(CODE, [word, sc(1)])
    out = run_to_exit(bench)
    mc = bench.model.name == "e500mc"
    assert isinstance(out, Exit)
    if want.kind is Kind.SYSCALL and want.lev == 1:
        assert (out.event, out.pc, out.lev, out.ivor, out.srr0) == (Event.HCALL, CODE, 1, Ivor.SYSCALL,
                                                                      CODE + 4)
    elif want.kind is Kind.SYSCALL and mc:
        # E.HV: sc goes straight to the guest's own vector; the hypervisor never sees it
        assert is_hcall_at(out, VEC + HANDLER[8])
        assert bench.spr("SRR0") == CODE + 4 and exits(bench, Event.SYSCALL, "vcpu") == 1
    elif want.kind is Kind.SYSCALL:
        assert (out.event, out.pc, out.lev, out.ivor, out.srr0) == (Event.SYSCALL, CODE, want.lev,
                                                                      Ivor.SYSCALL, CODE + 4)
    elif want.kind is Kind.TRAP:
        assert (out.event, out.pc, out.ivor, out.srr0, out.esr) == (Event.TRAP, CODE, Ivor.PROGRAM, CODE,
                                                                      Esr.PTR)
    elif want.kind is Kind.EHPRIV and mc:
        assert (out.event, out.pc, out.oc) == (Event.EHPRIV, CODE, want.oc)
    else:   # ehpriv on e500v2 (no E.HV), 0x00dddd00, 0
        assert (out.event, out.pc, out.ivor, out.srr0, out.esr) == (Event.ILLEGAL, CODE, Ivor.PROGRAM,
                                                                      CODE, Esr.PIL)
    if out.pc == CODE:
        assert out.word == word


def test_core_warn_on_not_firing(bench):
    bench.engine.set_gpr(29, 0)
    bench.put(CODE, [twnei(29, 0), sc(1)])
    assert is_hcall_at(run_to_exit(bench), CODE + 4)


# The engine is unicorn's e500v2 (UC_CPU_PPC32_E500V2_V22; always in problem state here): rfci, rfdi,
# wrtee and wrteei are privileged Book E instructions (intno 6, "program"); rfmci, ehpriv and the
# illegal words are not in its instruction table (intno 96, "invalid instruction"). Harmless either way,
# since the core classifies the faulting word itself. (Before the engine asked for the e500v2 model,
# unicorn's default 32-bit model, a 7457A, raised 96 for rfci/rfdi/wrtee/wrteei too.)
INTNO_96 = {"ehpriv", "ehpriv1", "illegal", "zero", "rfmci"}
ENGINE_WORDS = STRATEGY_WORDS + RFI_WORDS + MSR_WORDS + spr_words(["SRR0", "PVR", "DBCR0", "IVOR32"])


@pytest.mark.parametrize("name,word,want,_cs", ENGINE_WORDS, ids=ids(ENGINE_WORDS))
def test_engine_interrupt_numbers(bench, name, word, want, _cs):
    """What unicorn itself reports (the core classifies from the word, not from this)."""
    bench.engine.fast_trap = None           # (unicorn alone: not Core.fast_trap's emulation in the hook)
    bench.engine.set_gpr(29, 5)
    bench.put(CODE, [word])
    stop = bench.engine.run(CODE)
    expected = 8 if want.kind is Kind.SYSCALL else 96 if name in INTNO_96 else 6
    assert (stop.kind.value, stop.pc, stop.intno) == ("interrupt", CODE, expected)


PRIV_LEVEL = {"e500v2": "kernel", "e500mc": "vcpu"}


@pytest.mark.parametrize("name,word,want,_cs", RFI_WORDS, ids=ids(RFI_WORDS))
def test_core_rfi_family_supervisor(bench, name, word, want, _cs):
    pair = {Kind.RFI: "SRR", Kind.RFCI: "CSRR", Kind.RFDI: "DSRR", Kind.RFMCI: "MCSRR"}[want.kind]
    bench.set_spr(pair + "0", 0x3000)
    bench.set_spr(pair + "1", Msr.ME | Msr.CE)
    bench.put(0x3000, [sc(1)])
    bench.put(CODE, [word])
    assert is_hcall_at(run_to_exit(bench), 0x3000)
    assert bench.core.msr == Msr.ME | Msr.CE
    assert exits(bench, Event.PRIV, PRIV_LEVEL[bench.model.name]) == 1


@pytest.mark.parametrize("name", ["mtmsr", "mfmsr", "wrtee", "wrteei1", "wrteei0"])
def test_core_msr_instructions_supervisor(bench, name):
    ee_me = Msr.EE | Msr.ME
    code, msr0, check = {
        "mtmsr": ([*load32(3, ee_me), mtmsr(3)], 0, lambda: bench.core.msr == ee_me),
        "mfmsr": ([mfmsr(4)], Msr.ME | Msr.CE, lambda: bench.engine.gpr(4) == Msr.ME | Msr.CE),
        "wrtee": ([*load32(5, Msr.EE), wrtee(5)], Msr.ME, lambda: bench.core.msr == ee_me),
        "wrteei1": ([wrteei(1)], Msr.ME, lambda: bench.core.msr == ee_me),
        "wrteei0": ([wrteei(0)], ee_me, lambda: bench.core.msr == Msr.ME),
    }[name]
    bench.core.msr = msr0
    end = bench.put(CODE, [*code, sc(1)])
    assert is_hcall_at(run_to_exit(bench), end - 4)
    assert check()
    assert exits(bench, Event.PRIV, PRIV_LEVEL[bench.model.name]) == 1
    assert exits(bench, Event.PRIV, {"kernel": "vcpu", "vcpu": "kernel"}[PRIV_LEVEL[bench.model.name]]) == 0


def test_msr_instructions_are_emulated_in_the_engines_hook_without_stopping_the_run(bench):
    """Core.fast_trap: mfmsr, wrtee and wrteei in supervisor state never end the engine's run; the
    run goes on to the next event (here the sc), with the MSR and the exit counts as the ordinary path
    leaves them."""
    bench.core.msr = Msr.ME | Msr.EE
    end = bench.put(CODE, [mfmsr(4), wrteei(0), wrtee(4), wrteei(0), sc(1)])
    stop = bench.engine.run(CODE)
    assert (stop.kind.value, stop.pc, stop.intno) == ("interrupt", end - 4, 8)
    assert bench.engine.gpr(4) == Msr.ME | Msr.EE and bench.core.msr == Msr.ME
    assert exits(bench, Event.PRIV, PRIV_LEVEL[bench.model.name]) == 4


def test_an_msr_write_that_lets_a_waiting_interrupt_in_takes_the_ordinary_path(bench):
    """wrteei 1 with an external input waiting: not emulated in the hook (the run stops), so the
    interrupt is taken at the next instruction, SRR0 = the instruction after the wrteei."""
    setup_vectors(bench)
    bench.set_spr("IVOR4", 0x140)
    bench.put(VEC + 0x140, [sc(1)])
    bench.core.msr = Msr.ME
    bench.core.set_irq_line(0, True)
    bench.put(CODE, [wrteei(1), NOP, NOP, sc(1)])
    bench.core.pc = CODE
    out = run_to_exit(bench)
    assert is_hcall_at(out, VEC + 0x140) and bench.spr("SRR0") == CODE + 4
    assert bench.core.async_delivered["external"] == 1


def readback(bench, name, value):
    if name == "PIR":
        return 0
    if name == "PVR":
        return bench.model.pvr
    if name == "DBSR":
        return 0                                     # write one to clear
    if name == "DBCR0":
        return value & ~(Dbcr0.RST | Dbcr0.EDM)
    return value


@pytest.mark.parametrize("name", PRIV_SPRS)
def test_core_mtspr_mfspr_supervisor(bench, name):
    n = SPR[name]
    value = 0x12345670 if name != "DBCR0" else 0x00000001  # no IDM: do not arm the guest's debug
    end = bench.put(CODE, [*load32(3, value), mtspr(n, 3), mfspr(4, n), sc(1)])
    assert is_hcall_at(run_to_exit(bench), end - 4)
    assert bench.engine.gpr(4) == readback(bench, name, value)
    assert exits(bench, Event.PRIV, PRIV_LEVEL[bench.model.name]) == 2


@pytest.mark.parametrize("name", USER_SPRS)
def test_core_user_sprs_never_exit(bench, name):
    """XER/LR/CTR are user SPRs: classify still calls them mtspr/mfspr, but they never fault."""
    n = SPR[name]
    bench.core.msr = Msr.PR
    end = bench.put(CODE, [li(3, 0x55), mtspr(n, 3), mfspr(4, n), sc(1)])
    assert is_hcall_at(run_to_exit(bench), end - 4)
    assert bench.engine.gpr(4) == 0x55
    assert not bench.page["exits"][EVENT_INDEX["priv"]].any()
    assert not bench.page["exits"][EVENT_INDEX["priv-fault"]].any()


PROBLEM_STATE_WORDS = RFI_WORDS + MSR_WORDS + spr_words(PRIV_SPRS)


@pytest.mark.parametrize("name,word,want,_cs", PROBLEM_STATE_WORDS, ids=ids(PROBLEM_STATE_WORDS))
def test_core_privileged_in_problem_state(bench, name, word, want, _cs):
    """Guest user mode: every privileged instruction is a privileged-instruction program interrupt
    that exits to the kernel (to be reflected into the guest with ESR[PPR]) on both models."""
    setup_vectors(bench)
    bench.core.msr = Msr.PR | Msr.ME
    bench.put(CODE, [NOP, word, sc(1)])
    out = run_to_exit(bench)
    assert (out.event, out.pc, out.word, out.ivor, out.srr0, out.esr) == (
        Event.PRIV_FAULT, CODE + 4, word, Ivor.PROGRAM, CODE + 4, Esr.PPR)
    assert not bench.page["exits"][EVENT_INDEX["priv"]].any()
    bench.core.reflect(out)
    assert bench.spr("SRR0") == CODE + 4 and bench.spr("ESR") == Esr.PPR
    assert bench.core.pc == VEC + HANDLER[6] and not bench.core.msr & Msr.PR
