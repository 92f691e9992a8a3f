"""Flattened device tree (devicetree-specification v0.4, chapter 5): a writer and a reader, pure Python.

The writer is built like libfdt's read-write API, which is how QEMU builds its device trees
(``qemu_fdt_add_subnode`` / ``qemu_fdt_setprop*``), so a tree built by the same sequence of calls
serialises to the same bytes:

- a new property goes *first* in its node's property list and a new subnode goes *first* among its
  parent's children (libfdt inserts right after the node's name, resp. right after its properties);
  setting an existing property replaces its value in place;
- the strings block grows in the order names are first used, and a name that already occurs in the
  block, also as the tail of a longer name ("stdout-path" inside "linux,stdout-path"), is reused
  (libfdt's ``fdt_find_add_string_``);
- the layout is libfdt's ``fdt_create``: header, memory reservation map at the header size rounded
  up to 16 (0x30), structure block, strings block, zero padding up to ``totalsize``.

The reader decodes any valid blob (version 16 or 17) back into the same ``Node`` tree, keeping the
order of properties and children and the strings block as found; NOP tags are skipped.

Invariants: property values are bytes; names are str (ASCII); ``Node.props`` is an ordered dict; a
tree is only ever mutated through ``DeviceTree``/``Node`` methods, which keep the strings block in
step.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Iterator

__all__ = ["FDT_MAGIC", "Node", "DeviceTree", "FdtError", "cells", "u64", "string", "strings",
           "parse", "to_dts"]

FDT_MAGIC = 0xD00DFEED
FDT_BEGIN_NODE, FDT_END_NODE, FDT_PROP, FDT_NOP, FDT_END = 1, 2, 3, 4, 9
HEADER_SIZE = 40                 # struct fdt_header, version 17
RSV_ENTRY_SIZE = 16              # struct fdt_reserve_entry
VERSION, LAST_COMP_VERSION = 17, 16


class FdtError(ValueError):
    """A blob that is not a valid flattened device tree, or a path that does not exist."""


# -- property value encoders (what qemu_fdt_setprop_cell(s) / _u64 / _string produce) -----------------

def cells(*values: int) -> bytes:
    """Big-endian 32-bit cells."""
    return b"".join((v & 0xFFFFFFFF).to_bytes(4, "big") for v in values)


def u64(*values: int) -> bytes:
    """Big-endian 64-bit values (``qemu_fdt_setprop_u64``)."""
    return b"".join((v & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big") for v in values)


def string(s: str) -> bytes:
    """A NUL-terminated string."""
    return s.encode() + b"\0"


def strings(*items: str) -> bytes:
    """A string list ("qemu,platform\\0simple-bus\\0")."""
    return b"".join(string(s) for s in items)


def _align(n: int, a: int = 4) -> int:
    return (n + a - 1) & ~(a - 1)


@dataclass
class Node:
    """One node: its name (unit address included), properties in blob order, children in blob order."""

    name: str
    props: dict[str, bytes] = field(default_factory=dict)
    children: list["Node"] = field(default_factory=list)

    def child(self, name: str) -> "Node":
        for c in self.children:
            if c.name == name:
                return c
        raise FdtError(f"no node {name!r} under {self.name or '/'!r}")

    def walk(self, path: str = "") -> Iterator[tuple[str, "Node"]]:
        """Every node depth-first in blob order, with its full path ("/" for the root)."""
        yield (path or "/"), self
        for c in self.children:
            yield from c.walk(f"{path}/{c.name}")

    # value accessors for tests and for whoever reads a tree
    def u32(self, prop: str) -> int:
        return int.from_bytes(self.props[prop][:4], "big")

    def cells(self, prop: str) -> list[int]:
        v = self.props[prop]
        return [int.from_bytes(v[i:i + 4], "big") for i in range(0, len(v) - len(v) % 4, 4)]

    def text(self, prop: str) -> str:
        return self.props[prop].split(b"\0", 1)[0].decode()

    def texts(self, prop: str) -> list[str]:
        return [s.decode() for s in self.props[prop].split(b"\0")[:-1]]


class DeviceTree:
    """A device tree being built (libfdt rw semantics, see the module comment) or one decoded by
    ``parse``. Paths are absolute ("/soc@fe0000000/serial@4500")."""

    def __init__(self, boot_cpuid: int = 0, phandle_start: int = 0x8000):
        self.root = Node("")
        self.reservations: list[tuple[int, int]] = []      # (address, size)
        self.boot_cpuid = boot_cpuid
        self._strtab = bytearray()
        self._next_phandle = phandle_start

    # -- building ----------------------------------------------------------------------------------
    def node(self, path: str) -> Node:
        n = self.root
        for part in (p for p in path.split("/") if p):
            n = n.child(part)
        return n

    def exists(self, path: str) -> bool:
        try:
            self.node(path)
            return True
        except FdtError:
            return False

    def add_subnode(self, path: str) -> Node:
        parent_path, _, name = path.rstrip("/").rpartition("/")
        parent = self.node(parent_path)
        if any(c.name == name for c in parent.children):
            raise FdtError(f"node {path!r} exists")
        n = Node(name)
        parent.children.insert(0, n)
        return n

    def _name_offset(self, name: str) -> int:
        key = name.encode() + b"\0"
        at = self._strtab.find(key)
        if at < 0:
            at = len(self._strtab)
            self._strtab += key
        return at

    def setprop(self, path: str, name: str, value: bytes = b"") -> None:
        n = self.node(path)
        self._name_offset(name)
        if name in n.props:
            n.props[name] = bytes(value)
        else:
            n.props = {name: bytes(value), **n.props}

    def setprop_cells(self, path: str, name: str, *values: int) -> None:
        self.setprop(path, name, cells(*values))

    def setprop_u64(self, path: str, name: str, value: int) -> None:
        self.setprop(path, name, u64(value))

    def setprop_string(self, path: str, name: str, value: str) -> None:
        self.setprop(path, name, string(value))

    def alloc_phandle(self) -> int:
        p = self._next_phandle
        self._next_phandle += 1
        return p

    def get_phandle(self, path: str) -> int:
        props = self.node(path).props
        for key in ("phandle", "linux,phandle"):
            if key in props:
                return int.from_bytes(props[key][:4], "big")
        raise FdtError(f"node {path!r} has no phandle")

    def setprop_phandle(self, path: str, name: str, target: str) -> None:
        self.setprop_cells(path, name, self.get_phandle(target))

    @property
    def strings_block(self) -> bytes:
        return bytes(self._strtab)

    # -- serialising -------------------------------------------------------------------------------
    def _struct_block(self) -> bytes:
        out = bytearray()

        def emit(n: Node) -> None:
            name = n.name.encode() + b"\0"
            out.extend(struct.pack(">I", FDT_BEGIN_NODE))
            out.extend(name.ljust(_align(len(name)), b"\0"))
            for pname, value in n.props.items():
                out.extend(struct.pack(">III", FDT_PROP, len(value), self._name_offset(pname)))
                out.extend(value.ljust(_align(len(value)), b"\0"))
            for c in n.children:
                emit(c)
            out.extend(struct.pack(">I", FDT_END_NODE))

        emit(self.root)
        out.extend(struct.pack(">I", FDT_END))
        return bytes(out)

    def to_bytes(self, totalsize: int | None = None) -> bytes:
        """The blob; ``totalsize`` pads it with zeros (QEMU's trees are 1 MiB: FDT_MAX_SIZE)."""
        dt_struct = self._struct_block()
        dt_strings = self.strings_block
        off_rsv = _align(HEADER_SIZE, RSV_ENTRY_SIZE)
        rsv = b"".join(struct.pack(">QQ", a, s) for a, s in self.reservations) + bytes(RSV_ENTRY_SIZE)
        off_struct = off_rsv + len(rsv)
        off_strings = off_struct + len(dt_struct)
        used = off_strings + len(dt_strings)
        size = used if totalsize is None else totalsize
        if size < used:
            raise FdtError(f"device tree needs {used} bytes, more than totalsize {size}")
        header = struct.pack(">10I", FDT_MAGIC, size, off_struct, off_strings, off_rsv, VERSION,
                             LAST_COMP_VERSION, self.boot_cpuid, len(dt_strings), len(dt_struct))
        blob = header.ljust(off_rsv, b"\0") + rsv + dt_struct + dt_strings
        return blob.ljust(size, b"\0")


def parse(blob: bytes) -> DeviceTree:
    """Decode a blob into a ``DeviceTree`` (raises ``FdtError`` on anything malformed)."""
    if len(blob) < HEADER_SIZE:
        raise FdtError("blob shorter than an FDT header")
    magic, totalsize, off_struct, off_strings, off_rsv, version, _last = struct.unpack_from(">7I", blob)
    if magic != FDT_MAGIC:
        raise FdtError(f"bad magic {magic:#x}")
    if version < 16:
        raise FdtError(f"unsupported FDT version {version}")
    if totalsize > len(blob):
        raise FdtError(f"totalsize {totalsize} beyond the {len(blob)} bytes given")
    boot_cpuid, size_strings = struct.unpack_from(">II", blob, 28)
    size_struct = struct.unpack_from(">I", blob, 36)[0] if version >= 17 else totalsize - off_struct
    dt = DeviceTree(boot_cpuid=boot_cpuid)
    dt._strtab = bytearray(blob[off_strings:off_strings + size_strings])

    pos = off_rsv
    while True:
        addr, size = struct.unpack_from(">QQ", blob, pos)
        pos += RSV_ENTRY_SIZE
        if addr == 0 and size == 0:
            break
        dt.reservations.append((addr, size))

    def name_at(off: int) -> str:
        if off >= size_strings:
            raise FdtError(f"property name offset {off} beyond the strings block")
        end = blob.index(b"\0", off_strings + off)
        return blob[off_strings + off:end].decode()

    pos, end = off_struct, off_struct + size_struct
    stack: list[Node] = []
    root: Node | None = None
    while pos < end:
        (tag,) = struct.unpack_from(">I", blob, pos)
        pos += 4
        if tag == FDT_BEGIN_NODE:
            z = blob.index(b"\0", pos)
            n = Node(blob[pos:z].decode())
            pos = _align(z + 1)
            if stack:
                stack[-1].children.append(n)
            elif root is None:
                root = n
            else:
                raise FdtError("a second root node")
            stack.append(n)
        elif tag == FDT_PROP:
            if not stack:
                raise FdtError("property outside any node")
            length, nameoff = struct.unpack_from(">II", blob, pos)
            pos += 8
            stack[-1].props[name_at(nameoff)] = bytes(blob[pos:pos + length])
            pos = _align(pos + length)
        elif tag == FDT_END_NODE:
            if not stack:
                raise FdtError("unbalanced FDT_END_NODE")
            stack.pop()
        elif tag == FDT_NOP:
            continue
        elif tag == FDT_END:
            break
        else:
            raise FdtError(f"unknown tag {tag:#x} at {pos - 4:#x}")
    if root is None or stack:
        raise FdtError("structure block without a complete root node")
    dt.root = root
    return dt


def _format_value(v: bytes) -> str:
    if not v:
        return ""
    parts = v.split(b"\0")
    if v.endswith(b"\0") and all(p and all(32 <= c < 127 for c in p) for p in parts[:-1]):
        return " = " + ", ".join(f'"{p.decode()}"' for p in parts[:-1])
    if len(v) % 4 == 0:
        return " = <" + " ".join(f"{int.from_bytes(v[i:i + 4], 'big'):#x}" for i in range(0, len(v), 4)) + ">"
    return " = [" + " ".join(f"{c:02x}" for c in v) + "]"


def to_dts(node: Node, indent: int = 0) -> str:
    """A dtc-like text rendering (for diffs in test failures and reports)."""
    pad = "\t" * indent
    lines = [f"{pad}{node.name or '/'} {{"]
    lines += [f"{pad}\t{k}{_format_value(v)};" for k, v in node.props.items()]
    lines += [to_dts(c, indent + 1) for c in node.children]
    lines.append(f"{pad}}};")
    return "\n".join(lines)
