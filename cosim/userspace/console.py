"""The serial console of a board (userspace's side of the UART): the transcript, the scripted typing
and the end of a run on given output. Pure: bytes in (`output`), bytes to type and "done" out; the
userspace process feeds the UART's transmit side in and pushes what comes out into its receive side.

A script is a list of (after, text): `text` is typed once the transcript shows `after`, searched from
where the previous match ended, so "=> " waits for the next prompt each time. `end_on` ends the run
once every send was typed and it appears after the last one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

TRANSCRIPT_MAX = 4 << 20          # bytes kept for the report (a guest that prints forever)


@dataclass
class Console:
    sends: list[tuple[str, str]] = field(default_factory=list)
    end_on: str | None = None
    fail_on: tuple[str, ...] = ()   # any of these ends the run as failed (`failed`: the line it is on)
    transcript: bytearray = field(default_factory=bytearray)
    typed: int = 0                 # sends done
    cursor: int = 0                # where the next search starts
    done: bool = False
    dropped: int = 0               # output bytes beyond TRANSCRIPT_MAX
    failed: str | None = None
    _fail_cursor: int = 0

    def output(self, data: bytes) -> bytes:
        """The guest printed `data`: returns what to type now (possibly nothing)."""
        room = TRANSCRIPT_MAX - len(self.transcript)
        self.transcript += data[:max(0, room)]
        self.dropped += max(0, len(data) - max(0, room))
        typed = b""
        while self.typed < len(self.sends):
            after, text = self.sends[self.typed]
            i = self.transcript.find(after.encode(), self.cursor)
            if i < 0:
                break
            self.cursor = i + len(after)
            self.typed += 1
            typed += text.encode()
        if self.fail_on and self.failed is None:
            self._check_fail()
        if (not self.done and self.typed == len(self.sends) and self.end_on is not None
                and self.transcript.find(self.end_on.encode(), self.cursor) >= 0):
            self.done = True
        return typed

    def _check_fail(self) -> None:
        t = self.transcript
        for text in self.fail_on:
            i = t.find(text.encode(), max(0, self._fail_cursor - len(text)))
            if i >= 0:
                start = t.rfind(b"\n", 0, i) + 1
                end = t.find(b"\n", i)
                line = t[start:end if end >= 0 else len(t)].decode("utf-8", "replace").strip()
                # the report names the panic itself when the failing line closes a panic report
                tail = t[max(0, start - 8192):start].decode("utf-8", "replace").splitlines()
                panic = [ln.strip() for ln in tail if "Kernel panic" in ln]
                self.failed = panic[-1] if panic else line
                return
        self._fail_cursor = len(t)

    def text(self) -> str:
        return self.transcript.decode("utf-8", "replace")

    def missing(self, lines) -> list[str]:
        """Which expected `lines` the transcript does not contain."""
        t = self.text()
        return [line for line in lines if line not in t]
