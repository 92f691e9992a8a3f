"""Pictures of reports (matplotlib, Agg backend: no display needed), written as PNG or SVG.

`compare_figure(rows, reports, title)`: one question per panel, by strategy x CPU model: do the debugger's
hits arrive (share of executions delivered, findings numbered and named), what does the guest's own trap
cost (process hops per WARN), how long does a hit take on this host (round trips). `run_figure(report)`: exits per vCPU by
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


def _wrap(label: str) -> str:
    """A strategy label on as many lines as it has words (`hw\nMSRP[DEP]=0`): tick labels stay narrow."""
    return label.replace(" ", "\n")


def compare_figure(rows: list[dict], reports: list[dict],
                   title: str = "breakpoint strategies x CPU models") -> Figure:
    """Three panels, each answering one question (its title): do the debugger's hits arrive (share of
    breakpoint executions delivered to the debugger, findings numbered on their bars and named in a
    note below); what does the guest's own trap cost (process hops per guest WARN: the thread's
    argument against the x86 model); how long does a hit take on this host (round trips). Columns are
    the rows' strategies (labels wrapped at spaces), one bar per CPU model in each."""
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    cpus = sorted({r["cpu"] for r in rows}, reverse=True)
    cell = {(r["strategy"], r["cpu"]): r for r in rows}
    width = 0.8 / len(cpus)
    lines = max(s.count(" ") + 1 for s in strategies)
    fig, axes = plt.subplots(3, 1, figsize=(max(11.0, 0.95 * len(strategies) * len(cpus)), 11.5 + 0.3 * lines),
                             constrained_layout=True)

    def x_of(i: int, j: int) -> float:
        return i - 0.4 + width * (j + 0.5)

    def columns(ax) -> None:
        ax.set_xticks(range(len(strategies)), [_wrap(s) for s in strategies], fontsize=8)
        ax.set_xlim(-0.6, len(strategies) - 0.4)

    cpu_handles = [Patch(facecolor=CPU_COLORS.get(c), label=c) for c in cpus]
    # 1. do the hits arrive?
    ax = axes[0]
    notes: list[str] = []
    for j, cpu in enumerate(cpus):
        for i, s in enumerate(strategies):
            r = cell.get((s, cpu))
            if r is None:
                continue
            share = 100.0 * r["hits"] / r["executed"] if r["executed"] else None
            bar = ax.bar(x_of(i, j), share or 0, width, color=CPU_COLORS.get(cpu))[0]
            label = "no execution" if share is None else f"{share:.0f}%"
            mark = ""
            if r["findings"]:
                bar.set_hatch("//")
                notes.append(f"[{len(notes) + 1}] {s} on {cpu}: {', '.join(r['findings'])}")
                mark = f" [{len(notes)}]"
            ax.annotate(label + mark, (x_of(i, j), share or 0), xytext=(0, 3), textcoords="offset points",
                        ha="center", va="bottom", fontsize=7, rotation=90 if mark else 0)
    ax.set_ylim(0, 160)
    ax.set_yticks([0, 25, 50, 75, 100])
    ax.set_ylabel("% of executions")
    columns(ax)
    ax.set_title("Do the debugger's hits arrive? Breakpoint executions delivered to the debugger "
                 "(hatched: the cell has a finding, named below)", fontsize=10)
    ax.legend(handles=cpu_handles + [Patch(facecolor="white", edgecolor="black", hatch="//",
                                           label="cell with a finding")],
              fontsize=8, loc="upper right", ncol=len(cpus) + 1)
    if notes:
        ax.text(0.0, -0.16 - 0.045 * lines, "findings: " + "; ".join(notes), transform=ax.transAxes,
                fontsize=7, ha="left", va="top", wrap=True)
    # 2. what does a guest's own trap cost?
    ax = axes[1]
    for j, cpu in enumerate(cpus):
        for i, s in enumerate(strategies):
            r = cell.get((s, cpu))
            if r is None:
                continue
            c = r["per_warn"]
            hops = c["hops"] if c["count"] else None
            ax.bar(x_of(i, j), hops or 0, width, color=CPU_COLORS.get(cpu))
            lv = c.get("exits_by_level") or {}
            where = max(lv, key=lambda k: lv[k] or 0) if c["count"] and any(lv.values()) else None
            ax.annotate("no WARN" if hops is None else f"{hops:g}" + (f" {where}" if where else ""),
                        (x_of(i, j), hops or 0), xytext=(0, 3), textcoords="offset points", ha="center",
                        va="bottom", fontsize=7, rotation=90)
    top = max((r["per_warn"]["hops"] or 0 for r in rows), default=0)
    ax.set_ylim(0, max(1.0, top) * 1.9)
    ax.set_ylabel("process hops per guest WARN")
    columns(ax)
    ax.set_title("What does the guest's own trap (a WARN) cost? Process hops per WARN, and the level that "
                 "handled it (counts: these transfer to hardware)", fontsize=10)
    ax.legend(handles=cpu_handles, fontsize=8, loc="upper right", ncol=len(cpus))
    # 3. how long does a hit take here?
    ax = axes[2]
    for j, cpu in enumerate(cpus):
        data, xs = [], []
        for i, s in enumerate(strategies):
            samples = [x for rep in reports if strategy_label(rep["scenario"]) == s and rep["scenario"]["cpu"] == cpu
                       for x in rep["exits"].get("latency_samples_us", {}).get("userspace", [])]
            if samples:
                data.append(samples)
                xs.append(x_of(i, j))
        if data:
            parts = ax.boxplot(data, positions=xs, widths=width * 0.8, showfliers=False, whis=(10, 90),
                               patch_artist=True, manage_ticks=False)
            for patch in parts["boxes"]:
                patch.set_facecolor(CPU_COLORS.get(cpu))
                patch.set_alpha(0.6)
    ax.set_yscale("log")
    ax.set_ylabel("round trip (us, log)")
    columns(ax)
    ax.set_title("How long does a debugger hit take on this host? Round trips between host processes "
                 "(box p25-p75, whiskers p10-p90; ranks here only)", fontsize=10)
    ax.legend(handles=cpu_handles, fontsize=8, loc="upper right", ncol=len(cpus))
    fig.suptitle(f"kvmppc-cosim: {title}", fontsize=12)
    return fig


