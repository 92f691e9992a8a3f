"""The kernel process (the model of KVM): a thin loop around the exit handler (cosim/kernel/exits.py).

The per-vCPU guest-debug state (KVM_SET_GUEST_DEBUG) is the debug-settings block of the vCPU's run
page: userspace writes it while the vCPU is stopped and the vCPU loads it with its next
`Continue(reload_debug=True)` (copying it to `dbg_active`), so the setting travels with the next
"KVM_RUN" and no message crosses for it; the exit handler judges every exit by the settings the vCPU
ran with (an exit in flight while userspace changes them meets the old ones, as in KVM). trap-kernel's table of patched
addresses is the breakpoint ledger (shared memory, written by userspace), reread when the generation
userspace bumps on the run pages changed. (SetGuestDebug and TableUpdate messages are still taken.)
Exits the handler reflects or emulates are answered here; breakpoint hits and host debug events go
to userspace as KVM_EXIT_DEBUG.
"""
from __future__ import annotations

import os

from .. import wire
from ..cpu_models import cpu_model
from ..lockstep import Barrier
from ..strategies import strategy
from ..machine.guest_ram import GuestRAM
from ..trace import flow_id, open_trace
from ..machine.ledger import ARMED, Ledger
from ..strategies import Match
from ..transport import Endpoint, process_alive
from ..vcpu.runpage import RunPages
from .exits import Action, ExitHandler, GuestDebugState



