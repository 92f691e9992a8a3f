"""Every guest program runs to its halt on one vCPU in-process (cosim.vcpu.local.run_local), on both CPU
models, with the counters guests/README.md promises and guests/expected.py computes; broken guests end
with a report (a Fault naming the address, or the guest kernel's own exit code), never a harness crash."""
import importlib.util
from collections import Counter
from pathlib import Path

import pytest

from asm import load32
from cosim.isa import SPR, Esr, Word, mtspr
from cosim.machine.image import BugKind, GuestImage
from cosim.vmexit import Fault
from cosim.vcpu.local import run_local

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("guest_expected", REPO / "guests" / "expected.py")
expected = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(expected)

CPUS = ["e500v2", "e500mc"]
PROGRAMS = ["loop", "warn_storm", "smp_workers", "selfcheck", "guest_iac", "atomics"]
ITERATIONS = {"loop": 500, "warn_storm": 80, "smp_workers": 60, "selfcheck": 100, "guest_iac": 60, "atomics": 100}
LI = 0x38000000          # addi rD, 0, imm
MTCTR_R0 = 0x7C0903A6
BCTR = 0x4E800420


def first(result):
    """Counters of vCPU 0."""
    return {name: values[0] for name, values in result.counters.items()}


@pytest.mark.parametrize("cpu", CPUS)
@pytest.mark.parametrize("program", PROGRAMS)
def test_program_runs_to_completion(program, cpu):
    n = ITERATIONS[program]
    extra = {}

    def collect(core, image, ram):
        if program == "smp_workers":
            extra["work_data"] = ram.read_u32s(image.symbol("work_data"), 256)
        if program == "selfcheck":
            extra["boot_checksum"] = ram.read_word(image.symbol("boot_checksum"))
        extra["code_diff"] = image.code_diff(ram)

    r = run_local(program, cpu, n, collect=collect)
    assert r.fault is None, r.fault
    assert r.exit_code == expected.EXIT_OK
    c = first(r)
    want = expected.counters(program, n)
    assert {k: c[k] for k in want} == want
    assert c["cnt_iter"] == n
    assert c["cnt_bad_prog"] == 0 and c["cnt_bug"] == 0
    assert extra["code_diff"] == []                       # nothing patched guest code
    if program == "warn_storm":
        per_iter = r.image.read_word(r.image.symbol("warns_per_iter"))
        assert per_iter == expected.WARNS_PER_ITER["warn_storm"]
        assert c["cnt_warn"] == n * per_iter and c["cnt_hits"] == 2 * n
    if program == "smp_workers":
        acc, array = expected.smp_workers(0, n)
        assert c["work_result"] == acc
        assert extra["work_data"] == array
        assert c["cnt_warn"] == n
    if program == "selfcheck":
        lo, hi = r.image.symbol("check_begin"), r.image.symbol("check_end")
        assert extra["boot_checksum"] == expected.checksum(r.image.read(lo, hi - lo))
        assert c["cnt_mismatch"] == 0
    if program == "guest_iac":
        bp = r.image.symbol("bp_target")
        assert c["cnt_debug"] == 2 * n
        assert c["last_dbsr"] == 0x08000000 and c["last_debug_pc"] == bp + 4   # the IC event last
    # instructions are counted: at least the loop's own work
    assert r.instructions >= n * 13


@pytest.mark.parametrize("program", PROGRAMS)
def test_exit_levels_per_cpu_model(program):
    """Privileged instructions: e500v2 (KVM PR) exits and the kernel emulates them; e500mc (E.HV)
    runs them natively. Traps, hypercalls and debug events always reach the kernel."""
    n = 20
    res = {cpu: run_local(program, cpu, n) for cpu in CPUS}
    v2, mc = res["e500v2"].exits, res["e500mc"].exits
    assert set(v2["priv"]) == {"kernel"} and set(mc["priv"]) == {"vcpu"}
    assert v2["priv"]["kernel"] == mc["priv"]["vcpu"] > 0      # the same guest code either way
    for exits in (v2, mc):
        assert exits["hcall"] == {"kernel": 1}                 # the HALT
        assert "priv-fault" not in exits and "illegal" not in exits
        warns = expected.counters(program, n)["cnt_warn"]
        assert exits.get("trap", {}) == ({"kernel": warns} if warns else {})
        debug = expected.counters(program, n)["cnt_debug"]
        assert exits.get("debug", {}) == ({"kernel": debug} if debug else {})


@pytest.mark.parametrize("cpu", CPUS)
def test_warn_storm_log(cpu):
    """Every SRR0 the guest's program handler logged is a WARN site of the bug table, and each
    firing site fired exactly once per iteration."""
    n = ITERATIONS["warn_storm"]
    assert 3 * n <= expected.WARN_LOG_LEN                 # the ring has not wrapped
    seen = {}

    def collect(core, image, ram):
        count = ram.read_word(image.symbol("cnt_warn"))
        seen["log"] = ram.read_u32s(image.symbol("warn_log"), min(count, expected.WARN_LOG_LEN))

    r = run_local("warn_storm", cpu, n, collect=collect)
    assert r.exit_code == 0
    table = r.image.bug_table()
    warn_sites = {e.addr for e in table if e.kind is BugKind.WARN}
    bug_sites = {e.addr for e in table if e.kind is BugKind.BUG}
    assert len(warn_sites) == 4 and len(bug_sites) == 1
    log = seen["log"]
    assert len(log) == 3 * n
    assert set(log) <= warn_sites, [hex(a) for a in set(log) - warn_sites]
    per_site = Counter(log)
    per_iter = r.image.read_word(r.image.symbol("warns_per_iter"))
    assert len(per_site) == per_iter
    assert all(count == n for count in per_site.values()), per_site
    # each logged SRR0 holds a trap word (the trap itself, not the instruction after it)
    for addr in per_site:
        assert r.image.read_word(addr) >> 26 == 3          # twi
    # the log is in program order: the three sites repeat in the same sequence every iteration
    assert log[:3] * n == log


