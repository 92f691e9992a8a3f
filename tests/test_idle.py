"""MSR[WE] as a halt on a machine of several vCPUs (cosim/vcpu/idle.py), on guests/idle_smp.S: every vCPU
sleeps between its decrementer ticks as Linux's e500 idle loop does (mtmsr with WE|EE, then a branch to
itself). Running free, a sleeping vCPU executes nothing, the tick wakes it at the instruction after the
mtmsr (SRR0 = `woke`, as a dozing core takes it), and when every vCPU sleeps the machine's clock jumps to
the next deadline. One vCPU, or the deterministic schedule: the vCPU spins in the loop as before (its
clock is its own count; a seed grants quanta), with the same ticks."""
import pytest

from cosim.config import parse_config
from cosim.machine.image import GuestImage, guest_path
from cosim.report import build_report
from cosim import supervisor
from cosim.supervisor import run_config

IMAGE = GuestImage.load(guest_path("idle_smp"))
WOKE, ASLEEP = IMAGE.symbol("woke"), IMAGE.symbol("asleep")
NAPS, PERIOD = 20, 100_000


def run(vcpus: int, seed: int | None = None) -> dict:
    machine = {"cpu": "e500v2", "vcpus": vcpus}
    if seed is not None:
        machine |= {"schedule": "deterministic", "seed": seed}
    doc = {"machine": machine, "guest": {"program": "idle_smp", "until": "done"},
           "debug": {"strategy": "illegal"}, "limits": {"wall_seconds": 120}}
    r = build_report(run_config(parse_config(doc, "idle_smp.toml")))
    assert r["ok"], (r["failed"], {k: r["invariants"][k] for k in r["failed"]})
    return r


@pytest.mark.parametrize("vcpus", [2, 4])
def test_sleeping_vcpus_execute_nothing_and_the_clock_jumps_to_the_next_tick(vcpus):
    r = run(vcpus)
    for v, ticks in zip(r["vcpus"], r["interrupts_delivered"]["by_vcpu"]):
        assert ticks["decrementer"] == {f"{WOKE:#x}": NAPS}         # each tick taken asleep, after the mtmsr
        assert v["idle"]["naps"] == NAPS
        assert v["instructions"] < 50 * NAPS                         # no spinning: ~23 instructions a tick
    assert sum(v["idle"]["warps"] for v in r["vcpus"]) >= NAPS      # nobody awake: the clock jumped
    assert sum(v["idle"]["warped_ticks"] for v in r["vcpus"]) >= (NAPS - 1) * PERIOD


@pytest.mark.parametrize("vcpus, seed", [(1, None), (2, 3)])
def test_one_vcpu_or_a_seed_spins_through_the_same_ticks(vcpus, seed):
    r = run(vcpus, seed)
    for v, ticks in zip(r["vcpus"], r["interrupts_delivered"]["by_vcpu"]):
        assert sum(ticks["decrementer"].values()) == NAPS
        assert set(ticks["decrementer"]) == {f"{ASLEEP:#x}"}         # taken while spinning in the loop
        assert "idle" not in v and v["instructions"] > NAPS * PERIOD // 4


def run_spin_alone(seed: int | None = None) -> dict:
    machine = {"cpu": "e500v2", "vcpus": 2}
    if seed is not None:
        machine |= {"schedule": "deterministic", "seed": seed}
    doc = {"machine": machine, "guest": {"program": "spin_alone", "until": "done"},
           "debug": {"strategy": "illegal"}, "limits": {"wall_seconds": 120}}
    r = build_report(run_config(parse_config(doc, "spin_alone.toml")))
    assert r["ok"], (r["failed"], {k: r["invariants"][k] for k in r["failed"]})
    return r


def test_a_vcpu_spinning_while_the_others_sleep_gives_its_host_cpu_up(monkeypatch):
    """The spinning vCPU yields its host CPU (a descheduled peer it might be waiting for gets to run:
    Linux's time-base handshakes on a loaded host took minutes before); the sleeper, which executes
    nothing while asleep, never does; the guest sees the same either way: vCPU 0's delay loop retires
    as many instructions as with the yields turned off (COSIM_SPIN_YIELD=0), to within the clock's
    batching (its time base lags its own last <1,024 instructions)."""
    r = run_spin_alone()
    spinner, sleeper = r["vcpus"]
    # ~2,000,000 ticks of a 4-instruction loop: ~500,000 blocks, a yield every 1,024 repeats
    assert spinner["idle"]["spin_yields"] >= 100, spinner
    assert sleeper["idle"]["spin_yields"] == 0 and sleeper["instructions"] < 2000, sleeper
    monkeypatch.setattr(supervisor, "SPIN_YIELD", False)
    plain = run_spin_alone()
    assert plain["vcpus"][0]["idle"]["spin_yields"] == 0
    assert abs(plain["vcpus"][0]["instructions"] - spinner["instructions"]) <= 1024, (plain["vcpus"], r["vcpus"])


def test_no_yields_under_a_deterministic_schedule():
    """Under a seed the others wait for their turn whatever the spinner does: nothing to yield to."""
    r = run_spin_alone(seed=5)
    assert all(v.get("idle", {}).get("spin_yields", 0) == 0 for v in r["vcpus"])
