"""Guest RAM: one POSIX shared-memory block per VM, viewed as NumPy arrays.

The supervisor *owns* the block: ``GuestRAM.create(size)`` makes a block with a unique random name and
unlinks it again on ``close()``, on garbage collection and at interpreter exit (``weakref.finalize``), so
an exception anywhere in the owner never leaves ``/dev/shm/<name>`` behind.  If the owner itself is
SIGKILLed, multiprocessing's resource tracker (which the owner registers the block with) unlinks it.

Every other process (vCPUs, kernel, userspace) *attaches* with ``GuestRAM.attach(name, size)``.  An
attacher never registers the block with the resource tracker: on Python < 3.13 ``SharedMemory(name)``
always registers, and a child started by ``multiprocessing`` shares its parent's tracker, so the usual
"register then unregister" workaround would also remove the *owner's* registration (and make the
owner's later unlink print a KeyError from the tracker).  We therefore suppress the registration while
attaching (``track=False`` on 3.13+).  An attacher exiting, crashing or being SIGKILLed never unlinks
the block.

Views: ``.bytes`` (uint8) and ``.words`` (big-endian ``>u4``) are created once with ``np.frombuffer``,
which pins the mapping (unicorn's ``mem_map_ptr`` does not: see docs/reference).  ``.address`` is the
host address of byte 0, for ``uc.mem_map_ptr(0, ram.size, UC_PROT_ALL, ram.address)``.  The views are
owned by the GuestRAM: **do not keep references to them (or to slices of them) past ``close()``**, and
keep the GuestRAM open for as long as a unicorn instance maps ``.address``.  If views are still alive at
``close()``, the mapping is left to die with the last view (a ``ResourceWarning`` is issued) instead of
raising; the owner still unlinks the name.
"""

from __future__ import annotations

import os
import secrets
import warnings
import weakref
from multiprocessing import shared_memory

import numpy as np

from .shm import Block as _Block, allocate as _allocate, release as _release, untracked_attach as _untracked_attach

__all__ = ["GuestRAM", "GuestMemoryError", "PAGE_SIZE", "DEFAULT_RAM_SIZE"]

PAGE_SIZE = 4096
DEFAULT_RAM_SIZE = 16 << 20

class GuestMemoryError(ValueError):
    """A guest-physical access outside guest RAM, or a misaligned word access."""


