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


def test_run_plot_png(tmp_path):
    out = tmp_path / "r.png"
    assert cli.main(["run", str(REPO / "configs" / "demo.toml"), "--quiet", "--plot", str(out),
                     "--set", "guest.iterations=20"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_figure_axes(compared):
    _, doc = compared
    report = doc["reports"][0]
    fig = plot.run_figure(report)
    exits, lat = fig.axes
    assert [t.get_text() for t in exits.get_xticklabels()] == ["vCPU 0"]
    assert sum(p.get_height() for p in exits.patches) == sum(report["exits"]["by_level"].values())
    labels = [t.get_text() for t in exits.get_legend().get_texts()]
    assert "syscall @ userspace" in labels
    assert lat.get_xlabel().startswith("round trip (us, log)")
    assert report["scenario"]["strategy"] in fig._suptitle.get_text()


def test_bad_plot_path_is_exit_2(capsys):
    assert cli.main(["compare", "--plot", "out.jpg"]) == 2
    assert "png or .svg" in capsys.readouterr().err
