"""Text rendering of reports (rich): what a person reads at the end of a run or a comparison."""
from __future__ import annotations

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text


def _mark(entry: dict) -> Text:
    if entry["ok"]:
        return Text("ok", style="bold green")
    if entry.get("excused_by_finding"):
        return Text("finding", style="bold yellow")
    return Text("FAIL", style="bold red")


def render_run(report: dict, console: Console | None = None) -> None:
    console = console or Console()
    sc = report["scenario"]
    verdict = Text("PASS", style="bold green") if report["ok"] else Text("FAIL", style="bold red")
    head = Text.assemble(f"{sc['name']}: ", (sc["strategy"], "bold"), f" on {sc['cpu']} x{sc['vcpus']}, "
                         f"guest {sc['program']}, {report['seconds']:.2f} s  ", verdict)
    parts = [head]
    if sc.get("description"):
        parts.append(Text(sc["description"], style="dim"))

    inv = Table(title="invariants", title_justify="left", show_edge=False, pad_edge=False)
    inv.add_column("check")
    inv.add_column("")
    inv.add_column("detail", overflow="fold")
    for name, e in report["invariants"].items():
        inv.add_row(name, _mark(e), e["detail"])
    parts.append(inv)

    if report["findings"]:
        ft = Table(title="findings", title_justify="left", show_edge=False, pad_edge=False)
        ft.add_column("finding")
        ft.add_column("predicted")
        ft.add_column("detail", overflow="fold")
        for f in report["findings"]:
            ft.add_row(f["id"], "yes" if f["predicted"] else Text("NO", style="bold red"), f["detail"])
        parts.append(ft)

    g = report.get("gdb")
    if g:
        parts.append(Text(f"gdb: {g['address']}, {g['connections']} connection(s), "
                          f"stopped {g['stopped_seconds']:.2f} s (not counted by the wall limit)"
                          + (", ended by gdb's kill" if g["killed"] else "")
                          + f"; scripted breakpoints: {g['script_breakpoints']}"
                          + (f"; not judged after kill: {', '.join(g['not_judged'])}" if g["not_judged"]
                             else "")))

    dh = report["debugger_hits"]
    bt = Table(title=f"debugger hits: {dh['total']} (stale {dh['stale']}, single-steps {dh['steps']})",
               title_justify="left", show_edge=False, pad_edge=False)
    for col in ("breakpoint", "address", "executed", "hits", "stale"):
        bt.add_column(col, justify="right" if col not in ("breakpoint",) else "left")
    for addr, r in dh["by_breakpoint"].items():
        bt.add_row(r["symbol"] or "?", addr, str(r["executed"]), str(r["hits"]), str(r["stale"]))
    parts.append(bt)

    gw = report["guest_warns"]
    parts.append(Text(f"guest WARNs: {gw['total']}" + (f" of {gw['expected']} expected" if gw["expected"]
                                                       is not None else "")
                      + f"; guest syscalls {gw['guest_syscalls']}; unexplained program interrupts "
                      f"{gw['unexplained_program_interrupts']}; re-injected by userspace "
                      f"{sum(dh['reinjected'].values())}"))

    ex = report["exits"]
    ct = Table(title=f"cost: {report['instructions']:,} guest instructions in {report['seconds']:.2f} s of run "
                     "(start-up and exits included); round trips by handling level",
               title_justify="left", show_edge=False, pad_edge=False)
    for col in ("level", "exits", "p50 us", "p99 us", "samples"):
        ct.add_column(col, justify="right" if col != "level" else "left")
    for lv, c in ex["by_level"].items():
        lat = ex["latency_us"].get(lv, {})
        ct.add_row(lv, f"{c:,}", _num(lat.get("p50")), _num(lat.get("p99")), str(lat.get("count", 0)))
    inproc = ex.get("kernel_in_vcpu_process_us", {})
    if inproc.get("count"):
        ct.add_row(Text("  of which emulated in the vCPU process", style="dim"), f"{inproc['count']:,}",
                   _num(inproc["p50"]), _num(inproc["p99"]), str(inproc["count"]))
    parts.append(ct)

    rt = Table(title="exits by reason and level", title_justify="left", show_edge=False, pad_edge=False)
    rt.add_column("reason")
    for lv in ex["by_level"]:
        rt.add_column(lv, justify="right")
    for ev, levels in ex["by_reason"].items():
        rt.add_row(ev, *(f"{levels.get(lv, 0):,}" for lv in ex["by_level"]))
    parts.append(rt)

    vt = Table(title="vCPUs", title_justify="left", show_edge=False, pad_edge=False)
    for col in ("vcpu", "state", "exit code", "instructions"):
        vt.add_column(col, justify="right" if col != "state" else "left")
    for v in report["vcpus"]:
        vt.add_row(str(v["vcpu"]), v["state"], str(v["exit_code"]), f"{v['instructions']:,}")
    parts.append(vt)
    if report["register_log"]:
        r = report["register_log"][0]
        parts.append(Text(f"register log: {len(report['register_log'])} entr(ies); first: vCPU {r['vcpu']} "
                          f"{r['what']} at {r['symbol'] or hex(r['pc'])}: r1={r['regs'][1]:#x} "
                          f"r3={r['regs'][3]:#x} lr={r['regs'][35]:#x}", style="dim"))
    for p in report["problems"]:
        parts.append(Text(f"problem: {p}", style="red"))
    console.print(Panel(Group(*parts), title="kvmppc-cosim", expand=False))


def _num(v):
    return "-" if v is None else f"{v:,.1f}"


def render_compare(rows: list[dict], console: Console | None = None) -> None:
    console = console or Console()
    cpus = sorted({r["cpu"] for r in rows}, reverse=True)
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    t = Table(title="breakpoint strategies: correctness and cost per hit", title_justify="left")
    t.add_column("strategy")
    for cpu in cpus:
        t.add_column(cpu, overflow="fold")
    for s in strategies:
        cells = []
        for cpu in cpus:
            r = next((x for x in rows if x["strategy"] == s and x["cpu"] == cpu), None)
            cells.append(_cell(r))
        t.add_row(s, *cells)
    console.print(t)
    console.print(Text("cell: verdict; debugger hits / planted words executed; guest WARNs / expected; "
                       "exits that reached userspace per debugger hit and their round trip p50; the kernel "
                       "round trip p50; findings (yellow: predicted by the 2010 thread)", style="dim"))


def _cell(r) -> Text:
    if r is None:
        return Text("-")
    style = "green" if r["verdict"] == "ok" else ("yellow" if r["verdict"] == "finding" else "red")
    lines = Text(r["verdict"].upper(), style=f"bold {style}")
    lines.append(f"\nhits {r['hits']}/{r['executed']}  WARN {r['warns']}/{r['warns_expected']}")
    per_hit = "-" if r["user_exits_per_hit"] is None else f"{r['user_exits_per_hit']:g}"
    lines.append(f"\nuserspace exits/hit {per_hit}, p50 {_num(r['user_p50_us'])} us")
    lines.append(f"\nkernel exit p50 {_num(r['kernel_p50_us'])} us")
    if r["findings"]:
        lines.append("\n" + ", ".join(r["findings"]), style="yellow")
    return lines
