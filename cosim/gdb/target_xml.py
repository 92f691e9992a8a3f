"""The target description served to gdb through `qXfer:features:read`.

Invariants:
- Built from `cosim.gdb.target.REGISTER_NAMES`, with no `regnum` attributes: gdb numbers the remote
  registers in document order, so remote register N (used by `p`/`P` and the `g` layout) is
  REGISTER_NAMES[N]. gdb's rs6000 code maps the names of the `org.gnu.gdb.power.core` feature onto its
  own numbers (pc 64, msr 65, cr 66, lr 67, ctr 68, xer 69).
- Only the core feature: no FPRs, so `g` is NUM_REGISTERS * 4 = 152 bytes, big-endian.
- Pure ASCII with none of `$#}*`, so a chunk never needs escaping (the codec would escape it anyway).
"""

from __future__ import annotations

from cosim.gdb.target import REGISTER_BITS, REGISTER_NAMES

ARCHITECTURE = "powerpc:common"
CORE_FEATURE = "org.gnu.gdb.power.core"

_TYPES = {"pc": "code_ptr"}  # everything else is uint32


def build_target_xml() -> bytes:
    """The target.xml document for REGISTER_NAMES."""
    regs = "\n".join(
        f'    <reg name="{name}" bitsize="{REGISTER_BITS}" type="{_TYPES.get(name, "uint32")}"/>'
        for name in REGISTER_NAMES
    )
    return (
        '<?xml version="1.0"?>\n'
        '<!DOCTYPE target SYSTEM "gdb-target.dtd">\n'
        '<target version="1.0">\n'
        f"  <architecture>{ARCHITECTURE}</architecture>\n"
        f'  <feature name="{CORE_FEATURE}">\n'
        f"{regs}\n"
        "  </feature>\n"
        "</target>\n"
    ).encode("ascii")


TARGET_XML: bytes = build_target_xml()

ANNEXES: dict[bytes, bytes] = {b"target.xml": TARGET_XML}
"""qXfer:features:read annex -> document."""


def read_chunk(document: bytes, offset: int, length: int) -> bytes:
    """A qXfer reply payload: `m` + data if more follows, `l` + data if this reaches the end."""
    chunk = document[offset : offset + length]
    more = offset + length < len(document)
    return (b"m" if more else b"l") + chunk
