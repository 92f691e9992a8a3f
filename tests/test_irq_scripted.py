"""A scripted breakpoint or single-step on an instruction that itself interrupts (a firing trap, `sc`, a
privileged instruction, an illegal word of the guest's own, `rfi`, a load outside RAM) changes nothing
the guest sees: every strategy, both CPU models, each site alone, compared with a run without any
breakpoint (guests/irq_table.S records every interrupt it takes in its own memory).

A single step stops after exactly one instruction, or at the first instruction of the handler when the
stepped instruction took an interrupt."""
import pytest

from cosim.machine.image import GuestImage, guest_path
from cosim.strategies import STRATEGIES
from irq_guest import FAULT_SITE, ITER, SITES, address, run_irq

CPUS = ("e500v2", "e500mc")
ACTIONS = {"breakpoint": {}, "single-step": {"action": "single-step", "steps": 1}}


@pytest.fixture(scope="module")
def baseline():
    cache = {}

    def get(cpu, entry=None):
        if (cpu, entry) not in cache:
            cache[cpu, entry] = run_irq(cpu, entry=entry)
        return cache[cpu, entry]
    return get


def test_baseline_sees_every_interrupt(baseline):
    """Without a debugger: 8 iterations of twi/tw (one fires each), sc, illegal, user mfmsr, user sc."""
    for cpu in CPUS:
        seen = baseline(cpu)
        assert seen.ends == {0: (0, "guest halted")}
        assert seen.counts() == {"program": 3 * ITER, "syscall": 2 * ITER}


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("site", [*SITES, FAULT_SITE])
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("cpu", CPUS)
def test_scripted_action_on_interrupting_instruction(baseline, cpu, strategy, site, action):
    entry = "_start_fault" if site == FAULT_SITE else None
    base = baseline(cpu, entry)
    seen = run_irq(cpu, strategy, [{"at": site, **ACTIONS[action]}], entry=entry)
    executions = 1 if site == FAULT_SITE else ITER
    if STRATEGIES[strategy].predicted.get(cpu):
        # the thread's prediction (sc 64 on E.HV): the planted word goes to the guest's own syscall
        # vector, the hit is lost; the guest sees a difference unless its own instruction was an sc
        assert seen.hits == 0
        assert (seen.irq == base.irq) == (site in ("site_sc", "site_user_sc"))
        return
    assert seen.ends == base.ends
    assert seen.irq == base.irq, (seen.counts(), base.counts())
    assert seen.hits == executions
    assert seen.report["invariants"]["debugger-hits-exactly-once"]["ok"]
    if action == "single-step" and site != FAULT_SITE:
        assert seen.steps() == [address(SITES[site](i)) for i in range(ITER)]


@pytest.mark.parametrize("vcpus", [1, 4])
@pytest.mark.parametrize("strategy", ["trap-user", "trap-kernel"])
@pytest.mark.parametrize("cpu", CPUS)
def test_breakpoint_on_firing_trap_smp(baseline, cpu, strategy, vcpus):
    """The hang of issue 10: a breakpoint at the guest's own firing trap, 1 and 4 vCPUs."""
    seen = run_irq(cpu, strategy, [{"at": "site_twi"}], vcpus=vcpus)
    base = baseline(cpu)
    assert seen.report["outcome"] == "completed"
    assert seen.irq == [base.irq[0]] * vcpus
    assert seen.hits == ITER * vcpus


WARN_STORM = GuestImage.load(guest_path("warn_storm"))
FIRING_WARN = min(e.addr for e in WARN_STORM.bug_table() if int(e.kind) == 1)


@pytest.mark.parametrize("vcpus", [1, 4])
@pytest.mark.parametrize("strategy", ["trap-user", "trap-kernel"])
@pytest.mark.parametrize("cpu", CPUS)
def test_breakpoint_on_warn_site_of_warn_storm(cpu, strategy, vcpus):
    from cosim.config import parse_config
    from test_scenarios import run
    it = 50
    cfg = parse_config({"machine": {"cpu": cpu, "vcpus": vcpus},
                        "guest": {"program": "warn_storm", "iterations": it},
                        "debug": {"strategy": strategy, "breakpoints": [{"at": FIRING_WARN}]},
                        "limits": {"wall_seconds": 60.0}}, "<test>")
    data, report = run(cfg)
    assert report["outcome"] == "completed"
    assert report["guest_warns"]["total"] == 3 * it * vcpus
    assert report["invariants"]["guest-traps-to-guest-once"]["ok"]
    assert report["invariants"]["debugger-hits-exactly-once"]["ok"]
    assert report["debugger_hits"]["total"] == it * vcpus
