"""cosim.hw.openpic against QEMU 7.2's openpic.c (FSL MPIC 4.2 as ppce500 has it under TCG, and 2.0)."""
import pytest

from cosim.hw.openpic import FSL_MPIC_20, FSL_MPIC_42, OUTPUT_CINT, OUTPUT_INT, OUTPUT_RESET, OpenPIC

GCR, FRR, VIR, PIR, SPVE, BRR1 = 0x1020, 0x1000, 0x1080, 0x1090, 0x10E0, 0x0
SRC, CPU = 0x10000, 0x20000
IVPR_MASK = 0x80000000


def src_reg(n, reg=0):
    return SRC + n * 0x20 + reg


def cpu_reg(cpu, reg):
    return CPU + cpu * 0x1000 + reg


class Pins:
    def __init__(self):
        self.events = []

    def __call__(self, cpu, line, level):
        self.events.append((cpu, line, level))

    def level(self, cpu, line=OUTPUT_INT):
        for c, l_, v in reversed(self.events):
            if (c, l_) == (cpu, line):
                return v
        return False


def mpic(cpus=1, model=FSL_MPIC_42, **kw):
    pins = Pins()
    return OpenPIC(cpus, model, on_output=pins, **kw), pins


RESET_VALUES = [  # (model, cpus, offset, value)
    (FSL_MPIC_42, 1, FRR, 0x00C30002), (FSL_MPIC_42, 4, FRR, 0x00C30302), (FSL_MPIC_20, 1, FRR, 0x004F0002),
    (FSL_MPIC_42, 1, BRR1, 0x00400402), (FSL_MPIC_20, 1, BRR1, 0x00400200),
    (FSL_MPIC_42, 1, GCR, 0), (FSL_MPIC_42, 1, VIR, 0), (FSL_MPIC_42, 1, PIR, 0), (FSL_MPIC_42, 1, SPVE, 0xFFFF),
    (FSL_MPIC_42, 1, 0x10A0, IVPR_MASK), (FSL_MPIC_42, 1, 0x1004, 0xFFFFFFFF),
    (FSL_MPIC_42, 1, src_reg(0), IVPR_MASK), (FSL_MPIC_42, 1, src_reg(42), 0x80800000),
    (FSL_MPIC_42, 1, src_reg(42, 0x10), 1), (FSL_MPIC_42, 1, src_reg(42, 0x18), 0),
    (FSL_MPIC_20, 1, src_reg(42, 0x18), 0xFFFFFFFF), (FSL_MPIC_42, 1, src_reg(42, 0x4), 0xFFFFFFFF),
    (FSL_MPIC_42, 1, cpu_reg(0, 0x80), 15), (FSL_MPIC_42, 2, cpu_reg(1, 0x90), 1), (FSL_MPIC_42, 2, cpu_reg(2, 0x90),
                                                                                    0xFFFFFFFF),
    (FSL_MPIC_42, 1, cpu_reg(0, 0xB0), 0), (FSL_MPIC_42, 1, cpu_reg(0, 0xA0), 0xFFFF),
    (FSL_MPIC_42, 1, 0x10F0, 0), (FSL_MPIC_42, 1, 0x1110, 0x80000000), (FSL_MPIC_42, 1, 0x1120, IVPR_MASK),
    (FSL_MPIC_42, 1, 0x1130, 1), (FSL_MPIC_42, 1, 0x1100, 0), (FSL_MPIC_42, 1, 0x3800, 0),
]


@pytest.mark.parametrize("model, cpus, offset, value", RESET_VALUES)
def test_reset_values(model, cpus, offset, value):
    m, _ = mpic(cpus, model)
    assert m.read(offset, 4) == value


@pytest.mark.parametrize("offset", [0x1310, 0x2000, 0x4000, 0x12000, 0x3F100, 0x3FFFC])
def test_holes_are_not_claimed(offset):
    m, _ = mpic()
    assert not m.claims(offset, 4)


