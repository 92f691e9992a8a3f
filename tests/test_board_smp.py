"""SMP on the ppce500 board (issue 19, item 3): secondaries wait in the ePAPR spin table until the
boot vCPU releases them through it, as QEMU's hw/ppc/ppce500_spin.c holds them; U-Boot runs on vCPU 0
while the others wait."""
import pytest

from cosim.config import parse_config
from cosim.report import build_report
from cosim.supervisor import run_config


@pytest.mark.parametrize("cpu", ["e500mc", "e500v2"])
def test_a_secondary_starts_through_the_spin_table(cpu):
    doc = {"machine": {"cpu": cpu, "board": "ppce500", "vcpus": 2},
           "guest": {"program": "spin_release", "until": "done"},
           "expect": {"memory": [{"at": "released", "words": [0x55, 1]}]},   # r3 from the table, PIR 1
           "limits": {"wall_seconds": 60}}
    r = build_report(run_config(parse_config(doc, "spin.toml")))
    assert r["ok"], (r["failed"], {k: r["invariants"][k] for k in r["failed"]})
    assert r["board"]["mmio_by_device"]["spin"] == 3          # r3, addr high, addr low (the release)
    assert all(v["instructions"] > 0 for v in r["vcpus"])


def test_a_secondary_nobody_releases_stays_held():
    doc = {"machine": {"cpu": "e500mc", "board": "ppce500", "vcpus": 3},
           "guest": {"program": "spin_release", "until": "done"},
           "limits": {"wall_seconds": 3}}
    r = build_report(run_config(parse_config(doc, "spin3.toml")))
    assert [v["instructions"] > 0 for v in r["vcpus"]] == [True, True, False]   # vCPU 2: never released
    assert r["outcome"] == "wall-limit"                   # held is not done: the run says so
