"""GuestImage: ELF checks, segments, symbols, resolve, loading into GuestRAM, bug table."""

import shutil
import struct
import sys

import pytest

from cosim.machine.guest_ram import GuestRAM
from cosim.machine.image import (GUESTS_DIR, BugEntry, BugKind, GuestImage, ImageError,
                                 UnknownSymbolError, guest_path, list_guests)

PROGRAMS = ["loop", "warn_storm", "smp_workers", "selfcheck", "guest_iac"]


@pytest.fixture(scope="module")
def images():
    return {name: GuestImage.load(name) for name in PROGRAMS}


@pytest.fixture
def ram():
    r = GuestRAM.create(16 << 20, name_prefix="cosimtest")
    yield r
    r.close()


def test_all_programs_present():
    assert set(PROGRAMS) <= set(list_guests())


def test_guest_path():
    assert guest_path("warn_storm") == GUESTS_DIR / "warn_storm.elf"
    assert guest_path(GUESTS_DIR / "loop.elf") == GUESTS_DIR / "loop.elf"
    assert guest_path(str(GUESTS_DIR / "loop.elf")) == GUESTS_DIR / "loop.elf"
    with pytest.raises(ImageError, match="did you mean warn_storm"):
        guest_path("warn_strom")
    with pytest.raises(ImageError, match="does not exist"):
        guest_path("/nonexistent/dir/x.elf")


def test_basic_properties(images):
    for name, im in images.items():
        assert im.entry == im.symbol("_start"), name
        assert im.path == GUESTS_DIR / f"{name}.elf"
        addrs = [s.addr for s in im.segments]
        assert addrs == sorted(addrs)
        code = im.code_segments
        assert len(code) == 1 and code[0].addr == im.symbol("_vectors") == 0x10000
        assert code[0].addr <= im.entry < code[0].end
        assert any(s.writable and s.memsz > len(s.data) for s in im.segments), "bss expected"
        for addr, data in im.segments:  # iterable as (addr, bytes)
            assert isinstance(addr, int) and isinstance(data, bytes)


def test_symbols_and_resolve(images):
    im = images["loop"]
    bp = im.symbol("bp_target")
    assert im.symbols["bp_target"] == bp and "bp_target" in im
    assert im.resolve("bp_target") == bp
    assert im.resolve("bp_target+4") == bp + 4
    assert im.resolve("bp_target + 0x8") == bp + 8
    assert im.resolve(bp) == bp
    assert im.resolve(hex(bp)) == bp
    assert im.resolve(str(bp)) == bp
    assert im.symbol_at(bp) == "bp_target"
    assert im.symbol_at(bp + 4) == "bp_target+0x4"
    with pytest.raises(UnknownSymbolError) as ei:
        im.symbol("bp_targt")
    assert isinstance(ei.value, KeyError) and isinstance(ei.value, ImageError)
    assert "bp_target" in str(ei.value) and "near matches" in str(ei.value)
    assert str(ei.value).startswith("loop.elf: no symbol 'bp_targt'")
    with pytest.raises(ImageError):
        im.resolve("nosuchsymbol")
    with pytest.raises(ImageError):
        im.resolve(1 << 32)
    with pytest.raises(ImageError):
        im.resolve(-4)
    with pytest.raises(ImageError):
        im.resolve(1.5)
    with pytest.raises(ImageError, match="offset"):
        im.resolve("bp_target+zz")


def test_read_from_image(images):
    im = images["loop"]
    assert im.read_word(im.symbol("cfg_iterations")) == 1000
    assert im.read_word(im.symbol("bp_target")) == 0x38000000  # li r0,0
    assert im.read_word(im.symbol("cnt_iter")) == 0  # bss reads as zero
    assert im.read_word(im.symbol("exit_code")) == 0xFFFFFFFF
    with pytest.raises(ImageError, match="not inside"):
        im.read(0, 4)