def test_gcr_reset_self_clears_and_resets_state():
    m, _ = mpic()
    m.write(src_reg(3), 4, 0x00050033)
    m.write(GCR, 4, 0x80000000)
    assert m.read(GCR, 4) == 0                       # U-Boot polls for this
    assert m.read(src_reg(3), 4) == IVPR_MASK


@pytest.mark.parametrize("model, written, kept, proxy", [
    (FSL_MPIC_42, 0x60000000, 0x60000000, True), (FSL_MPIC_42, 0x20000000, 0x20000000, False),
    (FSL_MPIC_20, 0x60000000, 0x20000000, False), (FSL_MPIC_20, 0x20000000, 0x20000000, False)])
def test_gcr_mode_bits(model, written, kept, proxy):
    calls = []
    m = OpenPIC(1, model, on_proxy=calls.append)
    m.write(GCR, 4, written)
    assert m.read(GCR, 4) == kept and calls == [proxy]


def test_level_source_priority_iack_eoi():
    m, pins = mpic()
    m.write(src_reg(42), 4, 0x00050042)              # unmasked, priority 5, vector 0x42
    m.set_irq(42, 1)                                 # the UART raises its line
    assert not pins.level(0)                         # CTPR 15 holds everything off
    assert m.read(src_reg(42), 4) & 0x40000000       # ... but the source is active
    m.write(cpu_reg(0, 0x80), 4, 4)
    assert pins.level(0)
    assert m.read(cpu_reg(0, 0xA0), 4) == 0x42 and not pins.level(0)      # IACK: in service
    m.write(cpu_reg(0, 0xB0), 4, 0)                  # EOI while the line is still high: raised again
    assert pins.level(0)
    m.set_irq(42, 0)
    assert not pins.level(0)
    assert m.read(cpu_reg(0, 0xA0), 4) == 0xFFFF     # spurious


def test_priorities_and_nesting():
    m, pins = mpic()
    m.write(cpu_reg(0, 0x80), 4, 0)
    m.write(src_reg(20), 4, 0x00030020)
    m.write(src_reg(21), 4, 0x00080021)
    m.set_irq(20, 1)
    m.set_irq(21, 1)
    assert m.read(cpu_reg(0, 0xA0), 4) == 0x21       # the higher priority first
    assert not pins.level(0)
    m.set_irq(21, 0)
    m.write(cpu_reg(0, 0xB0), 4, 0)                  # EOI of 0x21: 0x20 comes through
    assert pins.level(0) and m.read(cpu_reg(0, 0xA0), 4) == 0x20


def test_masked_source_waits_for_unmask():
    m, pins = mpic()
    m.write(cpu_reg(0, 0x80), 4, 0)
    m.write(src_reg(30), 4, 0x80020030)
    m.set_irq(30, 1)
    assert not pins.level(0)
    m.write(src_reg(30), 4, 0x00020030)
    assert pins.level(0)


def test_edge_external_source():
    m, pins = mpic()
    m.write(cpu_reg(0, 0x80), 4, 0)
    m.write(src_reg(1), 4, 0x00010011)               # sense 0: edge
    m.set_irq(1, 1)
    assert pins.level(0)
    assert m.read(cpu_reg(0, 0xA0), 4) == 0x11
    m.write(cpu_reg(0, 0xB0), 4, 0)
    assert not pins.level(0)                         # an edge is consumed by IACK


def test_directed_to_cpu1_and_glb_alias_of_the_accessing_cpu():
    m, pins = mpic(2)
    m.write(cpu_reg(1, 0x80), 4, 0)
    m.write(src_reg(40), 4, 0x00060040)
    m.write(src_reg(40, 0x10), 4, 2)                 # IDR: CPU 1
    m.set_irq(40, 1)
    assert pins.level(1) and not pins.level(0)
    assert m.read(0x90, 4, cpu=1) == 1               # glb WHOAMI alias answers for the accessing CPU
    assert m.read(0xA0, 4, cpu=1) == 0x40            # glb IACK alias


