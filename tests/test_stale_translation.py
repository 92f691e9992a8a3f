"""Stale translations with real processes: guest RAM is a shared-memory GuestRAM, a vCPU core runs a
loop in this process, and another process (multiprocessing, spawn) attaches the RAM by name and patches
a `nop` of the loop into a trap (0x7fe00008) after, or while, the core has translated it.

Without `engine.flush(...)` the core keeps executing the old instruction (no exit) even though RAM
holds the new word; after the flush -- the model of icbi + isync + IPI on every vCPU -- it takes the
trap at that address. Every shared-memory block is removed even when a test fails."""
import contextlib
import gc
import multiprocessing
import os
import threading
import time
from types import SimpleNamespace

import pytest

from asm import NOP, addi, b, li, load32, sc
from cosim.cpu_models import Event, cpu_model
from cosim.isa import Esr, Word
from cosim.machine.guest_ram import GuestRAM
from cosim.vcpu.core import Core
from cosim.vmexit import Exit
from cosim.vcpu.engine import Engine
from cosim.vcpu.runpage import RunPages

RAM_SIZE = 1 << 20
PREFIX = "cosimtest-stale"
CODE = 0x1000
SHM_DIR = "/dev/shm"
SPAWN = multiprocessing.get_context("spawn")


def mtctr(rs):
    return 0x7C0903A6 | rs << 21


def bdnz(disp):
    return 0x42000000 | (disp & 0xFFFC)


def _patch_word(name, size, addr, word, go=None, done=None):
    """Child process: attach guest RAM by name, (wait for `go`,) write one word, detach."""
    if go is not None and not go.wait(30):
        raise SystemExit(3)
    ram = GuestRAM.attach(name, size)
    try:
        ram.write_word(addr, word)
    finally:
        ram.close()
    if done is not None:
        done.set()


def patch_from_other_process(ram, addr, word, go=None, done=None):
    p = SPAWN.Process(target=_patch_word, args=(ram.name, ram.size, addr, word, go, done))
    p.start()
    return p


def leftovers(names):
    mine = f"{PREFIX}_{os.getpid()}_"
    return sorted(n for n in os.listdir(SHM_DIR) if n in names or n.startswith(mine))


@contextlib.contextmanager
def machine(cpu):
    """One vCPU core over shared-memory guest RAM; removes both shared blocks on the way out."""
    ram = GuestRAM.create(RAM_SIZE, name_prefix=PREFIX)
    pages = rec = None
    names = {ram.name}
    m = SimpleNamespace(ram=ram)
    try:
        pages = RunPages.create(1)
        names.add(pages.name)
        m.page = pages[0]
        m.engine = Engine(ram.address, ram.size, pages.address_of(0, "instructions"))
        rec = pages.record(0)                     # the Core takes its run page as a 1-record array
        m.core = Core(m.engine, rec, cpu_model(cpu), ram.words)
        m.core.reset(CODE, pir=0)
        yield m
    finally:
        # the core and unicorn go first: mem_map_ptr does not pin the shared memory
        m.__dict__.clear()
        rec = None
        gc.collect()
        if pages is not None:
            pages.close()
        ram.close()
    assert leftovers(names) == []


@pytest.fixture(params=["e500v2", "e500mc"])
def cpu(request):
    return request.param


def test_patch_after_translation(cpu):
    n = 1000
    target = CODE + 16
    code = [*load32(4, n), mtctr(4), li(3, 0), NOP, addi(3, 3, 1), bdnz(-8), sc(1)]
    #       0x1000 0x1004    0x1008     0x100c    0x1010  0x1014        0x1018    0x101c
    with machine(cpu) as m:
        m.ram.write_u32s(CODE, code)
        assert m.ram.read_word(target) == NOP
        end = CODE + 4 * (len(code) - 1)

        def run_from_start():
            m.core.pc = CODE
            return m.core.run()

        out = run_from_start()                    # translates the loop, runs it to the hypercall
        assert isinstance(out, Exit) and out.event is Event.HCALL and out.pc == end
        assert m.engine.gpr(3) == n

        p = patch_from_other_process(m.ram, target, Word.TRAP)
        p.join(60)
        assert p.exitcode == 0
        assert m.ram.read_word(target) == Word.TRAP   # the patch is in RAM, seen from here too

        # no flush: the translated block still holds the nop
        out = run_from_start()
        assert isinstance(out, Exit) and out.event is Event.HCALL and out.pc == end
        assert m.engine.gpr(3) == n
        assert not m.page["exits"][list(Event).index(Event.TRAP)].any()

        m.engine.flush([target])                  # icbi + isync on this vCPU
        out = run_from_start()
        assert isinstance(out, Exit) and out.event is Event.TRAP
        assert (out.pc, out.word, out.esr) == (target, Word.TRAP, Esr.PTR)
        assert m.engine.gpr(3) == 0               # trapped in the first iteration


