"""GuestRAM: shared-memory guest RAM shared between processes, bounds checks, no leftovers."""

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from cosim.machine.guest_ram import DEFAULT_RAM_SIZE, GuestMemoryError, GuestRAM

SHM_DIR = Path("/dev/shm")
REPO = Path(__file__).resolve().parents[1]
SIZE = 64 * 1024

pytestmark = pytest.mark.skipif(not SHM_DIR.is_dir(), reason="needs /dev/shm (Linux)")


def shm_exists(name: str) -> bool:
    return (SHM_DIR / name).exists()


def ours() -> set[str]:
    """Blocks created by this (xdist worker) process."""
    return {p.name for p in SHM_DIR.iterdir() if p.name.startswith(f"cosimtest_{os.getpid()}_")}


@pytest.fixture
def ram():
    r = GuestRAM.create(SIZE, name_prefix="cosimtest")
    yield r
    r.close()
    assert not shm_exists(r.name)


# --- children (module level: spawn imports them) ------------------------------------------------

def _child_write(name, size, addr, value, done):
    ram = GuestRAM.attach(name, size)
    ram.write_word(addr, value)
    ram.write(addr + 4, b"child")
    ram.close()
    done.set()


def _child_write_and_hang(name, size, ready):
    ram = GuestRAM.attach(name, size)
    w = ram.words  # a live view when we get killed
    w[0] = 0xC0FFEE
    ready.set()
    time.sleep(120)


def _child_pickled(ram, q):
    q.put(ram.read_word(8))
    ram.close()


# --- basics -------------------------------------------------------------------------------------

def test_create_is_zeroed_and_named(ram):
    assert ram.size == SIZE
    assert ram.name.startswith(f"cosimtest_{os.getpid()}_")
    assert shm_exists(ram.name)
    assert ram.owner and not ram.closed
    assert ram.bytes.dtype == np.uint8 and ram.bytes.shape == (SIZE,)
    assert ram.words.dtype == np.dtype(">u4") and ram.words.shape == (SIZE // 4,)
    assert not ram.bytes.any()
    assert ram.address == ram.bytes.ctypes.data


def test_names_unique():
    a = GuestRAM.create(4096, name_prefix="cosimtest")
    b = GuestRAM.create(4096, name_prefix="cosimtest")
    try:
        assert a.name != b.name
    finally:
        a.close()
        b.close()


def test_default_size():
    with GuestRAM.create(name_prefix="cosimtest") as r:
        assert r.size == DEFAULT_RAM_SIZE == 16 << 20


@pytest.mark.parametrize("size", [0, -4096, 100, 4097, 4096 + 4])
def test_bad_size(size):
    with pytest.raises(GuestMemoryError, match="multiple"):
        GuestRAM.create(size, name_prefix="cosimtest")
    assert not ours()


def test_word_and_byte_access_big_endian(ram):
    ram.write_word(0x100, 0x12345678)
    assert ram.read(0x100, 4) == b"\x12\x34\x56\x78"
    assert ram.read_word(0x100) == 0x12345678
    assert ram.words[0x40] == 0x12345678
    ram.write(0x200, b"\xde\xad\xbe\xef\x00\x00\x00\x01")
    assert ram.read_u32s(0x200, 2) == [0xDEADBEEF, 1]
    ram.write_u32s(0x300, [1, 2, 0xFFFFFFFF])
    assert ram.read(0x300, 12) == bytes.fromhex("00000001 00000002 ffffffff")
    ram.write_word(0x400, -1)
    assert ram.read_word(0x400) == 0xFFFFFFFF
    assert isinstance(ram.read_word(0x400), int)
    ram.write(SIZE - 3, b"end")
    assert ram.read(SIZE - 3, 3) == b"end"
    assert ram.read(0, 0) == b""


@pytest.mark.parametrize("call", [
    lambda r: r.read(SIZE - 2, 4),
    lambda r: r.read(SIZE, 1),
    lambda r: r.read(-4, 4),
    lambda r: r.write(SIZE - 1, b"ab"),
    lambda r: r.read_word(SIZE),
    lambda r: r.write_word(SIZE, 0),
    lambda r: r.read_u32s(SIZE - 8, 3),
    lambda r: r.write_u32s(SIZE - 4, [1, 2]),
])
def test_out_of_bounds(ram, call):
    with pytest.raises(GuestMemoryError) as ei:
        call(ram)
    msg = str(ei.value)
    assert "outside guest RAM" in msg and f"{SIZE:#x}" in msg
    assert isinstance(ei.value, ValueError)


def test_error_message_names_address_and_length(ram):
    with pytest.raises(GuestMemoryError, match=r"read of 8 byte\(s\) at 0xfffc .*size 0x10000"):
        ram.read(0xFFFC, 8)


@pytest.mark.parametrize("call", [
    lambda r: r.read_word(2),
    lambda r: r.write_word(0x101, 0),
    lambda r: r.read_u32s(6, 1),
])
def test_misaligned_word(ram, call):
    with pytest.raises(GuestMemoryError, match="aligned"):
        call(ram)


def test_value_range(ram):
    with pytest.raises(GuestMemoryError, match="32 bits"):
        ram.write_word(0, 1 << 32)


def test_closed_access_raises():
    r = GuestRAM.create(4096, name_prefix="cosimtest")
    r.close()
    r.close()  # idempotent
    assert r.closed
    with pytest.raises(GuestMemoryError, match="closed"):
        r.read_word(0)
    with pytest.raises(GuestMemoryError, match="closed"):
        _ = r.words


# --- cross-process ------------------------------------------------------------------------------

def test_child_process_writes_parent_sees(ram):
    ctx = mp.get_context("spawn")
    done = ctx.Event()
    p = ctx.Process(target=_child_write, args=(ram.name, ram.size, 0x1000, 0xCAFEF00D, done))
    p.start()
    p.join(60)
    assert p.exitcode == 0 and done.is_set()
    assert ram.read_word(0x1000) == 0xCAFEF00D
    assert ram.read(0x1004, 5) == b"child"
    assert shm_exists(ram.name), "a child's close must not unlink the owner's block"


def test_pickled_ram_attaches_in_child(ram):
    ram.write_word(8, 77)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child_pickled, args=(ram, q))
    p.start()
    assert q.get(timeout=60) == 77
    p.join(60)
    assert p.exitcode == 0
    assert shm_exists(ram.name)


