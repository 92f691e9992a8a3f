"""Pictures of reports (matplotlib, Agg backend: no display needed), written as PNG or SVG.

`compare_figure(rows, reports)`: grouped bars of messages and process hops per debugger hit and per
guest WARN by strategy x CPU model (the machine-independent costs), the distribution of host round trips
of debugger hits per cell, findings marked on their bars. `run_figure(report)`: exits per vCPU by
reason and level, the round-trip distributions by level, and below them exits over time: one step line
per vCPU, its exits per time bin since the run's start (the report's `exits.over_time`, which every vCPU
keeps without a trace). Each returns the Figure; `save(fig, path)` writes it.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from .report import strategy_label  # noqa: E402

CPU_COLORS = {"e500v2": "#4c72b0", "e500mc": "#dd8452"}
LEVEL_COLORS = {"vcpu": "#8c8c8c", "kernel": "#55a868", "userspace": "#c44e52"}
SUFFIXES = (".png", ".svg")


def check_path(path: str) -> str | None:
    """Why `path` cannot take a plot, or None."""
    if Path(path).suffix.lower() not in SUFFIXES:
        return f"{path!r}: expected a file name ending in .png or .svg"
    if not Path(path).parent.is_dir():
        return f"directory {str(Path(path).parent)!r} does not exist"
    return None


def save(fig: Figure, path: str) -> None:
    """Raises outfile.OutputError (one line) when the file cannot be written."""
    import io

    from . import outfile
    buf = io.BytesIO()
    try:
        fig.savefig(buf, dpi=110, format=Path(path).suffix.lower().lstrip(".") or "png")
    finally:
        plt.close(fig)
    outfile.write(path, buf.getvalue())


def compare_figure(rows: list[dict], reports: list[dict]) -> Figure:
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    cpus = sorted({r["cpu"] for r in rows}, reverse=True)
    cell = {(r["strategy"], r["cpu"]): r for r in rows}
    fig, axes = plt.subplots(3, 1, figsize=(11, 11), constrained_layout=True)
    width = 0.8 / len(cpus)
    for ax, key, what in ((axes[0], "per_hit", "debugger hit"), (axes[1], "per_warn", "guest WARN")):
        for j, cpu in enumerate(cpus):
            xs, msgs, hops = [], [], []
            for i, s in enumerate(strategies):
                r = cell.get((s, cpu))
                c = r[key] if r else None
                xs.append(i - 0.4 + width * (j + 0.5))
                msgs.append(c["messages"] or 0 if c else 0)
                hops.append(c["hops"] or 0 if c else 0)
            bars = ax.bar(xs, msgs, width, color=CPU_COLORS.get(cpu))
            ax.scatter(xs, hops, marker="_", s=300, color="black", zorder=3)
            for x, b, s in zip(xs, bars, strategies):
                r = cell.get((s, cpu))
                if r and r["findings"]:
                    b.set_hatch("//")
                    if key == "per_hit":
                        ax.text(x, 0.08, "\n".join(r["findings"]), rotation=90, ha="center", va="bottom",
                                fontsize=7, color="black", zorder=4)
                if r and r[key]["count"] == 0:
                    ax.annotate("none", (x, 0), xytext=(0, 3), textcoords="offset points", ha="center",
                                fontsize=7)
        handles = [Patch(facecolor=CPU_COLORS.get(c), label=f"{c}: messages") for c in cpus]
        handles += [Patch(facecolor="white", edgecolor="black", hatch="//", label="cell with a finding"),
                    Line2D([], [], color="black", marker="_", markersize=15, linestyle="", label="process hops")]
        ax.legend(handles=handles, fontsize=8, loc="upper right")
        ax.set_xticks(range(len(strategies)), strategies)
        ax.set_ylabel(f"per {what}")
        ax.set_title(f"cost per {what}: messages (bars) and process hops (marks); counts transfer to hardware",
                     fontsize=10)
        ax.set_ylim(0, max(1.0, ax.get_ylim()[1] * 1.3))
    ax = axes[2]
    data, labels, colors = [], [], []
    for s in strategies:
        for cpu in cpus:
            samples = [x for rep in reports if strategy_label(rep["scenario"]) == s and rep["scenario"]["cpu"] == cpu
                       for x in rep["exits"].get("latency_samples_us", {}).get("userspace", [])]
            data.append(samples or [float("nan")])
            labels.append(f"{s}\n{cpu}")
            colors.append(CPU_COLORS.get(cpu))
    parts = ax.boxplot(data, showfliers=False, whis=(10, 90), patch_artist=True)
    ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=7)
    for patch, c in zip(parts["boxes"], colors):
        patch.set_facecolor(c)
        patch.set_alpha(0.6)
    ax.set_yscale("log")
    ax.set_ylabel("round trip (us, log)")
    ax.set_title("debugger hit round trips: host processes, box p25-p75, whiskers p10-p90 (ranks on this host only)",
                 fontsize=10)
    fig.suptitle("kvmppc-cosim: breakpoint strategies x CPU models", fontsize=12)
    return fig


def run_figure(report: dict) -> Figure:
    sc = report["scenario"]
    fig = plt.figure(figsize=(12, 8.4), constrained_layout=True)
    axes = fig.subplot_mosaic([["exits", "latency"], ["time", "time"]], height_ratios=[4.8, 3.6])
    ax = axes["exits"]
    reasons = list(report["exits"]["by_reason"])
    vcpus = report["vcpus"]
    bottom = [0] * len(vcpus)
    hatches = dict(zip(reasons, ["", "//", "..", "xx", "\\\\", "++", "oo", "--"]))
    for reason in reasons:
        for lv, color in LEVEL_COLORS.items():
            h = [v["exits"].get(reason, {}).get(lv, 0) for v in vcpus]
            if any(h):
                ax.bar([f"vCPU {v['vcpu']}" for v in vcpus], h, bottom=bottom, color=color,
                       hatch=hatches.get(reason, ""), edgecolor="white", label=f"{reason} @ {lv}")
                bottom = [b + x for b, x in zip(bottom, h)]
    ax.set_ylabel("exits")
    ax.set_title("exits per vCPU by reason @ handling level (totals)", fontsize=10)
    ax.legend(fontsize=7)
    ax = axes["latency"]
    samples = report["exits"].get("latency_samples_us", {})
    every = [x for xs in samples.values() for x in xs if x > 0]
    bins = np.geomspace(min(every), max(every), 50) if every else 10
    for lv, xs in samples.items():
        if xs:
            ax.hist(xs, bins=bins, alpha=0.6, color=LEVEL_COLORS.get(lv), label=f"{lv} ({len(xs)})")
    ax.set_xscale("log")
    ax.set_xlabel("round trip (us, log): host processes")
    ax.set_ylabel("exits")
    ax.set_title("round-trip distribution by handling level", fontsize=10)
    ax.legend(fontsize=8)
    _exits_over_time(axes["time"], report)
    found = ", ".join(f["id"] + ("" if f["predicted"] else " (not predicted)") for f in report["findings"])
    verdict = "PASS" if report["ok"] else "FAIL: " + ", ".join(report["failed"])
    fig.suptitle(f"{sc['name']}: {sc['strategy']} on {sc['cpu']} x{sc['vcpus']}, {sc['program']}: {verdict}"
                 + (f"; findings: {found}" if found else ""), fontsize=11)
    return fig


def _exits_over_time(ax, report: dict) -> None:
    """One step line per vCPU: its exits in each bin (y: the report's counts as they are), at the bin's
    middle in seconds since the run's start; the x axis begins just before the vCPUs were started (the
    bins before are zero: the guest had not run)."""
    over = report["exits"].get("over_time") or {"bin_seconds": 0.01, "by_vcpu": []}
    width = over["bin_seconds"]
    for v, counts in zip(report["vcpus"], over["by_vcpu"]):
        if counts is None:         # that vCPU sent no stats (it died): nothing to draw
            continue
        ax.step([(i + 0.5) * width for i in range(len(counts))], counts, where="mid", linewidth=1,
                label=f"vCPU {v['vcpu']} ({sum(counts):,} exits)")
    started = over.get("vcpus_started_seconds")
    left = 0.0
    if started is not None:    # no exit can come before (the guest has not run): start-up not shown
        ax.axvline(started, color="black", linestyle=":", linewidth=1, label="vCPUs started")
        left = max(0.0, started - 5 * width)
    n = max((len(c) for c in over["by_vcpu"] if c is not None), default=0)
    ax.set_xlim(left, max(left + 10 * width, (n + 1) * width))
    ax.set_xlabel("seconds since the run's start")
    ax.set_ylabel(f"exits per {width * 1000:g} ms")
    ax.set_title(f"exits over time per vCPU ({width * 1000:g} ms bins)", fontsize=10)
    ax.set_ylim(bottom=0)
    if ax.get_lines():
        ax.legend(fontsize=8, loc="best")
