"""The engine's fast memory path (UC_TLB_VIRTUAL + the C fill callback: execute permission only for pages
fetched from) and its CPU model (unicorn's e500v2), with real shared memory and a second process.

What must still hold with stores on the fast path: guest stores land in shared RAM and stores from
another process are seen by the guest; a breakpoint planted into a page the guest has only read from
(never executed) is taken; self-modifying code on a page already executed runs the new word; DAC
watchpoints fire; e500 instructions (isel) execute and AltiVec ones do not.
"""
import pytest

from asm import NOP, addi, b, li, load32, sc
from cosim.cpu_models import Event
from cosim.isa import Word
from cosim.vmexit import Exit
from cosim.vcpu.engine import StopKind
from test_stale_translation import CODE, machine, patch_from_other_process

DATA = 0x40000          # a page the guest only reads and writes
FAR = 0x20000           # a code page the guest reads before it ever executes it


def stw(rs, d, ra):
    return 0x90000000 | rs << 21 | ra << 16 | (d & 0xFFFF)


def lwz(rd, d, ra):
    return 0x80000000 | rd << 21 | ra << 16 | (d & 0xFFFF)


def isel(rt, ra, rb, bc):
    return 31 << 26 | rt << 21 | ra << 16 | rb << 11 | bc << 6 | 15 << 1


def cmpw(ra, rb):
    return 31 << 26 | ra << 16 | rb << 11


def branch_to(src, dst):
    return b(dst - src)


@pytest.fixture(params=["e500v2", "e500mc"])
def cpu(request):
    return request.param


def run_to_hcall(m, pc=CODE):
    m.core.pc = pc
    out = m.core.run()
    assert isinstance(out, Exit) and out.event is Event.HCALL, out
    return out


def test_guest_stores_land_and_other_process_stores_are_seen(cpu):
    code = [*load32(5, DATA), li(4, 0x1234), stw(4, 0, 5), lwz(6, 4, 5), sc(1)]
    with machine(cpu) as m:
        m.ram.write_u32s(CODE, code)
        m.ram.write_word(DATA + 4, 0x1111)
        run_to_hcall(m)
        assert m.ram.read_word(DATA) == 0x1234          # the guest's store is in shared RAM
        assert m.engine.gpr(6) == 0x1111
        p = patch_from_other_process(m.ram, DATA + 4, 0xCAFE)   # the data page is in the TLB now
        p.join(60)
        assert p.exitcode == 0
        run_to_hcall(m)
        assert m.engine.gpr(6) == 0xCAFE                 # and another process's store is seen


def test_breakpoint_in_a_page_only_read_before_is_taken(cpu):
    # the guest reads FAR (a data access: the page is filled without execute), then a breakpoint is
    # planted there from another process and flushed, then the guest branches to it
    code = [*load32(5, FAR), lwz(6, 0, 5), NOP, sc(1)]
    far = [li(7, 1), sc(1)]
    with machine(cpu) as m:
        m.ram.write_u32s(CODE, code)
        m.ram.write_u32s(FAR, far)
        run_to_hcall(m)
        assert m.engine.gpr(6) == far[0]
        p = patch_from_other_process(m.ram, FAR, Word.TRAP)
        p.join(60)
        assert p.exitcode == 0
        m.engine.flush([FAR])
        m.ram.write_word(CODE + 12, branch_to(CODE + 12, FAR))   # NOP -> b FAR
        m.engine.flush([CODE + 12])
        m.core.pc = CODE
        out = m.core.run()
        assert isinstance(out, Exit) and out.pc == FAR and out.word == Word.TRAP, out
        assert m.engine.gpr(7) == 0


def test_self_modifying_code_on_an_executed_page_runs_the_new_word(cpu):
    # first pass: X is li r3,1; the guest then stores li r3,2 over X and runs X again
    x = CODE + 0x100
    code = [*load32(5, x), *load32(4, li(3, 2)), li(8, 0), branch_to(CODE + 20, x)]
    tail = [li(3, 1), addi(8, 8, 1), stw(4, 0, 5), sc(1)]
    with machine(cpu) as m:
        m.ram.write_u32s(CODE, code)
        m.ram.write_u32s(x, tail)
        run_to_hcall(m)
        assert m.engine.gpr(3) == 1 and m.ram.read_word(x) == li(3, 2)
        m.core.pc = x                                     # same page, already translated
        out = m.core.run()
        assert isinstance(out, Exit) and out.event is Event.HCALL
        assert m.engine.gpr(3) == 2                       # the translation was invalidated


