"""The kernel's exit handler, pure: strategy x CPU model x exit -> decision, from one table."""
from dataclasses import replace

import pytest

from cosim.cpu_models import CPU_MODELS, Event
from cosim.isa import DebugStatus, Esr, GuestDebug, Ivor, Word
from cosim.kernel.exits import Action, ExitHandler, GuestDebugState
from cosim.strategies import STRATEGIES
from cosim.vmexit import Exit

PC = 0x10760
SW = GuestDebugState(GuestDebug.ENABLE | GuestDebug.USE_SW_BP)
OFF = GuestDebugState()


def exit_(event, word, **kw):
    ivor = Ivor.SYSCALL if event in (Event.SYSCALL, Event.HCALL) else Ivor.PROGRAM
    return Exit(event, PC, word, ivor, PC + 4 if ivor == Ivor.SYSCALL else PC, **kw)


TRAP = exit_(Event.TRAP, Word.TRAP, esr=Esr.PTR)
WARN = exit_(Event.TRAP, 0x0C030000 | 24 << 21, esr=Esr.PTR)       # twnei r3,0
ILLEGAL = exit_(Event.ILLEGAL, Word.ILLEGAL_BP, esr=Esr.PIL)
EHPRIV_MC = exit_(Event.EHPRIV, Word.EHPRIV1, esr=Esr.PIL, oc=1)
EHPRIV_V2 = exit_(Event.ILLEGAL, Word.EHPRIV1, esr=Esr.PIL)
SC64 = exit_(Event.SYSCALL, Word.SC64, lev=64)


@pytest.mark.parametrize("strategy,cpu,ex,dbg,action", [
    ("illegal", "e500mc", ILLEGAL, SW, Action.USER),
    ("illegal", "e500mc", ILLEGAL, OFF, Action.REFLECT),          # no debugger: the guest's own
    ("illegal", "e500v2", WARN, SW, Action.REFLECT),              # guest traps never leave the kernel
    ("trap-user", "e500mc", WARN, SW, Action.USER),               # x86 model: every trap to userspace
    ("trap-user", "e500mc", WARN, OFF, Action.REFLECT),
    ("trap-kernel", "e500v2", TRAP, SW, Action.USER),             # in the kernel's table (below)
    ("trap-kernel", "e500v2", replace(WARN, pc=PC + 8), SW, Action.REFLECT),   # not in the table
    ("ehpriv", "e500mc", EHPRIV_MC, SW, Action.USER),
    ("ehpriv", "e500v2", EHPRIV_V2, SW, Action.USER),             # no E.HV: an illegal instruction
    ("sc64", "e500v2", SC64, SW, Action.USER),
    ("sc64", "e500v2", exit_(Event.SYSCALL, Word.SC, lev=0), SW, Action.REFLECT),
    ("hw", "e500mc", TRAP, SW, Action.REFLECT),                   # hw plants nothing
])
def test_decisions(strategy, cpu, ex, dbg, action):
    h = ExitHandler(CPU_MODELS[cpu], STRATEGIES[strategy], read_word=lambda a: ex.word)
    h.table.add(PC)
    d = h.handle(ex, dbg)
    assert d.action is action
    if action is Action.USER:
        assert (d.address, d.status) == (PC, 0)


def test_stale_exit_is_retried_at_the_same_pc():
    h = ExitHandler(CPU_MODELS["e500mc"], STRATEGIES["illegal"], read_word=lambda a: 0x38000000)
    d = h.handle(ILLEGAL, OFF)       # breakpoint gone from the list and from memory
    assert (d.action, d.pc) == (Action.EMULATE, PC)


def test_host_debug_events_go_to_userspace():
    h = ExitHandler(CPU_MODELS["e500v2"], STRATEGIES["hw"])
    ev = Exit(Event.DEBUG, PC, 0, Ivor.DEBUG, PC, addr=PC, host=True, status=DebugStatus.BREAKPOINT)
    d = h.handle(ev, GuestDebugState(GuestDebug.ENABLE | GuestDebug.USE_HW_BP))
    assert (d.action, d.address, d.status) == (Action.USER, PC, DebugStatus.BREAKPOINT)
    guest_own = Exit(Event.DEBUG, PC, 0, Ivor.DEBUG, PC, addr=PC, host=False)
    assert h.handle(guest_own, OFF).action is Action.REFLECT


