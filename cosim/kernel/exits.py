"""The kernel's exit handler (the model of KVM booke's kvmppc_handle_exit), as a pure function of an
exit, the strategy, the CPU model and the per-vCPU guest-debug state.

Decisions: reflect the exit's natural interrupt into the guest, emulate (hypercalls), or hand it to
userspace as KVM_EXIT_DEBUG {address, status}. The breakpoint strategy is data (cosim.strategies): the
handler asks only "is this exit of the strategy's hit kind, and does it match" — by the advertised debug
word, by the kernel's own table of patched addresses (trap-kernel), or unconditionally (trap-user).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ..cpu_models import CpuModel, Event
from ..isa import GuestDebug
from ..mutation import active
from ..strategies import Match, Strategy
from ..vmexit import Exit

NO_STALE_CHECK = active("no-stale-check")   # test-only (cosim/mutation.py)

HCALL_HALT = 1
HCALL_YIELD = 2
EV_UNIMPLEMENTED = 12


class Action(str, Enum):
    REFLECT = "reflect"      # deliver the exit's natural interrupt to the guest
    EMULATE = "emulate"      # resume at `pc` (with r3 = `r3` when given)
    HALT = "halt"            # the vCPU stops for good with exit code `code`
    USER = "user"            # KVM_EXIT_DEBUG to userspace


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    pc: int = 0
    r3: int | None = None
    code: int = 0
    address: int = 0
    status: int = 0


@dataclass
class GuestDebugState:
    """What KVM_SET_GUEST_DEBUG set for one vCPU."""
    control: int = 0
    iac: list[int] = field(default_factory=lambda: [0, 0])
    iac_on: list[bool] = field(default_factory=lambda: [False, False])
    dac: list[int] = field(default_factory=lambda: [0, 0])
    dac_rw: list[int] = field(default_factory=lambda: [0, 0])

    def has(self, flag: int) -> bool:
        return bool(self.control & GuestDebug.ENABLE) and bool(self.control & flag)


class ExitHandler:
    def __init__(self, model: CpuModel, strategy: Strategy, read_word=None):
        self.model = model
        self.strategy = strategy
        self.table: set[int] = set()      # patched addresses (trap-kernel's in-kernel table)
        self.stale: dict[int, int] = {}   # address -> stale exits retried here (never reach userspace)
        self.read_word = read_word        # guest RAM, to recognise stale exits

    @property
    def debug_inst(self) -> int | None:
        """ONE_REG KVM_REG_PPC_DEBUG_INST: the word userspace must plant."""
        return self.strategy.word

    def is_breakpoint(self, ex: Exit, dbg: GuestDebugState) -> bool:
        s = self.strategy
        if not dbg.has(GuestDebug.USE_SW_BP) or ex.event != s.hit_event.get(self.model.name):
            return False
        if s.match is Match.ALL:
            return True                   # userspace decides (and sees `displaced`)
        if ex.displaced:
            return False                  # the original instruction under a breakpoint, run out of
                                          # line after the hit: its own event is the guest's
        if s.match is Match.TABLE:
            # the address is patched AND the word that raised the exit is ours: a guest's own trap at
            # an address planted while its exit was in flight is the guest's (the table alone took it
            # for a hit); an exit of ours whose breakpoint was removed and planted again in the
            # meantime is still ours
            return ex.pc in self.table and ex.word == s.word
        if s.match is Match.WORD:
            return ex.word == s.word
        return False

    def handle(self, ex: Exit, dbg: GuestDebugState) -> Decision:
        """`ex` is an Exit, or anything with its fields (the kernel passes the wire.ExitMsg as is:
        Event is a str enum, so its `event` string compares equal)."""
        if ex.event == Event.HCALL:
            if ex.r11 == HCALL_HALT:
                return Decision(Action.HALT, code=ex.r3)
            if ex.r11 == HCALL_YIELD:
                return Decision(Action.EMULATE, pc=ex.pc + 4, r3=0)
            return Decision(Action.EMULATE, pc=ex.pc + 4, r3=EV_UNIMPLEMENTED)
        if ex.event == Event.DEBUG and ex.host:
            return Decision(Action.USER, address=ex.addr, status=ex.status)
        if self.is_breakpoint(ex, dbg):
            return Decision(Action.USER, address=ex.pc, status=0)
        if self.is_stale(ex):
            self.stale[ex.pc] = self.stale.get(ex.pc, 0) + 1
            return Decision(Action.EMULATE, pc=ex.pc)
        return Decision(Action.REFLECT)

    def is_stale(self, ex: Exit) -> bool:
        """The word that raised this exit is no longer in memory: a breakpoint removed while its exit
        was in flight. Re-execute at the same PC; never deliver it to the guest."""
        return (self.read_word is not None and self.strategy.patches_code and not NO_STALE_CHECK
                and ex.word == self.strategy.word and self.read_word(ex.pc) != ex.word)
