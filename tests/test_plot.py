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
    assert "hits arrive?" in hit.get_title() and "guest's own trap" in warn.get_title()
    assert hit.get_ylabel() == "% of executions" and lat.get_ylabel() == "round trip (us, log)"
    assert warn.get_ylabel() == "process hops per guest WARN"
    legend = [t.get_text() for t in hit.get_legend().get_texts()]
    assert legend == ["e500v2", "e500mc", "cell with a finding"]
    # bars in the order cpu x strategy: the share of executions delivered; hops per WARN below
    rows = {(r["strategy"], r["cpu"]): r for r in doc["rows"]}
    heights = [p.get_height() for p in hit.patches[:4]]
    assert heights[1] == pytest.approx(100.0) and rows[("illegal", "e500v2")]["hits"] > 0
    assert heights[2] == 0 and rows[("sc64", "e500mc")]["hits"] == 0
    assert [p.get_height() for p in warn.patches[:4]] == [rows[k]["per_warn"]["hops"] for k in
                                                          (("sc64", "e500v2"), ("illegal", "e500v2"),
                                                           ("sc64", "e500mc"), ("illegal", "e500mc"))]
    assert any("sc64 on e500mc: sc64-lost-hits" in t.get_text() for t in hit.texts)
    assert hit.patches[2].get_hatch() == "//" and not hit.patches[1].get_hatch()
    assert [t.get_text() for t in lat.get_xticklabels()] == ["sc64", "illegal"]


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
    assert timeline.get_title() == "When do the exits happen? Exits over time per vCPU (10 ms bins)"
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


# --- layout: every plot readable (issue 23) -------------------------------------------------------------
def _drawn_texts(fig):
    """(what, bbox) of every text a reader sees: titles, axis labels, tick labels in view, annotations,
    legend entries, figure texts."""
    import matplotlib.text
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    out = []
    for ax in fig.axes:
        lo, hi = sorted(ax.get_xlim())
        texts = [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        texts += [t for t in ax.get_xticklabels() if lo <= t.get_position()[0] <= hi]
        ylo, yhi = sorted(ax.get_ylim())
        texts += [t for t in ax.get_yticklabels() if ylo <= t.get_position()[1] <= yhi]
        if ax.get_legend() is not None:
            texts += ax.get_legend().get_texts()
        out += [(t, ax) for t in texts]
    out += [(t, None) for t in fig.texts]                 # (the suptitle is one of them)
    seen: set[int] = set()
    out = [(t, ax) for t, ax in out if id(t) not in seen and not seen.add(id(t))]
    return [(t.get_text(), t.get_window_extent(r), ax) for t, ax in out
            if isinstance(t, matplotlib.text.Text) and t.get_visible() and t.get_text().strip()]


def layout_problems(fig) -> list[str]:
    """Text boxes that overlap each other, and annotations or legends drawn over a bar (matplotlib's
    own extents of what it rendered)."""
    texts = _drawn_texts(fig)
    r = fig.canvas.get_renderer()
    problems = []
    for k, (a, box_a, _) in enumerate(texts):
        for b, box_b, _ in texts[k + 1:]:
            if box_a.overlaps(box_b):
                problems.append(f"text {a!r} overlaps text {b!r}")
    for ax in fig.axes:
        from matplotlib.patches import Rectangle
        bars = [p.get_window_extent(r) for p in ax.patches
                if isinstance(p, Rectangle) and p.get_height() > 0 and p.get_width() > 0]
        covers = [(t.get_text(), t.get_window_extent(r)) for t in ax.texts if t.get_text().strip()]
        if ax.get_legend() is not None:
            covers.append(("legend", ax.get_legend().get_window_extent(r)))
        for name, box in covers:
            for bar in bars:
                if box.overlaps(bar):
                    problems.append(f"{name!r} drawn over a bar of {ax.get_title()[:40]!r}")
                    break
    return problems


@pytest.fixture(scope="module")
def compared_all(tmp_path_factory):
    """`cosim compare` over every strategy and CPU model (hw on e500mc twice: MSRP[DEP] = 1 and 0)."""
    d = tmp_path_factory.mktemp("plot-all")
    assert cli.main(["compare", "--iterations", "10", "--quiet", "--jobs", "2", "--json", str(d / "c.json")]) == 0
    return json.loads((d / "c.json").read_text())


def test_compare_plot_layout_one_question_per_panel(compared_all):
    doc = compared_all
    fig = plot.compare_figure(doc["rows"], doc["reports"])
    assert layout_problems(fig) == []
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 3 and all(t.count("?") == 1 for t in titles), titles     # one question each
    hits, warns, lat = fig.axes
    # the column labels are the strategies, wrapped (one column per strategy, a bar per CPU model)
    assert [t.get_text() for t in hits.get_xticklabels()] == [r.replace(" ", "\n") for r in
                                                              dict.fromkeys(r["strategy"] for r in doc["rows"])]
    # the findings are named once each, off the bars
    notes = " ".join(t.get_text() for t in hits.texts)
    for r in doc["rows"]:
        for f in r["findings"]:
            assert f"{r['strategy']} on {r['cpu']}: " in notes and f in notes
    assert "sc64-lost-hits" in notes and "guest-disabled-host-debug" in notes


def test_run_plot_legend_beside_the_bars(ran):
    _, report = ran
    assert layout_problems(plot.run_figure(report)) == []


def test_sweep_plot_titled_by_what_its_cells_vary(compared_all):
    doc = compared_all
    keep = [r for r in doc["rows"] if r["cpu"] == "e500mc"]
    rows = [{**r, "vcpus": v, "program": "warn_storm"} for r in keep for v in (1, 2)]
    reports = [{**rep, "scenario": {**rep["scenario"], "vcpus": v}} for rep in doc["reports"]
               if rep["scenario"]["cpu"] == "e500mc" for v in (1, 2)]
    fig = plot.sweep_figure(rows, reports)
    assert fig._suptitle.get_text() == "kvmppc-cosim: sweep: strategies x vCPU counts (e500mc, warn_storm)"
    assert layout_problems(fig) == []
    assert plot.sweep_title([{**rows[0]}]) == "sweep: one cell (illegal, e500mc, x1, warn_storm)".replace(
        "illegal", rows[0]["strategy"])


def test_sweep_table_never_cuts_a_number_at_80_columns(compared_all):
    from rich.console import Console
    from cosim import render
    rows = [{**r, "vcpus": 2, "program": "warn_storm"} for r in compared_all["rows"]]
    rows[0]["user_latency_us"]["p50"].update(n=3, lo=1234.5, hi=9876.5, wide=True)
    console = Console(width=80, record=True, file=open("/dev/null", "w"))
    render.render_sweep(rows, console)
    text = console.export_text()
    assert "…" not in text
    assert "[1,234.5-9,876.5] ~" in text
    for r in rows[1:]:
        mid = r["user_latency_us"]["p50"]["mid"]
        if mid is not None:
            assert f"{mid:,.1f}" in text