class GuestRAM:
    """Guest-physical RAM from address 0, backed by one shared-memory block."""

    def __init__(self, shm: shared_memory.SharedMemory, size: int, owner: bool):
        # use create() / attach()
        if shm.size < size:
            raise GuestMemoryError(f"shared memory block {shm.name!r} has {shm.size:#x} bytes, "
                                   f"need {size:#x}")
        self._shm = shm
        self._name = shm.name
        self._size = size
        self._owner = owner
        self._bytes = np.frombuffer(shm.buf, dtype=np.uint8, count=size)
        self._words = self._bytes.view(">u4")
        self._address = self._bytes.ctypes.data
        self._closed = False
        self._block = _Block(shm, owner)
        # unlinks (owner) even if close() is never called: on GC and at interpreter exit
        self._finalizer = weakref.finalize(self, self._block.cleanup)

    # -- construction -------------------------------------------------------------------------------

    @staticmethod
    def _check_size(size: int) -> int:
        size = int(size)
        if size <= 0 or size % PAGE_SIZE:
            raise GuestMemoryError(f"guest RAM size {size:#x} must be a positive multiple of "
                                   f"{PAGE_SIZE:#x} (4 KiB)")
        return size

    @classmethod
    def create(cls, size: int = DEFAULT_RAM_SIZE, name_prefix: str = "cosim") -> "GuestRAM":
        """Create a new zero-filled block with a unique name; the caller owns (and unlinks) it."""
        size = cls._check_size(size)
        for _ in range(16):
            name = f"{name_prefix}_{os.getpid()}_{secrets.token_hex(6)}"
            try:
                shm = shared_memory.SharedMemory(name=name, create=True, size=size)
                break
            except FileExistsError:
                continue
        else:  # pragma: no cover
            raise GuestMemoryError(f"could not find a free shared memory name for prefix {name_prefix!r}")
        _allocate(shm, size)      # a filesystem too small is an error now, never a SIGBUS later
        return cls(shm, size, owner=True)

    @classmethod
    def attach(cls, name: str, size: int) -> "GuestRAM":
        """Attach to an existing block (any process).  Never unlinks it, never registers it with the
        resource tracker."""
        size = cls._check_size(size)
        shm = _untracked_attach(name)
        try:
            return cls(shm, size, owner=False)
        except BaseException:
            _release(shm)
            raise

    def __reduce__(self):
        # pickling (e.g. passing to a multiprocessing child) attaches in the receiving process
        return (GuestRAM.attach, (self._name, self._size))

    # -- properties ---------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def size(self) -> int:
        return self._size

    @property
    def owner(self) -> bool:
        return self._owner

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def address(self) -> int:
        """Host address of guest-physical byte 0 (for unicorn ``mem_map_ptr``)."""
        self._check_open()
        return self._address

    @property
    def bytes(self) -> np.ndarray:
        """uint8 view of all of guest RAM.  Do not keep it past ``close()``."""
        self._check_open()
        return self._bytes

    @property
    def words(self) -> np.ndarray:
        """Big-endian uint32 view (``>u4``): ``words[addr >> 2]``.  Do not keep it past ``close()``."""
        self._check_open()
        return self._words

    # -- accessors ----------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise GuestMemoryError(f"guest RAM {self._name!r} is closed")

    def _check_range(self, addr: int, n: int, what: str) -> None:
        self._check_open()
        if n < 0:
            raise GuestMemoryError(f"{what}: negative length {n} at {addr:#x}")
        if addr < 0 or addr + n > self._size:
            raise GuestMemoryError(f"{what} of {n} byte(s) at {addr:#x} is outside guest RAM "
                                   f"(size {self._size:#x}, valid 0x0..{self._size - 1:#x})")

    def _check_word(self, addr: int, count: int, what: str) -> None:
        if addr % 4:
            raise GuestMemoryError(f"{what} at {addr:#x}: address must be 4-byte aligned")
        self._check_range(addr, 4 * count, what)

    def read(self, addr: int, n: int) -> bytes:
        self._check_range(addr, n, "read")
        return self._bytes[addr:addr + n].tobytes()

    def write(self, addr: int, data) -> None:
        data = bytes(data)
        self._check_range(addr, len(data), "write")
        self._bytes[addr:addr + len(data)] = np.frombuffer(data, dtype=np.uint8)

    def read_word(self, addr: int) -> int:
        self._check_word(addr, 1, "read_word")
        return int(self._words[addr >> 2])

    def write_word(self, addr: int, value: int) -> None:
        self._check_word(addr, 1, "write_word")
        if not 0 <= value <= 0xFFFFFFFF:
            if -0x80000000 <= value < 0:
                value &= 0xFFFFFFFF
            else:
                raise GuestMemoryError(f"write_word at {addr:#x}: value {value:#x} does not fit in 32 bits")
        self._words[addr >> 2] = value

    def read_u32s(self, addr: int, count: int) -> list[int]:
        """*count* big-endian words from *addr*, as a list of ints."""
        self._check_word(addr, count, "read_u32s")
        return self._words[addr >> 2:(addr >> 2) + count].tolist()

    def write_u32s(self, addr: int, values) -> None:
        values = [int(v) & 0xFFFFFFFF for v in values]
        self._check_word(addr, len(values), "write_u32s")
        self._words[addr >> 2:(addr >> 2) + len(values)] = values

    # -- teardown -----------------------------------------------------------------------------------

    def close(self) -> None:
        """Detach; the owner also unlinks.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        # drop our own views first so the mapping can be closed
        self._bytes = None
        self._words = None
        self._finalizer.detach()
        if not self._block.cleanup():
            warnings.warn(f"GuestRAM {self._name!r} closed while NumPy views of it are still alive; "
                          "the mapping is released when they are garbage-collected",
                          ResourceWarning, stacklevel=2)

    def unlink(self) -> None:
        """Remove the name now (owner only).  The mapping stays usable until ``close()``."""
        if not self._owner:
            raise GuestMemoryError(f"only the owner may unlink guest RAM {self._name!r}")
        self._block.unlink()

    def __enter__(self) -> "GuestRAM":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("owner" if self._owner else "attached")
        return f"GuestRAM({self._name!r}, size={self._size:#x}, {state})"
