"""The target description served to gdb through `qXfer:features:read`.

Invariants:
- The core feature is built from `cosim.gdb.target.REGISTER_NAMES`, with no `regnum` attributes: gdb
  numbers the remote registers in document order, so remote register N (used by `p`/`P` and the `g`
  layout) is REGISTER_NAMES[N]. gdb's rs6000 code maps the names of the `org.gnu.gdb.power.core`
  feature onto its own numbers (pc 64, msr 65, cr 66, lr 67, ctr 68, xer 69).
- With a CPU model, the `org.qemu.power.spr` feature follows (cosim/gdb/spr_regs.py): remote register
  NUM_REGISTERS + k is the k-th SPR of `spr_layout(model)`. The `g` packet carries only the core
  registers (152 bytes, big-endian); gdb fetches SPRs one by one with `p`.
- No FPRs (QEMU's power-fpu feature): the guests use none.
- Pure ASCII with none of `$#}*`, so a chunk never needs escaping (the codec would escape it anyway).
"""

from __future__ import annotations

from cosim.gdb.spr_regs import FEATURE as SPR_FEATURE
from cosim.gdb.spr_regs import GROUP as SPR_GROUP
from cosim.gdb.spr_regs import spr_layout
from cosim.gdb.target import REGISTER_BITS, REGISTER_NAMES

ARCHITECTURE = "powerpc:common"
CORE_FEATURE = "org.gnu.gdb.power.core"

_TYPES = {"pc": "code_ptr"}  # everything else is uint32


def build_target_xml(model: str | None = None) -> bytes:
    """The target.xml document: the core registers, then `model`'s SPRs (none without a model)."""
    regs = "\n".join(
        f'    <reg name="{name}" bitsize="{REGISTER_BITS}" type="{_TYPES.get(name, "uint32")}"/>'
        for name in REGISTER_NAMES
    )
    sprs = ""
    if model is not None:
        lines = "\n".join(f'    <reg name="{name}" bitsize="{REGISTER_BITS}" type="uint32" '
                          f'group="{SPR_GROUP}"/>' for name, _ in spr_layout(model))
        sprs = f'  <feature name="{SPR_FEATURE}">\n{lines}\n  </feature>\n'
    return (
        '<?xml version="1.0"?>\n'
        '<!DOCTYPE target SYSTEM "gdb-target.dtd">\n'
        '<target version="1.0">\n'
        f"  <architecture>{ARCHITECTURE}</architecture>\n"
        f'  <feature name="{CORE_FEATURE}">\n'
        f"{regs}\n"
        "  </feature>\n"
        f"{sprs}"
        "</target>\n"
    ).encode("ascii")


TARGET_XML: bytes = build_target_xml()

ANNEXES: dict[bytes, bytes] = {b"target.xml": TARGET_XML}
"""qXfer:features:read annex -> document, for a target that names no CPU model."""


def annexes(model: str | None) -> dict[bytes, bytes]:
    """The annexes served for a target of CPU `model`."""
    return {b"target.xml": build_target_xml(model)}


def read_chunk(document: bytes, offset: int, length: int) -> bytes:
    """A qXfer reply payload: `m` + data if more follows, `l` + data if this reaches the end."""
    chunk = document[offset : offset + length]
    more = offset + length < len(document)
    return (b"m" if more else b"l") + chunk