def test_attach_same_process_sees_writes(ram):
    with GuestRAM.attach(ram.name, ram.size) as other:
        assert not other.owner
        other.write_word(0x20, 5)
        assert ram.read_word(0x20) == 5
        with pytest.raises(GuestMemoryError, match="owner"):
            other.unlink()
    assert shm_exists(ram.name)


def test_attach_smaller_view_and_too_large(ram):
    with GuestRAM.attach(ram.name, 4096) as small:
        assert small.size == 4096
    with pytest.raises(GuestMemoryError, match="need"):
        GuestRAM.attach(ram.name, 2 * SIZE)


def test_attach_missing_raises():
    with pytest.raises(FileNotFoundError):
        GuestRAM.attach(f"cosimtest_{os.getpid()}_doesnotexist", 4096)


def test_child_sigkilled_leaves_no_leftover():
    before = ours()
    ram = GuestRAM.create(SIZE, name_prefix="cosimtest")
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    p = ctx.Process(target=_child_write_and_hang, args=(ram.name, ram.size, ready))
    p.start()
    try:
        assert ready.wait(60)
        os.kill(p.pid, signal.SIGKILL)
        p.join(60)
        assert p.exitcode == -signal.SIGKILL
        assert shm_exists(ram.name)
        assert ram.read_word(0) == 0xC0FFEE
    finally:
        if p.is_alive():
            p.kill()
        ram.close()
    assert ours() == before
    assert not shm_exists(ram.name)


def test_exception_in_with_block_leaves_no_leftover():
    before = ours()
    name = None
    with pytest.raises(RuntimeError):
        with GuestRAM.create(SIZE, name_prefix="cosimtest") as r:
            name = r.name
            assert shm_exists(name)
            raise RuntimeError("boom")
    assert not shm_exists(name)
    assert ours() == before


def test_garbage_collected_owner_unlinks():
    r = GuestRAM.create(SIZE, name_prefix="cosimtest")
    name = r.name
    del r
    import gc
    gc.collect()
    assert not shm_exists(name)


def test_close_with_live_views_does_not_crash():
    r = GuestRAM.create(SIZE, name_prefix="cosimtest")
    name = r.name
    v = r.words  # kept past close: documented as a misuse, must not crash
    v[1] = 3
    with pytest.warns(ResourceWarning):
        r.close()
    assert not shm_exists(name)
    assert v[1] == 3  # the mapping lives as long as the view
    del v


def test_explicit_unlink_then_close(ram):
    ram.unlink()
    assert not shm_exists(ram.name)
    ram.write_word(0, 1)  # mapping still valid
    assert ram.read_word(0) == 1


def _run_script(tmp_path, body, timeout=60):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(body))
    err = tmp_path / "stderr.txt"
    with open(err, "w") as ef:
        proc = subprocess.Popen([sys.executable, str(script)], cwd=REPO, stdout=subprocess.PIPE,
                                stderr=ef, text=True)
    return proc, err


def test_owner_and_attachers_exit_cleanly_without_tracker_noise(tmp_path):
    # a whole "supervisor" in a fresh interpreter: spawn children attach and exit; nothing leaks and
    # the shared resource tracker prints no KeyError / leak warning
    proc, err = _run_script(tmp_path, """
        import multiprocessing as mp
        from cosim.machine.guest_ram import GuestRAM

        def child(name, size):
            r = GuestRAM.attach(name, size)
            r.write_word(0, r.read_word(0) + 1)
            r.close()

        if __name__ == "__main__":
            ctx = mp.get_context("spawn")
            ram = GuestRAM.create(8192, name_prefix="cosimtest")
            print(ram.name, flush=True)
            for _ in range(2):
                p = ctx.Process(target=child, args=(ram.name, ram.size))
                p.start(); p.join()
                assert p.exitcode == 0
            assert ram.read_word(0) == 2
            ram.close()
    """)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.read_text()
    name = out.split()[0]
    time.sleep(0.2)
    stderr = err.read_text()
    assert "KeyError" not in stderr and "leaked" not in stderr and "Traceback" not in stderr, stderr
    assert not shm_exists(name)


def test_owner_sigkilled_block_reclaimed_by_resource_tracker(tmp_path):
    proc, err = _run_script(tmp_path, """
        import sys, time
        from cosim.machine.guest_ram import GuestRAM
        ram = GuestRAM.create(8192, name_prefix="cosimtest")
        print(ram.name, flush=True)
        time.sleep(120)
    """)
    try:
        name = proc.stdout.readline().strip()
        assert name and shm_exists(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
        deadline = time.monotonic() + 30
        while shm_exists(name) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not shm_exists(name), "resource tracker did not unlink the killed owner's block"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()


def test_no_leftovers_from_this_module():
    # runs last in this module (pytest keeps file order within a worker)
    assert not ours()
