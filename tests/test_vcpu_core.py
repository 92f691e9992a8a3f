"""The Book E vCPU core over unicorn: privileged-instruction emulation, interrupt delivery, routing by
CPU model, debug facilities and faults. Hand-made code in private RAM; no processes."""
import pytest

from asm import NOP, li, load32, mfmsr, mfspr, mtmsr, mtspr, sc, twnei, wrtee, wrteei
from cosim.cpu_models import Event
from cosim.isa import SPR, Dbcr0, Dbsr, DebugStatus, Esr, GuestDebug, Ivor, Msr, Word
from cosim.vmexit import Exit, Fault

VEC = 0x20000         # IVPR (upper 16 bits)
HANDLER = {n: 0x100 + 0x10 * n for n in (0, 1, 6, 8, 12, 15, 41)}


def setup_vectors(bench):
    bench.set_spr("IVPR", VEC)
    for n, off in HANDLER.items():
        bench.page["spr"][{41: SPR["IVOR41"]}.get(n, SPR[f"IVOR{n}"])] = off


def run_to_exit(bench, limit=20):
    """Run until something leaves the core; reflect kernel exits like a kernel with no debugger."""
    for _ in range(limit):
        out = bench.core.run()
        if out is not None:
            return out
    raise AssertionError("no exit")


@pytest.mark.parametrize("spr", ["SPRG0", "SPRG3", "SRR0", "SRR1", "CSRR0", "DSRR1", "IVPR", "IVOR6",
                                 "IVOR15", "IVOR41", "ESR", "DEAR", "EPCR", "MSRP", "MCSRR0", "DBCR1"])
def test_mtspr_mfspr_roundtrip(bench, spr):
    n = SPR[spr]
    end = bench.put(0x1000, [*load32(3, 0x12345670), mtspr(n, 3), mfspr(4, n), sc(1)])
    out = run_to_exit(bench)
    assert isinstance(out, Exit) and out.event is Event.HCALL and out.pc == end - 4
    assert bench.spr(spr) == 0x12345670
    assert bench.engine.gpr(4) == 0x12345670
    # e500v2 (PR) emulates in the kernel, e500mc (E.HV) runs them natively
    level = 1 if bench.model.name == "e500v2" else 0
    assert bench.page["exits"][0, level] >= 2


def test_pir_pvr_read_only(bench):
    bench.put(0x1000, [li(3, 77), mtspr(SPR["PIR"], 3), mfspr(4, SPR["PIR"]), mfspr(5, SPR["PVR"]), sc(1)])
    run_to_exit(bench)
    assert bench.engine.gpr(4) == 0
    assert bench.engine.gpr(5) == bench.model.pvr


def test_msr_wrtee_and_rfi_family(bench):
    code = [*load32(3, Msr.EE | Msr.ME), mtmsr(3), mfmsr(4),
            li(5, 0), wrtee(5), mfmsr(6), wrteei(1), mfmsr(7), sc(1)]
    bench.put(0x1000, code)
    run_to_exit(bench)
    g = bench.engine.gpr
    assert g(4) == Msr.EE | Msr.ME and g(6) == Msr.ME and g(7) == Msr.EE | Msr.ME
    for rf, pair in ((Word.RFI, ("SRR0", "SRR1")), (Word.RFCI, ("CSRR0", "CSRR1")),
                     (Word.RFDI, ("DSRR0", "DSRR1")), (Word.RFMCI, ("MCSRR0", "MCSRR1"))):
        bench.put(0x2000, [rf])
        bench.put(0x3000, [sc(1)])
        bench.set_spr(pair[0], 0x3000)
        bench.set_spr(pair[1], Msr.ME | Msr.CE)
        bench.core.pc = 0x2000
        out = run_to_exit(bench)
        assert out.pc == 0x3000, rf
        assert bench.core.msr == Msr.ME | Msr.CE


