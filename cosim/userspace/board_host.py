"""Userspace's board: QEMU's role for a guest with devices. It owns the board's device models
(cosim/board/, cosim/hw/), serves the vCPUs' MMIO exits with them, and runs the serial console
(cosim/userspace/console.py): the UART's output goes to the transcript (and the terminal when asked),
scripted typing goes into the UART, and the end text switches the board off.

The userspace process calls `mmio(m)` for every `wire.MmioExit` and sends back what it returns;
`poll()` tells it when the console has seen its end.
"""
from __future__ import annotations

import sys
from collections import Counter

from ..board.ppce500 import Ppce500
from .console import Console


class BoardHost:
    def __init__(self, spec: dict):
        serial = spec.get("serial") or {}
        self.echo = bool(serial.get("echo"))
        self.console = Console([tuple(x) for x in serial.get("sends", [])], serial.get("end_on"))
        self.board = Ppce500(spec["ram_size"], spec["vcpus"], spec["cpu"], on_tx=self._tx,
                             on_reset=self._reset)
        self.exits = 0
        self.by_device: Counter = Counter()
        self.reset_requested = False

    def _tx(self, port: int, data: bytes) -> None:
        if self.echo:
            sys.stdout.write(data.decode("latin-1"))
            sys.stdout.flush()
        typed = self.console.output(data)
        if typed:
            self.board.uart(0).push_rx(typed)

    def _reset(self) -> None:
        self.reset_requested = True

    def mmio(self, paddr: int, size: int, write: bool, value: int, cpu: int) -> int:
        self.exits += 1
        found = self.board.bus.find(paddr)
        self.by_device[found[0].name if found else "unassigned"] += 1
        return self.board.handle_mmio(paddr, size, write, value, cpu=cpu) & 0xFFFFFFFF

    @property
    def ended(self) -> str | None:
        """Why the board is done: the console's end text, or a reset the guest asked for."""
        if self.console.done:
            return f"serial console showed {self.console.end_on!r}"
        if self.reset_requested:
            return "the guest requested a reset (GUTS RSTCR)"
        return None

    def stats(self) -> dict:
        return {"mmio_exits": self.exits, "mmio_by_device": dict(self.by_device),
                "board": self.board.report(), "transcript": self.console.text(),
                "serial_typed": self.console.typed, "serial_sends": len(self.console.sends),
                "serial_done": self.console.done, "serial_dropped": self.console.dropped}
