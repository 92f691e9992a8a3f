"""The run report: invariants, findings and costs computed from what a run produced (RunData), as a
JSON-ready dict and as text for a person.

Ground truth comes from the silicon, not from the debugger: each vCPU counts every execution of a word
that differs from the loaded image (a planted breakpoint) and every host IAC event; the guest counts
its own WARNs, syscalls and unexplained program interrupts in RAM. A predicted finding (the thread's
prediction for this strategy and CPU) excuses the invariant it explains; anything else failing makes
the run fail (exit status 1).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from . import costs, exit_rate
from .isa import IVOR_BY_NAME, USER_SPRS, Kind, classify
from .strategies import Match, strategy as get_strategy
from .vcpu.runpage import LEVELS

PROGRAMS_WITH_OWN_IAC = ("guest_iac",)
PROGRAMS_CHECKING_CODE = ("selfcheck",)


@dataclass(frozen=True)
class Finding:
    id: str
    predicted: bool
    detail: str
    excuses: tuple[str, ...] = ()


def percentile(values: list[int], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(q / 100 * (len(s) - 1)))))
    return float(s[k])


def _sum_maps(maps) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in maps:
        for k, v in m.items():
            out[k] = out.get(k, 0) + v
    return out


def build_report(data) -> dict:
    cfg = data.config
    strat = get_strategy(cfg.debug.strategy)
    cpu = cfg.machine.cpu
    n = cfg.machine.vcpus
    program = data.image.path.stem
    vstats = [data.stats.get(f"vcpu{i}", {}) for i in range(n)]
    user = data.stats.get("userspace", {})
    kernel = data.stats.get("kernel", {})
    guest = data.guest
    sym = data.image.symbol_at

    planted = _sum_maps(v.get("planted_exec", {}) for v in vstats)
    host_iac = _sum_maps(v.get("host_iac", {}) for v in vstats)
    # host debug events that did not happen because the guest's MSR[DE] was 0 under MSRP[DEP] = 0
    missed = {k: _sum_maps(v.get("host_debug_missed", {}).get(k, {}) for v in vstats)
              for k in ("iac", "dac", "step")}
    # what the harness delivered to the guest, per vCPU: {kind: {"0x<srr0>": n}}
    irq_by_vcpu = [v.get("interrupts", {}) for v in vstats]
    delivered_all: dict[str, dict[str, int]] = {}
    for d in irq_by_vcpu:
        for kind, by_srr0 in d.items():
            delivered_all[kind] = _sum_maps((delivered_all.get(kind, {}), by_srr0))
    hits = user.get("hits", {})
    # stale exits retried at the same PC: by userspace's verdict, or by the kernel (trap-kernel's
    # table, or a strategy whose word the kernel recognises) without reaching userspace
    stale = _sum_maps((user.get("stale", {}), kernel.get("stale", {})))
    total_hits = sum(hits.values())
    # each front end's hits: the scenario's own breakpoints ("script") and gdb's, an execution that
    # both broke on counted once in each; the scenario's expectations judge the script's alone
    by_owner = {o: sum(v.values()) for o, v in user.get("hits_by_owner", {}).items()}
    script_hits = by_owner.get("script", 0) if "hits_by_owner" in user else total_hits
    # what the silicon saw: planted words executed, and host IAC events (a gdb `hbreak` is an IAC under
    # any strategy, so its hits compare with IAC events, not with planted executions)
    truth = _sum_maps((planted, host_iac, missed["iac"]))
    addresses = sorted(set(truth) | set(hits) | set(stale), key=lambda a: int(a, 16))
    per_bp = {a: {"symbol": sym(int(a, 16)), "executed": truth.get(a, 0), "hits": hits.get(a, 0),
                  "stale": stale.get(a, 0)} for a in addresses}
    lost = {a: r["executed"] - r["hits"] - r["stale"] for a, r in per_bp.items()
            if r["executed"] != r["hits"] + r["stale"]}

    warns_judged = "cnt_warn" in guest    # the guest exports the project's WARN counters
    warns = sum(guest.get("cnt_warn", [0] * n))
    bad_prog = sum(guest.get("cnt_bad_prog", [0] * n))
    guest_syscalls = sum(guest.get("cnt_syscall", [0] * n))
    # breakpoint words that went to the guest's own syscall vector (sc64 on E.HV): SRR0 = site + 4
    planted_sites = {int(a, 16) for a, c in planted.items() if c}
    sc_to_guest = {f"{int(a, 16) - 4:#x}": c for a, c in delivered_all.get("syscall", {}).items()
                   if int(a, 16) - 4 in planted_sites}
    # program interrupts delivered at a breakpoint address whose own instruction cannot raise one: a
    # breakpoint (or a stale exit) delivered to the guest
    bogus = {a: c for a, c in delivered_all.get("program", {}).items()
             if int(a, 16) in planted_sites and not _interrupts(data.image, int(a, 16))}
    expected_warns = None
    if "warns_per_iter" in data.image and guest.get("cnt_iter"):
        expected_warns = data.image.read_word(data.image.symbol("warns_per_iter")) * sum(guest["cnt_iter"])
    warn_sites = {e.addr for e in data.image.bug_table() if int(e.kind) == 1}
    # the first min(cnt_warn, 16) entries of each vCPU's WARN log: each must be a WARN site's address
    bad_srr0 = sorted({a for i, row in enumerate(guest.get("warn_log_head", []))
                       for a in row[:min(guest["cnt_warn"][i], 16)] if a not in warn_sites})

    # --- findings ----------------------------------------------------------------------------------
    findings: list[Finding] = []
    predicted = set(strat.predicted.get(cpu, ()))
    if not any(planted.values()):          # sc64-lost-hits needs a planted sc 64 that ran (issue 20)
        predicted.discard("sc64-lost-hits")
    n_bps = len(cfg.debug.breakpoints)
    if strat.match is Match.IAC and n_bps > 2:
        predicted.add("hw-slots-exhausted")
    if n_bps and program in PROGRAMS_WITH_OWN_IAC:
        predicted.add("guest-debug-lost")
    if n_bps and strat.patches_code and program in PROGRAMS_CHECKING_CODE:
        predicted.add("patched-code-visible")
    if lost and sc_to_guest and strat.name == "sc64":
        findings.append(Finding("sc64-lost-hits", "sc64-lost-hits" in predicted,
                                f"{sum(lost.values())} breakpoint hit(s) lost; {sum(sc_to_guest.values())} "
                                f"breakpoint word(s) delivered to the guest's own syscall vector: "
                                f"{_by_site(sc_to_guest, sym)}: E.HV never exits on sc",
                                excuses=("debugger-hits-exactly-once",)))
    if not cfg.machine.dep and strat.match is Match.IAC and n_bps and any(missed.values()):
        # predicted only where it happened: a hardware breakpoint whose site always runs with the
        # guest's MSR[DE] = 1 misses nothing (issue 20)
        predicted.add("guest-disabled-host-debug")
    if any(missed.values()):
        findings.append(Finding("guest-disabled-host-debug", "guest-disabled-host-debug" in predicted,
                                f"MSRP[DEP] = 0 and the guest's MSR[DE] = 0: host debug events that did not "
                                f"happen: {sum(missed['iac'].values())} instruction breakpoint(s) "
                                f"({_by_site(missed['iac'], sym)}), {sum(missed['dac'].values())} watchpoint(s), "
                                f"{sum(missed['step'].values())} single-step request(s)",
                                excuses=("debugger-hits-exactly-once",)))
    if user.get("refused"):
        findings.append(Finding("hw-slots-exhausted", "hw-slots-exhausted" in predicted,
                                _counted(user["refused"])))
    if user.get("unmapped"):
        findings.append(Finding("breakpoint-unmapped", False, _counted(user["unmapped"])))
    # the guest's own IAC events while the host owned the debug facility, counted by the silicon for
    # any guest (issue 20), with what the guest wrote to DBCR0 and what it reads back
    dbg_lost = _sum_maps(v.get("guest_debug_lost", {}) for v in vstats)
    if dbg_lost:
        wrote, reads = next((v["guest_debug_armed"] for v in vstats if v.get("guest_debug_armed")), (None, None))
        findings.append(Finding("guest-debug-lost", True,
                                f"{sum(dbg_lost.values())} of the guest's own debug event(s) did not reach it "
                                f"(the host owns the debug facility while it debugs): its IAC at "
                                f"{_by_site(dbg_lost, sym)}"
                                + (f"; it wrote DBCR0 = {wrote:#010x}" if wrote is not None else "")
                                + (f" and reads back DBCR0 = {reads:#010x}" if reads is not None else "")))
    elif program in PROGRAMS_WITH_OWN_IAC and guest.get("cnt_iter"):
        expected_dbg = 2 * sum(guest["cnt_iter"])
        got = sum(guest.get("cnt_debug", [0]))
        if got < expected_dbg:
            findings.append(Finding("guest-debug-lost", "guest-debug-lost" in predicted,
                                    f"the guest's own debug events: {got} of {expected_dbg} delivered "
                                    "(the host owns the debug facility while it debugs)"))
    planted_reads = _sum_maps(v.get("planted_reads", {}) for v in vstats)
    if planted_reads:      # counted by the silicon for any guest (issue 20); KVM shows them too
        findings.append(Finding("patched-code-visible", True,
                                f"the guest read planted breakpoint words {sum(planted_reads.values())} time(s) "
                                f"(it sees the breakpoint word, as under KVM): {_by_site(planted_reads, sym)}"))
    seen_at_boot = _patched_at_boot(data.image, guest.get("boot_checksum", []))
    if (sum(guest.get("cnt_mismatch", [0])) or seen_at_boot) and not planted_reads:
        findings.append(Finding("patched-code-visible", "patched-code-visible" in predicted,
                                f"the guest saw its own code modified: {sum(guest.get('cnt_mismatch', [0]))} "
                                f"checksum mismatch(es) while running, {seen_at_boot} vCPU(s) checksummed "
                                "planted breakpoints at boot"))
    reinjected = user.get("reinjected", {})
    if reinjected:
        findings.append(Finding("guest-traps-via-userspace", strat.name == "trap-user",
                                f"{sum(reinjected.values())} guest-owned event(s) made a userspace round "
                                f"trip before being re-injected: {_kv(reinjected)}"))
    skipped = user.get("traps_skipped", {})
    delivered = user.get("traps_delivered", {})
    if skipped:
        findings.append(Finding("gdb-skipped-guest-traps", False,
                                f"{sum(skipped.values())} guest trap(s) whose condition held skipped by the "
                                "debugger (gdb takes tw/twi under a breakpoint for a permanent breakpoint and "
                                f"writes PC = site + 4): {_by_site(skipped, sym)}; debug.keep_guest_traps "
                                "delivers them instead"))
    if delivered:
        findings.append(Finding("gdb-trap-skips-delivered", False,
                                f"{sum(delivered.values())} time(s) gdb moved PC past a firing guest trap; the "
                                f"guest's program interrupt was delivered instead: {_by_site(delivered, sym)}"))
    overwritten = user.get("overwritten", {})
    over_exec = _sum_maps(v.get("overwritten_exec", {}) for v in vstats)
    if overwritten or over_exec:
        findings.append(Finding("breakpoint-overwritten", False,
                                f"{len(set(overwritten) | set(over_exec))} planted breakpoint(s) overwritten by "
                                "the guest (the debugger leaves its word there, as QEMU does): "
                                + ", ".join(f"{sym(int(a, 16)) or a} now {w:#010x}" for a, w in overwritten.items())
                                + f"; {sum(over_exec.values())} execution(s) of the guest's word there never "
                                f"reached the debugger" + (f" ({_by_site(over_exec, sym)})" if over_exec else "")))
    lost_ticks = {i: t["fired"].get("dec", 0) - t["delivered"].get("decrementer", 0) - t.get("merged", {}).get("dec", 0)
                  - (1 if t.get("pending", {}).get("dec") else 0)
                  for i, t in enumerate(v.get("timers") or {} for v in vstats) if t}
    if any(n > 0 for n in lost_ticks.values()):       # (issue 21: `cosim compare` names the strategy that loses one)
        findings.append(Finding("timer-interrupts-lost", False, ", ".join(
            f"vCPU {i}: {n} decrementer interrupt(s) expired with TCR[DIE] and never delivered"
            for i, n in lost_ticks.items() if n > 0)))
    excused = {inv for f in findings if f.predicted for inv in f.excuses}

    # --- invariants --------------------------------------------------------------------------------
    # gdb's `kill` is a normal end: invariants are judged on what ran; what needs the whole run
    # (expected counts, predicted findings, the forced race) is not judged and says so
    killed = data.outcome == "killed-by-debugger"
    skipped_by_kill: list[str] = []    # what a gdb kill leaves unjudged (it needs the whole run)
    inv: dict[str, dict] = {}

    def check(name, ok, detail):
        entry = {"ok": bool(ok), "detail": detail}
        if not ok and name in excused:
            entry["excused_by_finding"] = True
        inv[name] = entry

    def not_judged(name, why):
        inv[name] = {"ok": None, "judged": False, "detail": f"not judged: {why}"}

    check("debugger-hits-exactly-once", not lost,
          f"{total_hits} hit(s) at {len(per_bp)} address(es), every execution of a planted word accounted for"
          + (f"; {len(overwritten)} breakpoint(s) overwritten by the guest (finding breakpoint-overwritten)"
             if overwritten else "") if not lost
          else "executions not delivered once: " + ", ".join(
              f"{per_bp[a]['symbol'] or a}: {d:+d}" for a, d in lost.items()))
    # a killed run, or one stopped at the wall limit, may stop inside an iteration: its WARNs are
    # counted, the iteration not (issue 20: "guest WARNs 82577 of 82575 expected" at the wall limit)
    in_flight = 0
    if (killed or data.outcome == "wall-limit") and expected_warns is not None:
        in_flight = data.image.read_word(data.image.symbol("warns_per_iter")) * n
    warn_ok = (bad_prog == 0 and not bad_srr0 and not skipped and not bogus
               and (expected_warns is None or expected_warns <= warns <= expected_warns + in_flight))
    progs = sum(delivered_all.get("program", {}).values())
    if not warns_judged and not skipped and not bogus:
        not_judged("guest-traps-to-guest-once",
                   f"{program} exports no WARN counters (cnt_warn); the harness delivered {progs} program "
                   "interrupt(s) to it (see interrupts_delivered); [[expect.interrupts]] judges them")
    else:
        check("guest-traps-to-guest-once", warn_ok,
          f"guest WARNs {warns}" + (f" of {expected_warns} expected" if expected_warns is not None else "")
          + f", unexplained program interrupts {bad_prog}"
          + (f", SRR0 not a WARN site: {', '.join(hex(a) for a in bad_srr0)}" if bad_srr0 else "")
          + (f", {sum(skipped.values())} guest trap(s) skipped by the debugger" if skipped else "")
          + (f", breakpoint(s) delivered to the guest as program interrupts: {_by_site(bogus, sym)}"
             if bogus else ""))
    race = cfg.debug.race is not None
    n_stale = sum(stale.values())
    forced = user.get("script", {}).get("race_forced", 0)
    check("stale-exit-never-delivered",
          bad_prog == 0 and not bogus and (not race or killed or (forced >= 1 and n_stale >= 1)),
          f"{n_stale} stale exit(s) retried at the same PC, {bad_prog + sum(bogus.values())} bogus trap(s) "
          "delivered to the guest"
          + (f", race forced {forced} time(s)" if race else ""))
    if cfg.debug.detach_at_end and not data.pids:
        not_judged("code-restored-after-detach", "the run never started (no process came up): no guest "
                                                 "code was loaded or patched")
    elif cfg.debug.detach_at_end:
        left, own = _not_restored(data.code_diff, user, strat)
        check("code-restored-after-detach", not left and data.detached is not None,
              f"{len(left)} planted word(s) left in guest code, first at {left[0][0]:#x}" if left
              else "the debugger never detached (no restore to check)" if data.detached is None
              else "guest code as the guest itself last wrote it" + (
                  f" ({own} word(s) it rewrote differ from the image)" if own else " (the loaded image)"))
    left = {k: v for k, v in data.leftovers.items() if v}
    check("no-leftovers", not left, "no process, shared-memory block or socket left" if not left
          else "left behind: " + "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in left.items()))
    codes = [v.get("exit_code") for v in vstats]
    states = [s.get("state") for s in data.vcpu_state]
    want = cfg.expect.exit_code if cfg.expect.exit_code is not None else 0
    odd = [f"vCPU {v}: {why}" for v, (code, why) in sorted(data.halts.items()) if code != want]
    short = _short_of_iterations(data, guest, n)
    check("run-completed", data.outcome in ("completed", "killed-by-debugger") and all(c == want for c in codes)
          and not short,
          f"outcome {data.outcome}; vCPU states {_tally(states)}; exit codes {_tally(codes)}"
          + "".join(f"; {x}" for x in odd + short + data.problems))
    found_ids = {f.id for f in findings}
    if killed:
        skipped_by_kill = [name for name, on in (
            ("expect-debugger-hits", cfg.expect.debugger_hits is not None),
            ("expect-guest-warns", cfg.expect.guest_warns is not None),
            ("expect-findings", cfg.expect.findings is not None),
            ("predictions-confirmed", True)) if on]
    if cfg.expect.debugger_hits is not None and not killed:
        check("expect-debugger-hits", script_hits == cfg.expect.debugger_hits,
              f"{script_hits} hit(s) of the scenario's breakpoints, expected {cfg.expect.debugger_hits}"
              + (f" (gdb's breakpoints: {by_owner['gdb']} hit(s), not judged)" if by_owner.get("gdb") else ""))
    if cfg.expect.guest_warns is not None and killed:
        pass                                       # listed in skipped_by_kill
    elif cfg.expect.guest_warns is not None and not warns_judged:
        not_judged("expect-guest-warns", f"{program} exports no WARN counters (cnt_warn)")
    elif cfg.expect.guest_warns is not None:
        check("expect-guest-warns", warns == cfg.expect.guest_warns,
              f"{warns} WARN(s), expected {cfg.expect.guest_warns}")
    if cfg.expect.memory is not None:
        bad_mem = _memory_mismatches(cfg.expect.memory, data.memory, data.image)
        check("expect-memory", not bad_mem and len(data.memory) == len(cfg.expect.memory),
              f"{len(cfg.expect.memory)} area(s) x {n} vCPU(s) as expected" if not bad_mem and data.memory
              else "; ".join(bad_mem[:8]) or "guest memory was not read at the end of the run")
    if cfg.expect.interrupts is not None:
        bad_irq = _interrupt_mismatches(cfg.expect.interrupts, irq_by_vcpu, data.image)
        check("expect-interrupts", not bad_irq,
              "every vCPU took exactly the expected interrupts ("
              + _kv({k: sum(v.values()) for k, v in delivered_all.items()}) + ")"
              if not bad_irq else "; ".join(bad_irq[:8]))
    if cfg.expect.findings is not None and not killed:
        missing = sorted(set(cfg.expect.findings) - found_ids)
        check("expect-findings", not missing, f"expected findings missing: {', '.join(missing)}" if missing
              else f"all expected findings reported: {', '.join(sorted(cfg.expect.findings))}")
    missing_predicted = sorted(predicted - found_ids)
    if not killed:
        check("predictions-confirmed", not missing_predicted,
              "every finding the thread predicted was observed" if not missing_predicted else
              f"predicted but not observed: {', '.join(missing_predicted)}")

    # --- costs -------------------------------------------------------------------------------------
    lat: dict[str, list[int]] = {lv: [] for lv in LEVELS}
    for v in vstats:
        for lv, samples in v.get("latency_ns", {}).items():
            lat.setdefault(lv, []).extend(samples)
    by_level = {lv: 0 for lv in LEVELS}
    by_reason: dict[str, dict[str, int]] = {}
    vcpus = []
    for i, s in enumerate(data.vcpu_state):
        for ev, levels in s["exits"].items():
            for lv, c in levels.items():
                by_level[lv] += c
                by_reason.setdefault(ev, {}).setdefault(lv, 0)
                by_reason[ev][lv] += c
        vcpus.append({"vcpu": i, "state": s["state"], "instructions": s["instructions"],
                      **({"last_stop_pc": f"{s['pc']:#010x}"} if "pc" in s else {}),
                      "exit_code": codes[i] if i < len(codes) else None, "exits": s["exits"],
                      **({"idle": vstats[i]["idle"]} if i < len(vstats) and vstats[i].get("idle") else {}),
                                                              # (MSR[WE]/wait halts: cosim/vcpu/idle.py)
                      # (deterministic: the quanta its block hook began without Python, cosim/baton.h)
                      **({"baton": vstats[i]["baton"]} if i < len(vstats) and vstats[i].get("baton") else {})})
    inproc = [x for v in vstats for x in v.get("inprocess_kernel_ns", [])]
    instructions = sum(s["instructions"] for s in data.vcpu_state)
    exits = {"by_level": by_level, "by_reason": by_reason,
             # the round trips themselves (us, at most 4000 per level, evenly subsampled): for plots
             "latency_samples_us": {lv: [round(x / 1000.0, 1) for x in v[::max(1, -(-len(v) // 4000))]]
                                    for lv, v in lat.items() if lv != "vcpu"},
             "latency_us": {lv: {"count": len(v),
                                 "p50": _us(percentile(v, 50)), "p90": _us(percentile(v, 90)),
                                 "p99": _us(percentile(v, 99)),
                                 "mean": _us(statistics.fmean(v) if v else None)}
                            for lv, v in lat.items()},
             # KVM PR emulation of privileged instructions, run inside the vCPU process for speed but
             # counted at level "kernel" (DESIGN.md): its handling time, kept apart from real crossings
             "kernel_in_vcpu_process_us": {"count": max(len(inproc), sum(v.get("inprocess_kernel_total", 0)
                                                                         for v in vstats)),
                                           "samples": len(inproc), "p50": _us(percentile(inproc, 50)),
                                           "p99": _us(percentile(inproc, 99))},
             # what the exits handled in the vCPU process cost, by kind (an emulated instruction by its
             # SPR, a TLB miss by access), with userspace's MMIO round trips: the ten costliest first
             "costliest": _costliest(vstats),
             # each vCPU's exits per time bin since the run's start (cosim/exit_rate.py; None: no stats)
             "over_time": {**exit_rate.align([v.get("exits_over_time") for v in vstats]),
                           "vcpus_started_seconds": getattr(data, "started_seconds", None)}}
    board = _board(user.get("board"), vstats)
    # asynchronous interrupts (decrementer, FIT, watchdog): each expiry the guest enabled reaches it
    # exactly once (judged from what the vCPU core delivered; one still pending at the end is counted)
    timer_rows = [(i, v["timers"]) for i, v in enumerate(vstats) if v.get("timers")]
    if any(sum(t["fired"].values()) for _, t in timer_rows):
        bad = []
        for i, t in timer_rows:      # (FIT and watchdog status bits are brought up to date lazily)
            fired, got = t["fired"].get("dec", 0), t["delivered"].get("decrementer", 0)
            merged = t.get("merged", {}).get("dec", 0)
            pending = 1 if t.get("pending", {}).get("dec") else 0
            if fired != got + merged + pending:
                bad.append(f"vCPU {i} decrementer: {fired} expired with TCR[DIE], {got} delivered, {merged} "
                           f"merged into a pending one, {pending} pending at the end")
        check("async-interrupts-delivered-once", not bad,
              "every timer expiry the guest enabled was delivered once: " + ", ".join(
                  f"vCPU {i} {t['delivered'].get('decrementer', 0)} decrementer" for i, t in timer_rows)
              if not bad else "; ".join(bad))
    if cfg.expect.serial is not None:
        missing = [line for line in cfg.expect.serial if line not in (board or {}).get("transcript", "")]
        check("expect-serial", not missing,
              f"all {len(cfg.expect.serial)} expected line(s) in the serial transcript" if not missing
              else "missing from the serial transcript: " + "; ".join(repr(x) for x in missing))
    failed = [k for k, v in inv.items() if v["ok"] is False and not v.get("excused_by_finding")]
    stopped = getattr(data, "gdb_stopped_seconds", 0.0)
    running = data.seconds - stopped
    gdb = None
    if data.gdb_address is not None:
        script_bps = user.get("script", {}).get("planned", {})
        g = user.get("gdb", {})
        gdb = {"address": data.gdb_address, "connections": g.get("connections"),
               "detaches": g.get("detaches"), "killed": killed,
               "dropped_not_reading": g.get("dropped_not_reading", 0),
               "stopped_seconds": round(stopped, 3),
               # gdb's detach removes only gdb's own points: the scenario's stay in place
               "script_breakpoints": ("kept across the gdb session(s): " + ", ".join(script_bps.values())
                                      if script_bps else "none configured"),
               "not_judged": skipped_by_kill}
    report = {
        "scenario": {"name": cfg.name, "description": cfg.description, "source": cfg.source,
                     "cpu": cpu, "vcpus": n, "strategy": strat.name, "program": program,
                     "msrp_dep": cfg.machine.dep if cpu == "e500mc" else None,
                     "strategy_summary": strat.summary},
        "outcome": data.outcome,
        "board": board,
        "ok": not failed,
        "failed": failed,
        "seconds": round(data.seconds, 3),
        "invariants": inv,
        "findings": [{"id": f.id, "predicted": f.predicted, "detail": f.detail} for f in findings],
        "vcpus": vcpus,
        "exits": exits,
        "instructions": instructions,
        "mips": round(instructions / running / 1e6, 2) if running > 0 else None,
        "interrupts_delivered": {"total": delivered_all, "by_vcpu": irq_by_vcpu},
        "host_debug_missed": missed,
        "not_judged": [k for k, v in inv.items() if v["ok"] is None],
        "debugger_hits": {"total": total_hits, "by_breakpoint": per_bp,
                          "by_owner": {"script": script_hits, **{o: c for o, c in by_owner.items()
                                                                  if o != "script"}},
                          "by_vcpu": user.get("hits_by_vcpu", {}), "stale": n_stale,
                          "steps": user.get("steps", 0), "watch": user.get("watch", {}),
                          "reinjected": reinjected, "inserts": user.get("inserts", 0),
                          "removes": user.get("removes", 0), "refused": user.get("refused", []),
                          "guest_traps_skipped": skipped, "guest_traps_delivered": delivered},
        "guest_warns": {"total": warns, "judged": warns_judged, "expected": expected_warns,
                        "by_vcpu": guest.get("cnt_warn", []),
                        "unexplained_program_interrupts": bad_prog, "guest_syscalls": guest_syscalls},
        "guest": {k: v for k, v in guest.items() if k != "warn_log_head"},
        "kernel": {"decisions": kernel.get("decisions", {}), "malformed": kernel.get("malformed", 0)},
        "transport": _transport(cfg, getattr(data, "transport", {})),
        "register_log": _named_registers(user.get("script", {}).get("register_log", [])),
        "register_log_dropped": user.get("script", {}).get("register_log_dropped", 0),
        "problems": data.problems,
        "outputs_unwritten": list(getattr(data, "unwritten", [])),   # outputs lost (full disk...): exit 2
        "logs": [{"from": a, "level": b, "text": c} for a, b, c in data.logs[:100]],
        "gdb": gdb,
        "config": cfg.to_dict(),
    }
    handlers: dict[str, list[int]] = {}
    for v in vstats:
        for ivor, (n_ret, n_ins) in v.get("handler_instructions", {}).items():
            acc = handlers.setdefault(ivor, [0, 0])
            acc[0] += n_ret
            acc[1] += n_ins
    report["guest_handlers"] = {f"ivor{k}": {"returns": r, "instructions": i} for k, (r, i) in
                                sorted(handlers.items(), key=lambda kv: int(kv[0]))}
    messages = _sum_maps([*(v.get("messages", {}) for v in vstats), user.get("messages", {}),
                          kernel.get("messages", {})])
    report["costs"] = costs.of(report, strat.hit_event[cpu].value, messages)
    return report


def _transport(cfg, counters: dict[str, dict]) -> dict:
    """What each process's transport dropped (messages) and refused (connections), by kind."""
    auth = sorted({c.get("auth") for c in counters.values() if c.get("auth")})
    return {"kind": cfg.machine.transport, "auth": auth[0] if len(auth) == 1 else auth,
            "dropped": {n: c["dropped"] for n, c in sorted(counters.items()) if c.get("dropped")},
            "refused": {n: c["refused"] for n, c in sorted(counters.items()) if c.get("refused")}}


