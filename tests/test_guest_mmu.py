"""The guest Book E MMU (issue 19): the C fill callback's walk against the Python walk of the shared
guest TLB, the TLB instructions' semantics (QEMU's booke206 helpers), and the timers in virtual time."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosim.isa import SPR
from cosim.machine.guest_tlb import FETCH, MAS1_IPROT, MAS1_V, GuestTlb, TlbGeometry, describe
from cosim.vcpu.engine import Engine
from cosim.vcpu.mmu import Mmu
from cosim.vcpu.timers import TSR_DIS, Timers

GEO = TlbGeometry(16)


def entry(va, pa, tsize=2, tid=0, ts=0, perms=0x3F, iprot=False):
    return (MAS1_V | (MAS1_IPROT if iprot else 0) | tid << 16 | (0x1000 if ts else 0) | tsize << 7,
            va & 0xFFFFF000, (pa & 0xFFFFF000) | perms, pa >> 32)


def fill(tlb, i, e):
    tlb[i]["mas1"], tlb[i]["mas2"], tlb[i]["mas3"], tlb[i]["mas7"] = e


@pytest.fixture
def engine_and_tlb():
    ram = np.zeros(1 << 20, np.uint8)
    count = np.zeros(1, np.uint64)
    tlb = GuestTlb(None, GEO, 1)
    eng = Engine(ram.ctypes.data, ram.size, count.ctypes.data, guest_tlb=(tlb.tlb(0), GEO))
    yield eng, tlb, ram
    del eng


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0xFFFFF), st.integers(0, 0xFFFFFF), st.sampled_from([2, 4, 6, 10]),
                          st.integers(0, 3), st.integers(0, 1)), max_size=12),
       st.lists(st.integers(0, 0xFFFFFFFF), min_size=1, max_size=20), st.integers(0, 3), st.integers(0, 1))
def test_c_walk_equals_python_walk(entries, addrs, pid, ts):
    ram = np.zeros(1 << 20, np.uint8)
    tlb = GuestTlb(None, GEO, 1)
    eng = Engine(ram.ctypes.data, ram.size, guest_tlb=(tlb.tlb(0), GEO))
    for i, (vpn, ppn, tsize, tid, ets) in enumerate(entries):
        idx = i % GEO.tlb1_entries if i % 2 else GEO.tlb1_entries + (vpn % GEO.tlb0_sets) * 4 + i % 4
        fill(tlb.tlb(0), idx, entry(vpn << 12, ppn << 12, tsize if i % 2 else 2, tid, ets))
    eng.set_context(0x30 if ts else 0, pid)
    for a in addrs:
        assert eng.translate(a, 1) == tlb.translate(0, a, ts, pid), hex(a)


def test_mmu_instructions_follow_booke206():
    tlb = GuestTlb(None, GEO, 1)
    spr = np.zeros(1024, np.uint32)
    flushes = []
    mmu = Mmu(tlb.tlb(0), GEO, spr, lambda: flushes.append(1))
    # tlbwe into TLB1[3]: 16 KiB at 0x10000000 -> 0xF_E000_0000 (36-bit), IPROT
    spr[SPR["MAS0"]] = 1 << 28 | 3 << 16
    spr[SPR["MAS1"]], spr[SPR["MAS2"]], spr[SPR["MAS3"]], spr[SPR["MAS7"]] = entry(0x10000000, 0xFE0000000, 4,
                                                                                   iprot=True)
    mmu.tlbwe()
    assert not flushes                                   # the slot was invalid: no host translation to drop
    assert tlb.translate(0, 0x10003ABC, 0, 0) == 0xFE0003ABC
    mmu.tlbsx(0x10002000)
    assert spr[SPR["MAS0"]] >> 28 == 1 and (spr[SPR["MAS0"]] >> 16) & 0xFFF == 3
    assert spr[SPR["MAS7"]] == 0xF and spr[SPR["MAS1"]] & MAS1_V
    mmu.tlbsx(0x20000000)                               # a miss: MAS loaded from MAS4's defaults, V = 0
    assert not spr[SPR["MAS1"]] & MAS1_V and spr[SPR["MAS2"]] & 0xFFFFF000 == 0x20000000
    mmu.mmucsr0(0x2)                                     # flash invalidate TLB1: IPROT survives
    assert tlb.translate(0, 0x10000000, 0, 0) is not None and not flushes
    for t in (0, 1, 3):                                  # ... and every tlbilx (QEMU's tlbilx0/1/3; Linux's
        mmu.tlbilx(t, 0x10000000)                        # _tlbil_all on e500mc is tlbilx 0)
        assert tlb.translate(0, 0x10000000, 0, 0) is not None and not flushes
    spr[SPR["MAS0"]] = 1 << 28 | 3 << 16                 # rewrite the (valid) slot: host pages dropped
    spr[SPR["MAS1"]], spr[SPR["MAS2"]], spr[SPR["MAS3"]], spr[SPR["MAS7"]] = entry(0x10000000, 0xFE0000000, 4)
    mmu.tlbwe()
    assert flushes
    spr[SPR["MAS0"]] = 0 << 28 | 1 << 16                 # TLB0: 4 KiB forced, way 1 of the EPN's set
    spr[SPR["MAS1"]], spr[SPR["MAS2"]], spr[SPR["MAS3"]], spr[SPR["MAS7"]] = entry(0x5000, 0x9000, 10)
    mmu.tlbwe()
    assert tlb.translate(0, 0x5FFC, 0, 0) == 0x9FFC and tlb.translate(0, 0x6000, 0, 0) is None
    mmu.tlbivax(0x5000)                                  # TLB0, that page
    assert tlb.translate(0, 0x5000, 0, 0) is None
    lines = [describe(*e[1:2], e[0], *e[2:]) for e in tlb.valid_entries(0)]
    assert lines == ["TLB1[ 3] 0x10000000 -> 0xfe0000000   16K TS0 TID   0 S:RWX U:RWX"]
    mmu.tlbilx(0, 0)                                     # tlbilx 0: every entry but IPROT ones
    assert not tlb.valid_entries(0)


def test_misses_hand_out_tlb0_ways_round_robin_so_a_handler_that_keeps_mas0_fills_each_way():
    """Each miss preloads MAS0[ESEL] with the next victim and MAS0[NV] with the one after (QEMU's
    booke206_update_mas_tlb_miss, KVM's gtlb0_get_next_victim); tlbwe leaves the counter alone.
    Linux's miss handlers never touch MAS0: an instruction fetched from one page that stores to
    another page of the same TLB0 set must end with both in the set (both were written to way 0,
    and each miss evicted the other: a 2-vCPU Linux boot livelocked in init that way)."""
    tlb = GuestTlb(None, GEO, 1)
    spr = np.zeros(1024, np.uint32)
    mmu = Mmu(tlb.tlb(0), GEO, spr, lambda: None)
    spr[SPR["MAS4"]] = 0                                         # TLBSELD = TLB0 (Linux's), 4 KiB
    code, stack = 0x1000024C, 0xBFC00000                         # set 0 both (page % 128 sets)
    assert (code >> 12) % GEO.tlb0_sets == (stack >> 12) % GEO.tlb0_sets
    esels = []
    for ea, access in ((code, FETCH), (stack, 2), (code, FETCH), (stack, 2), (code, FETCH)):
        mmu.on_miss(ea, access, 0, 0)
        mas0 = int(spr[SPR["MAS0"]])
        esels.append((mas0 >> 16) & 0xFFF)
        assert mas0 & 0xFFF == (esels[-1] + 1) % GEO.tlb0_ways   # NV: the way after
        spr[SPR["MAS3"]] = (ea & 0xFFFFF000) | 0x3F              # the handler: RPN and permissions
        mmu.tlbwe()
    assert esels == [0, 1, 2, 3, 0]
    ways = [tlb.tlb(0)[GEO.tlb1_entries + w] for w in range(GEO.tlb0_ways)]
    assert {int(e["mas2"]) & 0xFFFFF000 for e in ways} == {code & 0xFFFFF000, stack}   # both present
    spr[SPR["MAS0"]] = 2 << 16                                   # tlbre of way 2: NV = the counter
    spr[SPR["MAS2"]] = code & 0xFFFFF000
    mmu.tlbre()
    assert int(spr[SPR["MAS0"]]) & 0xFFF == 1


def test_guest_tlb_refusals_stop_at_the_faulting_instruction(engine_and_tlb):
    eng, tlb, ram = engine_and_tlb
    fill(tlb.tlb(0), 0, entry(0, 0, 10, perms=0x15))    # 1 MiB, supervisor RX only (no SW)
    code = [0x3C600010, 0x90830000, 0x80830000]          # lis r3,0x10; stw r4,0(r3); lwz r4,0(r3)
    for i, w in enumerate(code):
        ram[0x100 + 4 * i:0x104 + 4 * i] = np.frombuffer(w.to_bytes(4, "big"), np.uint8)
    eng.set_context(0, 0)
    stop = eng.run(0x100)                                # 0x100000 is outside the entry: a DTLB miss
    assert (stop.kind.value, stop.pc, stop.addr, stop.access, stop.error) == ("mmu", 0x104, 0x100000, "write", "tlb")
    fill(tlb.tlb(0), 1, entry(0x100000, 0x80000, 2, perms=0x01))   # supervisor read-only, at PA 0x80000
    stop = eng.run(0x104)
    assert (stop.pc, stop.error) == (0x104, "permission")
    stop = eng.run(0x108)                                # the load is allowed... then fetch past the code
    assert stop.pc >= 0x10C


def test_time_base_is_read_natively_and_counts_instructions(engine_and_tlb):
    eng, tlb, ram = engine_and_tlb
    fill(tlb.tlb(0), 0, entry(0, 0, 10))
    eng.set_context(0, 0)
    loop = [0x7C6C42A6, 0x38000000, 0x60000000, 0x7C8C42A6, 0x48000000]   # mfspr r3,268; ...; mfspr r4,268; b .
    for i, w in enumerate(loop):
        ram[0x200 + 4 * i:0x204 + 4 * i] = np.frombuffer(w.to_bytes(4, "big"), np.uint8)
    eng.set_timebase(1000)
    eng.set_budget(eng.instructions + 50)
    eng.run(0x200)
    assert eng.gpr(3) >= 1000 and eng.timebase >= eng.gpr(3)


def test_decrementer_fires_on_its_instruction_and_auto_reloads():
    clock = [0]
    tb = [0]
    spr = np.zeros(1024, np.uint32)
    t = Timers(spr, lambda: clock[0], lambda: tb[0] + clock[0], lambda v: tb.__setitem__(0, v - clock[0]))
    spr[SPR["TCR"]] = 0x04400000                         # DIE | ARE
    spr[SPR["DECAR"]] = 500
    t.write_dec(1000)
    assert t.deadline() == 1000
    clock[0] = 400
    assert t.read_dec() == 600
    clock[0] = 1000
    t.advance()
    assert spr[SPR["TSR"]] & TSR_DIS and t.pending()[0] and t.fired["dec"] == 1
    assert t.deadline() == 1500                          # reloaded from DECAR
    t.write_tsr(TSR_DIS)                                 # write one to clear
    assert not t.pending()[0]


def test_sprg4_7_written_in_supervisor_state_read_back_through_their_user_numbers():
    """Issue 20 item 10: SPRG3-7 and USPRG0 written by mtspr (emulated: unicorn runs the guest in
    problem state) are what a problem-state mfspr of 259-263 / 256 reads natively inside unicorn."""
    from cosim.cpu_models import cpu_model
    from cosim.vcpu.core import Core
    from cosim.vcpu.runpage import RUNPAGE
    ram = np.zeros(1 << 20, np.uint8)
    count = np.zeros(1, np.uint64)
    eng = Engine(ram.ctypes.data, ram.size, count.ctypes.data)
    rec = np.zeros(1, RUNPAGE)
    core = Core(eng, rec, cpu_model("e500mc"), ram.view(">u4"))
    core.reset(0x100, 0)
    for spr, value in ((275, 0x33333333), (276, 0x44444444), (277, 0x55555555), (278, 0x66666666),
                       (279, 0x77777777), (256, 0x12345678)):
        core.write_spr(spr, value)
    # mfspr r3..r8, 259..263 and 256, then an illegal word to stop
    words = [0x7C0002A6 | (3 + i) << 21 | (spr & 0x1F) << 16 | (spr >> 5) << 11
             for i, spr in enumerate((259, 260, 261, 262, 263, 256))] + [0]
    for i, w in enumerate(words):
        ram[0x100 + 4 * i:0x104 + 4 * i] = np.frombuffer(w.to_bytes(4, "big"), np.uint8)
    eng.run(0x100)
    assert [eng.gpr(3 + i) for i in range(6)] == [0x33333333, 0x44444444, 0x55555555, 0x66666666, 0x77777777,
                                                  0x12345678]
