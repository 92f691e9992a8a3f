"""The breakpoint ledger: which guest code words are patched, in shared memory, so guest code can be
restored by someone other than the process that patched it (the supervisor, after any death).

One entry per patched address: the address (the guest virtual address the breakpoint names: what
the kernel's trap table and the vCPU compare a PC with), the guest-physical word it was planted at
(through the guest TLB at that moment; the same on the bare machine), the word saved from under it,
the word planted, and who planted it. Userspace records an entry *before* it writes the planted word and clears it *after* it
wrote the saved word back; the supervisor restores what is left once nobody runs guest code any more.
A word that is no longer the planted one (the guest rewrote it, or the patch never landed) is left
alone, as QEMU does. Only one process (userspace) writes; an entry becomes visible when its state word
is set last.
"""
from __future__ import annotations

import numpy as np

from .shm import SharedBlock

SLOTS = 4096
FREE, ARMED = 0, 1
OWNERS = ("userspace", "script", "gdb")          # owner codes, by index

ENTRY = np.dtype([("state", "<u4"), ("address", "<u4"), ("saved", "<u4"), ("planted", "<u4"),
                  ("owner", "<u4"), ("paddr", "<u8")])


class LedgerFull(RuntimeError):
    pass


class Ledger:
    def __init__(self, block: SharedBlock, slots: int = SLOTS):
        self.block = block
        self.table = np.frombuffer(block.buf, ENTRY, count=slots)
        self._slot: dict[int, int] = {}           # writer's index: address -> slot
        # the writer's field views (a field view indexes in well under a microsecond where a
        # structured entry takes several) and its free slots, lowest first
        self._state, self._address, self._saved, self._planted, self._owner, self._paddr = (
            self.table[n] for n in ("state", "address", "saved", "planted", "owner", "paddr"))
        self._free: list[int] | None = None

    @classmethod
    def create(cls, slots: int = SLOTS) -> "Ledger":
        led = cls(SharedBlock.create(ENTRY.itemsize * slots, prefix="cosim-bp"), slots)
        led.table[:] = np.zeros(slots, ENTRY)
        return led

    @classmethod
    def attach(cls, name: str, slots: int = SLOTS) -> "Ledger":
        led = cls(SharedBlock.attach(name), slots)
        led._slot = {int(e["address"]): i for i, e in enumerate(led.table) if e["state"] == ARMED}
        return led

    @property
    def name(self) -> str:
        return self.block.name

    # --- writer (userspace) --------------------------------------------------------------------------
    def holds(self, address: int) -> bool:
        return address in self._slot

    def paddr_of(self, address: int) -> int:
        """The guest-physical word the breakpoint at `address` was planted at."""
        return int(self._paddr[self._slot[address]])

    def full(self) -> bool:
        """No slot left for a new address (`record` would raise LedgerFull)."""
        return not self._free_slots()

    def record(self, address: int, saved: int, planted: int, owner: str = "userspace",
               paddr: int | None = None) -> None:
        """Before planting `planted` over `saved` at `address` (guest-physical `paddr`, default the same)."""
        i = self._slot.get(address)
        if i is None:
            free = self._free_slots()
            if not free:
                raise LedgerFull(f"breakpoint ledger full ({len(self.table)} patched words)")
            i = free.pop()
        self._address[i], self._saved[i], self._planted[i] = address, saved, planted
        self._paddr[i] = address if paddr is None else paddr
        self._owner[i] = OWNERS.index(owner) if owner in OWNERS else 0
        self._state[i] = ARMED                   # last: the entry is visible from here on
        self._slot[address] = i

    def _free_slots(self) -> list[int]:
        """The writer's free slots as a stack, lowest on top (made once from the table)."""
        if self._free is None:
            self._free = np.flatnonzero(self._state == FREE)[::-1].tolist()
        return self._free

    def clear(self, address: int) -> None:
        """After the saved word is back at `address` (or the patch was given up)."""
        i = self._slot.pop(address, None)
        if i is not None:
            self._state[i] = FREE
            if self._free is not None:
                self._free.append(i)

    # --- reader (supervisor) -------------------------------------------------------------------------
    def entries(self) -> list[dict]:
        """The armed entries (found with one vectorised compare: the vCPU asks at every code flush)."""
        out = []
        for i in np.flatnonzero(self._state == ARMED):
            e = self.table[i]
            out.append({"address": int(e["address"]), "paddr": int(e["paddr"]), "saved": int(e["saved"]),
                        "planted": int(e["planted"]),
                        "owner": OWNERS[int(e["owner"])] if int(e["owner"]) < len(OWNERS) else "?"})
        return out

    def planted_at(self, address: int) -> int | None:
        """The word planted at `address` while an entry holds it, else None (any process may ask: the
        vCPU does, to tell a planted word from the same word in the guest's own code)."""
        hit = np.flatnonzero((self._address == address) & (self._state == ARMED))
        return int(self._planted[hit[0]]) if len(hit) else None

    def restore(self, ram) -> list[dict]:
        """Put every saved word back where its planted word still is (nobody may run guest code);
        returns the entries restored. Every entry is cleared."""
        done = []
        for i in np.flatnonzero(self.table["state"] == ARMED):
            e = self.table[i]
            addr = int(e["paddr"])
            if 0 <= addr <= ram.size - 4 and ram.read_word(addr) == int(e["planted"]):
                ram.write_word(addr, int(e["saved"]))
                done.append({"address": int(e["address"]), "paddr": addr, "saved": int(e["saved"]), "planted": int(e["planted"]),
                             "owner": OWNERS[int(e["owner"])] if int(e["owner"]) < len(OWNERS) else "?"})
            self.table["state"][i] = FREE
        self._slot.clear()
        self._free = None
        return done

    def close(self) -> None:
        self.table = self._state = self._address = self._saved = self._planted = self._owner = None
        self._paddr = None
        self.block.close()