def test_dac_watchpoint_fires_on_a_fast_path_data_page(cpu):
    code = [*load32(5, DATA), li(4, 7), stw(4, 0x40, 5), stw(4, 0x80, 5), sc(1)]
    with machine(cpu) as m:
        m.ram.write_u32s(CODE, code)
        run_to_hcall(m)                                   # DATA is now a hot RW page in the TLB
        m.engine.set_dac(((DATA + 0x80, False, True), None))
        m.ram.write_word(DATA + 0x80, 0)
        stop = m.engine.run(CODE)
        assert stop.kind is StopKind.DAC and stop.addr == DATA + 0x80 and stop.write
        assert stop.pc == CODE + 16
        assert m.ram.read_word(DATA + 0x80) == 0          # taken before the access


def test_engine_is_an_e500(cpu):
    with machine(cpu) as m:
        assert m.engine.uc.ctl_get_cpu_model() != 289     # not unicorn's default 7457A (G4)
        m.ram.write_u32s(CODE, [cmpw(4, 5), isel(3, 4, 5, 2), sc(1)])
        for a, bb, want in ((7, 7, 7), (7, 9, 9)):
            m.engine.set_gpr(4, a)
            m.engine.set_gpr(5, bb)
            stop = m.engine.run(CODE)
            assert stop.kind is StopKind.INTERRUPT and stop.pc == CODE + 8 and stop.intno == 8
            assert m.engine.gpr(3) == want                # isel executed (an e500 instruction)
        vaddubm = 4 << 26 | 1 << 21 | 2 << 16 | 3 << 11
        m.ram.write_word(CODE + 0x40, vaddubm)
        stop = m.engine.run(CODE + 0x40)
        assert stop.kind is StopKind.INTERRUPT and stop.intno == 96   # no AltiVec on an e500


def test_steady_state_makes_no_tlb_fills(cpu):
    with machine(cpu) as m:
        n = 20000
        mtctr = 0x7C0903A6 | 4 << 21
        bdnz = 0x42000000 | (-8 & 0xFFFC)
        m.ram.write_u32s(CODE, [*load32(4, n), mtctr, *load32(5, DATA), stw(4, 0, 5),
                                addi(4, 4, 1), bdnz, sc(1)])
        run_to_hcall(m)
        fills = m.engine.tlb_fills
        run_to_hcall(m)
        assert m.engine.tlb_fills == fills                # a second pass: every page already filled


def test_the_guest_cannot_reach_the_engines_pages(cpu):
    from cosim.vcpu.engine import SCRATCH
    with machine(cpu) as m:
        for target in (SCRATCH, SCRATCH + 0x100, SCRATCH + 0xFFC):
            m.ram.write_u32s(CODE, [*load32(5, target), 0x7CA903A6, 0x4E800420])   # mtctr r5; bctr
            stop = m.engine.run(CODE)
            assert stop.kind is StopKind.FAULT and SCRATCH <= stop.pc <= target, stop   # never runs there
            assert "not guest memory" in stop.error
        # a data access there faults too
        m.ram.write_u32s(CODE, [*load32(5, SCRATCH), lwz(6, 0, 5), sc(1)])
        stop = m.engine.run(CODE)
        assert stop.kind is StopKind.FAULT and ("reserved" in stop.error or "not guest memory" in stop.error), stop
        # and out-of-line execution on the engine's page still works afterwards
        m.engine.set_gpr(3, 5)
        out = m.engine.displaced(CODE + 0x80, addi(3, 3, 1))
        assert out.kind is StopKind.STEP and out.pc == CODE + 0x84 and m.engine.gpr(3) == 6


def test_a_kick_before_the_displaced_word_runs_never_leaves_pc_on_the_scratch_page(cpu):
    import threading
    with machine(cpu) as m:
        stop_flag = threading.Event()

        def kicker():
            while not stop_flag.is_set():
                m.engine.stop()
        t = threading.Thread(target=kicker)
        t.start()
        try:
            for i in range(300):
                m.engine.set_gpr(3, i)
                out = m.engine.displaced(CODE + 0x80, addi(3, 3, 1))
                assert out.kind is StopKind.STEP and out.pc == CODE + 0x84, out
                assert m.engine.gpr(3) == i + 1 and m.engine.pc == CODE + 0x84
        finally:
            stop_flag.set()
            t.join()
