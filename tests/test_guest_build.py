"""Guest ELFs: committed builds are fresh and reproducible, and honour the documented contract
(symbols, bug table, breakpoint targets, vectors, the SPRs the guests touch)."""

import importlib.util
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import capstone
import pytest

from cosim.machine.image import BugKind, GuestImage

REPO = Path(__file__).resolve().parents[1]
GUESTS = REPO / "guests"
PROGRAMS = ["loop", "warn_storm", "smp_workers", "selfcheck", "guest_iac", "atomics"]
STANDALONE = ["irq_table"]   # own vectors, no mini kernel: not bound by the kernel's symbol contract
MAX_VCPUS = 16

PER_VCPU = ["cnt_warn", "cnt_bug", "cnt_bad_prog", "bad_prog_srr0", "bad_prog_esr", "bug_srr0",
            "cnt_syscall", "last_sc_srr0", "cnt_debug", "last_dbsr", "last_debug_pc", "cnt_iter",
            "cnt_hits", "cnt_mismatch", "unexpected_ivor", "unexpected_srr0", "exit_code"]
COMMON_CODE = ["_start", "_vectors", "program_vector", "syscall_vector", "debug_vector_e500v2",
               "debug_vector_e500mc", "hv_priv_vector", "kernel_halt", "main", "debug_hook"]
SPECIFIC = {
    "loop": ["bp_target", "loop_body_start", "loop_body_end"],
    "warn_storm": ["bp_target_a", "bp_target_b", "warns_per_iter"],
    "smp_workers": ["bp_target", "work_data", "work_result"],
    "selfcheck": ["bp_target", "check_begin", "check_end", "checksum", "boot_checksum",
                  "last_checksum"],
    "guest_iac": ["bp_target", "loop_body_start", "loop_body_end"],
    "atomics": ["bp_target", "atomic_counter", "spin_lock", "guarded_a", "guarded_b", "atomic_inc_site",
                "lock_site"],
}
BP_TARGETS = {"loop": ["bp_target"], "warn_storm": ["bp_target_a", "bp_target_b"],
              "smp_workers": ["bp_target"], "selfcheck": ["bp_target"], "guest_iac": ["bp_target"],
              "atomics": ["bp_target"]}

# SPRs the guests may touch (guests/README.md, "Privileged instructions")
SPR_READ = {286, 287, 272, 274, 275, 26, 62, 58, 574, 304, 308}
SPR_WRITE = ({272, 274, 275, 26, 63, 304, 308, 312} | set(range(400, 416)) | set(range(528, 534))
             | {434, 435, 436})

have_cross = shutil.which("powerpc-linux-gnu-as") and shutil.which("powerpc-linux-gnu-ld")