def test_load_into_ram_zero_fills_bss(images, ram):
    im = images["warn_storm"]
    ram.bytes[:0x80000] = 0xAA  # garbage that the loader must overwrite
    im.load_into(ram)
    for seg in im.segments:
        assert ram.read(seg.addr, len(seg.data)) == seg.data
        assert not ram.bytes[seg.addr + len(seg.data):seg.end].any()
    assert ram.read_word(im.symbol("cfg_iterations")) == 1000
    assert [ram.read_word(im.percpu_address("cnt_warn", i)) for i in range(16)] == [0] * 16
    assert [ram.read_word(im.percpu_address("unexpected_ivor", i)) for i in range(16)] == [0xFFFFFFFF] * 16
    assert ram.read_word(im.symbol("warns_per_iter")) == 3
    # outside the segments the loader leaves RAM alone
    assert ram.read(0x100, 4) == b"\xaa" * 4


def test_code_bytes_and_diff(images, ram):
    im = images["loop"]
    im.load_into(ram)
    (addr, data), = im.code_bytes()
    assert im.code_ranges() == [(addr, addr + len(data))]
    assert ram.read(addr, len(data)) == data
    assert im.code_diff(ram) == []
    bp = im.symbol("bp_target")
    ram.write_word(bp, 0x44000802)  # sc 64
    assert im.code_diff(ram) == [(bp, 0x38000000, 0x44000802)]
    ram.write_word(bp, 0x38000000)
    assert im.code_diff(ram) == []


def test_load_into_too_small_ram(images):
    with GuestRAM.create(0x10000, name_prefix="cosimtest") as small:
        with pytest.raises(ImageError, match="does not fit"):
            images["loop"].load_into(small)


def test_bug_table(images):
    ws = images["warn_storm"].bug_table()
    assert [e.kind for e in ws] == [BugKind.WARN, BugKind.WARN, BugKind.WARN, BugKind.BUG, BugKind.WARN]
    assert all(isinstance(e, BugEntry) for e in ws)
    addr, kind = ws[0]
    assert kind == 1 and addr == ws[0].addr
    main = images["warn_storm"].symbol("main")
    assert all(main < e.addr < main + images["warn_storm"].symbol_sizes["main"] for e in ws)
    assert [e.kind for e in images["smp_workers"].bug_table()] == [BugKind.WARN]
    for name in ("loop", "selfcheck", "guest_iac"):
        assert images[name].bug_table() == []
    assert "BUG" in repr(ws[3]) and hex(ws[3].addr) in repr(ws[3])


def test_rejects_non_elf(tmp_path):
    p = tmp_path / "x.elf"
    p.write_bytes(b"not an elf at all")
    with pytest.raises(ImageError, match="not an ELF"):
        GuestImage.load(p)


def test_rejects_missing(tmp_path):
    with pytest.raises(ImageError):
        GuestImage.load(tmp_path / "missing.elf")


def _patched(tmp_path, offset, value, fmt):
    data = bytearray((GUESTS_DIR / "loop.elf").read_bytes())
    struct.pack_into(fmt, data, offset, value)
    p = tmp_path / "patched.elf"
    p.write_bytes(bytes(data))
    return p


def test_rejects_wrong_machine(tmp_path):
    p = _patched(tmp_path, 18, 3, ">H")  # e_machine = EM_386
    with pytest.raises(ImageError, match="EM_PPC"):
        GuestImage.load(p)


def test_rejects_not_executable(tmp_path):
    p = _patched(tmp_path, 16, 1, ">H")  # e_type = ET_REL
    with pytest.raises(ImageError, match="ET_EXEC"):
        GuestImage.load(p)


def test_rejects_little_endian(tmp_path):
    p = _patched(tmp_path, 5, 1, "B")  # EI_DATA = ELFDATA2LSB
    with pytest.raises(ImageError):
        GuestImage.load(p)


def test_rejects_64bit_host_binary(tmp_path):
    exe = shutil.which("ls") or sys.executable
    p = tmp_path / "host.elf"
    p.write_bytes(open(exe, "rb").read())
    with pytest.raises(ImageError, match="32-bit|EM_PPC|big-endian"):
        GuestImage.load(p)
