"""An SPE instruction is the guest's fault to take, never the end of the run (issue 20): before, an
`evaddw` ended every run with "unhandled core exception 32" on both CPU models. guests/spe.S runs one
with MSR[SPE] = 0 and one with MSR[SPE] = 1 and records what its own vectors took."""
import pytest

from cosim.config import parse_config
from cosim.report import build_report
from cosim.supervisor import run_config

# per vCPU: SPE unavailable taken, program interrupts taken, last ESR, r5 after the MSR[SPE] = 1 evaddw,
# parked marker
EXPECTED = {
    "e500v2": ([1, 0, 0x80, 12, 0x600D], {"spe_unavailable": {"spe_off": 1}}),      # ESR[SPV]; 5 + 7
    "e500mc": ([0, 2, 0x08000000, 0xFFFFFFFF, 0x600D], {"program": {"spe_off": 1, "spe_on": 1}}),  # ESR[PIL]
}


@pytest.mark.parametrize("cpu", ["e500v2", "e500mc"])
def test_spe_instruction_is_the_guests_interrupt(cpu):
    words, interrupts = EXPECTED[cpu]
    d = {"machine": {"cpu": cpu, "vcpus": 2}, "guest": {"program": "spe", "until": "done"},
         "debug": {"strategy": "illegal"}, "limits": {"wall_seconds": 60.0},
         "expect": {"memory": [{"at": "counts", "stride": 32, "words": words}],
                    "interrupts": [{"kind": k, "srr0": s, "count": c}
                                   for k, by in interrupts.items() for s, c in by.items()]}}
    r = build_report(run_config(parse_config(d, "spe.toml")))
    assert r["ok"], (r["failed"], {k: r["invariants"][k]["detail"] for k in r["failed"]})
    assert r["outcome"] == "completed" and r["invariants"]["expect-interrupts"]["ok"]
