"""Machine-independent costs of a run: what a debugger hit and a guest WARN cost in exits (by the level
that handled them), process hops and messages. These are counts of the model's structure and transfer
to hardware; wall-clock latencies measured here are host round trips between Linux processes (zmq) and
only rank strategies on this host (see `latency`).

Attribution, from exits by reason x level (counted by the silicon) and what userspace counted:
- a hit is an exit of the strategy's hit event that reached userspace and was not a guest-owned event
  re-injected by userspace; stale exits (retried at the same PC) are charged to the hits;
- a WARN's exits are the `trap` exits left after the hits: handled in the vCPU (reflected, no exit),
  by the kernel, or in userspace (re-injected);
- hops per exit: vCPU 0, kernel 2 (vCPU -> kernel -> vCPU), userspace 3 (vCPU -> kernel -> userspace
  -> vCPU) plus what userspace sends to handle it (stop all, patch, continue);
- messages are counted by every endpoint (by tag, kicks included, supervisor traffic excluded); a
  kernel-level exit is exactly 2 (Exit, Resume), a privileged instruction emulated inside the vCPU
  process none; the rest is shared by userspace-level exits in
  proportion to their number (hits and re-injected events alike).
"""
from __future__ import annotations

import statistics

from .vcpu.runpage import LEVELS

HOPS = {"vcpu": 0, "kernel": 2, "userspace": 3}
KERNEL_EXIT_MESSAGES = 2


def _per(n: float, d: int) -> float | None:
    return round(n / d, 3) if d else None


def of(report: dict, hit_event: str, messages: dict[str, int]) -> dict:
    """The `costs` section of a report (JSON-ready)."""
    by_reason = report["exits"]["by_reason"]
    dh = report["debugger_hits"]
    hits, warns = dh["total"], report["guest_warns"]["total"]
    reinjected = dh.get("reinjected", {})
    hit_exits = {lv: 0 for lv in LEVELS}
    hit_exits["userspace"] = max(0, by_reason.get(hit_event, {}).get("userspace", 0)
                                 - reinjected.get(hit_event, 0))
    warn_exits = {lv: by_reason.get("trap", {}).get(lv, 0) - (hit_exits[lv] if hit_event == "trap" else 0)
                  for lv in LEVELS}
    # WARNs the vCPU reflected itself never exit: what is left of the WARN count
    warn_exits["vcpu"] += max(0, warns - sum(warn_exits.values()))
    by_level = report["exits"]["by_level"]
    total_msgs = sum(messages.values())
    # privileged instructions KVM PR emulates are counted at level kernel but handled inside the vCPU
    # process (DESIGN.md): no message
    inproc = report["exits"].get("kernel_in_vcpu_process_us", {}).get("count", 0)
    user_msgs = max(0, total_msgs - KERNEL_EXIT_MESSAGES * (by_level.get("kernel", 0) - inproc))
    per_user_exit = user_msgs / by_level["userspace"] if by_level.get("userspace") else 0.0

    def side(exits: dict[str, int], n: int) -> dict:
        hops = sum(HOPS[lv] * c for lv, c in exits.items())
        msgs = KERNEL_EXIT_MESSAGES * exits["kernel"] + per_user_exit * exits["userspace"]
        return {"count": n, "exits_by_level": {lv: _per(c, n) for lv, c in exits.items()},
                "hops": _per(hops, n), "messages": _per(msgs, n)}

    per_warn = side(warn_exits, warns)
    # guest instructions from the program interrupt's delivery to its rfi (every program interrupt the
    # guest handled and returned from: WARNs, and anything else it resumed from)
    prog = report.get("guest_handlers", {}).get("ivor6", {})
    per_warn["guest_instructions_in_handler"] = _per(prog.get("instructions", 0), prog.get("returns", 0))
    return {"per_hit": side(hit_exits, hits), "per_warn": per_warn,
            "messages": {"total": total_msgs, "by_tag": dict(sorted(messages.items()))},
            "other_exits": {lv: by_level.get(lv, 0) - hit_exits[lv] - (warn_exits[lv] if lv != "vcpu" else 0)
                            for lv in LEVELS if lv != "vcpu"},
            "emulated_in_vcpu_process": inproc,
            "note": "counts transfer to hardware; latencies are host round trips between processes"}


def interval(samples: list[float]) -> dict:
    """Spread of one latency statistic over repeats: min, median, max, and whether it is too wide to
    rank by (max > 1.5 x min, or a single repeat)."""
    xs = sorted(x for x in samples if x is not None)
    if not xs:
        return {"n": 0, "lo": None, "mid": None, "hi": None, "wide": True}
    return {"n": len(xs), "lo": xs[0], "mid": round(statistics.median(xs), 2), "hi": xs[-1],
            "wide": len(xs) < 2 or xs[-1] > 1.5 * xs[0]}