def sweep_title(rows: list[dict]) -> str:
    """What a sweep's cells vary over: `sweep: strategies x vCPU counts (e500mc, warn_storm)`."""
    dims = [("strategies", "strategy"), ("CPU models", "cpu"), ("vCPU counts", "vcpus"), ("programs", "program")]
    varied = [name for name, key in dims if len({r[key] for r in rows}) > 1]
    fixed = [f"x{rows[0][key]}" if key == "vcpus" else str(rows[0][key])
             for name, key in dims if rows and len({r[key] for r in rows}) == 1]
    return "sweep: " + (" x ".join(varied) or "one cell") + (f" ({', '.join(fixed)})" if fixed else "")


def sweep_figure(rows: list[dict], reports: list[dict]) -> Figure:
    """compare_figure over a sweep's cells (rows with `vcpus` and `program`): a column per strategy, or per
    strategy x vCPU count x program when those vary too; titled by what the cells vary over."""
    several = len({(r["vcpus"], r["program"]) for r in rows}) > 1

    def label(strategy: str, vcpus, program) -> str:
        return f"{strategy} x{vcpus} {program}" if several else strategy
    shown = [{**r, "strategy": label(r["strategy"], r["vcpus"], r["program"])} for r in rows]
    shown_reports = [{**rep, "scenario": {**rep["scenario"], "strategy": label(
        strategy_label(rep["scenario"]), rep["scenario"]["vcpus"], rep["scenario"]["program"]),
        "msrp_dep": None}} for rep in reports]
    return compare_figure(shown, shown_reports, title=sweep_title(rows))


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
    ax.set_title("Where do each vCPU's exits go? Exits by reason @ handling level (totals)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)   # beside, never on a bar
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
    ax.set_title("How long do round trips take, by handling level? (host processes)", fontsize=10)
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
    ax.set_title(f"When do the exits happen? Exits over time per vCPU ({width * 1000:g} ms bins)", fontsize=10)
    ax.set_ylim(bottom=0)
    if ax.get_lines():
        ax.legend(fontsize=8, loc="best")
