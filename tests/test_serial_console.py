"""The board's serial console (issue 19, item 5): the scripted typing (pure), `--serial tcp:HOST:PORT`
served by userspace as QEMU's -serial tcp server, `--serial stdio` from the terminal, and bad input."""
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cosim.machine.image import FIRMWARE
from cosim.userspace.console import Console

ROOT = Path(__file__).resolve().parent.parent
UBOOT = Path(FIRMWARE["u-boot"][0])
needs_uboot = pytest.mark.skipif(not UBOOT.exists(), reason="Debian's u-boot-qemu is not installed (./setup.sh)")
CONFIG = """
[machine]
cpu = "e500mc"
board = "ppce500"
[guest]
program = "u-boot"
[serial]
end_on = "GNU ld"
[[serial.send]]
after = "Hit any key to stop autoboot"
text = " "
[[serial.send]]
after = "=> "
text = ""
[limits]
wall_seconds = 120
"""


def test_console_types_in_order_and_ends_after_the_last_send():
    c = Console([("login:", "root\r"), ("# ", "ls\r")], end_on="# ")
    assert c.output(b"boot... # ") == b""              # no `login:` yet: the prompt is not the end either
    assert c.output(b"login:") == b"root\r"
    assert not c.done
    assert c.output(b" hello # ") == b"ls\r" and not c.done   # the `# ` that triggered the send is used
    c.output(b"a b c\r\n# ")
    assert c.done and c.missing(["a b c", "zzz"]) == ["zzz"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(tmp_path, *args, **kw):
    cfg = tmp_path / "uboot-serial.toml"
    cfg.write_text(CONFIG)
    return subprocess.Popen([sys.executable, str(ROOT / "run.py"), str(cfg), "--json", str(tmp_path / "r.json"),
                             "--quiet", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


@needs_uboot
def test_serial_over_tcp_like_qemu(tmp_path):
    port = _free_port()
    proc = _run(tmp_path, "--serial", f"tcp:127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port))
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
                time.sleep(0.1)
        sock.settimeout(1.0)
        seen, typed = b"", False
        while b"GNU ld" not in seen and time.monotonic() < deadline:
            try:
                data = sock.recv(4096)
            except socket.timeout:
                continue
            if not data:
                break
            seen += data
            if not typed and b"=> " in seen:
                sock.sendall(b"version\r")                # the client types the command
                typed = True
        sock.close()
        assert b"=> version" in seen and b"GNU ld" in seen
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    import json
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["ok"] and "version" in report["board"]["transcript"]


@needs_uboot
def test_serial_from_stdin(tmp_path):
    """The terminal types when the prompt shows (bytes typed earlier would be lost as on QEMU: U-Boot
    resets the UART's FIFO when it sets the UART up)."""
    import os
    import select
    proc = _run(tmp_path, "--serial", "stdio", stdin=subprocess.PIPE)
    seen = b""
    try:
        deadline = time.monotonic() + 120
        while b"=> " not in seen and time.monotonic() < deadline and proc.poll() is None:
            if select.select([proc.stdout], [], [], 0.5)[0]:
                seen += os.read(proc.stdout.fileno(), 4096)
        proc.stdin.write(b"version\r")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"GNU ld" in seen + out                       # stdio echoes the console


def test_serial_errors_are_one_line(tmp_path):
    cfg = tmp_path / "bare.toml"
    cfg.write_text('[machine]\ncpu = "e500mc"\n[guest]\nprogram = "loop"\n')
    r = subprocess.run([sys.executable, str(ROOT / "run.py"), str(cfg), "--serial", "stdio"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "needs a board with a UART" in r.stderr and r.stderr.count("\n") == 1
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "u.toml").write_text(CONFIG)
        r = subprocess.run([sys.executable, str(ROOT / "run.py"), str(tmp_path / "u.toml"), "--serial",
                            f"tcp:127.0.0.1:{port}"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "cannot listen there" in r.stderr and r.stderr.count("\n") == 1
    r = subprocess.run([sys.executable, str(ROOT / "run.py"), str(tmp_path / "u.toml"), "--serial", "udp:1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "expected stdio or tcp" in r.stderr