@pytest.mark.parametrize("word,event,esr", [
    (Word.TRAP, Event.TRAP, Esr.PTR),
    (Word.ILLEGAL_BP, Event.ILLEGAL, Esr.PIL),
    (0x00000000, Event.ILLEGAL, Esr.PIL),
])
def test_program_interrupts_exit_and_reflect(bench, word, event, esr):
    setup_vectors(bench)
    bench.core.msr = Msr.ME | Msr.DE | Msr.EE
    bench.put(0x1000, [NOP, word, NOP])
    bench.put(VEC + HANDLER[6], [sc(1)])
    out = run_to_exit(bench)
    assert out.event is event and out.pc == 0x1004 and out.word == word
    assert (out.ivor, out.srr0, out.esr) == (Ivor.PROGRAM, 0x1004, esr)
    bench.core.reflect(out)
    assert bench.spr("SRR0") == 0x1004
    assert bench.spr("SRR1") == Msr.ME | Msr.DE | Msr.EE
    assert bench.spr("ESR") == esr
    assert bench.core.msr == Msr.ME | Msr.DE            # non-critical: keeps CE|ME|DE
    assert bench.core.pc == VEC + HANDLER[6]


def test_ehpriv_per_model(bench):
    setup_vectors(bench)
    bench.put(0x1000, [Word.EHPRIV1])
    out = run_to_exit(bench)
    if bench.model.name == "e500mc":
        assert out.event is Event.EHPRIV and out.oc == 1
    else:
        assert out.event is Event.ILLEGAL and out.esr == Esr.PIL


def test_privileged_in_problem_state_faults(bench):
    setup_vectors(bench)
    bench.core.msr = Msr.PR
    bench.put(0x1000, [mfmsr(3)])
    out = run_to_exit(bench)
    assert out.event is Event.PRIV_FAULT and out.esr == Esr.PPR and out.pc == 0x1000


def test_syscall_routing(bench):
    setup_vectors(bench)
    bench.put(0x1000, [NOP, Word.SC64, NOP])
    bench.put(VEC + HANDLER[8], [sc(1)])
    out = run_to_exit(bench)
    if bench.model.name == "e500mc":
        # E.HV: the guest's own syscall vector takes it, the hypervisor never sees it
        assert out.event is Event.HCALL and out.pc == VEC + HANDLER[8]
        assert bench.spr("SRR0") == 0x1008
        assert bench.page["exits"][list(Event).index(Event.SYSCALL), 0] == 1
    else:
        assert out.event is Event.SYSCALL and out.lev == 64 and out.srr0 == 0x1008
        bench.core.reflect(out)
        assert bench.core.pc == VEC + HANDLER[8] and bench.spr("SRR0") == 0x1008


def test_guest_iac_and_single_step(bench):
    setup_vectors(bench)
    target = 0x101C                                   # li r6, 2
    bench.set_spr("IAC1", target)
    code = [*load32(3, Dbcr0.IDM | Dbcr0.IAC1), mtspr(SPR["DBCR0"], 3),
            *load32(4, Msr.DE | Msr.ME), mtmsr(4), li(5, 1), li(6, 2), li(7, 3), sc(1)]
    bench.put(0x1000, code)
    bench.put(VEC + HANDLER[15], [sc(1)])
    out = run_to_exit(bench)
    assert out.event is Event.DEBUG and out.pc == target and not out.host
    assert out.dbsr == Dbsr.IAC1 and bench.spr("DBSR") & Dbsr.IAC1
    assert bench.engine.gpr(5) == 1 and bench.engine.gpr(6) == 0      # stopped before li r6
    bench.core.reflect(out)
    save0, save1 = ("CSRR0", "CSRR1") if bench.model.name == "e500v2" else ("DSRR0", "DSRR1")
    assert bench.spr(save0) == target and bench.spr(save1) == Msr.DE | Msr.ME
    assert bench.core.msr == Msr.ME and bench.core.pc == VEC + HANDLER[15]
    # single-step: IC event after each instruction, SRR0 = next instruction
    bench.set_spr("DBCR0", Dbcr0.IDM | Dbcr0.IC)
    bench.core.msr = Msr.DE | Msr.ME
    bench.core.pc = target
    bench.core.apply_debug()
    out = run_to_exit(bench)
    assert out.event is Event.DEBUG and out.dbsr == Dbsr.IC and out.srr0 == target + 4
    assert bench.engine.gpr(6) == 2 and bench.engine.gpr(7) == 0


