"""Userspace's board: QEMU's role for a guest with devices. It owns the board's device models
(cosim/board/, cosim/hw/), serves the vCPUs' MMIO exits with them, and runs the serial console
(cosim/userspace/console.py): the UART's output goes to the transcript (and the terminal when asked),
scripted typing goes into the UART, and the end text switches the board off.

The userspace process calls `mmio(m)` for every `wire.MmioExit` and sends back what it returns;
`poll()` tells it when the console has seen its end.
"""
from __future__ import annotations

import codecs
import socket
import sys
from collections import Counter

from ..board.ppce500 import Ppce500
from .console import Console


class BoardHost:
    def __init__(self, spec: dict):
        serial = spec.get("serial") or {}
        self.echo = bool(serial.get("echo"))
        self.console = Console([tuple(x) for x in serial.get("sends", [])], serial.get("end_on"),
                               fail_on=tuple(serial.get("fail_on") or ()))
        self.board = Ppce500(spec["ram_size"], spec["vcpus"], spec["cpu"], on_tx=self._tx,
                             on_irq_output=self._irq_output, on_proxy=self._proxy,
                             on_reset=self._reset, on_release=self._release,
                             on_power_off=self._power_off)
        self.irq_changes: list[tuple[int, int, bool]] = []   # (cpu, line, level), sent by the userspace process
        self.irq_levels: dict[tuple[int, int], bool] = {}
        self.proxy = False                   # the MPIC's external proxy mode (GCR)
        self.proxy_changed = False
        self.irq_raised = Counter()          # (cpu, line) -> rising edges, for the report
        self.releases: list = []             # spin-table releases, sent by the userspace process (`take_releases`)
        self.exits = 0
        self.exits_at_end: int | None = None
        self.by_device: Counter = Counter()
        self.reset_requested = False
        self.powered_off = False
        self.listener: socket.socket | None = None   # --serial tcp:HOST:PORT (as QEMU's -serial tcp::P,server)
        self.client: socket.socket | None = None
        self.clients = 0
        self._echo_text = codecs.getincrementaldecoder("utf-8")("replace")
        if serial.get("tcp"):
            host, _, port = serial["tcp"].rpartition(":")
            self.listener = socket.create_server((host, int(port)))
            self.listener.setblocking(False)

    def _tx(self, port: int, data: bytes) -> None:
        if self.echo:
            sys.stdout.write(self._echo_text.decode(data))   # (UTF-8 split across stores: kept)
            sys.stdout.flush()
        if self.client is not None:
            try:
                self.client.sendall(data)
            except OSError:
                self._drop_client()
        typed = self.console.output(data)
        if typed:
            self.board.uart(0).push_rx(typed)

    def type_in(self, data: bytes) -> None:
        """Bytes from the terminal or the TCP client: into the UART's receive side."""
        self.board.uart(0).push_rx(data)

    def fds(self) -> tuple[int, ...]:
        return tuple(s.fileno() for s in (self.listener, self.client) if s is not None)

    def poll(self, ready) -> None:
        """Serve the TCP console: accept one client at a time (a second waits), read what it types."""
        if self.listener is not None and self.listener.fileno() in ready and self.client is None:
            try:
                self.client, _ = self.listener.accept()
                self.client.setblocking(False)
                self.clients += 1
            except OSError:
                pass
        if self.client is not None and self.client.fileno() in ready:
            try:
                data = self.client.recv(4096)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if data:
                self.type_in(data)
            else:
                self._drop_client()

    def _drop_client(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def close(self) -> None:
        self._drop_client()
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    def _irq_output(self, cpu: int, line: int, level: bool) -> None:
        if self.irq_levels.get((cpu, line), False) == level:
            return                                   # (the MPIC re-asserts a level it already has)
        self.irq_levels[(cpu, line)] = level
        self.irq_changes.append((cpu, line, level))
        if level:
            self.irq_raised[f"cpu{cpu}.{('int', 'cint', 'mck', 'debug', 'reset')[line]}"] += 1

    def _proxy(self, enabled: bool) -> None:
        if enabled != self.proxy:
            self.proxy = enabled
            self.proxy_changed = True

    def take_irq_changes(self) -> list[tuple[int, int, bool]]:
        out, self.irq_changes = self.irq_changes, []
        return out

    def _release(self, release) -> None:
        self.releases.append(release)

    def take_releases(self) -> list:
        out, self.releases = self.releases, []
        return out

    def _power_off(self) -> None:
        self.powered_off = True

    def _reset(self) -> None:
        self.reset_requested = True

    def mmio(self, paddr: int, size: int, write: bool, value: int, cpu: int) -> int:
        self.exits += 1
        found = self.board.bus.find(paddr)
        self.by_device[found[0].name if found else "unassigned"] += 1
        value = self.board.handle_mmio(paddr, size, write, value, cpu=cpu) & 0xFFFFFFFF
        if self.exits_at_end is None and self.ended is not None:
            self.exits_at_end = self.exits   # what follows (polls until the power-off lands) is host timing
        return value

    @property
    def ended(self) -> str | None:
        """Why the board is done: the console's end text, or a reset the guest asked for."""
        if self.console.failed is not None:
            return f"serial console showed {self.console.failed!r}"
        if self.console.done:
            return f"serial console showed {self.console.end_on!r}"
        if self.powered_off:
            return "the guest powered the board off (GPIO power-off pin)"
        if self.reset_requested:
            return "the guest requested a reset (GUTS RSTCR)"
        return None

    @property
    def ended_code(self) -> int:
        """The exit code the board's end gives the vCPUs: 1 after a fail_on text (a panic), else 0."""
        return 1 if self.console.failed is not None else 0

    def stats(self) -> dict:
        return {"mmio_exits": self.exits, "mmio_exits_at_end": self.exits_at_end, "mmio_by_device": dict(self.by_device),
                "irq_raised": dict(self.irq_raised),
                "board": self.board.report(), "transcript": self.console.text(),
                "serial_typed": self.console.typed, "serial_tcp_clients": self.clients, "serial_sends": len(self.console.sends),
                "serial_done": self.console.done, "serial_failed": self.console.failed, "serial_dropped": self.console.dropped}
