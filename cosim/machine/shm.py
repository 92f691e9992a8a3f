"""Named shared-memory blocks with one owner (guest RAM, run pages).

The owner creates the block and is the only one who unlinks it: at close, on garbage collection and at
interpreter exit (weakref.finalize), so an exception anywhere never leaves /dev/shm/<name> behind; if
the owner is SIGKILLed, multiprocessing's resource tracker (which the owner registers with) unlinks it.
Other processes attach by name *without* registering with the resource tracker: on Python < 3.13
SharedMemory(name) always registers, and children share their parent's tracker, so the usual "register
then unregister" workaround would also drop the owner's registration. An attacher exiting, crashing or
being killed never unlinks the block. Closing while NumPy views are alive never raises: the mapping
dies with the last view.
"""
from __future__ import annotations

import os
import secrets
import threading
import weakref
from multiprocessing import resource_tracker, shared_memory

_ATTACH_LOCK = threading.Lock()


def untracked_attach(name: str) -> shared_memory.SharedMemory:
    """Open an existing block without registering it with the resource tracker."""
    try:
        return shared_memory.SharedMemory(name=name, track=False)  # Python >= 3.13
    except TypeError:
        pass
    with _ATTACH_LOCK:
        original = resource_tracker.register

        def register(rname, rtype):
            if rtype != "shared_memory":
                original(rname, rtype)

        resource_tracker.register = register
        try:
            return shared_memory.SharedMemory(name=name)
        finally:
            resource_tracker.register = original


class ShmSpaceError(OSError):
    """The shared-memory filesystem has no room for a block (one line: how much, where)."""


def allocate(shm: shared_memory.SharedMemory, size: int) -> None:
    """Give a freshly created block its pages now (posix_fallocate): a filesystem too small for it is an
    error here, not a SIGBUS at the first write past the room left. On failure the block is closed and
    unlinked, and ShmSpaceError raised."""
    fd = getattr(shm, "_fd", -1)
    try:
        if fd >= 0:
            os.posix_fallocate(fd, 0, size)
        return
    except OSError as e:
        err = e
    release(shm)
    try:
        shm.unlink()
    except FileNotFoundError:
        pass
    raise ShmSpaceError(err.errno, f"shared memory: cannot allocate {size / (1 << 20):.1f} MiB for "
                                   f"/dev/shm/{shm.name}: {err.strerror or err}") from None


def release(shm: shared_memory.SharedMemory) -> bool:
    """Close our mapping of *shm*.  Returns False if views were still exported (then the mapping is
    dropped from *shm* and unmapped automatically when the last view is garbage-collected)."""
    try:
        shm.close()
        return True
    except BufferError:
        # Someone still holds a NumPy view.  Forget the memoryview/mmap (they stay alive, referenced
        # by the views, and munmap when those die) and close the descriptor: the mapping stays valid.
        shm._buf = None  # noqa: SLF001 - CPython's SharedMemory has no public way to do this
        shm._mmap = None  # noqa: SLF001
        fd = getattr(shm, "_fd", -1)
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
            shm._fd = -1  # noqa: SLF001
        return False


class Block:
    """The shared-memory block behind a GuestRAM, and its cleanup.  Referenced by the GuestRAM's
    finalizer, so it must not reference the GuestRAM."""

    def __init__(self, shm: shared_memory.SharedMemory, owner: bool):
        self.shm = shm
        self.owner_pid = os.getpid() if owner else None
        self.unlinked = False

    def unlink(self) -> None:
        if self.unlinked or self.owner_pid != os.getpid():
            return  # not the owner, or a fork()ed child that inherited the owner's finalizer
        self.unlinked = True
        try:
            self.shm.unlink()  # shm_unlink + resource_tracker.unregister
        except FileNotFoundError:
            # removed behind our back: still drop our resource-tracker registration
            try:
                resource_tracker.unregister(self.shm._name, "shared_memory")  # noqa: SLF001
            except Exception:  # pragma: no cover - tracker gone at shutdown
                pass

    def cleanup(self) -> bool:
        """Release the mapping and (owner) unlink.  Runs from close(), GC or atexit."""
        clean = release(self.shm)
        self.unlink()
        return clean



class SharedBlock:
    """A named block: `create` (owner) or `attach` (anyone else), `buf`, `close()`."""

    def __init__(self, seg: shared_memory.SharedMemory, owner: bool):
        self.seg = seg
        self.owner = owner
        self.name = seg.name
        self._block = Block(seg, owner)
        self._finalizer = weakref.finalize(self, self._block.cleanup)

    @classmethod
    def create(cls, size: int, prefix: str = "cosim") -> "SharedBlock":
        name = f"{prefix}-{os.getpid()}-{secrets.token_hex(4)}"
        seg = shared_memory.SharedMemory(name=name, create=True, size=size)
        allocate(seg, size)
        return cls(seg, owner=True)

    @classmethod
    def attach(cls, name: str) -> "SharedBlock":
        return cls(untracked_attach(name), owner=False)

    @property
    def buf(self):
        return self.seg.buf

    def close(self) -> None:
        """Detach (and unlink, for the owner). Views made from `buf` should be dropped first."""
        self._finalizer()