def strategy_label(scenario: dict) -> str:
    """A report's strategy as compare rows name it: `hw MSRP[DEP]=0` for E.HV's guest-owned debug mode."""
    return scenario["strategy"] + (" MSRP[DEP]=0" if scenario.get("msrp_dep") is False else "")


def _interrupts(image, addr: int) -> bool:
    """Can the loaded instruction at `addr` raise an interrupt of its own (trap, sc, privileged,
    illegal, or unknown: not in the image)?"""
    try:
        word = image.read_word(addr)
    except Exception:
        return True
    d = classify(word)
    if d.kind is Kind.MFSPR or d.kind is Kind.MTSPR:
        return d.spr not in USER_SPRS
    if d.kind is not Kind.ILLEGAL:
        return True
    if word >> 26 == 4:   # SPE (and AltiVec): unavailable, or illegal on a core without it (e500mc)
        return True
    try:          # isa.classify calls every ordinary instruction ILLEGAL: ask a disassembler
        import capstone
    except ImportError:  # pragma: no cover - capstone is a dependency
        return True
    md = capstone.Cs(capstone.CS_ARCH_PPC, capstone.CS_MODE_32 | capstone.CS_MODE_BIG_ENDIAN)
    return not any(True for _ in md.disasm(word.to_bytes(4, "big"), addr))


