"""Breakpoint strategies as data (DESIGN.md's table), consumed by one generic ownership core.

A strategy says which word the debugger plants, which exit event carries a hit on each CPU model, and
how the kernel tells a hit from a guest-owned event of the same kind: by the planted word, by a table of
patched addresses kept in the kernel, or not at all (every event of that kind goes to userspace, which
re-injects what it does not own: the x86 int3 model). Where the 2010 thread predicted a strategy cannot
work on a CPU model, `predicted` names the finding the run is expected to report.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from .cpu_models import Event
from .isa import Word


class Match(str, Enum):
    WORD = "word"        # faulting word == the advertised debug instruction (ONE_REG DEBUG_INST)
    TABLE = "table"      # faulting address is in the kernel's table of patched addresses
    ALL = "all"          # every event of the kind goes to userspace
    IAC = "iac"          # hardware debug event, no code modified


@dataclass(frozen=True)
class Strategy:
    name: str
    word: int | None                      # planted word; None: nothing is planted (hardware)
    hit_event: dict[str, Event] = field(hash=False)   # CPU model -> exit event carrying a hit
    match: Match = Match.WORD
    predicted: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    summary: str = ""

    @property
    def patches_code(self) -> bool:
        return self.word is not None


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("sc64", Word.SC64, {"e500v2": Event.SYSCALL, "e500mc": Event.SYSCALL}, Match.WORD,
             predicted={"e500mc": ("sc64-lost-hits",)},
             summary="sc 64: a syscall the kernel recognises by LEV=64; E.HV routes it to the guest"),
    Strategy("trap-user", Word.TRAP, {"e500v2": Event.TRAP, "e500mc": Event.TRAP}, Match.ALL,
             summary="tw trap, every trap to userspace, which re-injects the guest's own (x86 model)"),
    Strategy("trap-kernel", Word.TRAP, {"e500v2": Event.TRAP, "e500mc": Event.TRAP}, Match.TABLE,
             summary="tw trap, the kernel keeps the table of patched addresses and decides itself"),
    Strategy("ehpriv", Word.EHPRIV1, {"e500v2": Event.ILLEGAL, "e500mc": Event.EHPRIV}, Match.WORD,
             summary="ehpriv 1: HV-privilege on E.HV, an illegal instruction the kernel recognises on e500v2"),
    Strategy("illegal", Word.ILLEGAL_BP, {"e500v2": Event.ILLEGAL, "e500mc": Event.ILLEGAL}, Match.WORD,
             summary="0x00dddd00 advertised through ONE_REG DEBUG_INST (what upstream Linux chose)"),
    Strategy("hw", None, {"e500v2": Event.DEBUG, "e500mc": Event.DEBUG}, Match.IAC,
             summary="IAC1..IAC2 debug events: no code modified, two slots, the guest loses its own IACs"),
)}


def strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r} (expected one of: {', '.join(STRATEGIES)})") from None
