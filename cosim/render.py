"""Text rendering of reports (rich): what a person reads at the end of a run or a comparison."""
from __future__ import annotations

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text


def _mark(entry: dict) -> Text:
    if entry["ok"] is None:
        return Text("not judged", style="bold magenta")
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
    if report.get("costs"):
        parts.extend(_cost_table(report["costs"]))

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
            ft.add_row(f["id"], "yes" if f["predicted"] else Text("no", style="bold yellow"), f["detail"])
        parts.append(ft)

    irq = report.get("interrupts_delivered", {}).get("total", {})
    if irq:
        parts.append(Text("interrupts delivered to the guest: " + "; ".join(
            f"{kind} {sum(v.values())} (" + ", ".join(f"{a} x{c}" for a, c in list(v.items())[:6])
            + (", ..." if len(v) > 6 else "") + ")" for kind, v in irq.items())))
    g = report.get("gdb")
    if g:
        parts.append(Text(f"gdb: {g['address']}, {g['connections']} connection(s), "
                          + (f"{g['dropped_not_reading']} dropped for not reading its replies, "
                             if g.get("dropped_not_reading") else "")
                          + f"stopped {g['stopped_seconds']:.2f} s (not counted by the wall limit)"
                          + (", ended by gdb's kill" if g["killed"] else "")
                          + f"; scripted breakpoints: {g['script_breakpoints']}"
                          + (f"; not judged after kill: {', '.join(g['not_judged'])}" if g["not_judged"]
                             else "")))

    dh = report["debugger_hits"]
    owners = dh.get("by_owner", {})
    split = (f"; scenario {owners.get('script', 0)}, gdb {owners['gdb']}" if owners.get("gdb") else "")
    bt = Table(title=f"debugger hits: {dh['total']} (stale {dh['stale']}, single-steps {dh['steps']}{split})",
               title_justify="left", show_edge=False, pad_edge=False)
    for col in ("breakpoint", "address", "executed", "hits", "stale"):
        bt.add_column(col, justify="right" if col not in ("breakpoint",) else "left")
    for addr, r in dh["by_breakpoint"].items():
        bt.add_row(r["symbol"] or "?", addr, str(r["executed"]), str(r["hits"]), str(r["stale"]))
    parts.append(bt)

    gw = report["guest_warns"]
    parts.append(Text((f"guest WARNs: {gw['total']}" if gw.get("judged", True) else
                       "guest WARNs: not judged (the guest exports no cnt_warn)")
                      + (f" of {gw['expected']} expected" if gw["expected"] is not None else "")
                      + f"; guest syscalls {gw['guest_syscalls']}; unexplained program interrupts "
                      f"{gw['unexplained_program_interrupts']}; re-injected by userspace "
                      f"{sum(dh['reinjected'].values())}"))

    board = report.get("board")
    if board:
        rt = board["mmio_round_trip_us"]
        devs = ", ".join(f"{k} {v:,}" for k, v in sorted(board["mmio_by_device"].items(), key=lambda kv: -kv[1]))
        mmu = board["mmu"][0] if board["mmu"] else {}
        tm = board["timers"][0] if board["timers"] else {}
        parts.append(Text.assemble(("board", "bold"), f": {board['mmio_exits']:,} MMIO exits ({devs}), round trip "
                                   f"p50 {rt['p50']} us p90 {rt['p90']} us; {len(board['unassigned'])} unmodelled "
                                   f"address(es); guest TLB writes {mmu.get('tlb_writes', 0)}, misses "
                                   f"{sum(mmu.get('misses', {}).values())}; timer interrupts "
                                   f"{sum(v for k, v in tm.get('delivered', {}).items() if k not in ('external', 'critical'))}"
                                   f", external {tm.get('delivered', {}).get('external', 0)}; serial transcript "
                                   f"{board['transcript'].count(chr(10))} lines"
                                   + ("" if board["serial_done"] in (None, True) or board.get("serial_failed")
                                      else " (end text never seen)")))
        if board.get("serial_failed"):
            lines = board["transcript"].splitlines()
            at = max((i for i, ln in enumerate(lines) if board["serial_failed"] in ln), default=len(lines))
            first = max(0, at - 24)
            parts.append(Text.assemble(("the guest failed", "bold red"), f": {board['serial_failed']}\n",
                                       "\n".join(lines[first:at + 1])))

    ex = report["exits"]
    parts.append(Text.assemble(("host round trips", "bold"), f": {report['instructions']:,} guest instructions in "
                               f"{report['seconds']:.2f} s of run (start-up and exits included). Latencies are "
                               "between Linux processes on this host: they rank strategies here, only the counts "
                               "above transfer to hardware.", style=""))
    ct = Table(show_edge=False, pad_edge=False)
    for col in ("level", "exits", "p50 us", "p90 us", "p99 us", "samples"):
        ct.add_column(col, justify="right" if col != "level" else "left")
    for lv, c in ex["by_level"].items():
        lat = ex["latency_us"].get(lv, {})
        ct.add_row(lv, f"{c:,}", _num(lat.get("p50")), _num(lat.get("p90")), _num(lat.get("p99")),
                   str(lat.get("count", 0)))
    inproc = ex.get("kernel_in_vcpu_process_us", {})
    if inproc.get("count"):
        ct.add_row(Text("  of which emulated in the vCPU process", style="dim"), f"{inproc['count']:,}",
                   _num(inproc["p50"]), "-", _num(inproc["p99"]), str(inproc.get("samples", inproc["count"])))
    parts.append(ct)

    rt = Table(title="exits by reason and level", title_justify="left", show_edge=False, pad_edge=False)
    rt.add_column("reason")
    for lv in ex["by_level"]:
        rt.add_column(lv, justify="right")
    for ev, levels in ex["by_reason"].items():
        rt.add_row(ev, *(f"{levels.get(lv, 0):,}" for lv in ex["by_level"]))
    parts.append(rt)
    if report.get("board") and ex.get("costliest"):      # a real guest: where the time goes
        kt = Table(title="costliest exit kinds (host time)", title_justify="left", show_edge=False, pad_edge=False)
        for col in ("kind", "count", "total ms", "mean us"):
            kt.add_column(col, justify="left" if col == "kind" else "right")
        for row in ex["costliest"]:
            kt.add_row(row["kind"], f"{row['count']:,}", f"{row['total_ms']:,}", f"{row['mean_us']}")
        parts.append(kt)

    vt = Table(title="vCPUs", title_justify="left", show_edge=False, pad_edge=False)
    for col in ("vcpu", "state", "exit code", "instructions"):
        vt.add_column(col, justify="right" if col != "state" else "left")
    for v in report["vcpus"]:
        vt.add_row(str(v["vcpu"]), v["state"], str(v["exit_code"]), f"{v['instructions']:,}")
    parts.append(vt)
    if report["register_log"]:
        log, dropped = report["register_log"], report.get("register_log_dropped", 0)
        r = log[0]
        regs = r["regs"]
        parts.append(Text(f"register log: {_plural(len(log), 'entry', 'entries')} in --json"
                          + (f" (the limit; {dropped} later ones not logged)" if dropped else "")
                          + f"; first: vCPU {r['vcpu']} {r['what']} at "
                          f"{r['symbol'] or hex(r['pc'])}: r1={regs['r1']:#x} r3={regs['r3']:#x} "
                          f"lr={regs['lr']:#x}", style="dim"))
    tr = report.get("transport")
    if tr and (tr["dropped"] or tr["refused"]):
        def per(table):
            return "; ".join(f"{n} " + ", ".join(f"{k} {v}" for k, v in c.items()) for n, c in table.items())
        parts.append(Text(f"transport {tr['kind']} ({tr['auth']}): dropped messages: {per(tr['dropped']) or 'none'}"
                          f"; refused connections: {per(tr['refused']) or 'none'}", style="yellow"))
    for p in report["problems"]:
        parts.append(Text(f"problem: {p}", style="red"))
    for u in report.get("outputs_unwritten", ()):
        parts.append(Text(f"not written: {u}", style="red"))
    console.print(Panel(Group(*parts), title="kvmppc-cosim", expand=False))


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _cost_table(costs: dict) -> list:
    """The machine-independent costs: per debugger hit and per guest WARN."""
    title = Text.assemble(("cost per event", "bold"), ": exits by the level that handled them, process hops, "
                          "messages, guest instructions in its handler (counts of the model: these transfer "
                          "to hardware)")
    t = Table(show_edge=False, pad_edge=False)
    for col in ("event", "count", "vCPU", "kernel", "userspace", "hops", "messages", "handler"):
        t.add_column(col, justify="left" if col == "event" else "right")
    for label, key in (("debugger hit", "per_hit"), ("guest WARN", "per_warn")):
        c = costs[key]
        lv = c["exits_by_level"]
        t.add_row(label, f"{c['count']:,}", _cnt(lv["vcpu"]), _cnt(lv["kernel"]), _cnt(lv["userspace"]),
                  _cnt(c["hops"]), _cnt(c["messages"]), _cnt(c.get("guest_instructions_in_handler")))
    return [title, t]