# --- broken guests end with a report ------------------------------------------------------------------

@pytest.mark.parametrize("cpu", CPUS)
def test_jump_to_unmapped_memory_is_a_fault(cpu):
    def setup(core, image, ram):
        ram.write_u32s(image.symbol("bp_target"), [*load32(0, 0x80000000), MTCTR_R0, BCTR])

    r = run_local("loop", cpu, 5, setup=setup)
    assert isinstance(r.fault, Fault) and r.exit_code is None
    assert r.fault.pc == 0x80000000
    assert "fetch" in r.fault.reason and "0x80000000" in r.fault.reason
    assert first(r)["exit_code"] == expected.NOT_SET        # the guest kernel never halted


@pytest.mark.parametrize("cpu", CPUS)
def test_unmodelled_interrupt_is_a_fault(cpu):
    """An unaligned lwarx raises the alignment interrupt, which the core does not model (an SPE
    instruction used to stand in here: it is the guest's interrupt now, tests/test_spe.py)."""
    where = {}

    def setup(core, image, ram):
        where["pc"] = image.symbol("bp_target") + 4
        ram.write_word(where["pc"] - 4, LI | 1)          # li r0, 1
        ram.write_word(where["pc"], 0x7C620028)          # lwarx r3, r2, r0: r2 + 1, unaligned

    r = run_local("loop", cpu, 5, setup=setup)
    assert isinstance(r.fault, Fault) and r.exit_code is None
    assert r.fault.pc == where["pc"]
    assert "unhandled" in r.fault.reason and f"{where['pc']:#010x}" in r.fault.reason
    assert "0x7c620028" in r.fault.reason


def _redirect_ivor(image, ram, ivor_spr, handler):
    """Patch the boot code's `li r4, <offset>; mtspr IVORn, r4` so IVORn points at `handler`."""
    start = image.entry
    words = ram.read_u32s(start, 256)
    hits = [i for i, w in enumerate(words) if w == mtspr(ivor_spr, 4)]
    assert len(hits) == 1, hits
    li_r4 = words[hits[0] - 1]
    assert li_r4 & 0xFFFF0000 == LI | 4 << 21
    ram.write_word(start + 4 * (hits[0] - 1), LI | 4 << 21 | (handler - image.symbol("_vectors")))


@pytest.mark.parametrize("cpu", CPUS)
def test_interrupt_to_an_unexpected_vector_halts_0xdead(cpu):
    """IVOR8 sent to the kernel's catch-all handler (hv_priv_vector, number 41), then a syscall:
    the guest records the vector and SRR0 and halts with 0xdead."""
    seen = {}

    def setup(core, image, ram):
        _redirect_ivor(image, ram, SPR["IVOR8"], image.symbol("hv_priv_vector"))
        ram.write_word(image.symbol("bp_target"), Word.SC)

    def collect(core, image, ram):
        seen["srr0"] = ram.read_word(image.symbol("unexpected_srr0"))

    r = run_local("loop", cpu, 5, setup=setup, collect=collect)
    assert r.fault is None
    assert r.exit_code == expected.EXIT_UNEXPECTED
    c = first(r)
    bp = r.image.symbol("bp_target")
    assert c["unexpected_ivor"] == 41 and seen["srr0"] == bp + 4
    assert c["cnt_iter"] == 0
    # the syscall itself: through the kernel on e500v2, straight to the guest vector on e500mc
    assert r.exits["syscall"] == ({"kernel": 1} if cpu == "e500v2" else {"vcpu": 1})


@pytest.mark.parametrize("cpu", CPUS)
@pytest.mark.parametrize("word,esr", [
    (Word.TRAP, Esr.PTR),            # a trap the bug table does not explain
    (Word.ILLEGAL_BP, Esr.PIL),      # the debug instruction with no debugger attached
    (Word.EHPRIV, Esr.PIL),          # ehpriv 0: E.HV HV-privilege, the kernel fails to emulate it
    (0x00000000, Esr.PIL),
], ids=["tw", "illegal", "ehpriv0", "zero"])
def test_unexplained_program_interrupt_halts_3(cpu, word, esr):
    def setup(core, image, ram):
        ram.write_word(image.symbol("bp_target"), word)

    r = run_local("loop", cpu, 5, setup=setup)
    assert r.fault is None and r.exit_code == expected.EXIT_BAD_PROG
    c = first(r)
    assert c["cnt_bad_prog"] == 1
    assert c["bad_prog_srr0"] == r.image.symbol("bp_target")
    assert c["bad_prog_esr"] == esr
    assert c["cnt_hits"] == 0 and c["cnt_iter"] == 0


def test_iterations_zero():
    r = run_local("loop", "e500mc", 0)
    assert r.exit_code == 0 and first(r)["cnt_iter"] == 0 and first(r)["cnt_hits"] == 0


def test_image_has_what_the_tests_patch():
    for program in PROGRAMS:
        image = GuestImage.load(program)
        assert "cfg_iterations" in image and "hv_priv_vector" in image and "_vectors" in image
        assert image.symbol("_vectors") <= image.symbol("hv_priv_vector") < image.symbol("_vectors") + 0x10000

