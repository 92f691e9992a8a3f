"""The Linux guest: where its kernel and initramfs come from, and how they are built.

The guest comes in flavours, one per CPU model (``FLAVOURS``): ``linux`` is mpc85xx_smp_defconfig for the
e500v2 (SPE, no classic FPU), ``linux-e500mc`` is corenet32_smp_defconfig for the e500mc (classic FPU,
``wait``, doorbells), each plus guests/linux/e500.config and the flavour's own fragment.

``locate(name)`` answers a run's ``program = "linux"`` (or ``"linux-e500mc"``): the build in the cache for
the current inputs (see ``current_key``), else the project's own build shipped compressed in the flavour's
guests/linux/prebuilt* directory (unpacked into the cache once), else a clear error naming the command
that builds it.

``build()`` is the recipe tools/linux_guest.py runs: Debian's linux-source tarball, the flavour's
defconfig plus its fragments, ``make vmlinux`` with the build stamps fixed; guests/linux/init.c compiled
freestanding and static; an initramfs (newc cpio, gzip) written here, so no root and no host tools are
needed for /dev/console.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import os
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

__all__ = ["LinuxBuildError", "LinuxGuest", "Flavour", "FLAVOURS", "flavour", "locate", "build", "ship",
           "cache_dir", "current_key", "initramfs", "RECIPE", "SOURCE_PACKAGE"]

RECIPE = 1                       # bump when the recipe changes what comes out
SOURCE_PACKAGE = "linux-source-6.1"
SOURCE_TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
CROSS = "powerpc-linux-gnu-"
GUEST_DIR = Path(__file__).resolve().parent.parent / "guests" / "linux"
FRAGMENT = GUEST_DIR / "e500.config"             # every flavour's: the board, LKDTM, initrd, power-off
INIT_SOURCE = GUEST_DIR / "init.c"
PACKAGES = [SOURCE_PACKAGE, "gcc-powerpc-linux-gnu", "flex", "bison", "bc", "libelf-dev", "libssl-dev", "make"]
STAMP = {"KBUILD_BUILD_TIMESTAMP": "Thu Jan  1 00:00:00 UTC 2026", "KBUILD_BUILD_USER": "cosim",
         "KBUILD_BUILD_HOST": "kvmppc-cosim", "KBUILD_BUILD_VERSION": "1"}


class LinuxBuildError(Exception):
    """Why the Linux guest cannot be found or built (one line)."""


@dataclass(frozen=True)
class Flavour:
    """One kernel of the guest: the program name a config gives, the CPU model it is built for, the
    defconfig it starts from, the fragments over it, and where its shipped build lives."""
    name: str
    cpu: str
    defconfig: str
    fragments: tuple[Path, ...]
    prebuilt: Path


FLAVOURS = {f.name: f for f in (
    Flavour("linux", "e500v2", "mpc85xx_smp_defconfig", (FRAGMENT,), GUEST_DIR / "prebuilt"),
    Flavour("linux-e500mc", "e500mc", "corenet32_smp_defconfig", (FRAGMENT, GUEST_DIR / "e500mc.config"),
            GUEST_DIR / "prebuilt-e500mc"),
)}
DEFAULT = FLAVOURS["linux"]
PREBUILT = DEFAULT.prebuilt


def flavour(name: str | Flavour = "linux") -> Flavour:
    if isinstance(name, Flavour):
        return name
    try:
        return FLAVOURS[name]
    except KeyError:
        raise LinuxBuildError(f"no Linux guest named {name!r}; there are {', '.join(FLAVOURS)}") from None


class LinuxGuest:
    """A built guest: ``vmlinux`` (ELF, with symbols), ``initrd`` (gzip'd newc cpio), ``manifest``."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.vmlinux = self.dir / "vmlinux"
        self.initrd = self.dir / "initramfs.cpio.gz"
        self.manifest = json.loads((self.dir / "manifest.json").read_text())

    def __repr__(self) -> str:
        return f"LinuxGuest({self.dir})"

    def __str__(self) -> str:
        return str(self.dir)


def _cache_root() -> Path:
    base = os.environ.get("COSIM_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME")
                                                         or os.path.expanduser("~/.cache"), "kvmppc-cosim")
    return Path(base) / "linux"


def _package_version(pkg: str) -> str | None:
    try:
        p = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout.strip() if p.returncode == 0 and p.stdout.strip() else None


def key_of(source_version: str, compiler_version: str, which: str | Flavour = "linux") -> str:
    f = flavour(which)
    # (the first flavour's key predates flavours and names no defconfig: it stays what its build shipped with)
    named = [] if f is DEFAULT else [f"flavour {f.name} {f.defconfig}"]
    h = hashlib.sha256()
    for part in (f"recipe {RECIPE}", f"{SOURCE_PACKAGE} {source_version}", f"gcc {compiler_version}",
                 *named, *(p.read_text() for p in f.fragments), INIT_SOURCE.read_text()):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:16]


