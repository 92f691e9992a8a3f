"""Userspace's breakpoint list and KVM_EXIT_DEBUG decision, pure (no processes)."""
import pytest

from cosim.isa import DebugStatus, GuestDebug, Word
from cosim.userspace.breakpoints import BreakpointError, DebugState, Patch, Verdict

ORIG = 0x38000000          # li r0,0
BP = Word.ILLEGAL_BP


def test_insert_remove_with_use_counts():
    st = DebugState(BP)
    assert st.insert_sw(0x100, ORIG) == Patch(0x100, BP)
    assert st.insert_sw(0x100, BP) is None                 # second user: nothing to write
    assert st.remove_sw(0x100, BP) is None                 # still used once
    assert st.remove_sw(0x100, BP) == Patch(0x100, ORIG)   # last user: restore the saved word
    with pytest.raises(BreakpointError, match="no software breakpoint at 0x100"):
        st.remove_sw(0x100, ORIG)


def test_removal_checks_the_word_is_still_ours():
    st = DebugState(BP)
    st.insert_sw(0x100, ORIG)
    assert st.remove_sw(0x100, 0x60000000) is None         # the guest rewrote it: leave it alone
    assert 0x100 not in st.sw


def test_bad_requests():
    with pytest.raises(BreakpointError, match="not word-aligned"):
        DebugState(BP).insert_sw(0x102, ORIG)
    with pytest.raises(BreakpointError, match="plants no software breakpoints"):
        DebugState(None).insert_sw(0x100, ORIG)


def test_hardware_slots_and_refusal():
    st = DebugState(None)
    st.insert_hw("iac", 0x100)
    st.insert_hw("iac", 0x200)
    with pytest.raises(BreakpointError, match=r"no free instruction \(IAC\) slot for 0x300: e500 has 2, "
                                              r"in use at 0x100, 0x200"):
        st.insert_hw("iac", 0x300)
    st.insert_hw("watch", 0x1000)
    assert st.guest_debug_fields() == ((0x100, 0x200), (1, 1), (0x1000, 0), (2, 0))
    assert st.control() == GuestDebug.ENABLE | GuestDebug.USE_HW_BP
    st.remove_hw("iac", 0x100)
    assert st.iac[0] is None
    assert st.guest_debug_fields() == ((0, 0x200), (0, 1), (0x1000, 0), (2, 0))


def test_snapshot_tables_are_independent():
    st = DebugState(BP)
    st.insert_sw(0x100, ORIG)
    st.insert_hw("iac", 0x200)
    snap = st.snapshot()
    st.insert_sw(0x104, ORIG)
    st.remove_hw("iac", 0x200)
    assert set(snap.sw) == {0x100} and snap.iac[0].address == 0x200
    assert snap.debug_inst == BP and snap.control() == st.control() | GuestDebug.USE_HW_BP


def test_control_flags():
    st = DebugState(BP)
    assert st.control() == 0                                # nothing to debug: KVM debug off
    st.insert_sw(0x100, ORIG)
    assert st.control() == GuestDebug.ENABLE | GuestDebug.USE_SW_BP
    assert st.control(singlestep=True) & GuestDebug.SINGLESTEP


@pytest.mark.parametrize("address,status,word,current,stepping,event,verdict", [
    # QEMU's order: single-step first
    (0x104, DebugStatus.SOFTWARE, ORIG, ORIG, True, "debug", Verdict.STEP),
    # a host step whose stepping was cancelled while the exit was in flight: retried, not the guest's
    (0x104, DebugStatus.SOFTWARE, ORIG, ORIG, False, "debug", Verdict.STALE),
    # hardware status: our IAC point
    (0x200, DebugStatus.BREAKPOINT, ORIG, ORIG, False, "debug", Verdict.HW),
    # hardware status for a point no longer set: stale
    (0x300, DebugStatus.BREAKPOINT, ORIG, ORIG, False, "debug", Verdict.STALE),
    # a software breakpoint of ours
    (0x100, DebugStatus.SOFTWARE, BP, BP, False, "illegal", Verdict.SW),
    # the debug word, but no longer in memory: removed while the exit was in flight
    (0x180, DebugStatus.SOFTWARE, BP, ORIG, False, "illegal", Verdict.STALE),
    # a guest trap that is not ours (trap-user's x86 model): give it back
    (0x400, DebugStatus.SOFTWARE, Word.TRAP, Word.TRAP, False, "trap", Verdict.REINJECT),
])
def test_verdicts(address, status, word, current, stepping, event, verdict):
    st = DebugState(BP)
    st.insert_sw(0x100, ORIG)
    st.insert_hw("iac", 0x200)
    assert st.verdict(address, status, word, current, stepping, event) is verdict


@pytest.mark.parametrize("word,regs,taken", [
    (0x0F1D0000, {29: 1}, True),            # twnei r29,0
    (0x0F1D0000, {29: 0}, False),
    (0x0F1D0000, {29: 0xFFFFFFFF}, True),
    (0x7C9DE008, {29: 5, 28: 5}, True),     # tweq r29,r28
    (0x7C9DE008, {29: 5, 28: 6}, False),
    (0x0E030005, {3: 4}, True),             # twlti r3,5 (TO=16, signed)
    (0x0E030005, {3: 0xFFFFFFFF}, True),    # -1 < 5 signed
    (0x0C430005, {3: 0xFFFFFFFF}, False),   # twllti r3,5 (TO=2, unsigned): 0xffffffff < 5 is false
    (0x0C23FFFF, {3: 0}, False),            # twlgti r3,-1 (TO=1): 0 > 0xffffffff unsigned is false
    (0x0D03FFFF, {3: 0}, True),             # twgti r3,-1 (TO=8): 0 > -1 signed
    (Word.TRAP, {}, True),                  # tw 31,0,0: always
    (Word.NOP, {}, None),                   # not a trap
])
def test_trap_condition(word, regs, taken):
    from cosim.isa import trap_taken
    gprs = [0] * 32
    for r, v in regs.items():
        gprs[r] = v
    assert trap_taken(word, gprs) is taken


def test_a_watch_longer_than_4_bytes_is_the_two_dacs_as_one_range():
    from cosim.vcpu.runpage import DAC_RANGE
    st = DebugState(debug_inst=0x00DDDD00)
    st.insert_hw("watch", 0x1000, 8)
    assert st.dac[0] is st.dac[1] and st.dac[0].length == 8
    # DAC1 = start, DAC2 = end (DBCR2[DAC12M] range: DAC1 <= EA < DAC2), the mode on slot 0
    assert st.guest_debug_fields()[2:] == ((0x1000, 0x1008), (2 | DAC_RANGE, 0))
    assert st.verdict(0x1004, DebugStatus.WATCH_WRITE, 0, 0, False, "debug") is Verdict.HW
    assert st.verdict(0x1008, DebugStatus.WATCH_WRITE, 0, 0, False, "debug") is Verdict.STALE
    with pytest.raises(BreakpointError, match=r"no free data \(DAC\) slot .* 0x1000 \(8 bytes, both slots\)"):
        st.insert_hw("watch", 0x2000, 4)
    st.insert_hw("watch", 0x1000, 8)                     # the same range again: a use count
    st.remove_hw("watch", 0x1000)
    assert st.dac[0] is not None
    st.remove_hw("watch", 0x1000)
    assert st.dac == [None, None] and st.guest_debug_fields()[2:] == ((0, 0), (0, 0))
    st.insert_hw("watch", 0x2000, 4)
    with pytest.raises(BreakpointError, match="needs both DAC slots as one range"):
        st.insert_hw("rwatch", 0x3000, 64)
