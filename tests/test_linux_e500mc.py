"""Issue 25 on the other CPU model: the e500mc kernel (corenet32_smp_defconfig, `program =
"linux-e500mc"`, shipped in guests/linux/prebuilt-e500mc/) boots on the ppce500 board with `cpu =
"e500mc"`, where E.HV sends system calls, the decrementer and DSI/ISI straight to the guest. What it needs
beyond the e500v2 kernel: tlbilx that keeps IPROT entries, dcbz over 64-byte lines, `wait`, and doorbells
(msgsnd) as its IPIs. Then the experiment of the 2010 thread: breakpoints on the WARN site under every
strategy, and `sc 64`, whose system call never leaves an E.HV guest, losing its hit into the kernel's
own syscall entry, which BUG()s on a system call from kernel mode."""
import re
from pathlib import Path

import pytest

from cosim.config import load_config
from cosim.guest_linux import locate
from cosim.machine.image import GuestImage
from cosim.report import build_report
from cosim.strategies import STRATEGIES
from cosim.supervisor import run_config

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "linux-e500mc.toml"
SMP_CONFIG = CONFIG.with_name("linux-smp.toml")
SITE_OFFSET = 0x30                       # lkdtm_WARNING's twi 31,0,0 in this build (e500v2's: +0x28)
WARN_LINE = "WARNING: CPU: 0 PID: 1 at drivers/misc/lkdtm/bugs.c:85 lkdtm_WARNING+0x30/0x34"
WARN_ON_ANY_CPU = re.compile(r"WARNING: CPU: (\d+) PID: 1 at drivers/misc/lkdtm/bugs\.c:85 lkdtm_WARNING\+0x30/0x34")
BREAKPOINTS = (f'debug.breakpoints=[{{at = "lkdtm_WARNING", arm_on = "Run /init"}}, '
               f'{{at = "lkdtm_WARNING+{SITE_OFFSET:#x}", arm_on = "Run /init"}}]')


def boot(*sets: str) -> dict:
    return build_report(run_config(load_config(CONFIG, ["serial.echo=false", *sets])))


@pytest.fixture(scope="module")
def vmlinux() -> GuestImage:
    return GuestImage.load(locate("linux-e500mc").vmlinux)


@pytest.fixture(scope="module")
def plain() -> dict:
    return boot()


def test_the_e500mc_kernel_boots_to_init_and_handles_its_own_warns(plain, vmlinux):
    r = plain
    assert r["ok"], (r["failed"], r["invariants"])
    text = r["board"]["transcript"]
    assert "Hardware name: QEMU ppce500 e500mc" in text and "dcache_bsize      = 0x40" in text
    assert text.count(WARN_LINE) == 5 and "init: provoked 5 of 5 WARN_ON traps" in text
    for complaint in ("Oops", "BUG:", "Unable to handle"):
        assert complaint not in text, complaint
    site = vmlinux.symbol("lkdtm_WARNING") + SITE_OFFSET
    delivered = r["interrupts_delivered"]["total"]
    assert delivered["program"] == {f"{site:#x}": 5}
    # E.HV: init's system calls go straight to the guest (no exit), its TLB misses exit to KVM
    assert sum(delivered["syscall"].values()) > 5 and r["exits"]["by_reason"].get("syscall", {}).get("kernel", 0) == 0
    assert any(int(a, 16) < 0x80000000 for a in delivered["itlb_miss"])


@pytest.mark.parametrize("strategy", sorted(set(STRATEGIES) - {"sc64"}))
def test_breakpoints_on_the_warn_site_under_every_strategy_on_e500mc(strategy, plain, vmlinux):
    r = boot(f"debug.strategy={strategy}", BREAKPOINTS)
    assert r["ok"], (r["failed"], r["invariants"])
    hits = r["debugger_hits"]["by_breakpoint"]
    assert sorted(h["hits"] for h in hits.values()) == [5, 5], hits
    assert all(h["executed"] == h["hits"] for h in hits.values()), hits
    assert r["interrupts_delivered"]["total"]["program"] == plain["interrupts_delivered"]["total"]["program"]
    ours, theirs = r["board"]["transcript"].split("\n"), plain["board"]["transcript"].split("\n")
    assert len(ours) == len(theirs)
    differ = [a for a, b in zip(ours, theirs) if a != b]
    # the only lines that differ: each WARN report's instruction dump shows the planted words (none for hw)
    assert len(differ) == (0 if STRATEGIES[strategy].word is None else 10), differ
    assert r["invariants"]["code-restored-after-detach"]["ok"]


def test_sc64_on_e500mc_loses_its_hit_and_the_kernel_bugs_on_a_system_call_from_itself(vmlinux):
    """The thread's prediction, on a real kernel: under E.HV `sc` goes to the guest without an exit, so
    the planted `sc 64` at lkdtm_WARNING is taken by Linux's own system-call entry, in kernel mode, where
    system_call_exception BUG()s (syscall.c:34); init is killed and the kernel panics. The report names
    the loss."""
    r = boot("debug.strategy=sc64", BREAKPOINTS)
    assert not r["ok"] and "run-completed" in r["failed"]
    text = r["board"]["transcript"]
    assert "kernel BUG at arch/powerpc/kernel/syscall.c:34!" in text
    assert r["board"]["serial_failed"].startswith("Kernel panic - not syncing: Attempted to kill init!")
    hits = r["debugger_hits"]["by_breakpoint"]
    entry = f"{vmlinux.symbol('lkdtm_WARNING'):#x}"
    assert hits[entry]["hits"] == 0 and hits[entry]["executed"] == 1
    lost = [f for f in r["findings"] if f["id"] == "sc64-lost-hits"]
    assert lost and "E.HV never exits on sc" in lost[0]["detail"], r["findings"]


def test_the_e500mc_kernel_on_two_vcpus_sends_its_ipis_as_doorbells(vmlinux):
    """corenet32's SMP: the secondary comes up through the spin table, the cores' IPIs are msgsnd
    doorbells (each core takes some), idle cores halt in `wait`, one clock for both."""
    expect = '["smp: Brought up 1 node, 2 CPUs", "init: provoked 5 of 5 WARN_ON traps"]'
    r = build_report(run_config(load_config(SMP_CONFIG, [
        "serial.echo=false", 'machine.cpu="e500mc"', 'guest.program="linux-e500mc"', f"expect.serial={expect}",
        "limits.instructions=10_000_000_000", "limits.wall_seconds=1500"])))
    assert r["ok"], (r["failed"], {k: r["invariants"][k] for k in r["failed"]}, r["board"]["transcript"][-1500:])
    text = r["board"]["transcript"]
    assert len(WARN_ON_ANY_CPU.findall(text)) == 5
    for complaint in ("rcu_sched detected stalls", "rcu: INFO", "Oops", "BUG:", "soft lockup"):
        assert complaint not in text, complaint
    by_vcpu = r["interrupts_delivered"]["by_vcpu"]
    assert all(v.get("doorbell") for v in by_vcpu), [sorted(v) for v in by_vcpu]
    assert all(v.get("decrementer") for v in by_vcpu)
    assert all(v["idle"]["naps"] > 0 for v in r["vcpus"])
