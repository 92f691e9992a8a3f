"""The `MonitorSource` of a live scenario (cosim/gdb/monitor.py): reads the userspace process's
debugger, scripted debugger, guest RAM and run pages, and returns plain data. Read only; called while
gdb has the world stopped, so every run page is stable.
"""
from __future__ import annotations

from ..isa import SPR
from ..vcpu.runpage import EVENTS, LEVELS

_DEBUG_SPRS = ("dbcr0", "dbcr1", "dbcr2", "dbsr", "iac1", "iac2", "dac1", "dac2")


class VmInfo:
    def __init__(self, target):
        """`target`: the VmTarget (its userspace process `us`, `vm`, `dbg`, gdb's points)."""
        self.t = target

    def strategy(self) -> dict:
        us = self.t.us
        s = us.strategy
        cpu = us.spec.get("cpu", "?")
        event = s.hit_event.get(cpu)
        return {"name": s.name, "summary": s.summary, "cpu": cpu, "match": s.match.value,
                "hit_event": event.value if event is not None else "?",
                "planted": self.t.dbg.state.debug_inst if s.patches_code else None,
                "table_in_kernel": bool(self.t.vm.table_in_kernel)}

    def _symbol(self, address: int):
        try:
            return self.t.us.image.symbol_at(address)
        except Exception:
            return None

    def breakpoints(self) -> list[dict]:
        t = self.t
        st = t.dbg.state
        hits = t.dbg.counters.hits
        script = t.us.script
        planned = {a for a, p in script.plan.items() if p.inserted} if script is not None else set()
        rows = []
        for a, bp in st.sw.items():
            owners = (["gdb"] if a in t.sw else []) + (["script"] if a in planned else [])
            rows.append({"kind": "sw", "address": a, "length": 4, "symbol": self._symbol(a),
                         "saved": bp.saved, "in_ram": t.vm.ram.read_word(a), "owners": owners,
                         "hits": hits.get(a, 0)})
        for p in [*st.iac, *st.dac]:
            if p is None:
                continue
            owners = (["gdb"] if (p.kind, p.address) in t.hw else [])
            if p.kind == "iac" and p.address in planned:
                owners.append("script")
            n = hits.get(p.address, 0) if p.kind == "iac" else t.dbg.counters.watch.get(p.address, 0)
            rows.append({"kind": p.kind, "address": p.address, "length": p.length,
                         "symbol": self._symbol(p.address), "saved": None, "in_ram": None,
                         "owners": owners, "hits": n})
        return rows

    def _exits_of(self, i: int) -> dict[str, dict[str, int]]:
        ex = self.t.vm.pages[i]["exits"]
        return {EVENTS[e]: {LEVELS[lv]: int(ex[e, lv]) for lv in range(len(LEVELS)) if ex[e, lv]}
                for e in range(len(EVENTS)) if ex[e].any()}

    def vcpus(self) -> list[dict]:
        rows = []
        for i in range(self.t.n):
            page = self.t.vm.pages[i]
            by_level: dict[str, int] = {}
            for levels in self._exits_of(i).values():
                for lv, c in levels.items():
                    by_level[lv] = by_level.get(lv, 0) + c
            rows.append({"index": i, "state": self.t.thread_extra_info(i + 1).split(" ", 2)[2],
                         "pc": int(page["pc"]), "instructions": int(page["instructions"]),
                         "exits": by_level})
        return rows

    def exits(self) -> dict[str, dict[str, int]]:
        total: dict[str, dict[str, int]] = {}
        for i in range(self.t.n):
            for ev, levels in self._exits_of(i).items():
                for lv, c in levels.items():
                    total.setdefault(ev, {}).setdefault(lv, 0)
                    total[ev][lv] += c
        return total

    def debug(self) -> list[dict]:
        t = self.t
        st = t.dbg.state
        rows = []
        for i in range(t.n):
            page = t.vm.pages[i]
            spr = page["spr"]
            control = st.control(singlestep=i in t.vm.singlestep)
            row = {"index": i, "control": control, "msr": int(page["msr"]),
                   "host_iac": [p.address if p is not None else None for p in st.iac],
                   "host_dac": [(p.address, p.dac_rw) if p is not None else None for p in st.dac]}
            row.update({n: int(spr[SPR[n.upper()]]) for n in _DEBUG_SPRS})
            rows.append(row)
        return rows

    def gdb_points(self) -> dict | None:
        t = self.t
        if not t.attached or t.running:
            return None
        now = t.points()
        return {"in_place": len(now), "lifted": len(t.points_at_stop - now)}
