"""Guest program images: 32-bit big-endian PowerPC ELF executables built from guests/.

``GuestImage.load(path)`` reads everything the harness needs up front (entry, PT_LOAD segments,
symbols, bug table) and closes the file; the object is then plain immutable data, cheap to pass to
any process.  ``guest_path("warn_storm")`` finds ``guests/warn_storm.elf`` in the repository.

The bug table (``__bug_table`` .. ``__bug_table_end``) holds 8-byte big-endian entries
``{u32 addr; u32 flags}`` with flags WARN = 1, BUG = 2 (see guests/README.md).
"""

from __future__ import annotations

import difflib
import enum
import struct
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.constants import P_FLAGS
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

__all__ = ["GuestImage", "ImageError", "UnknownSymbolError", "Segment", "BugKind", "BugEntry",
           "guest_path", "GUESTS_DIR", "list_guests"]



def _guests_dir() -> Path:
    """The directory of the guest ELFs: cosim/guests inside an installed package (package data: setup.py
    ships the repository's guests/*.elf there), else guests/ next to the source tree of cosim."""
    import importlib.resources
    d = Path(str(importlib.resources.files("cosim").joinpath("guests")))
    if d.is_dir() and any(d.glob("*.elf")):
        return d
    return Path(__file__).resolve().parents[2] / "guests"


GUESTS_DIR = _guests_dir()

BUG_TABLE_START = "__bug_table"
BUG_TABLE_END = "__bug_table_end"
BUG_ENTRY_SIZE = 8
# per-vCPU word arrays (MAX_VCPUS words, indexed by PIR) of the guest ABI (guests/README.md)
GUEST_COUNTERS = ("cnt_warn", "cnt_bug", "cnt_bad_prog", "bad_prog_srr0", "bad_prog_esr", "bug_srr0",
                  "cnt_syscall", "last_sc_srr0", "cnt_debug", "last_dbsr", "last_debug_pc", "cnt_iter",
                  "cnt_hits", "cnt_mismatch", "unexpected_ivor", "exit_code", "work_result",
                  "boot_checksum")


class ImageError(Exception):
    """A guest image that cannot be used (missing, not a 32-bit big-endian PowerPC ELF, ...)."""


