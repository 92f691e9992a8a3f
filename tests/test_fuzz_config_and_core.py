"""Property tests (hypothesis) of two inputs nobody controls (issue 11): config files, and guest code.

- Random and mutated TOML through cosim.config: either a valid Config or the project's ConfigError (one
  line naming the file), never another exception.
- Random instruction words run by the vCPU core: no exception escapes; each run ends in an exit for the
  kernel (which is then reflected, as a kernel with no debugger does), a guest fault report, or a kick.
"""
from __future__ import annotations

import threading
import time
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cosim.config import ConfigError, load_config, parse_config
from cosim.vmexit import Exit, Fault

ROOT = Path(__file__).resolve().parent.parent
SEEDS = [p.read_text() for p in sorted((ROOT / "configs").rglob("*.toml"))]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def accepts(check):
    try:
        cfg = check()
    except ConfigError as e:
        text = str(e)
        assert "\n" not in text and text.startswith("<fuzz>"), text
        return None
    assert cfg.machine.vcpus >= 1 and cfg.limits.wall_seconds > 0
    return cfg


# --- config files -----------------------------------------------------------------------------------
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["e500mc", "e500v2", "warn_storm", "loop", "illegal",
                                                           "hw", "bp_target_a", "0xFFFFFFFC", "16M", "count",
                                                           "single-step", "x.elf", "../a.elf"]))
keys = st.sampled_from(["name", "machine", "guest", "debug", "limits", "expect", "cpu", "vcpus", "ram",
                        "transport", "program", "entry", "iterations", "strategy", "breakpoints", "at",
                        "action", "hits", "steps", "stress", "toggle", "race", "after_hits", "wall_seconds",
                        "instructions", "exit_code", "findings", "detach_at_end", "zz"])
documents = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(keys, inner, max_size=6)),
                         max_leaves=25)


@FUZZ
@given(documents)
def test_random_documents_are_a_config_or_a_config_error(doc):
    accepts(lambda: parse_config(doc, "<fuzz>"))


@FUZZ
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 8),
                                                  st.text(max_size=6)), min_size=1, max_size=4))
def test_mutated_config_files_are_a_config_or_a_config_error(tmp_path_factory, seed, edits):
    text = seed
    for pos, cut, insert in edits:
        pos %= len(text) + 1
        text = text[:pos] + insert + text[pos + cut:]
    path = tmp_path_factory.mktemp("fuzz") / "c.toml"
    path.write_text(text)
    try:
        cfg = load_config(path)
    except ConfigError as e:
        assert "\n" not in str(e) and str(e).startswith(str(path)), str(e)
        return
    assert cfg.machine.vcpus >= 1


@FUZZ
@given(st.sampled_from(SEEDS), st.dictionaries(st.sampled_from(["machine", "guest", "debug", "limits"]),
                                               st.dictionaries(keys, scalars, max_size=3), max_size=2))
def test_seed_configs_with_random_values_are_a_config_or_a_config_error(seed, over):
    doc = tomllib.loads(seed)
    for table, values in over.items():
        if isinstance(doc.get(table), dict):
            doc[table] = {**doc[table], **values}
        else:
            doc[table] = values
    accepts(lambda: parse_config(doc, "<fuzz>"))


# --- guest code -------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["e500v2", "e500mc"])
def core_bench(request):
    from conftest import Bench
    b = Bench(request.param)
    yield b
    b.close()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=24), msr_pr=st.booleans())
def test_random_instruction_words_end_in_an_exit_a_fault_or_a_kick(core_bench, words, msr_pr):
    b = core_bench
    b.words[:] = 0                                  # word 0 is an illegal instruction everywhere
    b.put(0x1000, words)
    b.page["spr"][:] = 0
    b.core.reset(0x1000, pir=0)
    b.core.msr = 0x4000 if msr_pr else 0
    b.core._dbg_key = None
    b.core.apply_debug()
    deadline = time.monotonic() + 0.05
    done = threading.Event()

    def kicker():                                  # as the kick thread: the guest may loop forever
        while not done.wait(0.005):
            if time.monotonic() > deadline:
                b.engine.stop()

    t = threading.Thread(target=kicker, daemon=True)
    t.start()
    outcomes = []
    try:
        for _ in range(30):
            out = b.core.run(kicked=lambda: time.monotonic() > deadline)
            outcomes.append(type(out).__name__)
            if out is None or isinstance(out, Fault):
                break
            assert isinstance(out, Exit)
            b.core.reflect(out)                      # the kernel gives the guest its interrupt
    finally:
        done.set()
        t.join()
    assert outcomes and set(outcomes) <= {"Exit", "Fault", "NoneType"}
