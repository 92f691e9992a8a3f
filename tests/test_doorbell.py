"""Processor doorbells (e500mc msgsnd/msgclr, IVOR36/37): the IPIs Linux sends on e500mc
(doorbell_global_ipi), on guests/doorbell.S. vCPU 0 sends; the others wait in `wait` and count what they
take. Emulated as KVM does (kvmppc_e500_emul_msgsnd: the message to every vCPU whose PIR it names, or to
all on BRDCAST, each kicked); taken when MSR[EE] (MSR[CE] for the critical one) allows, cleared by msgclr
before that. QEMU agrees on the one-vCPU part (a doorbell to itself, cleared or taken) word for word."""
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from cosim.config import parse_config
from cosim.machine.image import GuestImage, guest_path
from cosim.qemu import qemu_available
from cosim.report import build_report
from cosim.supervisor import run_config

REPO = Path(__file__).resolve().parents[1]
IMAGE = GuestImage.load(guest_path("doorbell"))
SYM = {k: IMAGE.symbol(k) for k in ("area", "waiting", "self_taken", "done", "on_dbell", "on_cdbell")}
ROUNDS = 10
PIL = 0x08000000


def run(cpu: str, vcpus: int, until: str = "done", seed: int | None = None):
    machine = {"cpu": cpu, "vcpus": vcpus}
    if seed is not None:
        machine |= {"schedule": "deterministic", "seed": seed}
    doc = {"machine": machine, "guest": {"program": "doorbell", "until": until},
           "debug": {"strategy": "illegal"}, "limits": {"wall_seconds": 120}}
    data = run_config(parse_config(doc, "doorbell.toml"))
    r = build_report(data)
    assert r["ok"], (r["failed"], r.get("problems"))
    records = []
    for base, blob in data.data_segments:
        if base <= SYM["area"] < base + len(blob):
            for v in range(vcpus):
                o = SYM["area"] - base + v * 0x100
                records.append(struct.unpack(">7I", blob[o:o + 28]))
    return r, records


@pytest.mark.parametrize("vcpus", [2, 4])
def test_doorbells_reach_the_vcpus_they_name_and_wake_them_from_wait(vcpus):
    r, rec = run("e500mc", vcpus)
    after_wait = f"{SYM['waiting'] + 4:#x}"
    # vCPU 0: the one cleared by msgclr never came (+24 = 0); the pending one came at wrteei 1's next
    # instruction; then the first broadcast and the last (taken at done)
    assert rec[0][0] == 3 and rec[0][6] == 0
    by = r["interrupts_delivered"]["by_vcpu"]
    assert by[0]["doorbell"][f"{SYM['self_taken']:#x}"] == 1 and by[0]["doorbell"][f"{SYM['done']:#x}"] == 1
    # PIR 1: every directed doorbell, both broadcasts and the critical one, each taken in its wait
    # (SRR0/CSRR0 the instruction after it: a halted core resumes there)
    # (the first may come before PIR 1 first waits: taken where it is then)
    assert rec[1][:3] == (ROUNDS + 2, SYM["waiting"] + 4, 1)
    assert sum(by[1]["doorbell"].values()) == ROUNDS + 2 and by[1]["doorbell"][after_wait] >= ROUNDS + 1
    # the critical one in its wait, or in the doorbell handler it interrupts (MSR[CE] stays on there)
    assert rec[1][3] == SYM["waiting"] + 4 or SYM["on_dbell"] <= rec[1][3] < SYM["on_cdbell"]
    assert by[1]["doorbell_critical"] == {f"{rec[1][3]:#x}": 1}
    for v in range(2, vcpus):                        # the others: the two broadcasts, one pending bit:
        assert 1 <= rec[v][0] <= 2 and rec[v][2] == 0    # one interrupt if the second came before the first
        assert sum(by[v]["doorbell"].values()) == rec[v][0]    # was taken (a vCPU process not yet scheduled)
    assert all(x[4] == 0 for x in rec)               # no program interrupt anywhere
    # `wait` halted the waiters: nothing like the ~ROUNDS x a spin loop's instructions
    assert all(v["idle"]["naps"] >= 1 for v in r["vcpus"][1:])


def test_a_seed_gives_the_same_doorbells_every_run():
    """Under the deterministic schedule a doorbell is a message between vCPUs like any other: counted,
    taken before the receiver's next quantum; `wait` spins there, so where they land depends on the
    seed, and the same seed gives the same run."""
    (r1, rec1), (r2, rec2) = run("e500mc", 2, seed=3), run("e500mc", 2, seed=3)
    assert rec1 == rec2 and rec1[1][0] == ROUNDS + 2 and rec1[1][2] == 1
    assert r1["interrupts_delivered"] == r2["interrupts_delivered"]
    assert [v["instructions"] for v in r1["vcpus"]] == [v["instructions"] for v in r2["vcpus"]]


def test_on_e500v2_msgsnd_and_msgclr_are_illegal_instructions():
    r, rec = run("e500v2", 1, until="self_taken")
    assert rec[0][0] == 0 and rec[0][4] == 3 and rec[0][5] == PIL     # msgsnd, msgclr, msgsnd: ESR[PIL]
    assert sum(r["interrupts_delivered"]["by_vcpu"][0]["program"].values()) == 3


@pytest.mark.skipif(qemu_available() is not None, reason=f"QEMU not usable: {qemu_available()}")
def test_a_doorbell_to_itself_matches_qemu(tmp_path):
    out = tmp_path / "xc.json"
    p = subprocess.run([sys.executable, str(REPO / "tools" / "crosscheck_qemu.py"), str(REPO / "guests" / "doorbell.elf"),
                        "--until", "self_taken", "--json", str(out)], cwd=REPO, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    (res,) = json.loads(out.read_text())
    assert res["compared_bytes"] > 0 and not res["differences"], res["differences"][:5]
