"""cosim.hw.fdt: the writer follows libfdt's read-write semantics (QEMU builds its trees with them), the
reader decodes any blob back into the same tree."""
import struct

import pytest

from cosim.hw import fdt


def build():
    dt = fdt.DeviceTree(phandle_start=0x10)
    dt.setprop_cells("/", "#address-cells", 2)
    dt.add_subnode("/memory")
    dt.setprop_string("/memory", "device_type", "memory")
    dt.setprop("/memory", "reg", fdt.u64(0, 256 << 20))
    dt.add_subnode("/chosen")
    dt.setprop_string("/chosen", "linux,stdout-path", "/serial")
    dt.setprop_string("/chosen", "stdout-path", "/serial")
    dt.add_subnode("/pic")
    ph = dt.alloc_phandle()
    dt.setprop_cells("/pic", "phandle", ph)
    dt.setprop("/pic", "interrupt-controller")
    dt.add_subnode("/pic/child")
    dt.setprop_phandle("/memory", "interrupt-parent", "/pic")
    dt.reservations.append((0x1000, 0x2000))
    return dt


def test_libfdt_insertion_order_and_string_reuse():
    dt = build()
    # new subnodes and new properties go first, as libfdt inserts them
    assert [c.name for c in dt.root.children] == ["pic", "chosen", "memory"]
    assert list(dt.node("/chosen").props) == ["stdout-path", "linux,stdout-path"]
    assert list(dt.node("/memory").props) == ["interrupt-parent", "reg", "device_type"]
    # "stdout-path" is the tail of "linux,stdout-path": libfdt reuses it, no new string
    assert dt.strings_block == (b"#address-cells\0device_type\0reg\0linux,stdout-path\0phandle\0"
                                b"interrupt-controller\0interrupt-parent\0")
    # setting an existing property replaces it in place
    dt.setprop_string("/memory", "device_type", "ram")
    assert list(dt.node("/memory").props) == ["interrupt-parent", "reg", "device_type"]
    assert dt.node("/memory").text("device_type") == "ram"
    assert dt.node("/memory").u32("interrupt-parent") == 0x10


def test_round_trip_bytes_and_tree():
    dt = build()
    blob = dt.to_bytes()
    magic, total, off_struct, off_strings, off_rsv, version, last, cpuid, sz_str, sz_struct = \
        struct.unpack_from(">10I", blob)
    assert (magic, version, last, cpuid) == (fdt.FDT_MAGIC, 17, 16, 0)
    assert off_rsv == 0x30 and total == len(blob)          # libfdt's fdt_create layout
    assert off_struct == 0x30 + 2 * 16 and off_strings == off_struct + sz_struct
    back = fdt.parse(blob)
    assert fdt.to_dts(back.root) == fdt.to_dts(dt.root)
    assert back.reservations == [(0x1000, 0x2000)]
    assert back.strings_block == dt.strings_block
    assert back.to_bytes() == blob
    assert len(dt.to_bytes(0x10000)) == 0x10000 and fdt.parse(dt.to_bytes(0x10000)).to_bytes() == blob


def test_accessors_and_walk():
    dt = build()
    n = dt.node("/memory")
    assert n.cells("reg") == [0, 0, 0, 256 << 20]
    assert [p for p, _ in dt.root.walk()] == ["/", "/pic", "/pic/child", "/chosen", "/memory"]
    assert fdt.strings("a", "bc") == b"a\0bc\0"
    assert fdt.Node("x", {"c": fdt.strings("a", "bc")}).texts("c") == ["a", "bc"]
    assert dt.get_phandle("/pic") == 0x10 and dt.alloc_phandle() == 0x11
    assert dt.exists("/pic/child") and not dt.exists("/nope")


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b"\0\0\0\0" + b[4:], "bad magic"),
    (lambda b: b[:20], "shorter"),
    (lambda b: b[:200], "beyond"),
    (lambda b: b[:0x50] + b"\0\0\0\x07" + b[0x54:], "unknown tag 0x7"),   # the root's BEGIN_NODE
])
def test_malformed_blobs_are_refused(mutate, message):
    blob = build().to_bytes()
    with pytest.raises(fdt.FdtError, match=message):
        fdt.parse(mutate(blob))


def test_errors_name_the_problem():
    dt = build()
    with pytest.raises(fdt.FdtError, match="exists"):
        dt.add_subnode("/pic")
    with pytest.raises(fdt.FdtError, match="no node"):
        dt.setprop("/nope", "x")
    with pytest.raises(fdt.FdtError, match="no phandle"):
        dt.get_phandle("/chosen")
    with pytest.raises(fdt.FdtError, match="totalsize"):
        dt.to_bytes(16)


def test_nop_tags_are_skipped():
    blob = bytearray(build().to_bytes())
    off_struct = struct.unpack_from(">I", blob, 8)[0]
    # overwrite the root's first property (#address-cells: tag, len, nameoff, 4 bytes) with NOPs
    name_end = off_struct + 8                      # BEGIN_NODE + "" padded to 4
    assert struct.unpack_from(">I", blob, name_end)[0] == 3
    for i in range(4):
        struct.pack_into(">I", blob, name_end + 4 * i, 4)
    t = fdt.parse(bytes(blob))
    assert "#address-cells" not in t.root.props and t.node("/pic/child") is not None