def test_host_debug_owns_facility(bench):
    """While the host debugs, guest writes to debug SPRs are ignored and DBCR0[EDM] reads back."""
    p = bench.page
    p["dbg_control"] = GuestDebug.ENABLE | GuestDebug.USE_HW_BP
    p["dbg_iac"][0] = 0x1008
    p["dbg_iac_on"][0] = 1
    bench.core.apply_debug()
    code = [*load32(3, Dbcr0.IDM | Dbcr0.IAC2), mtspr(SPR["DBCR0"], 3), mfspr(4, SPR["DBCR0"])]
    bench.put(0x1000, code + [NOP, sc(1)])
    out = run_to_exit(bench)
    assert out.event is Event.DEBUG and out.host and out.status == DebugStatus.BREAKPOINT
    assert out.pc == 0x1008 and bench.spr("DBCR0") == 0 and bench.spr("DBSR") == 0
    out = bench.core.step_over(mfspr(4, SPR["DBCR0"]))
    assert out is None and bench.engine.gpr(4) & Dbcr0.EDM and bench.core.pc == 0x100C


def test_displaced_step_over_breakpoint(bench):
    bench.put(0x1000, [li(3, 1), Word.ILLEGAL_BP, li(5, 3), sc(1)])
    out = run_to_exit(bench)
    assert out.event is Event.ILLEGAL and out.pc == 0x1004
    assert bench.core.step_over(li(4, 2)) is None        # the original word, executed out of line
    out = run_to_exit(bench)
    assert out.event is Event.HCALL
    assert [bench.engine.gpr(n) for n in (3, 4, 5)] == [1, 2, 3]


def test_warn_trap_condition(bench):
    bench.put(0x1000, [li(3, 0), twnei(3, 0), li(3, 5), twnei(3, 0)])
    out = run_to_exit(bench)
    assert out.event is Event.TRAP and out.pc == 0x100C


def test_fault_unmapped_fetch(bench):
    bench.put(0x1000, [*load32(3, 0x80000000), 0x7C6903A6, 0x4E800420])   # mtctr r3; bctr
    out = run_to_exit(bench)
    assert isinstance(out, Fault) and out.pc == 0x80000000 and "fetch" in out.reason


def test_fault_unhandled_interrupt(bench):
    # an unaligned lwarx raises the alignment interrupt, which the core does not model (an SPE
    # instruction used to stand in here: it is the guest's interrupt now, tests/test_spe.py)
    bench.put(0x1000, [li(4, 1), 0x7C602028])          # lwarx r3, 0, r4 with r4 = 1
    out = run_to_exit(bench)
    assert isinstance(out, Fault) and "unhandled core exception 5" in out.reason and out.pc == 0x1004


def test_instructions_counted(bench):
    bench.put(0x1000, [li(3, 0)] + [addi_ for addi_ in [0x38630001] * 10] + [sc(1)])
    run_to_exit(bench)
    assert int(bench.page["instructions"]) >= 12