def _inputs() -> tuple[str, str]:
    src = _package_version(SOURCE_PACKAGE)
    gcc = _package_version("gcc-powerpc-linux-gnu")
    if src is None or gcc is None:
        raise LinuxBuildError(f"{SOURCE_PACKAGE} and gcc-powerpc-linux-gnu are not installed "
                              f"(tools/linux_guest.py installs them as root)")
    return src, gcc


def current_key(which: str | Flavour = "linux") -> str:
    return key_of(*_inputs(), which)


def cache_dir(key: str) -> Path:
    return _cache_root() / key


def _complete(d: Path) -> bool:
    return all((d / f).is_file() for f in ("vmlinux", "initramfs.cpio.gz", "manifest.json"))


def locate(which: str | Flavour = "linux") -> LinuxGuest:
    """The guest to run: a local build of the current inputs, else the shipped one (unpacked once)."""
    f = flavour(which)
    try:
        d = cache_dir(current_key(f))
        if _complete(d):
            return LinuxGuest(d)
    except LinuxBuildError:
        pass                                   # no toolchain: the shipped build is still usable
    if (f.prebuilt / "manifest.json").is_file():
        man = json.loads((f.prebuilt / "manifest.json").read_text())
        d = _cache_root() / f"shipped-{man['key']}"
        if not _complete(d):
            _unpack_shipped(d, man, f.prebuilt)
        return LinuxGuest(d)
    flag = "" if f is DEFAULT else f" --flavour {f.name}"
    raise LinuxBuildError(f"no Linux guest {f.name!r}: build it with tools/linux_guest.py{flag} "
                          f"(about 20 minutes on 2 cores)")