def load_expected():
    spec = importlib.util.spec_from_file_location("guest_expected", GUESTS / "expected.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def images():
    return {name: GuestImage.load(GUESTS / f"{name}.elf") for name in PROGRAMS}


@pytest.fixture(scope="module")
def md():
    return capstone.Cs(capstone.CS_ARCH_PPC, capstone.CS_MODE_32 | capstone.CS_MODE_BIG_ENDIAN)


def decode(md, word):
    insns = list(md.disasm(struct.pack(">I", word), 0))
    assert len(insns) == 1, f"{word:#010x} does not decode"
    return insns[0]


# --- build -------------------------------------------------------------------------------------

@pytest.mark.skipif(not have_cross, reason="powerpc-linux-gnu-as/-ld not installed")
def test_committed_elfs_are_fresh(tmp_path):
    proc = subprocess.run([sys.executable, str(GUESTS / "build.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    stale = [n for n in PROGRAMS + STANDALONE
             if (tmp_path / f"{n}.elf").read_bytes() != (GUESTS / f"{n}.elf").read_bytes()]
    assert not stale, (f"committed guest ELFs are stale: {stale}; "
                       "run `python guests/build.py` and commit the ELFs")


@pytest.mark.skipif(not have_cross, reason="powerpc-linux-gnu-as/-ld not installed")
def test_build_is_reproducible(tmp_path):
    for d in ("a", "b"):
        proc = subprocess.run([sys.executable, str(GUESTS / "build.py"), "--out", str(tmp_path / d),
                               "loop"], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "a/loop.elf").read_bytes() == (tmp_path / "b/loop.elf").read_bytes()


@pytest.mark.skipif(not have_cross, reason="powerpc-linux-gnu-as/-ld not installed")
def test_check_mode():
    proc = subprocess.run([sys.executable, str(GUESTS / "build.py"), "--check"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr + proc.stdout


# --- symbols -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", PROGRAMS)
def test_documented_symbols(images, name):
    im = images[name]
    for sym in PER_VCPU:
        assert im.symbol_sizes[sym] == im.pcpu_stride * MAX_VCPUS == 4096 * MAX_VCPUS, sym
        assert im.symbol(sym) % 4 == 0
    for sym in COMMON_CODE + SPECIFIC[name] + ["cfg_iterations", "warn_log", "guest_abi_version",
                                                 "__bug_table", "__bug_table_end"]:
        assert sym in im, f"{name}: missing {sym}"
    assert im.symbol_sizes["warn_log"] == 4 * MAX_VCPUS * 256
    assert im.read_word(im.symbol("cfg_iterations")) == 1000
    assert im.read_word(im.symbol("guest_abi_version")) == 1
    for sym in PER_VCPU:
        init = 0xFFFFFFFF if sym in ("exit_code", "unexpected_ivor") else 0
        assert [im.read_word(im.percpu_address(sym, i)) for i in range(MAX_VCPUS)] == [init] * 16, sym
        assert im.symbol(sym) % 4096 == 0, f"{sym}: per-vCPU arrays start on a page"
    assert im.entry == im.symbol("_start")


def test_program_specific_layout(images):
    ws = images["warn_storm"]
    assert ws.read_word(ws.symbol("warns_per_iter")) == 3
    kinds = [e.kind for e in ws.bug_table()]
    assert kinds.count(BugKind.WARN) == 4 and kinds.count(BugKind.BUG) == 1
    sw = images["smp_workers"]
    assert sw.symbol_sizes["work_data"] == MAX_VCPUS * 4096
    assert sw.symbol_sizes["work_result"] == MAX_VCPUS * 4096
    sc = images["selfcheck"]
    assert sc.symbol("check_begin") <= sc.symbol("bp_target") < sc.symbol("check_end")
    assert sc.symbol("check_begin") <= sc.symbol("main") < sc.symbol("check_end")
    assert sc.symbol("check_begin") % 4 == 0 and sc.symbol("check_end") % 4 == 0
    for name in ("loop", "guest_iac"):
        im = images[name]
        start, end = im.symbol("loop_body_start"), im.symbol("loop_body_end")
        main = im.symbol("main")
        assert main < start < end <= main + im.symbol_sizes["main"]
    # guest_iac overrides the kernel's weak debug_hook; the others keep the no-op (a bare blr)
    gi = images["guest_iac"]
    assert gi.symbol("debug_hook") > gi.symbol("main")
    assert images["loop"].read_word(images["loop"].symbol("debug_hook")) == 0x4E800020


# --- instructions ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", PROGRAMS)
def test_bug_table_points_at_traps(images, md, name):
    im = images[name]
    (lo, hi), = im.code_ranges()
    for entry in im.bug_table():
        assert lo <= entry.addr < hi and entry.addr % 4 == 0
        insn = decode(md, im.read_word(entry.addr))
        assert insn.mnemonic.startswith("tw") or insn.mnemonic == "trap", (
            f"{name}: bug table entry {entry} is {insn.mnemonic} {insn.op_str}")
        assert entry.kind in (BugKind.WARN, BugKind.BUG)


@pytest.mark.parametrize("name", PROGRAMS)
def test_bp_targets_first_instruction_harmless(images, md, name):
    im = images[name]
    (lo, hi), = im.code_ranges()
    for sym in BP_TARGETS[name]:
        addr = im.symbol(sym)
        assert addr % 4 == 0 and lo <= addr < hi
        insn = decode(md, im.read_word(addr))
        assert (insn.mnemonic, insn.op_str) in (("li", "r0, 0"), ("nop", "")), (
            f"{name}: {sym} starts with {insn.mnemonic} {insn.op_str}")
        # the target counts cnt_hits itself, after its first instruction
        body = [decode(md, im.read_word(addr + 4 * i)) for i in range(1, 7)]
        assert body[-1].mnemonic == "blr"


@pytest.mark.parametrize("name", PROGRAMS)
def test_all_code_decodes_and_uses_only_documented_sprs(images, md, name):
    im = images[name]
    (addr, code), = im.code_bytes()
    read, written = set(), set()
    for off in range(0, len(code), 4):
        word = int.from_bytes(code[off:off + 4], "big")
        insn = decode(md, word)
        assert insn.mnemonic not in ("tlbwe", "wrtee", "wrteei", "mtdcr", "mfdcr"), insn.mnemonic
        assert not insn.mnemonic.startswith(("ev", "lf", "stf", "fm", "fa")), insn.mnemonic
        op, xo = word >> 26, (word >> 1) & 0x3FF
        if op == 31 and xo in (339, 467):
            spr = ((word >> 16) & 0x1F) | (((word >> 11) & 0x1F) << 5)
            (read if xo == 339 else written).add(spr)
    read.discard(1)      # mfxer/mtxer: user-level
    written.discard(1)
    read -= {8, 9}       # mflr/mfctr are mfspr 8/9
    written -= {8, 9}
    assert read <= SPR_READ, sorted(read - SPR_READ)
    assert written <= SPR_WRITE, sorted(written - SPR_WRITE)


@pytest.mark.parametrize("name", PROGRAMS)
def test_vectors(images, name):
    im = images[name]
    ivpr = im.symbol("_vectors")
    assert ivpr % 0x10000 == 0
    for sym in ("program_vector", "syscall_vector", "debug_vector_e500v2", "debug_vector_e500mc",
                "hv_priv_vector"):
        off = im.symbol(sym) - ivpr
        assert 0 <= off < 0x10000 and off % 16 == 0, sym
    # the handlers end in the right return instruction
    def rf_after(sym, word):
        a = im.symbol(sym)
        return any(im.read_word(a + 4 * i) == word for i in range(128))
    assert rf_after("program_vector", 0x4C000064)        # rfi
    assert rf_after("syscall_vector", 0x4C000064)        # rfi
    assert rf_after("debug_vector_e500v2", 0x4C000066)   # rfci
    assert rf_after("debug_vector_e500mc", 0x4C00004E)   # rfdi
    # HALT is the ePAPR hypercall sc 1 with r11 = 1
    halt = im.symbol("kernel_halt")
    words = [im.read_word(halt + 4 * i) for i in range(8)]
    i = words.index(0x44000022)
    assert words[i - 1] == 0x39600001  # li r11,1


def test_expected_reference():
    exp = load_expected()
    # reference values cross-checked against a throwaway unicorn run of smp_workers (7 iterations)
    assert [exp.smp_workers(p, 7)[0] for p in range(4)] == [1312813787, 264492729, 3151501158,
                                                           2682283803]
    assert exp.smp_workers(0, 0) == (0, list(range(256)))
    assert exp.counters("warn_storm", 10)["cnt_warn"] == 30
    assert exp.counters("guest_iac", 10)["cnt_debug"] == 20
    assert exp.checksum(bytes.fromhex("00000001 00000002")) == 0x00000000 ^ 0x2 ^ (1 << 1)
    with pytest.raises(KeyError):
        exp.counters("nope", 1)
