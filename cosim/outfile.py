"""Writing an output file the user asked for (`--json`, `--junit`, `--plot`, the merged `--trace`)
so that a full disk, a read-only file or /dev/full costs that output, never the run.

`write(path, data)`: a regular file is written whole or not at all (a temporary file in the same
directory, then renamed over `path`; on failure the temporary file is removed and an existing file is
left as it was); anything else (a device, a pipe) is written directly. Failures raise `OutputError`,
whose str() is one line naming the path and the reason; callers report it and go on.
"""
from __future__ import annotations

import os
import stat
import tempfile


class OutputError(OSError):
    """An output could not be written: str() is `PATH: could not write: REASON`."""

    def __str__(self) -> str:
        return str(self.strerror)


def _regular_or_missing(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return True


def write(path: str, data: bytes | str) -> None:
    raw = data.encode() if isinstance(data, str) else data
    try:
        if not _regular_or_missing(path):
            with open(path, "wb") as f:
                f.write(raw)
            return
        fd, tmp = tempfile.mkstemp(prefix=".cosim-", suffix=".tmp", dir=os.path.dirname(path) or ".")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except OSError as e:
        raise OutputError(e.errno, f"{path}: could not write: {e.strerror or e}") from None


LOST = ".lost"


class Spill:
    """A buffered binary file a process appends to during a run (trace events, exit records). A write
    that fails (a full disk: ENOSPC; a file-size limit: EFBIG) never raises: the file is truncated (its
    space given back), `PATH.lost` names the reason for whoever reads the file at the end (`lost`),
    and later writes are dropped. A full disk costs that file, never the process that writes it."""

    def __init__(self, path: str, buffering: int = 1 << 16):
        self.path = path
        self.reason: str | None = None
        self._f = None
        try:
            self._f = open(path, "wb", buffering=buffering)
        except OSError as e:
            self._lose(e)

    def write(self, data: bytes) -> None:
        f = self._f
        if f is not None:
            try:
                f.write(data)
            except OSError as e:
                self._lose(e)

    def close(self) -> None:
        f = self._f
        if f is not None:
            try:
                f.close()
                self._f = None
            except OSError as e:
                self._lose(e)

    def _lose(self, e: OSError) -> None:
        self.reason = e.strerror or str(e)
        f, self._f = self._f, None
        if f is not None:
            try:
                os.ftruncate(f.fileno(), 0)
            except (OSError, ValueError):
                pass
            try:
                f.close()             # (flushes what was buffered past the truncation, or fails)
            except OSError:
                pass
            try:
                os.truncate(self.path, 0)
            except OSError:
                pass
        try:
            with open(self.path + LOST, "w") as m:
                m.write(self.reason)
        except OSError:
            pass


def lost(path: str) -> str | None:
    """Why the Spill file at `path` was lost, or None if it was not."""
    try:
        with open(path + LOST) as f:
            return f.read().strip() or "lost"
    except OSError:
        return None
