"""The supervisor's Start and userspace's first Pause/Continue reach a vCPU over two connections, in
either order (a starved vCPU process finds both in its socket buffers). Start(paused=True) means "wait
for userspace": if userspace has already released (or paused) the vCPU, its word stands. Before, a
release that overtook Start was undone by it and that vCPU waited forever.

The vCPU's message handler is driven directly (no sockets): a VcpuProcess with only what the Start,
Pause and Continue paths touch."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from cosim import wire
from cosim.transport import Received
from cosim.vcpu.process import VcpuProcess
from cosim.vcpu.runpage import State


class _Ep:
    def __init__(self):
        self.sent = []

    def send(self, to, msg):
        self.sent.append((to, msg))


def vcpu() -> VcpuProcess:
    v = object.__new__(VcpuProcess)
    v.index = 0
    v.ep = _Ep()
    v.gate = SimpleNamespace(take=lambda m, sender: False, may_run=lambda: True)
    v.core = SimpleNamespace(save_regs=lambda: None, pc=0x100)
    v.trace = SimpleNamespace(enabled=False, instant=lambda *a: None)
    v.state = np.zeros(1, np.uint8)
    v.started = v.paused = v.steered = v.halted = False
    v.pending = None
    return v


def deliver(v, sender, msg):
    v.handle(Received(sender, msg))


@pytest.mark.parametrize("userspace_first", [False, True])
@pytest.mark.parametrize("start_paused, said, paused", [(True, wire.Continue(1), False), (False, wire.Pause(1), True)])
def test_userspace_word_is_kept_whichever_comes_first(start_paused, said, paused, userspace_first):
    """A release (Continue) against Start(paused=True), a Pause against Start(paused=False)."""
    v = vcpu()
    msgs = [("supervisor", wire.Start(paused=start_paused)), ("userspace", said)]
    for sender, msg in (msgs[::-1] if userspace_first else msgs):
        deliver(v, sender, msg)
    assert v.started and v.paused == paused and v.runnable() == (not paused)
    assert v.state[0] == (State.PAUSED if paused else State.RUNNING)
    assert [type(m) for to, m in v.ep.sent] == ([wire.Paused] if paused else [])


def test_start_alone_decides_until_userspace_speaks():
    v = vcpu()
    deliver(v, "supervisor", wire.Start(paused=True))
    assert v.paused and v.state[0] == State.PAUSED
    deliver(v, "userspace", wire.Continue(1))
    assert not v.paused and v.state[0] == State.RUNNING
