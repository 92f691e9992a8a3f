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
    hits = user.get("hits", {})
    stale = user.get("stale", {})
    total_hits = sum(hits.values())
    truth = host_iac if strat.match is Match.IAC else planted
    addresses = sorted(set(truth) | set(hits) | set(stale), key=lambda a: int(a, 16))
    per_bp = {a: {"symbol": sym(int(a, 16)), "executed": truth.get(a, 0), "hits": hits.get(a, 0),
                  "stale": stale.get(a, 0)} for a in addresses}
    lost = {a: r["executed"] - r["hits"] - r["stale"] for a, r in per_bp.items()
            if r["executed"] != r["hits"] + r["stale"]}

    warns = sum(guest.get("cnt_warn", [0] * n))
    bad_prog = sum(guest.get("cnt_bad_prog", [0] * n))
    guest_syscalls = sum(guest.get("cnt_syscall", [0] * n))
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
    n_bps = len(cfg.debug.breakpoints)
    if strat.match is Match.IAC and n_bps > 2:
        predicted.add("hw-slots-exhausted")
    if n_bps and program in PROGRAMS_WITH_OWN_IAC:
        predicted.add("guest-debug-lost")
    if n_bps and strat.patches_code and program in PROGRAMS_CHECKING_CODE:
        predicted.add("patched-code-visible")
    if lost and guest_syscalls and strat.name == "sc64":
        findings.append(Finding("sc64-lost-hits", "sc64-lost-hits" in predicted,
                                f"{sum(lost.values())} breakpoint hit(s) taken by the guest's own syscall "
                                f"vector ({guest_syscalls} guest syscalls): E.HV never exits on sc",
                                excuses=("debugger-hits-exactly-once",)))
    if user.get("refused"):
        findings.append(Finding("hw-slots-exhausted", "hw-slots-exhausted" in predicted,
                                "; ".join(user["refused"])))
    if program in PROGRAMS_WITH_OWN_IAC and guest.get("cnt_iter"):
        expected_dbg = 2 * sum(guest["cnt_iter"])
        got = sum(guest.get("cnt_debug", [0]))
        if got < expected_dbg:
            findings.append(Finding("guest-debug-lost", "guest-debug-lost" in predicted,
                                    f"the guest's own debug events: {got} of {expected_dbg} delivered "
                                    "(the host owns the debug facility while it debugs)"))
    seen_at_boot = _patched_at_boot(data.image, guest.get("boot_checksum", []))
    if sum(guest.get("cnt_mismatch", [0])) or seen_at_boot:
        findings.append(Finding("patched-code-visible", "patched-code-visible" in predicted,
                                f"the guest saw its own code modified: {sum(guest.get('cnt_mismatch', [0]))} "
                                f"checksum mismatch(es) while running, {seen_at_boot} vCPU(s) checksummed "
                                "planted breakpoints at boot"))
    reinjected = user.get("reinjected", {})
    if reinjected:
        findings.append(Finding("guest-traps-via-userspace", strat.name == "trap-user",
                                f"{sum(reinjected.values())} guest-owned event(s) made a userspace round "
                                f"trip before being re-injected: {reinjected}"))
    excused = {inv for f in findings if f.predicted for inv in f.excuses}

    # --- invariants --------------------------------------------------------------------------------
    # gdb's `kill` is a normal end: invariants are judged on what ran; what needs the whole run
    # (expected counts, predicted findings, the forced race) is not judged and says so
    killed = data.outcome == "killed-by-debugger"
    not_judged: list[str] = []
    inv: dict[str, dict] = {}

    def check(name, ok, detail):
        entry = {"ok": bool(ok), "detail": detail}
        if not ok and name in excused:
            entry["excused_by_finding"] = True
        inv[name] = entry

    check("debugger-hits-exactly-once", not lost,
          f"{total_hits} hit(s) at {len(per_bp)} address(es), every execution accounted for" if not lost
          else "executions not delivered once: " + ", ".join(
              f"{per_bp[a]['symbol'] or a}: {d:+d}" for a, d in lost.items()))
    in_flight = 0   # a killed run may stop inside an iteration: its WARNs are counted, the iteration not
    if killed and expected_warns is not None:
        in_flight = data.image.read_word(data.image.symbol("warns_per_iter")) * n
    warn_ok = bad_prog == 0 and not bad_srr0 and (
        expected_warns is None or expected_warns <= warns <= expected_warns + in_flight)
    check("guest-traps-to-guest-once", warn_ok,
          f"guest WARNs {warns}" + (f" of {expected_warns} expected" if expected_warns is not None else "")
          + f", unexplained program interrupts {bad_prog}"
          + (f", SRR0 not a WARN site: {[hex(a) for a in bad_srr0]}" if bad_srr0 else ""))
    race = cfg.debug.race is not None
    n_stale = sum(stale.values())
    forced = user.get("script", {}).get("race_forced", 0)
    check("stale-exit-never-delivered",
          bad_prog == 0 and (not race or killed or (forced >= 1 and n_stale >= 1)),
          f"{n_stale} stale exit(s) retried at the same PC, {bad_prog} bogus trap(s) in the guest"
          + (f", race forced {forced} time(s)" if race else ""))
    if cfg.debug.detach_at_end:
        check("code-restored-after-detach", not data.code_diff and data.detached is not None,
              "guest code byte-identical to the image" if not data.code_diff else
              f"{len(data.code_diff)} word(s) differ, first at {data.code_diff[0][0]:#x}")
    left = {k: v for k, v in data.leftovers.items() if v}
    check("no-leftovers", not left, "no process, shared-memory block or socket left" if not left
          else f"left behind: {left}")
    codes = [v.get("exit_code") for v in vstats]
    states = [s.get("state") for s in data.vcpu_state]
    want = cfg.expect.exit_code if cfg.expect.exit_code is not None else 0
    odd = [f"vCPU {v}: {why}" for v, (code, why) in sorted(data.halts.items()) if code != want]
    check("run-completed", data.outcome in ("completed", "killed-by-debugger")
          and all(c == want for c in codes),
          f"outcome {data.outcome}; vCPU states {states}; exit codes {codes}"
          + "".join(f"; {x}" for x in odd + data.problems))
    found_ids = {f.id for f in findings}
    if killed:
        not_judged = [name for name, on in (
            ("expect-debugger-hits", cfg.expect.debugger_hits is not None),
            ("expect-guest-warns", cfg.expect.guest_warns is not None),
            ("expect-findings", cfg.expect.findings is not None),
            ("predictions-confirmed", True)) if on]
    if cfg.expect.debugger_hits is not None and not killed:
        check("expect-debugger-hits", total_hits == cfg.expect.debugger_hits,
              f"{total_hits} hit(s), expected {cfg.expect.debugger_hits}")
    if cfg.expect.guest_warns is not None and not killed:
        check("expect-guest-warns", warns == cfg.expect.guest_warns,
              f"{warns} WARN(s), expected {cfg.expect.guest_warns}")
    if cfg.expect.findings is not None and not killed:
        missing = sorted(set(cfg.expect.findings) - found_ids)
        check("expect-findings", not missing, f"expected findings missing: {missing}" if missing
              else f"all expected findings reported: {sorted(cfg.expect.findings)}")
    missing_predicted = sorted(predicted - found_ids)
    if not killed:
        check("predictions-confirmed", not missing_predicted,
              "every finding the thread predicted was observed" if not missing_predicted else
              f"predicted but not observed: {missing_predicted}")

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
                      "exit_code": codes[i] if i < len(codes) else None, "exits": s["exits"]})
    inproc = [x for v in vstats for x in v.get("inprocess_kernel_ns", [])]
    instructions = sum(s["instructions"] for s in data.vcpu_state)
    exits = {"by_level": by_level, "by_reason": by_reason,
             "latency_us": {lv: {"count": len(v),
                                 "p50": _us(percentile(v, 50)), "p99": _us(percentile(v, 99)),
                                 "mean": _us(statistics.fmean(v) if v else None)}
                            for lv, v in lat.items()},
             # KVM PR emulation of privileged instructions, run inside the vCPU process for speed but
             # counted at level "kernel" (DESIGN.md): its handling time, kept apart from real crossings
             "kernel_in_vcpu_process_us": {"count": len(inproc), "p50": _us(percentile(inproc, 50)),
                                           "p99": _us(percentile(inproc, 99))}}
    failed = [k for k, v in inv.items() if not v["ok"] and not v.get("excused_by_finding")]
    stopped = getattr(data, "gdb_stopped_seconds", 0.0)
    running = data.seconds - stopped
    gdb = None
    if data.gdb_address is not None:
        script_bps = user.get("script", {}).get("planned", {})
        g = user.get("gdb", {})
        gdb = {"address": data.gdb_address, "connections": g.get("connections"),
               "detaches": g.get("detaches"), "killed": killed,
               "stopped_seconds": round(stopped, 3),
               # gdb's detach removes only gdb's own points: the scenario's stay in place
               "script_breakpoints": ("kept across the gdb session(s): " + ", ".join(script_bps.values())
                                      if script_bps else "none configured"),
               "not_judged": not_judged}
    return {
        "scenario": {"name": cfg.name, "description": cfg.description, "source": cfg.source,
                     "cpu": cpu, "vcpus": n, "strategy": strat.name, "program": program,
                     "strategy_summary": strat.summary},
        "outcome": data.outcome,
        "ok": not failed,
        "failed": failed,
        "seconds": round(data.seconds, 3),
        "invariants": inv,
        "findings": [{"id": f.id, "predicted": f.predicted, "detail": f.detail} for f in findings],
        "vcpus": vcpus,
        "exits": exits,
        "instructions": instructions,
        "mips": round(instructions / running / 1e6, 2) if running > 0 else None,
        "debugger_hits": {"total": total_hits, "by_breakpoint": per_bp,
                          "by_vcpu": user.get("hits_by_vcpu", {}), "stale": n_stale,
                          "steps": user.get("steps", 0), "watch": user.get("watch", {}),
                          "reinjected": reinjected, "inserts": user.get("inserts", 0),
                          "removes": user.get("removes", 0), "refused": user.get("refused", [])},
        "guest_warns": {"total": warns, "expected": expected_warns, "by_vcpu": guest.get("cnt_warn", []),
                        "unexplained_program_interrupts": bad_prog, "guest_syscalls": guest_syscalls},
        "guest": {k: v for k, v in guest.items() if k != "warn_log_head"},
        "kernel": {"decisions": kernel.get("decisions", {}), "malformed": kernel.get("malformed", 0)},
        "register_log": user.get("script", {}).get("register_log", [])[:20],
        "problems": data.problems,
        "logs": [{"from": a, "level": b, "text": c} for a, b, c in data.logs[:100]],
        "gdb": gdb,
        "config": cfg.to_dict(),
    }


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


def _us(ns):
    return None if ns is None else round(ns / 1000.0, 2)
