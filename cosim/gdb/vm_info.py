"""The `MonitorSource` of a live scenario (cosim/gdb/monitor.py): reads the userspace process's
debugger, scripted debugger, guest RAM and run pages, and returns plain data. Read only; called while
gdb has the world stopped, so every run page is stable.
"""
from __future__ import annotations

from ..isa import SPR
from ..vcpu.runpage import EVENTS, LEVELS
from .target import REGISTER_NAMES

MEMORY_DUMP_MAX = 64 * 1024
"""The most `x`/`xp` reads at once (bytes)."""

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
        for p in {id(p): p for p in [*st.iac, *st.dac] if p is not None}.values():   # (a range: both DACs)
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
                   "host_dac": [(p.address, p.dac_rw) if p is not None else None for p in st.dac],
                   # (a range: DAC2 holds its end)
                   "host_dac_range": ((st.dac[0].address, st.dac[0].address + st.dac[0].length)
                                      if st.dac and st.dac[0] is not None and st.dac[0].length > 4 else None)}
            if row["host_dac_range"] is not None:
                row["host_dac"] = [(row["host_dac_range"][0], st.dac[0].dac_rw), (row["host_dac_range"][1], st.dac[0].dac_rw)]
            row.update({n: int(spr[SPR[n.upper()]]) for n in _DEBUG_SPRS})
            rows.append(row)
        return rows

    def gdb_points(self) -> dict | None:
        t = self.t
        if not t.attached or t.running:
            return None
        now = t.points()
        return {"in_place": len(now), "lifted": len(t.points_at_stop - now)}

    def refused(self) -> list[str]:
        return list(self.t.refused)

    # --- QEMU's HMP commands (cosim/gdb/monitor_qemu.py) --------------------------------------------
    def cpu_count(self) -> int:
        return self.t.n

    def current_cpu(self) -> int:
        return self.t.monitor_cpu

    def set_current_cpu(self, index: int) -> None:
        self.t.monitor_cpu = index

    def cpu_registers(self, index: int) -> dict[str, int]:
        t = self.t
        regs = dict(zip(REGISTER_NAMES, t.vm.registers(index)))
        for k, (name, _) in enumerate(t.sprs):
            regs[name] = t.read_register(index + 1, len(REGISTER_NAMES) + k)
        return regs

    def translate(self, cpu: int, address: int) -> int:
        """Guest virtual -> physical for `cpu`: the hook of the guest MMU (TLB0/TLB1, address spaces:
        cosim/machine/guest_tlb.py's `translate`); until the monitor reads it, addresses are physical."""
        return address

    def read_memory(self, address: int, length: int, physical: bool, cpu: int) -> bytes:
        if length > MEMORY_DUMP_MAX:
            raise ValueError(f"{length} bytes: at most {MEMORY_DUMP_MAX} at once")
        phys = address if physical else self.translate(cpu, address)
        size = self.t.vm.ram.size
        if not (0 <= phys and phys + length <= size):
            raise ValueError(f"{address:#x}..{address + length - 1:#x} is outside guest RAM (0..{size - 1:#x})")
        return bytes(self.t.vm.ram.read(phys, length))

    def resolve(self, name: str) -> int | None:
        image = self.t.us.image
        return image.symbol(name) if name in image else None

    def status(self) -> str:
        t = self.t
        halted = f"; halted: vCPU {', '.join(str(i) for i in sorted(t.halted))}" if t.halted else ""
        return ("running" if t.running else "paused (debug): gdb holds every vCPU stopped") + halted

    def system_reset(self) -> str:
        return self.t.system_reset()

    def memory_map(self) -> list[dict]:
        rows = [{"start": 0, "end": self.t.vm.ram.size - 1, "kind": "ram", "name": "cosim.guest-ram"}]
        board = self.t.us.board
        if board is not None:                 # the board's devices, as its bus maps them
            for m in board.board.bus.mappings:
                rows.append({"start": m.base, "end": m.end - 1, "kind": "i/o", "name": m.device.name})
        return rows

    def clock(self) -> dict:
        import time
        from ..isa import SPR
        hz = 400_000_000                       # the board's timebase-frequency (QEMU's ppce500)
        rows = []
        pages = self.t.vm.pages
        for i in range(self.t.vm.vcpus):
            p = pages[i]
            if pages.shares_clock:       # one clock for the machine: a held vCPU's time base moves with it
                tb = (pages.clock + int(p["tb_offset"])) & (2**64 - 1)
            else:
                tb = int(p["spr"][SPR["TBU_R"]]) << 32 | int(p["spr"][SPR["TBL_R"]])
            rows.append({"vcpu": i, "timebase": tb, "seconds": tb / hz, "instructions": int(p["instructions"])})
        start = self.t.us.spec.get("start_ns") or time.monotonic_ns()
        hold = self.t.hold
        held = hold.total + (time.monotonic() - hold.since if hold.since is not None else 0.0)
        return {"host_seconds": (time.monotonic_ns() - start) / 1e9, "held_seconds": held, "timebase_hz": hz,
                "vcpus": rows}

    def mmio(self) -> dict | None:
        """The board's MMIO exits so far: by device, and the accesses nothing models (by address)."""
        board = self.t.us.board
        return None if board is None else board.stats()

    def roms(self) -> list[dict]:
        image = self.t.us.image
        return [{"address": s.addr, "size": s.memsz, "name": f"{image.path.name} segment {k}"}
                for k, s in enumerate(image.segments)]

    def tlb(self) -> list[dict] | None:
        """The current vCPU's guest TLB entries (None on the bare machine: it has no guest MMU)."""
        tlb = self.t.us.guest_tlb
        if tlb is None:
            return None
        from ..machine.guest_tlb import MAS1_TS, UR, UW, UX, SR, SW, SX, page_size
        rows = []
        for index, n, mas1, mas2, mas3, mas7 in tlb.valid_entries(self.current_cpu()):
            size = page_size(mas1)
            perms = " ".join(name for name, bit in (("SR", SR), ("SW", SW), ("SX", SX), ("UR", UR), ("UW", UW),
                                                    ("UX", UX)) if mas3 & bit)
            rows.append({"tlb": n, "index": index, "valid": True, "tid": (mas1 >> 16) & 0x3FFF,
                         "ts": 1 if mas1 & MAS1_TS else 0, "epn": mas2 & ~(size - 1) & 0xFFFFFFFF,
                         "rpn": ((mas7 & 0xF) << 32 | (mas3 & 0xFFFFF000)) & ~(size - 1), "size": size,
                         "perms": perms})
        return rows