class UnknownSymbolError(ImageError, KeyError):
    """``GuestImage.symbol(name)`` for a name the image does not define."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class BugKind(enum.IntEnum):
    WARN = 1
    BUG = 2


@dataclass(frozen=True)
class BugEntry:
    addr: int
    kind: BugKind | int  # an unknown flags value is kept as a plain int

    def __iter__(self):  # allows `addr, kind = entry`
        return iter((self.addr, self.kind))

    def __repr__(self) -> str:
        kind = self.kind.name if isinstance(self.kind, BugKind) else hex(self.kind)
        return f"BugEntry({self.addr:#x}, {kind})"


@dataclass(frozen=True)
class Segment:
    """One PT_LOAD segment: ``data`` is the file image (filesz bytes); the loader zero-fills up to
    ``memsz``."""

    addr: int
    data: bytes
    memsz: int
    flags: int  # PF_X = 1, PF_W = 2, PF_R = 4

    @property
    def end(self) -> int:
        return self.addr + self.memsz

    @property
    def executable(self) -> bool:
        return bool(self.flags & P_FLAGS.PF_X)

    @property
    def writable(self) -> bool:
        return bool(self.flags & P_FLAGS.PF_W)

    def __iter__(self):  # allows `addr, data = segment`
        return iter((self.addr, self.data))


def list_guests() -> list[str]:
    """Names of the programs with a built ELF in guests/."""
    return sorted(p.stem for p in GUESTS_DIR.glob("*.elf"))


# firmware found by name: name -> (path, the Debian package that installs it)
FIRMWARE = {"u-boot": ("/usr/lib/u-boot/qemu-ppce500/uboot.elf", "u-boot-qemu")}


def guest_path(name: str | Path) -> Path:
    """Path of a guest program: a bare name ("warn_storm") means guests/warn_storm.elf in the
    repository; anything that looks like a path (or exists) is used as given."""
    p = Path(name)
    from ..guest_linux import FLAVOURS, LinuxBuildError, locate
    if str(name) in FLAVOURS:                  # the project's Linux guests (tools/linux_guest.py)
        try:
            return locate(str(name)).vmlinux
        except LinuxBuildError as e:
            raise ImageError(str(e)) from None
    if str(name) in FIRMWARE:
        fw = Path(FIRMWARE[str(name)][0])
        if not fw.exists():
            raise ImageError(f"firmware {str(name)!r} is {fw}, which is missing: install Debian's package "
                             f"{FIRMWARE[str(name)][1]} (./setup.sh does)")
        return fw
    if p.suffix == ".elf" or len(p.parts) > 1:
        if not p.exists():
            near = difflib.get_close_matches(p.stem, list_guests(), n=3) if p.suffix == ".elf" else []
            hint = (f"; a guest program is named without .elf: did you mean {' or '.join(near)}?" if near
                    else "")
            raise ImageError(f"guest image {str(p)!r} does not exist{hint}")
        return p
    candidate = GUESTS_DIR / f"{name}.elf"
    if not candidate.exists():
        known = list_guests()
        near = difflib.get_close_matches(str(name), known, n=3)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise ImageError(f"no guest program {str(name)!r} ({candidate} missing){hint} "
                         f"known: {', '.join(known) or 'none (run python guests/build.py)'}")
    return candidate


class GuestImage:
    """A loaded guest ELF: entry, PT_LOAD segments, symbols, bug table."""

    def __init__(self, path: Path, entry: int, segments: list[Segment], symbols: dict[str, int],
                 symbol_sizes: dict[str, int], constants: frozenset[str] = frozenset()):
        self.path = path
        self.constants = constants      # absolute symbols (SHN_ABS): assembler constants, not addresses
        self.entry = entry
        self.segments = tuple(segments)
        self.symbols = dict(symbols)
        self.symbol_sizes = dict(symbol_sizes)

    # -- loading --------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> "GuestImage":
        path = guest_path(path)
        try:
            with open(path, "rb") as f:
                return cls._parse(path, f)
        except ELFError as e:
            raise ImageError(f"{path}: not a valid ELF file: {e}") from None
        except OSError as e:
            raise ImageError(f"{path}: cannot read: {e}") from None

    @classmethod
    def _parse(cls, path: Path, f) -> "GuestImage":
        magic = f.read(4)
        f.seek(0)
        if magic != b"\x7fELF":
            hint = {b"\x1f\x8b": "; it is gzip-compressed: the board loads an uncompressed ELF (vmlinux), "
                                  "as QEMU's -kernel takes it",
                    b"\x27\x05": "; it is a U-Boot uImage: the board loads an ELF (vmlinux), not a uImage",
                    b"\xfd7": "; it is xz-compressed: decompress it first"}.get(magic[:2], "")
            raise ImageError(f"{path}: not an ELF file (magic {magic!r}){hint}")
        elf = ELFFile(f)
        problems = []
        if elf.elfclass != 32:
            problems.append(f"ELF class {elf.elfclass} (need 32-bit)")
        if elf.little_endian:
            problems.append("little-endian (need big-endian)")
        if elf["e_machine"] != "EM_PPC":
            problems.append(f"machine {elf['e_machine']} (need EM_PPC, 32-bit PowerPC)")
        if elf["e_type"] != "ET_EXEC":
            problems.append(f"type {elf['e_type']} (need an executable, ET_EXEC)")
        if problems:
            raise ImageError(f"{path}: not a guest image: {'; '.join(problems)}")

        segments = []
        entry = elf["e_entry"]
        for seg in elf.iter_segments():
            if seg["p_type"] != "PT_LOAD" or seg["p_memsz"] == 0:
                continue
            # QEMU's load_elf: loaded at the physical address; an entry inside an executable segment
            # linked elsewhere (vmlinux: 0xC0000000 -> 0) is moved with it
            if (seg["p_vaddr"] != seg["p_paddr"] and seg["p_flags"] & P_FLAGS.PF_X
                    and seg["p_vaddr"] <= elf["e_entry"] < seg["p_vaddr"] + seg["p_filesz"]):
                entry = elf["e_entry"] - seg["p_vaddr"] + seg["p_paddr"]
            data = seg.data()
            if seg["p_filesz"] > seg["p_memsz"]:
                raise ImageError(f"{path}: PT_LOAD at {seg['p_vaddr']:#x} has filesz > memsz")
            segments.append(Segment(seg["p_paddr"], bytes(data), seg["p_memsz"], seg["p_flags"]))
        if not segments:
            raise ImageError(f"{path}: no PT_LOAD segments")
        segments.sort(key=lambda s: s.addr)
        for a, b in zip(segments, segments[1:]):
            if a.end > b.addr:
                raise ImageError(f"{path}: PT_LOAD segments overlap at {b.addr:#x}")

        symbols: dict[str, int] = {}
        sizes: dict[str, int] = {}
        globals_: set[str] = set()
        constants: set[str] = set()
        symtab = elf.get_section_by_name(".symtab")
        if isinstance(symtab, SymbolTableSection):
            for sym in symtab.iter_symbols():
                name = sym.name
                if (not name or sym["st_shndx"] == "SHN_UNDEF"
                        or sym["st_info"]["type"] in ("STT_FILE", "STT_SECTION")):
                    continue
                is_global = sym["st_info"]["bind"] in ("STB_GLOBAL", "STB_WEAK")
                if name in symbols and (name in globals_ or not is_global):
                    continue  # a global wins over a local of the same name; first local wins
                symbols[name] = sym["st_value"]
                sizes[name] = sym["st_size"]
                (constants.add if sym["st_shndx"] == "SHN_ABS" else constants.discard)(name)
                if is_global:
                    globals_.add(name)
        return cls(path, entry, segments, symbols, sizes, frozenset(constants))

    # -- symbols ----------------------------------------------------------------------------------

    def symbol_kind(self, name: str) -> str:
        """`code` (in an executable segment), `data` (in another), `const` (an absolute assembler
        constant) or `other` (an address outside every segment)."""
        if name in self.constants:
            return "const"
        addr = self.symbols[name]
        seg = next((s for s in self.segments if s.addr <= addr < max(s.end, s.addr + 1)), None)
        return "other" if seg is None else "code" if seg.executable else "data"

    def symbol(self, name: str) -> int:
        try:
            return self.symbols[name]
        except KeyError:
            near = difflib.get_close_matches(name, list(self.symbols), n=5, cutoff=0.5)
            hint = f"; near matches: {', '.join(near)}" if near else ""
            raise UnknownSymbolError(f"{self.path.name}: no symbol {name!r}{hint}") from None

    def __contains__(self, name: str) -> bool:
        return name in self.symbols

    def resolve(self, where: str | int) -> int:
        """An address from a symbol ("bp_target"), "symbol+offset", an int, or "0x..."/decimal."""
        if isinstance(where, bool):
            raise ImageError(f"cannot resolve {where!r} to an address")
        if isinstance(where, int):
            addr = where
        elif isinstance(where, str):
            text = where.strip()
            base, sep, off = text.partition("+")
            base = base.strip()
            try:
                addr = int(base, 0)
            except ValueError:
                addr = self.symbol(base)
            if sep:
                try:
                    addr += int(off.strip(), 0)
                except ValueError:
                    raise ImageError(f"bad offset in {where!r}") from None
        else:
            raise ImageError(f"cannot resolve {where!r} (need a symbol name, int or '0x...')")
        if not 0 <= addr <= 0xFFFFFFFF:
            raise ImageError(f"address {addr:#x} from {where!r} is not a 32-bit address")
        return addr

    def symbol_at(self, addr: int) -> str | None:
        """'name+0xoff' of the closest symbol at or below *addr* (for messages), or None."""
        best = None
        for name, value in self.symbols.items():
            if value <= addr and (best is None or value > best[1]
                                  or (value == best[1] and name < best[0])):
                best = (name, value)
        if best is None:
            return None
        off = addr - best[1]
        return best[0] if off == 0 else f"{best[0]}+{off:#x}"

    # -- contents ---------------------------------------------------------------------------------

    def read(self, addr: int, n: int) -> bytes:
        """Bytes of the loaded image (bss reads as zero)."""
        for seg in self.segments:
            if seg.addr <= addr and addr + n <= seg.end:
                data = seg.data[addr - seg.addr:addr - seg.addr + n]
                return data + bytes(n - len(data))
        raise ImageError(f"{self.path.name}: {n} byte(s) at {addr:#x} are not inside one segment")

    def read_word(self, addr: int) -> int:
        return struct.unpack(">I", self.read(addr, 4))[0]

    @property
    def code_segments(self) -> tuple[Segment, ...]:
        return tuple(s for s in self.segments if s.executable)

    def code_ranges(self) -> list[tuple[int, int]]:
        """[start, end) of every executable segment."""
        return [(s.addr, s.addr + len(s.data)) for s in self.code_segments]

    def code_bytes(self) -> list[tuple[int, bytes]]:
        """(addr, bytes) of every executable segment: what guest RAM must hold for the
        "guest code byte-identical to the image" invariant."""
        return [(s.addr, s.data) for s in self.code_segments]

    def code_diff(self, ram) -> list[tuple[int, int, int]]:
        """Words of executable segments that differ in *ram*: [(addr, image_word, ram_word)]."""
        out = []
        for addr, data in self.code_bytes():
            now = ram.read(addr, len(data))
            if now == data:
                continue
            for off in range(0, len(data) - len(data) % 4, 4):
                if now[off:off + 4] != data[off:off + 4]:
                    out.append((addr + off, int.from_bytes(data[off:off + 4], "big"),
                                int.from_bytes(now[off:off + 4], "big")))
        return out

    @property
    def pcpu_stride(self) -> int:
        """Bytes between two vCPUs' words of a per-vCPU array: the guest's absolute symbol
        `pcpu_stride` (the project's programs keep per-vCPU data a page apart, so no two vCPUs share a
        cache line), or 4 (adjacent words) for a guest that does not export it."""
        return self.symbols.get("pcpu_stride", 4)

    def percpu_address(self, name: str, vcpu: int) -> int:
        """Address of vCPU `vcpu`'s word of the per-vCPU array `name`."""
        return self.symbol(name) + self.pcpu_stride * vcpu

    def read_counters(self, ram, vcpus: int) -> dict[str, list[int]]:
        """The guest's own per-vCPU counters that this image exports, read from `ram` by symbol."""
        return {n: [ram.read_word(self.percpu_address(n, i)) for i in range(vcpus)]
                for n in GUEST_COUNTERS if n in self.symbols}

    def bug_table(self) -> list[BugEntry]:
        """Entries of ``__bug_table`` .. ``__bug_table_end``; [] if the image has none."""
        if BUG_TABLE_START not in self.symbols:
            return []
        start = self.symbols[BUG_TABLE_START]
        end = self.symbol(BUG_TABLE_END)
        if end < start or (end - start) % BUG_ENTRY_SIZE:
            raise ImageError(f"{self.path.name}: malformed bug table {start:#x}..{end:#x}")
        raw = self.read(start, end - start) if end > start else b""
        entries = []
        for addr, flags in struct.iter_unpack(">II", raw):
            try:
                kind = BugKind(flags)
            except ValueError:
                kind = flags
            entries.append(BugEntry(addr, kind))
        return entries

    # -- loading into RAM -------------------------------------------------------------------------

    def load_into(self, ram) -> None:
        """Write every PT_LOAD segment into *ram* (a GuestRAM), zero-filling up to memsz."""
        for seg in self.segments:
            if seg.end > ram.size:
                raise ImageError(f"{self.path.name}: segment {seg.addr:#x}..{seg.end:#x} does not fit "
                                 f"in guest RAM of {ram.size:#x} bytes")
        for seg in self.segments:
            ram.write(seg.addr, seg.data)
            if seg.memsz > len(seg.data):
                ram.bytes[seg.addr + len(seg.data):seg.end] = 0

    def __repr__(self) -> str:
        return (f"GuestImage({str(self.path)!r}, entry={self.entry:#x}, "
                f"segments={[(hex(s.addr), s.memsz) for s in self.segments]})")
