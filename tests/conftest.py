import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

from cosim.cpu_models import CPU_MODELS  # noqa: E402
from cosim.vcpu.core import Core  # noqa: E402
from cosim.vcpu.engine import Engine  # noqa: E402
from cosim.vcpu.runpage import RunPages  # noqa: E402

RAM_SIZE = 1 << 20


class Bench:
    """One vCPU core over private RAM, for tests that place hand-made code."""

    def __init__(self, cpu: str):
        self.model = CPU_MODELS[cpu]
        self.ram = np.zeros(RAM_SIZE, np.uint8)
        self.words = self.ram.view(">u4")
        self.pages = RunPages.create(1)
        self.page = self.pages[0]
        self.engine = Engine(self.ram.ctypes.data, RAM_SIZE, self.pages.address_of(0, "instructions"))
        self.core = Core(self.engine, self.pages.record(0), self.model, self.words)
        self.core.reset(0x1000, pir=0)

    def put(self, addr, words):
        for i, w in enumerate(words):
            self.words[(addr >> 2) + i] = w
        return addr + 4 * len(words)

    def spr(self, name):
        from cosim.isa import SPR
        return int(self.page["spr"][SPR[name]])

    def set_spr(self, name, value):
        from cosim.isa import SPR
        self.page["spr"][SPR[name]] = value

    def close(self):
        del self.core, self.page
        self.engine = None
        self.pages.close()


@pytest.fixture(params=["e500v2", "e500mc"])
def bench(request):
    b = Bench(request.param)
    yield b
    b.close()
