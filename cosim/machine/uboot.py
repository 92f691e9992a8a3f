"""U-Boot's command table, read from its ELF (Debian's build is stripped: no symbols).

U-Boot keeps its commands in the linker list `__u_boot_list` as `struct cmd_tbl { char *name; int
maxargs; int (*cmd_rep)(...); int (*cmd)(...); char *usage; char *help; int (*complete)(...); }`
(include/command.h, 2023.01). `commands` finds every entry whose name is a string in the image and
whose handler lies in .text: the link-time address of each command's handler (`do_version`, ...). At
run time U-Boot has relocated itself: add the relocation offset that `bdinfo` prints (`reloc off`;
0x0F090000 for Debian's 2023.01 with 256 MiB on the ppce500 board) to plant a breakpoint there.
"""
from __future__ import annotations

import struct
from pathlib import Path

from elftools.elf.elffile import ELFFile

ENTRY = struct.Struct(">7I")
RELOC_OFF_256M = 0x0F090000    # measured: bdinfo's `reloc off` on the ppce500 board with 256 MiB
DEC_VECTOR_256M = 0x0FF909C0   # measured: IVPR | IVOR10 as the relocated U-Boot sets them (its decrementer
                               # handler's first instruction, `mtsprg 0,r20`); tests/test_uboot_timer.py
                               # reads both SPRs through gdb and checks this


def commands(path: str | Path) -> dict[str, int]:
    """Command name -> link-time address of its handler, in table order."""
    with open(path, "rb") as f:
        elf = ELFFile(f)
        sections = [(s["sh_addr"], s.data()) for s in elf.iter_sections()
                    if s["sh_type"] == "SHT_PROGBITS" and s["sh_addr"]]
        table = elf.get_section_by_name("__u_boot_list")
        text = elf.get_section_by_name(".text")
        if table is None or text is None:
            return {}
        data, lo, hi = table.data(), text["sh_addr"], text["sh_addr"] + text["sh_size"]

    def cstr(addr: int) -> str | None:
        for base, blob in sections:
            if base <= addr < base + len(blob):
                end = blob.find(b"\0", addr - base)
                raw = blob[addr - base:end if end >= 0 else None]
                return raw.decode("latin-1") if 0 < len(raw) < 32 and raw.isascii() else None
        return None

    out: dict[str, int] = {}
    for off in range(0, len(data) - ENTRY.size + 1, 4):
        name, maxargs, rep, cmd, _usage, _help, _complete = ENTRY.unpack_from(data, off)
        if lo <= cmd < hi and 0 < maxargs <= 256 and (rep == 0 or lo <= rep < hi):
            n = cstr(name)
            if n and n.isprintable() and n not in out:
                out[n] = cmd
    return out