def _unpack_shipped(d: Path, man: dict, prebuilt: Path) -> None:
    tmp = d.with_name(d.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with lzma.open(prebuilt / "vmlinux.xz") as src, open(tmp / "vmlinux", "wb") as dst:
        shutil.copyfileobj(src, dst)
    if hashlib.sha256((tmp / "vmlinux").read_bytes()).hexdigest() != man["vmlinux_sha256"]:
        shutil.rmtree(tmp, ignore_errors=True)
        raise LinuxBuildError(f"{prebuilt / 'vmlinux.xz'} does not match its manifest (sha256)")
    shutil.copy(prebuilt / "initramfs.cpio.gz", tmp / "initramfs.cpio.gz")
    (tmp / "manifest.json").write_text(json.dumps(man, indent=1))
    try:
        tmp.rename(d)                          # (atomic: concurrent test workers unpack at most twice)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not _complete(d):
            raise


# --- the recipe ---------------------------------------------------------------------------------------

def _ensure_packages(log: Callable[[str], None]) -> None:
    missing = [p for p in PACKAGES if _package_version(p) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise LinuxBuildError(f"missing Debian packages {' '.join(missing)} (install them, or run as root)")
    log(f"installing {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if p.returncode:
            raise LinuxBuildError(f"{' '.join(cmd)} failed: {p.stderr.strip().splitlines()[-1:]}")


def _run(cmd: list[str], cwd: Path, logfile: Path, env: dict | None = None) -> None:
    with open(logfile, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        p = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
    if p.returncode:
        tail = logfile.read_text().splitlines()[-15:]
        raise LinuxBuildError(f"{' '.join(cmd[:3])} ... failed (exit {p.returncode}); log {logfile}:\n  "
                              + "\n  ".join(tail))


def _newc(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0), ino: int = 1) -> bytes:
    fields = [ino, mode, 0, 0, 1 if mode & 0o170000 != 0o040000 else 2, 0, len(data), 0, 0, rdev[0], rdev[1],
              len(name) + 1, 0]
    head = b"070701" + b"".join(f"{v:08X}".encode() for v in fields)
    out = head + name.encode() + b"\0"
    out += b"\0" * (-len(out) % 4) + data
    return out + b"\0" * (-len(out) % 4)


def initramfs(init: bytes) -> bytes:
    """A gzip'd newc archive: /init (the program), the mount points, /dev/console (char 5,1); no time
    stamps, so the same init gives the same bytes."""
    entries = [("dev", 0o040755, b"", (0, 0)), ("dev/console", 0o020600, b"", (5, 1)),
               ("proc", 0o040755, b"", (0, 0)), ("sys", 0o040755, b"", (0, 0)), ("init", 0o100755, init, (0, 0))]
    raw = b"".join(_newc(n, m, d, r, ino=i + 1) for i, (n, m, d, r) in enumerate(entries))
    raw += _newc("TRAILER!!!", 0, ino=0)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(raw)
    return buf.getvalue()


def build(jobs: int | None = None, force: bool = False, log: Callable[[str], None] = lambda s: None,
          which: str | Flavour = "linux") -> LinuxGuest:
    """Build (or find) the guest for the current inputs; the steps and their times go to ``log``."""
    f = flavour(which)
    _ensure_packages(log)
    src_version, gcc_version = _inputs()
    key = key_of(src_version, gcc_version, f)
    out = cache_dir(key)
    if _complete(out) and not force:
        log(f"cached: {out}")
        return LinuxGuest(out)
    if not SOURCE_TARBALL.is_file():
        raise LinuxBuildError(f"{SOURCE_TARBALL} is missing (package {SOURCE_PACKAGE})")
    work = _cache_root() / f"work-{key}"
    work.mkdir(parents=True, exist_ok=True)
    logfile = work / "build.log"
    times: dict[str, float] = {}
    t_all = time.monotonic()

    srcdir = _cache_root() / f"source-{src_version}"      # one unpacked tree, every flavour's objects beside it
    if not (srcdir / "Makefile").is_file():
        log(f"[1/5] unpacking {SOURCE_TARBALL.name}")
        t = time.monotonic()
        tmp = srcdir.with_name(srcdir.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        with tarfile.open(SOURCE_TARBALL) as tar:
            tar.extractall(tmp, filter="tar") if hasattr(tarfile, "tar_filter") else tar.extractall(tmp)
        (top,) = list(tmp.iterdir())
        top.rename(srcdir)
        shutil.rmtree(tmp, ignore_errors=True)
        times["unpack"] = time.monotonic() - t
    objdir = work / "obj"
    objdir.mkdir(exist_ok=True)
    env = {**os.environ, **STAMP, "ARCH": "powerpc", "CROSS_COMPILE": CROSS}
    make = ["make", "-C", str(srcdir), f"O={objdir}", "ARCH=powerpc", f"CROSS_COMPILE={CROSS}"]

    log(f"[2/5] configuring {f.name}: {f.defconfig} + {' + '.join(p.name for p in f.fragments)}")
    t = time.monotonic()
    _run(make + [f.defconfig], work, logfile, env)
    _run([str(srcdir / "scripts/kconfig/merge_config.sh"), "-m", "-O", str(objdir), str(objdir / ".config"),
          *map(str, f.fragments)], srcdir, logfile, env)
    _run(make + ["olddefconfig"], work, logfile, env)
    _check_config(objdir / ".config", f)
    times["configure"] = time.monotonic() - t

    jobs = jobs or os.cpu_count() or 1
    log(f"[3/5] make -j{jobs} vmlinux (about 20 minutes on 2 cores; log: {logfile})")
    t = time.monotonic()
    _run(make + [f"-j{jobs}", "vmlinux"], work, logfile, env)
    times["vmlinux"] = time.monotonic() - t

    log("[4/5] init and initramfs")
    t = time.monotonic()
    init_elf = work / "init"
    _run([f"{CROSS}gcc", "-static", "-nostdlib", "-ffreestanding", "-fno-stack-protector", "-fno-pie", "-no-pie",
          "-msoft-float", "-Os", "-Wall", "-Werror", "-o", str(init_elf), str(INIT_SOURCE)], work, logfile, env)
    rd = initramfs(init_elf.read_bytes())
    times["initramfs"] = time.monotonic() - t

    log(f"[5/5] storing in {out}")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy(objdir / "vmlinux", tmp / "vmlinux")
    shutil.copy(objdir / ".config", tmp / "config")
    (tmp / "initramfs.cpio.gz").write_bytes(rd)
    release = (objdir / "include/config/kernel.release").read_text().strip()
    man = {"key": key, "recipe": RECIPE, "source": f"{SOURCE_PACKAGE} {src_version}", "release": release,
           "compiler": f"gcc-powerpc-linux-gnu {gcc_version}", "defconfig": f.defconfig,
           "fragment": "".join(p.read_text() for p in f.fragments),
           "vmlinux_sha256": hashlib.sha256((tmp / "vmlinux").read_bytes()).hexdigest(),
           "initramfs_sha256": hashlib.sha256(rd).hexdigest(),
           "seconds": {k: round(v, 1) for k, v in times.items()}, "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if f is not DEFAULT:
        man.update(flavour=f.name, cpu=f.cpu)
    (tmp / "manifest.json").write_text(json.dumps(man, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log(f"built in {time.monotonic() - t_all:.0f} s: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    return LinuxGuest(out)


def _check_config(config: Path, f: Flavour = DEFAULT) -> None:
    """Every line of the fragments must have survived olddefconfig (a symbol Kconfig dropped is a recipe bug)."""
    have = set(config.read_text().splitlines())
    for frag in f.fragments:
        lost = [ln for ln in frag.read_text().splitlines() if ln.startswith("CONFIG_") or ln.startswith("# CONFIG_")
                if ln not in have]
        if lost:
            raise LinuxBuildError(f"{frag.name}: not in the resulting .config: {', '.join(lost)}")


def ship(guest: LinuxGuest, which: str | Flavour = "linux") -> Path:
    """Write the build compressed to the flavour's guests/linux/prebuilt* directory (vmlinux.xz,
    initramfs.cpio.gz, config, manifest.json)."""
    d = flavour(which).prebuilt
    d.mkdir(parents=True, exist_ok=True)
    with open(guest.vmlinux, "rb") as src, lzma.open(d / "vmlinux.xz", "wb", preset=9 | lzma.PRESET_EXTREME) as dst:
        shutil.copyfileobj(src, dst)
    shutil.copy(guest.initrd, d / "initramfs.cpio.gz")
    shutil.copy(guest.dir / "config", d / "config")
    (d / "manifest.json").write_text(json.dumps(guest.manifest, indent=1) + "\n")
    return d