def _memory_mismatches(expects, memory: list, image) -> list[str]:
    out = []
    for k, (m, per_vcpu) in enumerate(zip(expects, memory, strict=False)):
        base = image.resolve(m.at)
        for i, got in enumerate(per_vcpu):
            for j, (w, g) in enumerate(zip(m.words, got, strict=True)):
                if w != g:
                    out.append(f"expect.memory[{k}] vCPU {i}: word {j} at {base + i * m.stride + 4 * j:#x} "
                               f"is {g:#x}, expected {w:#x}")
                    break
    return out


def _interrupt_mismatches(expects, delivered: list[dict], image) -> list[str]:
    """Per vCPU: every delivered (kind, SRR0) accounted for by [[expect.interrupts]] (config.py)."""
    out = []
    for i, d in enumerate(delivered):
        for kind in sorted(set(d) | {x.kind for x in expects}, key=lambda k: IVOR_BY_NAME.get(k, 999)):
            got = {int(a, 16): c for a, c in d.get(kind, {}).items()}
            rows = [x for x in expects if x.kind == kind]
            if not rows:
                out.append(f"vCPU {i}: {sum(got.values())} {kind} interrupt(s) not expected")
                continue
            exact = {image.resolve(x.srr0): x for x in rows if x.srr0 is not None}
            for addr, x in exact.items():
                if got.get(addr, 0) != x.count:
                    out.append(f"vCPU {i}: {kind} at SRR0 {addr:#x} ({image.symbol_at(addr) or '?'}): "
                               f"{got.get(addr, 0)}, expected {x.count}")
            total = next((x for x in rows if x.srr0 is None), None)
            if total is not None and sum(got.values()) != total.count:
                out.append(f"vCPU {i}: {sum(got.values())} {kind} interrupt(s), expected {total.count}")
            elif total is None:
                other = {a: c for a, c in got.items() if a not in exact}
                if other:
                    out.append(f"vCPU {i}: {kind} at unexpected SRR0: "
                               + ", ".join(f"{a:#x} x{c}" for a, c in sorted(other.items())))
    return out


