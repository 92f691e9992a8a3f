"""The userspace process (the model of QEMU): a thin loop around the generic debugger
(cosim/userspace/debugger.py) and its front ends: the scripted debugger of the config and, when asked,
the GDB stub. Messages that arrived while a synchronous request was waiting are handled first, in order.
"""
from __future__ import annotations

import math
import os

from .. import wire
from ..lockstep import Barrier
from ..machine.guest_ram import GuestRAM
from ..machine.image import GuestImage
from ..machine.ledger import Ledger
from ..schedule import NOMINAL_IPS, to_seconds
from ..strategies import Match, strategy
from ..trace import flow_id, open_trace
from ..transport import Endpoint, process_alive
from ..vcpu.runpage import RunPages
from .debugger import Debugger
from ..isa import SstepFlags
from .script import ScriptedDebugger
from .vm import Vm, VmError


class UserspaceProcess:
    name = "userspace"

    def __init__(self, spec: dict):
        self.spec = spec
        self.ep = Endpoint(self.name, spec["transport"], spec["run_dir"],
                           credentials=spec.get("credentials"), on_notice=self._notice)
        self.ep.set_peers({"supervisor": spec["supervisor"]})
        self.ram = GuestRAM.attach(spec["ram_name"], spec["ram_size"])
        self.pages = RunPages.attach(spec["runpages_name"], spec["vcpus"])
        self._page = [self.pages[i] for i in range(spec["vcpus"])]   # views, made once (not per exit)
        self.image = GuestImage.load(spec["image"])
        self.strategy = strategy(spec["strategy"])
        self.ledger = Ledger.attach(spec["ledger_name"]) if spec.get("ledger_name") else None
        self.vm = Vm(self.ep, self.ram, self.pages, spec["vcpus"],
                     table_in_kernel=self.strategy.match is Match.TABLE, ledger=self.ledger)
        self.dbg: Debugger | None = None
        self.script: ScriptedDebugger | None = None
        self.gdb = None
        self.gdb_summary: dict = {}             # the stub's summary, kept after it closed
        self.halted: set[int] = set()
        self.malformed = 0
        self.errors: list[str] = []
        self.detached = False
        self.stopping = False
        self.supervisor_pid = spec.get("supervisor_pid")
        self.trace = self.vm.trace = open_trace(spec, self.name)
        self.deterministic = spec.get("schedule", {}).get("mode") == "deterministic"
        self.vtime = 0                          # the deterministic schedule's virtual instant
        self.board = None
        self.guest_tlb = None                   # the guest's TLBs, shared by the vCPUs (KVM_CAP_SW_TLB)
        if spec.get("board"):
            from ..machine.guest_tlb import GuestTlb, TlbGeometry
            from .board_host import BoardHost
            self.board = BoardHost(spec)
            self.guest_tlb = GuestTlb.attach(spec["tlb_name"], TlbGeometry(spec["tlb1_entries"]), spec["vcpus"])
            self.vm.guest_tlb = self.guest_tlb
        self.powered_off = False
        if self.board is not None:
            self.vm.serve_now = self._serve_now
        if (spec.get("debug") or {}).get("step_interrupts") == "taken":
            self.vm.sstep_flags = SstepFlags.ENABLE
        self.barrier = Barrier(self.ep, idle=lambda: not self.vm.backlog, at_instant=self._at_instant,
                               next_due=self._next_due)

    # --- loop --------------------------------------------------------------------------------------
    def serve(self):
        self.ep.send("supervisor", wire.Hello(self.name, os.getpid(), self.ep.inbox_addr))
        try:
            while not self.stopping:
                if self.vm.backlog:
                    self.handle(self.vm.backlog.popleft())
                    continue
                r = self.ep.recv(self._timeout_ms(), (self.gdb.fds() if self.gdb is not None else ())
                                 + (self.board.fds() if self.board is not None else ()))
                if r is not None:
                    self.handle(r)
                elif not self.ep.ready_fds and not process_alive(self.supervisor_pid):
                    break                       # orphaned: the supervisor died without a Shutdown
                self._timers()
        finally:
            self.close()

    def _timeout_ms(self) -> int:
        waits = [0.2]
        if self.script is not None and (t := self.script.timeout()) is not None:
            waits.append(t)
        if self.gdb is not None:
            waits.append(self.gdb.timeout())
        return max(0, int(min(waits) * 1000))

    # --- the deterministic schedule's instants (cosim/lockstep.py) -----------------------------------
    def _toggling(self) -> bool:
        # scripted stress toggles pause while a gdb is attached: they stop and resume every vCPU,
        # which would also release vCPUs that gdb keeps stopped (all-stop, or a one-thread step)
        gdb_attached = self.gdb is not None and self.gdb.conn is not None
        return self.script is not None and len(self.halted) < self.vm.vcpus and not gdb_attached

    def _at_instant(self, vtime: int) -> None:
        self.vtime = vtime
        self.trace.see(vtime)
        try:
            while self._toggling() and self.script.due():
                self.script.tick()
        except (VmError, wire.WireError) as e:
            self.error(str(e))

    def _next_due(self) -> int | None:
        if not self._toggling() or self.script.next_toggle is None:
            return None
        return math.ceil(self.script.next_toggle * NOMINAL_IPS) + 1   # (+1: past float rounding)

    def _timers(self):
        try:
            # scripted stress toggles pause while a gdb is attached: they stop and resume every vCPU,
            # which would also release vCPUs that gdb keeps stopped (all-stop, or a one-thread step)
            if self._toggling():
                self.script.tick()
            if self.gdb is not None:
                self.gdb.poll(self.ep.ready_fds)
            if self.board is not None and self.ep.ready_fds:
                self.board.poll(self.ep.ready_fds)
                self._send_irqs()
        except (VmError, wire.WireError) as e:
            self.error(str(e))

    def handle(self, r):
        if r.error is not None:
            self.malformed += 1               # noted once per kind by the transport
            self.ep.answer_malformed(r)
            return
        m = r.msg
        try:
            if not self.barrier.take(m, r.sender):
                self.dispatch(r.sender, m)
            self.barrier.check()
        except (VmError, wire.WireError) as e:
            self.error(f"while handling {m.TAG}: {e}")

    def dispatch(self, sender, m):
        if isinstance(m, wire.MmioExit):
            self.on_mmio(sender, m)
        elif isinstance(m, wire.SerialIn) and self.board is not None and sender == "supervisor":
            self.board.type_in(m.data)
            self._send_irqs()
        elif isinstance(m, wire.DebugExit):
            self.trace.receive(self._page[m.vcpu])    # (deterministic traces: after the last hop)
            t0 = self.trace.now()
            self.trace.handoff(self._page[m.vcpu])
            if self.script is not None:
                self.script.intercept(m)
            self.dbg.on_debug_exit(m)
            if self.trace.enabled:
                fid = flow_id(m.vcpu, m.seq)
                self.trace.slice(f"debug exit vcpu{m.vcpu}", t0, flow_in=fid, flow_out=fid,
                                 args={"address": f"{m.address:#010x}", "status": m.status})
                self.trace.counter("hits", sum(self.dbg.counters.hits.values()))
        elif isinstance(m, wire.Halted):
            self.halted.add(m.vcpu)
            if self.gdb is not None:
                self.gdb.on_halted(m)
        elif isinstance(m, wire.Peers) and sender == "supervisor":
            self.ep.set_peers(m.inboxes, m.kicks)
            self.ep.send("supervisor", wire.Ack(0, m.TAG))
        elif isinstance(m, wire.Start):
            self.setup(m.paused)
        elif isinstance(m, wire.Detach):
            restored = self.detach(m.reason, m.exit_code)
            self.ep.send(sender, wire.Detached(m.seq, restored))
        elif isinstance(m, wire.Shutdown):
            if self.gdb is not None:
                self.gdb.close(m.reason, m.exit_code)   # tell gdb why before its connection closes
            self.ep.send("supervisor", wire.Stats(self.name, self.stats()))
            self.stopping = True
        elif isinstance(m, wire.Ack):
            self.vm.outstanding.discard(m.seq)   # a pipelined kernel request done (see Vm.settle)
        elif isinstance(m, (wire.Paused, wire.OneReg)):
            pass   # a late reply to a request that already timed out
        elif isinstance(m, wire.Error):
            self.log("warn", f"{sender} rejected our {m.tag}: {m.reason}")
        else:
            self.ep.send(sender, wire.Error(m.TAG, f"userspace does not take {m.TAG}"))

    def _serve_now(self, sender, m) -> bool:
        if isinstance(m, wire.MmioExit):
            self.on_mmio(sender, m, arm=False)
            return True
        return False

    def on_mmio(self, sender, m: wire.MmioExit, arm: bool = True) -> None:
        board = self.board
        if board is None or sender != f"vcpu{m.vcpu}":
            self.ep.send(sender, wire.Error(m.TAG, "no board: nothing serves MMIO"))
            return
        value = board.mmio(m.paddr, m.size, m.write, m.value, m.vcpu)
        self._send_irqs(None if m.posted else sender)   # (a posted store's vCPU runs on: kick it too)
        ending = not self.powered_off and board.ended is not None
        if ending and not m.posted:
            # the access that powered the machine off: its vCPU learns it before the answer, so it stops
            # at the end of the block that made it, not after however far it ran until the message came
            # (the one-vCPU Linux boot ended 0, 274 or 357 instructions apart from one run to the next)
            self.ep.send(sender, wire.PowerOff(board.ended_code, board.ended))
        if not m.posted:
            self.ep.send(sender, wire.MmioDone(m.seq, 0 if m.write else value))
        for rel in board.take_releases():       # the spin table let a secondary vCPU go
            e = rel.tlb1
            self.ep.send(f"vcpu{rel.cpu}", wire.ReleaseVcpu(rel.pc, {str(k): v for k, v in rel.gprs.items()},
                                                            [[e.mas0, e.mas1, e.mas2, e.mas3, e.mas7]]))
            self.ep.kick(f"vcpu{rel.cpu}")
        if arm and self.script is not None and self.script.waiting_to_arm:
            self.script.arm(board.console.text())
        if ending:
            self.powered_off = True
            for i in range(self.spec["vcpus"]):
                if m.posted or f"vcpu{i}" != sender:
                    self.ep.send(f"vcpu{i}", wire.PowerOff(board.ended_code, board.ended))
                self.ep.kick(f"vcpu{i}")

    def _send_irqs(self, accessing: str | None = None) -> None:
        """Interrupt-controller outputs that changed go to their vCPUs, ahead of the MmioDone of the
        access that changed them (the accessing vCPU needs no kick: it waits for that answer)."""
        board = self.board
        if board.proxy_changed:
            board.proxy_changed = False
            for i in range(self.spec["vcpus"]):
                self.ep.send(f"vcpu{i}", wire.IrqProxy(board.proxy, board.board.mpic_iack_address))
        for cpu, line, level in board.take_irq_changes():
            to = f"vcpu{cpu}"
            self.ep.send(to, wire.IrqLine(line, level))
            if to != accessing:
                self.ep.kick(to)

    # --- scenario ----------------------------------------------------------------------------------
    def setup(self, gdb_paused: bool):
        debug_inst = self.vm.get_one_reg("DEBUG_INST")
        self.dbg = Debugger(self.vm, self.strategy, debug_inst)
        clock = {"clock": lambda: to_seconds(self.vtime), "wall": False} if self.deterministic else {}
        self.script = ScriptedDebugger(self.dbg, self.spec["debug"], self.image.resolve,
                                       self.image.symbol_at, **clock)
        gdb_addr = self.spec.get("gdb")
        if gdb_addr is not None:
            from ..gdb.stub import GdbStub
            self.gdb = GdbStub(self, gdb_addr)
            if self.gdb.warning:
                self.log("warn", self.gdb.warning)
            self.ep.send("supervisor", wire.Log(self.name, "gdb", self.gdb.address))
        self.dbg.hold = self.gdb is not None and gdb_paused   # --gdb --running: stop at attach
        self.script.start()
        if not self.dbg.hold:
            self.dbg.release()
        else:
            self.gdb.take_control()

    def detach(self, reason: str = "", exit_code: int | None = None) -> int:
        if self.detached or self.dbg is None:
            return 0
        self.detached = True
        if self.script is not None:
            self.script.stop_toggling()
        if self.gdb is not None:
            self.gdb.close(reason, exit_code)   # the world stays as gdb left it: held (no pause/resume) or running
            self.gdb = None
        return self.dbg.detach()

    # --- report ------------------------------------------------------------------------------------
    def stats(self) -> dict:
        c = self.dbg.counters if self.dbg else None
        return {
            "hits": {f"{a:#x}": n for a, n in (c.hits.items() if c else ())},
            "hits_by_vcpu": {str(v): n for v, n in (c.hits_by_vcpu.items() if c else ())},
            "hits_by_owner": {o: {f"{a:#x}": n for a, n in by.items()}
                              for o, by in (c.hits_by_owner.items() if c else ())},
            "stale": {f"{a:#x}": n for a, n in (c.stale.items() if c else ())},
            "reinjected": dict(c.reinjected) if c else {},
            "watch": {f"{a:#x}": n for a, n in (c.watch.items() if c else ())},
            "steps": c.steps if c else 0,
            "refused": list(c.refused) if c else [],
            "unmapped": list(c.unmapped) if c else [],
            "inserts": c.inserts if c else 0,
            "removes": c.removes if c else 0,
            "traps_skipped": {f"{a:#x}": n for a, n in (c.traps_skipped.items() if c else ())},
            "traps_delivered": {f"{a:#x}": n for a, n in (c.traps_delivered.items() if c else ())},
            "patched": {f"{a:#x}": w for a, w in (c.patched.items() if c else ())},
            "overwritten": {f"{a:#x}": w for a, w in (c.overwritten.items() if c else ())},
            "debug_inst": self.dbg.state.debug_inst if self.dbg else None,
            "script": self.script.stats() if self.script else {},
            "gdb": self.gdb.summary() if self.gdb is not None else self.gdb_summary,
            "malformed": self.malformed,
            "errors": self.errors,
            "messages": dict(self.ep.sent),
            "transport": self.ep.counters(),
            "board": self.board.stats() if self.board is not None else None,
        }

    def error(self, text: str):
        self.errors.append(text)
        self.log("error", text)

    def log(self, level, text):
        self.ep.send("supervisor", wire.Log(self.name, level, text))

    def _notice(self, text):
        self.log("warn", text)

    def close(self):
        if self.gdb is not None:
            self.gdb.close()
        self.trace.close()
        self.vm.drop_views()
        if self.ledger is not None:
            self.vm.ledger = None
            self.ledger.close()
        self.ram.close()
        self.pages.close()
        if self.guest_tlb is not None:
            self.guest_tlb.close()
        if self.board is not None:
            self.board.close()
        self.ep.close()


def main(spec: dict) -> None:
    UserspaceProcess(spec).serve()

