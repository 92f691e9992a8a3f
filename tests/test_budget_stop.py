"""The engine's instruction budget (deterministic schedules, issue 9): with budget=True, `run` stops
before a block that would pass the budget (the block is neither run nor counted) and single steps
finish at exactly the budget. Checked on a loop whose register r3 counts the `addi`s executed."""
import numpy as np
import pytest

from cosim.vcpu.engine import Engine, StopKind
from cosim.vcpu.runpage import RunPages

ADDI = 0x38630001                      # addi r3,r3,1
LOOP = [ADDI] * 7 + [0x4BFFFFE4]       # 7 x addi, b -28: an 8-instruction block


@pytest.fixture
def engine():
    ram = np.zeros(1 << 16, np.uint8)
    ram.view(">u4")[0x1000 // 4:0x1000 // 4 + len(LOOP)] = LOOP
    pages = RunPages.create(1)
    eng = Engine(ram.ctypes.data, ram.size, pages.address_of(0, "instructions"), budget=True)
    yield eng, pages[0], ram
    del eng
    pages.close()


def count(page):
    return int(page["instructions"])


@pytest.mark.parametrize("budget", [1, 7, 8, 9, 1000, 10_003])
def test_stops_at_exactly_the_budget(engine, budget):
    eng, page, ram = engine
    eng.set_budget(budget)
    stop = eng.run(0x1000)
    assert stop.kind is StopKind.KICK
    assert budget - 8 < count(page) <= budget
    words = ram.view(">u4")
    while count(page) < budget:        # the rest, one instruction at a time
        pc = eng.pc
        stop = eng.step(pc, int(words[pc // 4]))
        assert stop.kind is StopKind.STEP
    assert count(page) == budget
    assert eng.gpr(3) == budget - budget // 8      # one `b` in every 8 instructions
    assert eng.pc == 0x1000 + 4 * (budget % 8)


def test_continues_past_a_raised_budget(engine):
    eng, page, _ = engine
    eng.set_budget(800)
    eng.run(0x1000)
    assert count(page) == 800 and eng.pc == 0x1000
    eng.set_budget(1600)
    eng.run(eng.pc)
    assert count(page) == 1600 and eng.gpr(3) == 1400
    assert eng.budget_stops == 2