def _not_restored(code_diff, user: dict, strat) -> tuple[list, int]:
    """Code words that differ from the image after detach, split into planted words left behind (an
    address the debugger patched still holding the word it planted there) and the guest's own writes
    (anything else: a debugger restores a word only where its planted word still is, as QEMU does).
    Without userspace's record of what it patched (it died), any strategy's planted word counts."""
    if "patched" in user:
        patched = {int(a, 16): w for a, w in user["patched"].items()}
        left = [d for d in code_diff if patched.get(d[0]) == d[2]]
    else:
        left = [d for d in code_diff if strat.word is not None and d[2] == strat.word]
    return left, len(code_diff) - len(left)


def _patched_at_boot(image, boot_checksums: list[int]) -> int:
    """vCPUs whose boot checksum of [check_begin, check_end) differs from the loaded image's: they
    booted with breakpoints already planted in the code they check (selfcheck.S's rotate-xor sum)."""
    if not boot_checksums or "check_begin" not in image:
        return 0
    start, end = image.symbol("check_begin"), image.symbol("check_end")
    c = 0
    for off in range(start, end - (end - start) % 4, 4):
        c = (((c << 1) | (c >> 31)) & 0xFFFFFFFF) ^ image.read_word(off)
    return sum(1 for b in boot_checksums if b != c)


