"""Run a guest on one vCPU inside this process, with the kernel's exit handler called directly and no
debugger: the machine of issue 2 without the process split. For tests of the guest programs and for
the MIPS benchmark; `cosim run` uses the real processes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..cpu_models import cpu_model
from ..kernel.exits import Action, ExitHandler, GuestDebugState
from ..machine.guest_ram import GuestRAM
from ..machine.image import GuestImage, guest_path
from ..strategies import strategy
from ..vmexit import Exit, Fault
from .core import Core
from .engine import Engine
from .runpage import EVENTS, LEVELS, RunPages

DEFAULT_RAM = 16 << 20


@dataclass
class LocalResult:
    exit_code: int | None
    fault: Fault | None
    instructions: int
    seconds: float
    exits: dict[str, dict[str, int]]
    counters: dict[str, list[int]] = field(default_factory=dict)
    image: GuestImage | None = None

    @property
    def mips(self) -> float:
        return self.instructions / self.seconds / 1e6 if self.seconds else 0.0


def run_local(program: str, cpu: str = "e500mc", iterations: int | None = None,
              ram_size: int = DEFAULT_RAM, max_exits: int = 10_000_000, setup=None,
              collect=None, attach: str | None = None, pir: int = 0) -> LocalResult:
    """Run `program` (a name in guests/ or an ELF path) to its halt on one vCPU.

    With `attach` (the name of a guest RAM block of `ram_size` bytes that already holds the loaded
    image), run as vCPU `pir` on that shared RAM instead of a private copy: several processes doing so
    are an SMP guest without the kernel and userspace processes (the MIPS benchmark's SMP scaling).

    `setup(core, image, ram)` runs after the image is loaded and the vCPU reset, before the first
    instruction; `collect(core, image, ram)` runs after the halt (or fault), while guest RAM is still
    open (the RAM is closed when run_local returns)."""
    image = GuestImage.load(guest_path(program))
    model = cpu_model(cpu)
    ram = GuestRAM.attach(attach, ram_size) if attach else GuestRAM.create(ram_size)
    pages = RunPages.create(1)
    try:
        if not attach:
            image.load_into(ram)
        if iterations is not None:
            ram.write_word(image.symbol("cfg_iterations"), iterations)
        page = pages[0]
        engine = Engine(ram.address, ram.size, pages.address_of(0, "instructions"))
        core = Core(engine, pages.record(0), model, ram.words)
        core.reset(image.entry, pir=pir)
        if setup is not None:
            setup(core, image, ram)
        handler = ExitHandler(model, strategy("illegal"), ram.read_word)
        dbg = GuestDebugState()
        code = None
        fault = None
        t0 = time.perf_counter()
        for _ in range(max_exits):
            out = core.run()
            if out is None:
                continue
            if isinstance(out, Fault):
                fault = out
                break
            d = handler.handle(out, dbg)
            core.count(out.event.value, "kernel")
            if d.action is Action.REFLECT:
                core.reflect(out)
            elif d.action is Action.EMULATE:
                core.pc = d.pc
                if d.r3 is not None:
                    engine.set_gpr(3, d.r3)
            elif d.action is Action.HALT:
                code = d.code
                break
            else:
                raise RuntimeError(f"exit for a debugger with none attached: {out}")
        else:
            raise RuntimeError(f"{program}: no halt after {max_exits} exits")
        seconds = time.perf_counter() - t0
        if collect is not None:
            collect(core, image, ram)
        exits = {ev: {lv: int(page["exits"][i, j]) for j, lv in enumerate(LEVELS) if page["exits"][i, j]}
                 for i, ev in enumerate(EVENTS) if page["exits"][i].any()}
        result = LocalResult(code, fault, int(page["instructions"]), seconds, exits,
                             {k: v[pir:] for k, v in image.read_counters(ram, pir + 1).items()}, image)
        del core, engine, page
        return result
    finally:
        pages.close()
        ram.close()


__all__ = ["run_local", "LocalResult", "Exit"]
