"""cosim.hw.guts (mpc8544_guts.c) and cosim.hw.spin_table (ppce500_spin.c)."""
import struct

import pytest

from cosim.hw.guts import Guts
from cosim.hw.spin_table import SPIN_MAP_SIZE, SpinTable
from cosim.hw.tlb import TlbEntry


# -- GUTS -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("offset, value", [(0xA0, 0x80230020), (0xA4, 0), (0x00, 0), (0xB0, 0), (0xFFC, 0)])
def test_guts_reads(offset, value):
    assert Guts(0x80230020).read(offset, 4) == value


def test_guts_pvr_of_the_accessing_cpu_and_valid_sizes():
    g = Guts(lambda cpu: 0x80210030 + cpu, svr=lambda cpu: 0x80000000 | cpu)
    assert g.read(0xA0, 4, cpu=2) == 0x80210032 and g.read(0xA4, 4, cpu=1) == 0x80000001
    assert not g.claims(0xA0, 1) and not g.claims(0xA2, 2) and g.read(0xA0, 2) == 0   # QEMU: valid 4..4


@pytest.mark.parametrize("value, resets", [(0x2, 1), (0xFFFFFFFF, 1), (0x1, 0), (0, 0)])
def test_guts_rstcr_requests_reset(value, resets):
    calls = []
    g = Guts(0, on_reset=lambda: calls.append(1))
    g.write(0xB0, 4, value)
    g.write(0xB4, 4, 0x2)                               # another register: nothing
    assert len(calls) == resets == g.reset_requests


# -- spin table -------------------------------------------------------------------------------------

def entry(s, cpu):
    return s.entry(cpu)


def test_spin_reset_layout():
    s = SpinTable(cpus=4)
    for i in (0, 1, 3, 31):
        assert entry(s, i) == {"addr": 1, "r3": i, "resv": 0, "pir": i, "reserved": 0}
    assert s.read(0x20, 4) == 0 and s.read(0x24, 4) == 1 and s.read(0x2C, 4) == 1 and s.read(0x34, 4) == 1
    assert s.read(0x20, 8) == 1                          # two 4-byte reads, high word first


def test_spin_release_as_spin_kick():
    released = []
    s = SpinTable(cpus=2, on_release=released.append)
    s.write(0x28, 4, 0)                                  # r3 high
    s.write(0x2C, 4, 0x0200_0000)                        # r3 low: the device tree
    s.write(0x20, 4, 0)                                  # addr_h: addr still odd, still held
    assert released == []
    s.write(0x24, 4, 0x0C00_3000)                        # addr_l, even: go
    (r,) = released
    assert (r.cpu, r.pc, r.r3) == (1, 0x3000, 0x0200_0000)   # PC modulo the 64 MiB map
    assert r.gprs == {3: 0x0200_0000, 4: 0, 5: 0, 6: 0, 7: SPIN_MAP_SIZE, 8: 0, 9: 0}
    assert r.tlb1 == TlbEntry(mas0=0x1001_0000, mas1=0x8000_0800, mas2=0x4, mas3=0x0C00_003F, mas7=0)
    assert (r.tlb1.esel, r.tlb1.va, r.tlb1.pa, r.tlb1.size) == (1, 0, 0x0C00_0000, SPIN_MAP_SIZE)
    assert entry(s, 1)["pir"] == 1 and entry(s, 1)["addr"] == 0x0C00_3000
    s.write(0x2C, 4, 5)                                  # QEMU kicks again on any later write
    assert len(released) == 2 and released[1].r3 == 5


def test_spin_release_above_4_gib_and_8_byte_write():
    released = []
    s = SpinTable(cpus=3, on_release=released.append)
    s.write(0x40, 8, 0x1_0400_0100)
    assert len(released) == 1      # the high word alone (addr 0x1_0000_0001) does not kick; the low word does
    assert released[0].tlb1.pa == 0x1_0400_0000 and released[0].tlb1.mas7 == 1 and released[0].pc == 0x100


@pytest.mark.parametrize("offset", [0x04, 0x00, 0x64, 0x3E4])   # CPU 0's entry; CPUs 3 and 31 do not exist
def test_spin_writes_dropped(offset):
    released = []
    s = SpinTable(cpus=3, on_release=released.append)
    before = bytes(s.mem)
    s.write(offset, 4, 0)
    assert released == [] and bytes(s.mem) == before


def test_spin_byte_writes_and_reset():
    s = SpinTable(cpus=2, pir=lambda cpu: 0x100 + cpu)
    s.write(0x27, 1, 0x10)                               # addr's last byte: 0x10, even
    assert s.releases[-1].pc == 0x10 and s.entry(1)["pir"] == 0x101
    s.reset()
    assert struct.unpack_from(">Q", s.mem, 0x20)[0] == 1 and s.entry(1)["pir"] == 1
