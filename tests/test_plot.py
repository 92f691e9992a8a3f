"""Plots of a comparison and of one run: the file is written, and the figure's axes carry the
strategies, CPU models, findings and labels the data say."""
import json
from pathlib import Path

import pytest

from cosim import cli, plot

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    d = tmp_path_factory.mktemp("plot")
    assert cli.main(["compare", "--strategies", "sc64", "illegal", "--iterations", "20", "--quiet",
                     "--json", str(d / "c.json"), "--plot", str(d / "c.svg")]) == 0
    return d, json.loads((d / "c.json").read_text())


def test_compare_plot_written_with_costs_latencies_and_findings(compared):
    d, doc = compared
    assert (d / "c.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    fig = plot.compare_figure(doc["rows"], doc["reports"])
    hit, warn, lat = fig.axes
    assert [t.get_text() for t in hit.get_xticklabels()] == ["sc64", "illegal"]
    assert "per debugger hit" in hit.get_title() and "per guest WARN" in warn.get_title()
    assert hit.get_ylabel() == "per debugger hit" and lat.get_ylabel() == "round trip (us, log)"
    legend = [t.get_text() for t in hit.get_legend().get_texts()]
    assert legend == ["e500v2: messages", "e500mc: messages", "cell with a finding", "process hops"]
    # bars in the order cpu x strategy; the per-hit bar height is the report's messages per hit
    rows = {(r["strategy"], r["cpu"]): r for r in doc["rows"]}
    heights = [p.get_height() for p in hit.patches]
    assert heights[1] == pytest.approx(rows[("illegal", "e500v2")]["per_hit"]["messages"])
    assert heights[2] == 0 and rows[("sc64", "e500mc")]["per_hit"]["count"] == 0
    assert "sc64-lost-hits" in [t.get_text() for t in hit.texts]
    assert hit.patches[2].get_hatch() == "//" and not hit.patches[1].get_hatch()
    assert [t.get_text() for t in lat.get_xticklabels()] == ["sc64\ne500v2", "sc64\ne500mc", "illegal\ne500v2",
                                                              "illegal\ne500mc"]


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """The demo (2 vCPUs) with --plot and --json: the PNG and the report it was drawn from."""
    d = tmp_path_factory.mktemp("run")
    assert cli.main(["run", str(REPO / "configs" / "demo.toml"), "--quiet", "--plot", str(d / "r.png"),
                     "--json", str(d / "r.json"), "--set", "guest.iterations=20"]) == 0
    return d / "r.png", json.loads((d / "r.json").read_text())


def test_run_plot_png(ran):
    png, _ = ran
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_figure_exits_over_time(ran):
    """One step line per vCPU whose points are the report's counts per bin, which sum to that vCPU's
    exits; x in seconds since the run's start, from just before the vCPUs started."""
    _, report = ran
    over = report["exits"]["over_time"]
    assert over["bin_seconds"] == 0.01 and len(over["by_vcpu"]) == report["scenario"]["vcpus"] == 2
    fig = plot.run_figure(report)
    timeline = fig.axes[2]
    assert timeline.get_title() == "exits over time per vCPU (10 ms bins)"
    assert timeline.get_xlabel() == "seconds since the run's start"
    assert timeline.get_ylabel() == "exits per 10 ms"
    lines = [ln for ln in timeline.get_lines() if ln.get_label().startswith("vCPU ")]
    assert len(lines) == 2
    for line, v, counts in zip(lines, report["vcpus"], over["by_vcpu"], strict=True):
        exits = sum(n for levels in v["exits"].values() for n in levels.values())
        assert exits > 0 and sum(counts) == exits
        assert list(line.get_ydata()) == counts
        assert line.get_label() == f"vCPU {v['vcpu']} ({exits:,} exits)"
        assert line.get_drawstyle() == "steps-mid"
        xs = line.get_xdata()
        assert len(xs) == len(counts) and xs[0] == pytest.approx(0.005) and xs[1] - xs[0] == pytest.approx(0.01)
    started = over["vcpus_started_seconds"]
    assert 0 < started < report["seconds"]
    first = min(i for c in over["by_vcpu"] for i, n in enumerate(c) if n)
    assert (first + 1) * 0.01 > started                 # no exit in a bin that ended before the start
    assert timeline.get_xlim()[0] == pytest.approx(max(0.0, started - 0.05))
    assert [ln.get_xdata()[0] for ln in timeline.get_lines() if ln.get_label() == "vCPUs started"] == [started]
    legend = [t.get_text() for t in timeline.get_legend().get_texts()]
    assert legend == [ln.get_label() for ln in lines] + ["vCPUs started"]


def test_run_figure_axes(compared):
    _, doc = compared
    report = doc["reports"][0]
    fig = plot.run_figure(report)
    exits, lat, timeline = fig.axes
    assert [t.get_text() for t in exits.get_xticklabels()] == ["vCPU 0"]
    assert sum(p.get_height() for p in exits.patches) == sum(report["exits"]["by_level"].values())
    labels = [t.get_text() for t in exits.get_legend().get_texts()]
    assert "syscall @ userspace" in labels
    assert lat.get_xlabel().startswith("round trip (us, log)")
    assert report["scenario"]["strategy"] in fig._suptitle.get_text()
    line, _vcpus_started = timeline.get_lines()
    assert list(line.get_ydata()) == report["exits"]["over_time"]["by_vcpu"][0]
    assert sum(line.get_ydata()) == sum(report["exits"]["by_level"].values())


def test_bad_plot_path_is_exit_2(capsys):
    assert cli.main(["compare", "--plot", "out.jpg"]) == 2
    assert "png or .svg" in capsys.readouterr().err