def _cnt(v):
    return "-" if v is None else f"{v:.2f}".rstrip("0").rstrip(".")


def _num(v):
    return "-" if v is None else f"{v:,.1f}"


def render_compare(rows: list[dict], console: Console | None = None) -> None:
    console = console or Console()
    cpus = sorted({r["cpu"] for r in rows}, reverse=True)
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    console.print(Text("breakpoint strategies: correctness and cost per debugger hit and per guest WARN",
                       style="bold"))
    t = Table()
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
    repeats = max((r.get("repeats", 1) for r in rows), default=1)
    console.print(Text(
        "cell: verdict; debugger hits / planted words executed; guest WARNs (/ expected); per hit and per WARN: "
        "exits by level (v = vCPU, k = kernel, u = userspace), process hops and messages. These counts "
        "transfer to hardware. Then the userspace round trip (hits) p50/p90/p99 in us: host round trips between "
        "Linux processes" + (f", median [min-max] over {repeats} repeats; ~ marks an interval too wide to rank "
                             "(max > 1.5 x min)" if repeats > 1 else " from one run (--repeat N for an interval)")
        + "; findings (yellow).", style="dim"))


def _events(c: dict) -> str:
    lv = c["exits_by_level"]
    if c["count"] == 0:
        return "none"
    exits = " ".join(f"{k[0]}{_cnt(v)}" for k, v in lv.items() if v)
    return f"{exits or 'no exit'}, {_cnt(c['hops'])} hops, {_cnt(c['messages'])} msgs"