def test_dac_write_event_comes_before_the_access(bench):
    """Book E: a DAC event happens before the access. A `stwu` that hits it has neither stored nor
    updated its base register; stepped over, it does both exactly once."""
    data = 0x8000
    stwu = 0x94000000 | 6 << 21 | 7 << 16 | 4            # stwu r6, 4(r7)
    p = bench.page
    p["dbg_control"] = GuestDebug.ENABLE | GuestDebug.USE_HW_BP
    p["dbg_dac"][0] = data + 4
    p["dbg_dac_rw"][0] = 2                                # write
    bench.core.apply_debug()
    bench.put(0x1000, [li(6, 0x55), *load32(7, data), stwu, sc(1)])
    out = run_to_exit(bench)
    assert out.event is Event.DEBUG and out.host and out.status == DebugStatus.WATCH_WRITE
    assert out.pc == 0x100C and out.addr == data + 4
    assert bench.words[(data + 4) >> 2] == 0 and bench.engine.gpr(7) == data
    assert bench.core.step_over(stwu) is None
    assert bench.words[(data + 4) >> 2] == 0x55 and bench.engine.gpr(7) == data + 4
    assert run_to_exit(bench).event is Event.HCALL


def host_step(bench):
    bench.page["dbg_control"] = GuestDebug.ENABLE | GuestDebug.SINGLESTEP
    bench.core.apply_debug()


@pytest.mark.parametrize("case", ["emulated", "guest-vector", "reflected", "native-next"])
def test_host_single_step_is_one_instruction(bench, case):
    """One host step over an instruction the core emulates, or that takes an interrupt, stops after
    it: at the next instruction, or at the handler's first instruction (never handler + 4)."""
    setup_vectors(bench)
    prog = VEC + HANDLER[6]
    bench.put(VEC + HANDLER[8], [mfspr(20, SPR["SRR0"]), NOP, sc(1)])
    bench.put(prog, [mfspr(20, SPR["ESR"]), NOP, sc(1)])
    word = {"emulated": mfspr(20, SPR["ESR"]), "guest-vector": Word.SC,
            "reflected": twnei(3, 0), "native-next": li(5, 1)}[case]
    bench.put(0x1000, [word, NOP, sc(1)])
    bench.engine.set_gpr(3, 1)
    host_step(bench)
    out = bench.core.run()
    if case == "reflected" or (case == "guest-vector" and bench.model.name == "e500v2"):
        assert out.event in (Event.TRAP, Event.SYSCALL) and not out.host
        bench.core.reflect(out)                      # what the kernel decides for the guest's own
        bench.core.completed()
        out = bench.core.run()
    handler = {"emulated": 0x1004, "native-next": 0x1004, "reflected": prog, "guest-vector": VEC + HANDLER[8]}
    assert out.event is Event.DEBUG and out.host and out.status == DebugStatus.SOFTWARE
    assert out.pc == handler[case], hex(out.pc)
    # the step from the handler's first instruction (privileged, emulated or native) is one more
    if case in ("reflected", "guest-vector"):
        out = bench.core.run()
        assert out.event is Event.DEBUG and out.pc == handler[case] + 4


def test_guest_rfci_that_sets_de_completes_no_step(bench):
    """The guest's own IC: rfci out of its debug handler (MSR[DE] 0 -> 1) is no step; the next
    instruction is."""
    setup_vectors(bench)
    save0, save1 = ("CSRR0", "CSRR1") if bench.model.name == "e500v2" else ("DSRR0", "DSRR1")
    bench.set_spr("DBCR0", Dbcr0.IDM | Dbcr0.IC)
    bench.set_spr(save0, 0x1000)
    bench.set_spr(save1, Msr.DE | Msr.ME)
    bench.put(0x1000, [li(5, 1), li(6, 2), sc(1)])
    bench.put(0x800, [Word.RFCI if bench.model.name == "e500v2" else Word.RFDI])
    bench.core.msr = Msr.ME
    bench.core.pc = 0x800
    bench.core.apply_debug()
    out = run_to_exit(bench)
    assert out.event is Event.DEBUG and out.dbsr == Dbsr.IC and out.srr0 == 0x1004
    assert bench.engine.gpr(5) == 1 and bench.engine.gpr(6) == 0