class KernelProcess:
    name = "kernel"

    def __init__(self, spec: dict):
        self.ep = Endpoint(self.name, spec["transport"], spec["run_dir"],
                           credentials=spec.get("credentials"), on_notice=self._notice)
        self.ep.set_peers({"supervisor": spec["supervisor"]})
        self.pages = RunPages.attach(spec["runpages_name"], spec["vcpus"])
        self.ram = GuestRAM.attach(spec["ram_name"], spec["ram_size"])
        self.handler = ExitHandler(cpu_model(spec["cpu"]), strategy(spec["strategy"]), self.ram.read_word)
        self.debug = [GuestDebugState() for _ in range(spec["vcpus"])]
        recs = [self.pages.record(i) for i in range(spec["vcpus"])]
        self._page = [self.pages[i] for i in range(spec["vcpus"])]   # views, made once (not per exit)
        self._control = [r["dbg_active"] for r in recs]   # the debug settings each vCPU runs with
        # trap-kernel's table is the ledger as userspace last published it (not as of the generation
        # the exiting vCPU ran with: the ledger keeps no history, and an exit held in flight across a
        # remove and a re-plant would meet a table read in between); the exit's own word tells ours
        # from a guest trap (ExitHandler.is_breakpoint)
        self._table_gen = [r["dbg_table_gen"] for r in recs]
        self.ledger = None
        if self.handler.strategy.match is Match.TABLE and spec.get("ledger_name"):
            self.ledger = Ledger.attach(spec["ledger_name"])
        self.table_gen = -1
        self.decisions: dict[str, int] = {}
        self.malformed = 0
        self.stopping = False
        self.supervisor_pid = spec.get("supervisor_pid")
        self.trace = open_trace(spec, self.name)
        self.barrier = Barrier(self.ep)       # the deterministic schedule's Sync (cosim/lockstep.py)

    def serve(self):
        self.ep.send("supervisor", wire.Hello(self.name, os.getpid(), self.ep.inbox_addr))
        try:
            while not self.stopping:
                r = self.ep.recv(500)
                if r is not None:
                    self.handle(r)
                    self.barrier.check()
                elif not process_alive(self.supervisor_pid):
                    break                       # orphaned: the supervisor died without a Shutdown
        finally:
            self.close()

    def handle(self, r):
        if r.error is not None:
            self.malformed += 1               # noted once per kind by the transport
            self.ep.answer_malformed(r)
            return
        m = r.msg
        bad = _out_of_range(m, len(self.debug))
        if self.barrier.take(m, r.sender):
            pass
        elif bad is not None:
            self.ep.send(r.sender, wire.Error(m.TAG, bad))
        elif isinstance(m, wire.ExitMsg):
            self.on_exit(m)
        elif isinstance(m, wire.SetGuestDebug):
            self.set_guest_debug(m)
            self.ep.send(r.sender, wire.Ack(m.seq, m.TAG))
        elif isinstance(m, wire.TableUpdate):
            self.handler.table.difference_update(m.remove)
            self.handler.table.update(m.insert)
            self.ep.send(r.sender, wire.Ack(m.seq, m.TAG))
        elif isinstance(m, wire.GetOneReg):
            value = self.handler.debug_inst if m.reg == "DEBUG_INST" else None
            self.ep.send(r.sender, wire.OneReg(m.seq, m.reg, value))
        elif isinstance(m, wire.Peers) and r.sender == "supervisor":
            self.ep.set_peers(m.inboxes, m.kicks)
            self.ep.send("supervisor", wire.Ack(0, m.TAG))
        elif isinstance(m, wire.Start):
            pass
        elif isinstance(m, wire.Shutdown):
            self.ep.send("supervisor", wire.Stats(self.name, {
                "decisions": self.decisions, "malformed": self.malformed,
                "table": sorted(self.handler.table), "messages": dict(self.ep.sent),
                "stale": {f"{a:#x}": n for a, n in self.handler.stale.items()},
                "transport": self.ep.counters()}))
            self.stopping = True
        elif isinstance(m, wire.Error):
            self.log("warn", f"{r.sender} rejected our {m.tag}: {m.reason}")
        else:
            self.ep.send(r.sender, wire.Error(m.TAG, f"kernel does not take {m.TAG}"))

    def on_exit(self, m: wire.ExitMsg):
        self.trace.receive(self._page[m.vcpu])        # (deterministic traces: after the last hop)
        t0 = self.trace.now()
        st = self.debug[m.vcpu]
        st.control = int(self._control[m.vcpu][0])
        if self.ledger is not None and int(self._table_gen[m.vcpu][0]) != self.table_gen:
            self.reread_table(int(self._table_gen[m.vcpu][0]))
        d = self.handler.handle(m, st)
        key = f"{m.event}:{d.action.value}"
        self.decisions[key] = self.decisions.get(key, 0) + 1
        vcpu = f"vcpu{m.vcpu}"
        self.trace.handoff(self._page[m.vcpu])
        if d.action is Action.REFLECT:
            self.ep.send(vcpu, wire.Resume(m.vcpu, m.seq, "reflect", "kernel"))
        elif d.action is Action.EMULATE:
            self.ep.send(vcpu, wire.Resume(m.vcpu, m.seq, "emulate", "kernel", pc=d.pc, r3=d.r3))
        elif d.action is Action.HALT:
            self.ep.send(vcpu, wire.Resume(m.vcpu, m.seq, "halt", "kernel", code=d.code))
        else:
            self.ep.send("userspace", wire.DebugExit(m.vcpu, m.seq, d.address, d.status, m.event, m.pc,
                                                     m.word, m.ivor, m.srr0, m.esr, m.displaced))
        if self.trace.enabled:
            fid = flow_id(m.vcpu, m.seq)
            self.trace.slice(f"{m.event}: {d.action.value}", t0, flow_in=fid, flow_out=fid,
                             args={"vcpu": m.vcpu, "pc": f"{m.pc:#010x}"})

    def reread_table(self, gen: int) -> None:
        t = self.ledger.table
        self.handler.table = set(t["address"][t["state"] == ARMED].tolist())
        self.table_gen = gen

    def set_guest_debug(self, m: wire.SetGuestDebug):
        st = GuestDebugState(m.control, list(m.iac), list(m.iac_on), list(m.dac), list(m.dac_rw))
        self.debug[m.vcpu] = st
        page = self.pages[m.vcpu]
        page["dbg_control"] = st.control
        for i in range(2):
            page["dbg_iac"][i] = st.iac[i] if i < len(st.iac) else 0
            page["dbg_iac_on"][i] = bool(st.iac_on[i]) if i < len(st.iac_on) else 0
            page["dbg_dac"][i] = st.dac[i] if i < len(st.dac) else 0
            page["dbg_dac_rw"][i] = st.dac_rw[i] if i < len(st.dac_rw) else 0

    def log(self, level, text):
        self.ep.send("supervisor", wire.Log(self.name, level, text))

    def _notice(self, text):
        self.log("warn", text)

    def close(self):
        self.trace.close()
        self.handler.read_word = None
        self._control = self._table_gen = []
        if self.ledger is not None:
            self.ledger.close()
        self.ram.close()
        self.pages.close()
        self.ep.close()


def _out_of_range(m, vcpus: int) -> str | None:
    """What the kernel stores in a run page or indexes by must fit: a vCPU index, 32-bit debug
    registers (two IAC, two DAC slots). None when `m` is fine (or not one of these messages)."""
    if isinstance(m, (wire.ExitMsg, wire.SetGuestDebug)) and not 0 <= m.vcpu < vcpus:
        return f"no vCPU {m.vcpu}"
    if isinstance(m, wire.SetGuestDebug):
        if len(m.iac) > 2 or len(m.iac_on) > 2 or len(m.dac) > 2 or len(m.dac_rw) > 2:
            return "more than two IAC or DAC slots"
        if not all(0 <= v <= 0xFFFFFFFF for v in (m.control, *m.iac, *m.dac, *m.dac_rw)):
            return "a debug register value beyond 32 bits"
    return None


def main(spec: dict) -> None:
    KernelProcess(spec).serve()