def _short_of_iterations(data, guest: dict, n: int) -> list[str]:
    """vCPUs that halted by themselves with exit code 0 but did fewer iterations than configured (the
    project's guests count them in cnt_iter; a vCPU that silently skipped its work passes every other
    check). Judged only for a run that completed from the guest's own entry, without `until` and
    without gdb (which may move the guest anywhere), for a guest that counted iterations at all."""
    cfg = data.config
    cnt = guest.get("cnt_iter")
    if (data.outcome != "completed" or not cnt or not any(cnt[:n]) or "cfg_iterations" not in data.image
            or cfg.guest.until is not None or cfg.guest.entry is not None or data.gdb_address is not None):
        return []
    want = (cfg.guest.iterations if cfg.guest.iterations is not None
            else data.image.read_word(data.image.symbol("cfg_iterations")))
    return [f"vCPU {v} halted after {cnt[v]} of its {want} iterations"
            for v, (code, why) in sorted(data.halts.items())
            if code == 0 and why == "guest halted" and v < min(n, len(cnt)) and cnt[v] != want]


def _tally(values: list) -> str:
    """'halted x2, running' for ['halted', 'halted', 'running'] (first-seen order)."""
    counts: dict = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return ", ".join(f"{v}" + (f" x{n}" if n > 1 else "") for v, n in counts.items()) or "none"