def _cell(r) -> Text:
    if r is None:
        return Text("-")
    style = "green" if r["verdict"] == "ok" else ("yellow" if r["verdict"] == "finding" else "red")
    lines = Text.assemble((r["verdict"].upper(), f"bold {style}"))
    warns = f"{r['warns']}" + (f"/{r['warns_expected']}" if r["warns_expected"] is not None else "")
    lines.append(f"\nhits {r['hits']}/{r['executed']}  WARN {warns}")
    if "per_hit" in r:
        lines.append(f"\nhit: {_events(r['per_hit'])}")
        lines.append(f"\nWARN: {_events(r['per_warn'])}")
        lat = r["user_latency_us"]
        lines.append("\nRT us " + "/".join(_num(lat[q]["mid"]) for q in ("p50", "p90", "p99")))
        p50 = lat["p50"]
        if p50["n"] > 1:
            lines.append(f" [{_num(p50['lo'])}-{_num(p50['hi'])}]")
            if p50["wide"]:
                lines.append(" ~", style="bold yellow")
    if r["findings"]:
        lines.append("\n")
        lines.append(", ".join(r["findings"]), style="yellow")
    return lines


def _rt(p50: dict) -> str:
    """A cell's round-trip p50 (us), with its [min-max] over the cell's runs when there are several."""
    return _num(p50["mid"]) + (f" [{_num(p50['lo'])}-{_num(p50['hi'])}]" if p50["n"] > 1 else "")


def render_sweep(rows: list[dict], console: Console | None = None) -> None:
    """One line per cell of a sweep (seeds of a cell are its repeats)."""
    console = console or Console()
    console.print(Text("sweep: correctness and cost per debugger hit and per guest WARN", style="bold"))
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    # nothing is ever cut short: text columns fold at spaces, numbers keep their width (80 columns
    # included); a cell's findings go under its verdict
    rts = [_rt(r["user_latency_us"]["p50"]) for r in rows]
    t.add_column("cell", overflow="fold")
    t.add_column("runs", justify="right", no_wrap=True)
    t.add_column("verdict, findings", overflow="fold", min_width=len("FINDING"))
    t.add_column("per hit", overflow="fold")
    t.add_column("per WARN", overflow="fold")
    t.add_column("hit RT p50 us", justify="right", no_wrap=True, min_width=max([len(x) + 2 for x in rts] + [6]))
    for r, rt in zip(rows, rts):
        style = "green" if r["verdict"] == "ok" else ("yellow" if r["verdict"] == "finding" else "red")
        p50 = r["user_latency_us"]["p50"]
        rt_text = Text(rt)
        if p50["n"] > 1 and p50["wide"]:
            rt_text.append(" ~", style="bold yellow")
        verdict = Text(r["verdict"].upper(), style=f"bold {style}")
        for f in r["findings"]:
            verdict.append("\n" + f, style="yellow")
        t.add_row(f"{r['strategy']} {r['cpu']} x{r['vcpus']} {r['program']}", str(r["repeats"]), verdict,
                  _events(r["per_hit"]), _events(r["per_warn"]), rt_text)
    console.print(t)
    console.print(Text("per hit / per WARN: exits by level (v = vCPU, k = kernel, u = userspace), process hops and "
                       "messages: these counts transfer to hardware. hit RT: host round trips between Linux "
                       "processes, median [min-max] over the cell's seeds; ~ marks an interval too wide to rank.",
                       style="dim"))