def test_patch_while_running(cpu):
    """The core spins in an endless loop on its own thread; the other process patches the nop while
    it runs. No exit until the flush, then the trap at the patched address."""
    target = CODE + 4
    with machine(cpu) as m:
        m.ram.write_u32s(CODE, [addi(3, 3, 1), NOP, addi(4, 4, 1), b(-12)])
        kick = threading.Event()
        result = {}

        def vcpu():
            result["out"] = m.core.run(kicked=kick.is_set)

        def start():
            kick.clear()
            t = threading.Thread(target=vcpu, daemon=True)
            t.start()
            return t

        def stop(t):
            kick.set()
            deadline = time.monotonic() + 10
            while t.is_alive() and time.monotonic() < deadline:
                m.engine.stop()                   # may be lost between emu_start calls: repeat
                t.join(0.01)
            assert not t.is_alive(), "the vCPU thread did not stop"
            return result.pop("out")

        def wait_progress(count=3):
            for _ in range(count):
                before = int(m.page["instructions"])
                deadline = time.monotonic() + 10
                while int(m.page["instructions"]) == before and time.monotonic() < deadline:
                    time.sleep(0.005)
                assert int(m.page["instructions"]) > before, "the core is not running"

        go, done = SPAWN.Event(), SPAWN.Event()
        p = patch_from_other_process(m.ram, target, Word.TRAP, go, done)
        try:
            t = start()
            wait_progress()                       # the loop is translated and running
            go.set()
            assert done.wait(60), "the patching process did not finish"
            p.join(60)
            assert p.exitcode == 0
            assert m.ram.read_word(target) == Word.TRAP
            wait_progress()                       # still spinning over the stale nop
            assert t.is_alive() and "out" not in result
            assert stop(t) is None                # a kick, not an exit

            # resuming without a flush: still the old translation
            t = start()
            wait_progress()
            assert t.is_alive() and "out" not in result
            assert stop(t) is None
            assert not m.page["exits"].any()

            m.engine.flush([target])
            t = start()
            t.join(10)
            assert not t.is_alive()
            out = result.pop("out")
            assert isinstance(out, Exit) and out.event is Event.TRAP
            assert (out.pc, out.word, out.esr) == (target, Word.TRAP, Esr.PTR)
        finally:
            if p.is_alive():
                p.kill()
                p.join(10)
            if "t" in locals() and t.is_alive():
                stop(t)


def test_flush_all_also_works(cpu):
    target = CODE + 4
    with machine(cpu) as m:
        m.ram.write_u32s(CODE, [addi(3, 0, 0), NOP, sc(1)])
        m.core.pc = CODE
        assert m.core.run().event is Event.HCALL
        p = patch_from_other_process(m.ram, target, Word.ILLEGAL_BP)
        p.join(60)
        assert p.exitcode == 0
        m.core.pc = CODE
        assert m.core.run().event is Event.HCALL    # stale
        m.engine.flush()                            # the whole translation cache
        m.core.pc = CODE
        out = m.core.run()
        assert (out.event, out.pc, out.word) == (Event.ILLEGAL, target, Word.ILLEGAL_BP)


def test_cleanup_on_failure():
    """An exception inside the machine still removes its shared memory."""
    names = []
    with pytest.raises(RuntimeError):
        with machine("e500mc") as m:
            names.append(m.ram.name)
            raise RuntimeError("boom")
    assert names and not os.path.exists(os.path.join(SHM_DIR, names[0]))


def test_stale_trap_after_removal_is_not_reported_as_illegal(bench):
    """Breakpoint removed (trap -> nop) without a flush: unicorn still raises the old trap."""
    bench.put(CODE, [NOP, Word.TRAP, sc(1)])
    out = bench.core.run()
    assert (out.event, out.pc) == (Event.TRAP, CODE + 4)
    bench.put(CODE + 4, [NOP])                    # restored in RAM, translation not flushed
    bench.core.pc = CODE
    out = bench.core.run()
    # the core notices the word in RAM cannot have raised a trap, flushes and runs the nop
    assert (out.event, out.pc) == (Event.HCALL, CODE + 8)