def test_hypercalls():
    h = ExitHandler(CPU_MODELS["e500mc"], STRATEGIES["illegal"])
    halt = exit_(Event.HCALL, Word.SC1, lev=1, r3=7, r11=1)
    assert (h.handle(halt, OFF).action, h.handle(halt, OFF).code) == (Action.HALT, 7)
    unknown = exit_(Event.HCALL, Word.SC1, lev=1, r11=99)
    d = h.handle(unknown, OFF)
    assert (d.action, d.pc, d.r3) == (Action.EMULATE, PC + 4, 12)


def test_debug_inst_one_reg_per_strategy():
    assert {n: ExitHandler(CPU_MODELS["e500mc"], s).debug_inst for n, s in STRATEGIES.items()} == {
        "sc64": Word.SC64, "trap-user": Word.TRAP, "trap-kernel": Word.TRAP, "ehpriv": Word.EHPRIV1,
        "illegal": Word.ILLEGAL_BP, "hw": None}


@pytest.mark.parametrize("strategy", ["trap-kernel", "illegal", "ehpriv", "sc64"])
def test_step_over_event_of_the_original_instruction_is_the_guests(strategy):
    """After a hit, the original instruction under the breakpoint runs out of line; its own trap (a
    WARN site's `twnei`, or a `tw 31,0,0` equal to the planted word) is reflected, never a hit again."""
    s = STRATEGIES[strategy]
    cpu = "e500v2"
    event = s.hit_event[cpu]
    own = exit_(event, s.word, esr=Esr.PTR, displaced=True)
    h = ExitHandler(CPU_MODELS[cpu], s, read_word=lambda a: s.word)   # the breakpoint is still planted
    h.table.add(PC)
    assert h.handle(replace(own, displaced=False), SW).action is Action.USER
    assert h.handle(own, SW).action is Action.REFLECT
    warn = replace(WARN, displaced=True)
    assert h.handle(warn, SW).action is Action.REFLECT


def test_step_over_event_under_trap_user_goes_to_userspace_which_reinjects():
    from cosim.userspace.breakpoints import DebugState, Verdict
    h = ExitHandler(CPU_MODELS["e500mc"], STRATEGIES["trap-user"], read_word=lambda a: Word.TRAP)
    assert h.handle(replace(WARN, displaced=True), SW).action is Action.USER
    st = DebugState(Word.TRAP)
    st.insert_sw(PC, WARN.word)
    assert st.verdict(PC, DebugStatus.SOFTWARE, WARN.word, Word.TRAP, False, "trap") is Verdict.SW
    assert st.verdict(PC, DebugStatus.SOFTWARE, WARN.word, Word.TRAP, False, "trap",
                      displaced=True) is Verdict.REINJECT



def test_trap_kernel_table_takes_only_its_own_word_for_a_hit():
    """A guest's own trap at an address planted while its exit was in flight is the guest's (the table
    alone took it for a hit); our word at a patched address is a hit, also when its breakpoint was
    removed and planted again meanwhile; our word where nothing is patched any more is stale. (A
    guest trap whose word is ours, `tw 31,0,0`, in flight while its address is planted, stays
    ambiguous: the table has no history.)"""
    from cosim.cpu_models import cpu_model
    from cosim.isa import GuestDebug
    from cosim.kernel.exits import Action, ExitHandler, GuestDebugState
    from cosim.strategies import strategy
    from cosim.vmexit import Event, Exit
    s = strategy("trap-kernel")
    site = 0x10760
    guest_trap = 0x0F1D0000            # the guest's own trap at the site (warn_storm's `twi`)
    ram = {site: s.word}                # planted now
    h = ExitHandler(cpu_model("e500mc"), s, ram.get)
    h.table = {site}
    event = Event(s.hit_event["e500mc"])
    dbg = GuestDebugState(GuestDebug.ENABLE | GuestDebug.USE_SW_BP)
    assert h.handle(Exit(event, site, guest_trap, 6, site), dbg).action is Action.REFLECT
    assert h.handle(Exit(event, site, s.word, 6, site), dbg).action is Action.USER
    h.table = set()
    ram[site] = guest_trap              # removed: the original word is back
    d = h.handle(Exit(event, site, s.word, 6, site), dbg)
    assert d.action is Action.EMULATE and d.pc == site and h.stale == {site: 1}