def _counted(lines: list[str]) -> str:
    """Repeated sentences once each, with how often: 'X (10 times); Y'."""
    counts: dict[str, int] = {}
    for x in lines:
        counts[x] = counts.get(x, 0) + 1
    return "; ".join(x + (f" ({n} times)" if n > 1 else "") for x, n in counts.items())


def _kv(m: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in m.items())


REGISTER_NAMES = tuple(f"r{i}" for i in range(32)) + ("pc", "msr", "cr", "lr", "ctr", "xer")


def _named_registers(log: list[dict]) -> list[dict]:
    """Register log entries with `regs` as {name: value} (r0..r31, pc, msr, cr, lr, ctr, xer)."""
    return [{**e, "regs": dict(zip(REGISTER_NAMES, e["regs"]))} for e in log]


def _by_site(counts: dict[str, int], sym) -> str:
    return ", ".join(f"{sym(int(a, 16)) or a}: {n}" for a, n in sorted(counts.items()))


def _us(ns):
    return None if ns is None else round(ns / 1000.0, 2)


def _costliest(vstats: list[dict], top: int = 10) -> list[dict]:
    acc: dict[str, list[int]] = {}
    for v in vstats:
        for kind, (n, ns) in (v.get("cost_by_kind") or {}).items():
            a = acc.setdefault(kind, [0, 0])
            a[0] += n
            a[1] += ns
        mmio = v.get("mmio_total_ns")
        if mmio and mmio[0]:
            a = acc.setdefault("mmio (userspace round trip)", [0, 0])
            a[0] += mmio[0]
            a[1] += mmio[1]
    rows = sorted(acc.items(), key=lambda kv: -kv[1][1])[:top]
    return [{"kind": k, "count": n, "total_ms": round(ns / 1e6, 1), "mean_us": round(ns / n / 1000, 2)}
            for k, (n, ns) in rows]


def _board(stats: dict | None, vstats: list[dict]) -> dict | None:
    """The board's part of the report (a guest with devices): MMIO exits by device and their round
    trip (vCPU -> userspace's device model -> vCPU), accesses nothing models, the serial transcript,
    and per vCPU the guest MMU's and the timers' counts."""
    if not stats:
        return None
    ns = sorted(x for v in vstats for x in v.get("mmio_ns", []))

    def pct(q: float):
        return round(ns[min(len(ns) - 1, int(q * len(ns)))] / 1000, 1) if ns else None
    b = stats.get("board", {})
    return {"mmio_exits": stats.get("mmio_exits", 0), "mmio_exits_at_end": stats.get("mmio_exits_at_end"),
            "mmio_by_device": stats.get("mmio_by_device", {}),
            "mmio_round_trip_us": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "samples": len(ns)},
            "unassigned": b.get("unassigned", b.get("unassigned_by_address", {})),
            "transcript": stats.get("transcript", ""), "serial_done": stats.get("serial_done"),
            "serial_failed": stats.get("serial_failed"), "irq_raised": stats.get("irq_raised", {}),
            "mmu": [v.get("mmu", {}) for v in vstats], "timers": [v.get("timers", {}) for v in vstats]}
