"""Named shared-memory blocks with one owner.

The owner creates the block and is the only one who unlinks it (at close, at interpreter exit, or from
the supervisor's teardown if the owner died). Other processes attach by name without registering the
block with multiprocessing's resource tracker, so a child that exits or is killed never unlinks (or
warns about) a block it did not create.
"""
from __future__ import annotations

import os
import secrets
import weakref
from multiprocessing import resource_tracker, shared_memory


def _unlink_quietly(name: str) -> None:
    try:
        seg = shared_memory.SharedMemory(name=name)
    except FileNotFoundError:
        return
    try:
        seg.close()
        seg.unlink()
    except FileNotFoundError:
        pass


class SharedBlock:
    def __init__(self, seg: shared_memory.SharedMemory, owner: bool):
        self.seg = seg
        self.owner = owner
        self.name = seg.name
        self._finalizer = weakref.finalize(self, _unlink_quietly, seg.name) if owner else None

    @classmethod
    def create(cls, size: int, prefix: str = "cosim") -> "SharedBlock":
        name = f"{prefix}-{os.getpid()}-{secrets.token_hex(4)}"
        return cls(shared_memory.SharedMemory(name=name, create=True, size=size), owner=True)

    @classmethod
    def attach(cls, name: str) -> "SharedBlock":
        seg = shared_memory.SharedMemory(name=name)
        try:  # Python < 3.13 registers attachments too; undo it (only the owner unlinks)
            resource_tracker.unregister(seg._name, "shared_memory")  # type: ignore[attr-defined]
        except Exception:
            pass
        return cls(seg, owner=False)

    @property
    def buf(self):
        return self.seg.buf

    def close(self) -> None:
        """Detach (and unlink, for the owner). Views made from `buf` must be dropped first."""
        try:
            self.seg.close()
        except BufferError:
            # a NumPy view is still alive in this process: the mapping is freed with the last view;
            # forget it here so SharedMemory.__del__ does not retry (and complain) at exit
            self.seg._mmap = None  # type: ignore[attr-defined]
        if self.owner and self._finalizer is not None:
            self._finalizer()


def unlink(name: str) -> None:
    """Unlink a block by name if it still exists (supervisor teardown after a crash)."""
    _unlink_quietly(name)