def test_ipi_multicast():
    m, pins = mpic(2)
    for c in (0, 1):
        m.write(cpu_reg(c, 0x80), 4, 0)
    m.write(0x10A0, 4, 0x00030099)                   # IPI 0: unmasked, priority 3
    m.write(cpu_reg(0, 0x40), 4, 0b11)               # IPIDR0: to CPUs 0 and 1
    assert pins.level(0) and pins.level(1)
    assert m.read(cpu_reg(0, 0xA0), 4) == 0x99
    assert m.read(cpu_reg(1, 0xA0), 4) == 0x99


def test_critical_through_ilr_ignores_ctpr():
    m, pins = mpic()
    m.write(src_reg(42, 0x18), 4, 1)                 # ILR: critical
    assert m.read(src_reg(42, 0x18), 4) == 1
    m.write(src_reg(42), 4, 0x00010042)
    m.set_irq(42, 1)
    assert pins.level(0, OUTPUT_CINT) and not pins.level(0, OUTPUT_INT)
    m.set_irq(42, 0)
    assert not pins.level(0, OUTPUT_CINT)


def test_critical_through_idr_on_mpic20():
    m, pins = mpic(1, FSL_MPIC_20)
    m.write(src_reg(42, 0x10), 4, 0x40000000)        # IDR CI0
    assert m.read(src_reg(42, 0x10), 4) == 0x40000000
    m.write(src_reg(42), 4, 0x80010042)              # masked, but critical ignores the mask on 2.0
    m.set_irq(42, 1)
    assert pins.level(0, OUTPUT_CINT)


def test_pir_drives_reset_outputs():
    m, pins = mpic(2)
    m.write(PIR, 4, 0b10)
    assert pins.level(1, OUTPUT_RESET) and not pins.level(0, OUTPUT_RESET)
    m.write(PIR, 4, 0)
    assert not pins.level(1, OUTPUT_RESET) and m.read(PIR, 4) == 0


def test_msi():
    m, pins = mpic()
    m.write(cpu_reg(0, 0x80), 4, 0)
    m.write(src_reg(225), 4, 0x00040077)
    m.write(0x1740, 4, (1 << 29) | (3 << 24))        # MSIIR: register 1, bit 3
    assert pins.level(0) and m.read(0x1720, 4) == 0b10       # MSISR
    assert m.read(0x1610, 4) == 1 << 3 and m.read(0x1610, 4) == 0
    assert not pins.level(0)


def test_timer_counts_and_fires_in_virtual_time():
    now = [0]
    m, pins = mpic(clock=lambda: now[0])
    m.write(cpu_reg(0, 0x80), 4, 0)
    m.write(0x1120, 4, 0x00040007)                   # TVPR0
    m.write(0x1110, 4, 100)                          # TBCR0: count inhibit cleared, 100 ticks of 40 ns
    assert m.next_deadline() == 4000
    now[0] = 1200
    assert m.read(0x1100, 4) == 70                   # TCCR0 counts down
    m.advance(3999)
    assert not pins.level(0)
    now[0] = 4000
    m.advance(4000)
    assert pins.level(0) and m.read(0x1100, 4) == 0x80000064   # reloaded, toggle bit flipped
    assert m.next_deadline() == 8000 and m.read(cpu_reg(0, 0xA0), 4) == 7
    m.write(0x1110, 4, 0x80000000)                   # inhibit
    assert m.next_deadline() is None


def test_bad_parameters():
    with pytest.raises(ValueError, match="nb_cpus"):
        OpenPIC(33)
    with pytest.raises(ValueError, match="unknown MPIC model"):
        OpenPIC(1, "keylargo")
    with pytest.raises(ValueError, match="out of range"):
        OpenPIC(1).set_irq(264, 1)
