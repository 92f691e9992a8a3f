"""What a person reads: no Python reprs, titles that do not wrap on a wide terminal, only the verdict
coloured in compare cells, repeated sentences said once with a count, the register log's limit said."""
import re

from rich.console import Console

from cosim.pytest_plugin import run
from cosim.render import render_compare, render_run
from cosim import cli

REPR = re.compile(r"\[\'|\{\'|\bNone\b|entr\(ies\)|\(s\)\(s\)")


def text_of(fn, *args, width=160):
    c = Console(width=width, record=True, color_system="truecolor", force_terminal=True)
    fn(*args, console=c)
    return c


def test_run_report_reads_cleanly():
    report = run({"machine": {"cpu": "e500mc", "vcpus": 2}, "guest": {"program": "warn_storm", "iterations": 150},
                  "debug": {"strategy": "hw", "breakpoints": [{"at": "bp_target_b", "action": "log-registers"},
                                                             {"at": "bp_target_a"}, {"at": "main"}]}})
    assert report["ok"], report["failed"]
    c = text_of(render_run, report)
    out = c.export_text(clear=False)
    assert not REPR.search(out), REPR.search(out)
    # the cost title is one line on a wide terminal, and costs come before the invariants
    assert any(line.strip("│ ").startswith("cost per event: exits by the level that handled them, process hops, "
                                             "messages, guest instructions in its handler (counts") for line in out.splitlines())
    assert out.index("cost per event") < out.index("invariants") < out.index("host round trips")
    f = {x["id"]: x for x in report["findings"]}["hw-slots-exhausted"]
    sentences = f["detail"].split("; ")
    assert len(sentences) == len(set(sentences))
    # registers named in the JSON, and nothing cut without saying so
    log = report["register_log"]
    assert set(log[0]["regs"]) >= {"r1", "r3", "pc", "lr", "msr"} and log[0]["regs"]["pc"] == log[0]["pc"]
    hits_b = next(r["hits"] for r in report["debugger_hits"]["by_breakpoint"].values()
                  if r["symbol"] == "bp_target_b")
    assert len(log) + report["register_log_dropped"] == hits_b
    assert f"register log: {len(log)} entries in --json" in out
    if report["register_log_dropped"]:
        assert f"{report['register_log_dropped']} later ones not logged" in out


def test_compare_cells_colour_only_the_verdict(tmp_path):
    import json
    assert cli.main(["compare", "--strategies", "sc64", "--cpus", "e500mc", "--iterations", "10", "--quiet",
                     "--json", str(tmp_path / "c.json")]) == 0
    rows = json.loads((tmp_path / "c.json").read_text())["rows"]
    c = text_of(render_compare, rows)
    out = c.export_text(clear=False)
    assert not REPR.search(out), out
    assert "WARN 30/30" in out and "hit: none" in out
    # the styled spans of the cell: the verdict and the findings, nothing else
    styled = {seg.text.strip() for seg in c._record_buffer if seg.style and seg.style.color and seg.text.strip()}
    assert "FINDING" in styled and "sc64-lost-hits" in styled
    assert not any("hits 0/" in s or "WARN" in s for s in styled), styled


def test_a_refusal_repeated_by_stress_is_said_once_with_its_count():
    report = run({"machine": {"cpu": "e500mc"}, "guest": {"program": "warn_storm", "iterations": 200},
                  "debug": {"strategy": "hw", "breakpoints": [{"at": "bp_target_b"}, {"at": "bp_target_a"},
                                                             {"at": "main"}],
                            "stress": {"toggle": ["main"], "toggles": 10, "interval_ms": [1.0, 2.0]}}})
    f = {x["id"]: x for x in report["findings"]}["hw-slots-exhausted"]
    assert len(report["debugger_hits"]["refused"]) > 1
    assert f["detail"].count("no free instruction (IAC) slot") == 1
    assert f"({len(report['debugger_hits']['refused'])} times)" in f["detail"]
