"""A few instruction encoders for tests that place hand-made code in guest RAM (no cross toolchain)."""
from cosim.isa import mfspr, mtspr  # noqa: F401  (re-exported for tests)


def li(rd, imm):
    return 0x38000000 | rd << 21 | (imm & 0xFFFF)


def lis(rd, imm):
    return 0x3C000000 | rd << 21 | (imm & 0xFFFF)


def ori(ra, rs, imm):
    return 0x60000000 | rs << 21 | ra << 16 | (imm & 0xFFFF)


def load32(rd, value):
    return [lis(rd, value >> 16), ori(rd, rd, value & 0xFFFF)]


def mfmsr(rd):
    return 0x7C0000A6 | rd << 21


def mtmsr(rs):
    return 0x7C000124 | rs << 21


def wrtee(rs):
    return 0x7C000106 | rs << 21


def wrteei(e):
    return 0x7C000146 | (e & 1) << 15


def b(disp):
    return 0x48000000 | (disp & 0x03FFFFFC)


def addi(rd, ra, imm):
    return 0x38000000 | rd << 21 | ra << 16 | (imm & 0xFFFF)


def twnei(ra, imm):
    return 0x0C000000 | 24 << 21 | ra << 16 | (imm & 0xFFFF)


def sc(lev=0):
    return 0x44000002 | (lev & 0x7F) << 5


NOP = 0x60000000
