"""Checks of a scenario against its guest image, before any process starts.

`load_config` validates the file alone and never opens an ELF; `check(cfg)` opens the guest image and
checks what only it can answer: the program exists and is a 32-bit big-endian PowerPC executable, its
segments fit in the machine's RAM, every symbol the scenario names exists (with near matches when not),
every address lies in RAM. Each problem is a `ConfigError` (one line: file, key, problem), so a bad
scenario ends with exit 2 before anything is started, never as a failed run.
"""
from __future__ import annotations

import os
from pathlib import Path

from .config import Config, ConfigError
from .machine.image import GuestImage, ImageError, guest_path
from .strategies import strategy as get_strategy


def load_image(cfg: Config) -> GuestImage:
    """The scenario's guest image, or a ConfigError naming guest.program."""
    try:
        return GuestImage.load(cfg.guest.elf_path or guest_path(cfg.guest.program))
    except ImageError as e:
        raise ConfigError(cfg.source, "guest.program", str(e)) from None


def check(cfg: Config) -> GuestImage:
    """Everything a run needs from the image, checked; returns the loaded image."""
    image = load_image(cfg)
    ram = cfg.machine.ram
    if cfg.debug.race is not None and not get_strategy(cfg.debug.strategy).patches_code:
        raise ConfigError(cfg.source, "debug.race",
                          f"strategy {cfg.debug.strategy} plants no breakpoint word, so the stale-exit race "
                          "(a planted word removed while its exit is in flight) cannot be forced")
    for seg in image.segments:
        if seg.end > ram:
            raise ConfigError(cfg.source, "machine.ram",
                              f"{ram:#x} bytes of RAM cannot hold {image.path.name}'s segment at "
                              f"{seg.addr:#x}..{seg.end:#x}")
    if cfg.guest.iterations is not None and "cfg_iterations" not in image:
        raise ConfigError(cfg.source, "guest.iterations",
                          f"{image.path.name} has no cfg_iterations word to set")

    def where(key: str, loc) -> None:
        try:
            addr = image.resolve(loc)
        except ImageError as e:
            raise ConfigError(cfg.source, key, str(e)) from None
        if addr >= ram and (cfg.machine.board == "bare" or key == "guest.entry"):
            raise ConfigError(cfg.source, key, f"address {addr:#x} is outside guest RAM (0..{ram - 1:#x})")
        # (on a board a breakpoint or `until` names a guest virtual address: a breakpoint is checked
        # when it is planted, through the guest TLB as it is then; `until` is compared with the PC)

    if cfg.guest.entry is not None:
        where("guest.entry", cfg.guest.entry)
    if cfg.guest.until is not None:
        where("guest.until", cfg.guest.until)
    for i, bp in enumerate(cfg.debug.breakpoints):
        where(f"debug.breakpoints[{i}].at", bp.at)
    for i, m in enumerate(cfg.expect.memory or ()):
        where(f"expect.memory[{i}].at", m.at)
        last = image.resolve(m.at) + (cfg.machine.vcpus - 1) * m.stride + 4 * len(m.words)
        if last > ram:
            raise ConfigError(cfg.source, f"expect.memory[{i}]",
                              f"the last vCPU's area ends at {last:#x}, outside guest RAM (0..{ram - 1:#x})")
    for i, x in enumerate(cfg.expect.interrupts or ()):
        if x.srr0 is not None:
            where(f"expect.interrupts[{i}].srr0", x.srr0)
    return image


def check_output(path: str | None, key: str) -> None:
    """An output file the run will write at its end: its directory must exist and be writable now, so a
    report is never lost after the run. `-` (stdout) and None are always fine."""
    if path is None or path == "-":
        return
    parent = Path(path).parent
    if not parent.is_dir():
        raise ConfigError(key, None, f"directory {str(parent)!r} does not exist")
    if Path(path).is_dir():
        raise ConfigError(key, None, f"{path!r} is a directory")
    if not os.access(parent, os.W_OK):
        raise ConfigError(key, None, f"directory {str(parent)!r} is not writable")
