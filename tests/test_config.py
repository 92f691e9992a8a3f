"""cosim.config: shipped scenarios parse; bad ones fail with one exact line naming file and key."""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import pytest

from cosim.config import (
    ACTIONS, CPUS, STRATEGIES, BreakpointConfig, Config, ConfigError, ExpectConfig, RaceConfig,
    StressConfig, load_config, parse_config,
)

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").rglob("*.toml"))
GUEST_SYMBOLS = {
    "loop": {"bp_target"}, "warn_storm": {"bp_target_a", "bp_target_b"}, "smp_workers": {"bp_target"},
    "selfcheck": {"bp_target"}, "guest_iac": {"bp_target"}, "atomics": {"bp_target"}, "foreign_traps": {"sc_site"},
    "u-boot": set(),     # configs/uboot.toml: Debian's firmware, no breakpoint
    "linux": set(),      # configs/linux.toml: the Linux guest (tools/linux_guest.py), no breakpoint
    "linux-e500mc": set(),   # configs/linux-e500mc.toml: its e500mc flavour
}

MINIMAL = '[machine]\ncpu = "e500mc"\n\n[guest]\nprogram = "warn_storm"\n'
BP_A = '[[debug.breakpoints]]\nat = "bp_target_a"\n'


# --- shipped configs --------------------------------------------------------------------------------

@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_shipped_config_parses(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.name == path.stem
    assert cfg.description
    assert cfg.guest.program in GUEST_SYMBOLS
    symbols = GUEST_SYMBOLS[cfg.guest.program]
    for bp in cfg.debug.breakpoints:
        assert bp.at in symbols
    # the report embeds to_dict(); it must be JSON and load back to the same Config
    assert parse_config(json.loads(json.dumps(cfg.to_dict())), cfg.source) == cfg


def test_a_linux_kernel_on_the_other_cpu_model_names_the_right_one() -> None:
    with pytest.raises(ConfigError, match="'linux' is a kernel built for e500v2, and cpu is 'e500mc': "
                                          "use program = 'linux-e500mc'"):
        parse_config({"machine": {"cpu": "e500mc", "board": "ppce500"}, "guest": {"program": "linux"}}, "x.toml")
    with pytest.raises(ConfigError, match="built for e500mc"):
        parse_config({"machine": {"cpu": "e500v2", "board": "ppce500"}, "guest": {"program": "linux-e500mc"}},
                     "x.toml")


def test_all_named_scenarios_shipped() -> None:
    names = {p.relative_to(ROOT / "configs").as_posix() for p in CONFIGS}
    assert {"demo.toml", "smp-stress.toml", "stale-race.toml", "gdb.toml"} <= names
    assert {f"strategies/{s}-{c}.toml" for s in STRATEGIES for c in CPUS} <= names


def test_strategy_matrix_matches_generator() -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import gen_strategy_configs as gen
    finally:
        sys.path.remove(str(ROOT / "tools"))
    for name, text in gen.render().items():
        assert (ROOT / "configs" / "strategies" / name).read_text() == text, name
    for s in STRATEGIES:
        for c in CPUS:
            cfg = load_config(ROOT / "configs" / "strategies" / f"{s}-{c}.toml")
            assert (cfg.debug.strategy, cfg.machine.cpu, cfg.machine.vcpus) == (s, c, 1)
            assert (cfg.guest.program, cfg.guest.iterations) == ("warn_storm", 100)
            assert cfg.debug.breakpoints == (BreakpointConfig("bp_target_a"), BreakpointConfig("bp_target_b"))


def test_scenario_contents() -> None:
    demo = load_config(ROOT / "configs/demo.toml")
    assert (demo.machine.cpu, demo.machine.vcpus, demo.debug.strategy) == ("e500mc", 2, "illegal")
    assert [(b.at, b.action) for b in demo.debug.breakpoints] == [
        ("bp_target_a", "count"), ("bp_target_b", "log-registers")]
    assert demo.guest.iterations == 200 and demo.expect.exit_code == 0

    smp = load_config(ROOT / "configs/smp-stress.toml")
    assert smp.machine.vcpus == 8 and smp.guest.iterations == 2000
    assert smp.debug.stress == StressConfig(("bp_target_a", "bp_target_b"), (0.5, 3.0), 1, 1000)

    race = load_config(ROOT / "configs/stale-race.toml")
    assert race.debug.strategy == "trap-user"
    assert race.debug.race == RaceConfig("bp_target_a", 3)

    gdb = load_config(ROOT / "configs/gdb.toml")
    assert gdb.guest.program == "loop" and gdb.debug.breakpoints == ()
    assert gdb.limits.wall_seconds == 600.0 and gdb.guest.iterations >= 10**8


# --- defaults and normalization ---------------------------------------------------------------------

def test_defaults(tmp_path: Path) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(MINIMAL)
    cfg = load_config(path)
    assert cfg.name == "tiny" and cfg.description == "" and cfg.source == str(path)
    assert (cfg.machine.vcpus, cfg.machine.ram, cfg.machine.transport) == (1, 16 << 20, "ipc")
    assert (cfg.guest.elf_path, cfg.guest.entry, cfg.guest.iterations) == (None, None, None)
    assert (cfg.debug.strategy, cfg.debug.detach_at_end) == ("illegal", True)
    assert (cfg.debug.breakpoints, cfg.debug.stress, cfg.debug.race) == ((), None, None)
    assert (cfg.limits.wall_seconds, cfg.limits.instructions) == (60.0, 0)
    assert cfg.expect == ExpectConfig() and cfg.expect.empty
    assert cfg.guest.resolve("guests") == Path("guests/warn_storm.elf")


def test_constants() -> None:
    assert STRATEGIES == ("sc64", "trap-user", "trap-kernel", "ehpriv", "illegal", "hw")
    assert CPUS == ("e500v2", "e500mc")
    assert ACTIONS == ("count", "log-registers", "remove-after", "single-step")


def test_normalization(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "full.toml"
    path.write_text('''
name = "full"
[machine]
cpu = "e500v2"
ram = 4194304
transport = "tcp"
[guest]
program = "../elves/custom.elf"
entry = "0x1000"
iterations = 7
[debug]
strategy = "hw"
detach_at_end = false
[[debug.breakpoints]]
at = 0x2000
action = "remove-after"
hits = 2
[[debug.breakpoints]]
at = "0x2004"
action = "single-step"
steps = 3
[[debug.breakpoints]]
at = "bp_target_a"
[debug.stress]
toggle = [8192, "bp_target_a"]
interval_ms = [1, 2]
[debug.race]
at = "0x2000"
after_hits = 2
[expect]
findings = ["sc64-lost-hits"]
debugger_hits = 3
''')
    cfg = load_config(path)
    assert cfg.machine.ram == 4 << 20 and cfg.machine.transport == "tcp"
    assert cfg.guest.program == "../elves/custom.elf"
    assert cfg.guest.elf_path == Path(os.path.abspath(tmp_path / "elves" / "custom.elf"))
    assert cfg.guest.resolve("guests") == cfg.guest.elf_path
    assert cfg.guest.entry == 0x1000
    assert cfg.debug.breakpoints == (
        BreakpointConfig(0x2000, "remove-after", hits=2),
        BreakpointConfig(0x2004, "single-step", steps=3),
        BreakpointConfig("bp_target_a"),
    )
    assert cfg.debug.breakpoint_at(0x2004).steps == 3 and cfg.debug.breakpoint_at(0x3000) is None
    assert cfg.debug.stress == StressConfig((0x2000, "bp_target_a"), (1.0, 2.0), 1, 200)
    assert cfg.debug.race == RaceConfig(0x2000, 2)
    assert cfg.expect.findings == ("sc64-lost-hits",) and not cfg.expect.empty
    assert parse_config(json.loads(json.dumps(cfg.to_dict())), str(path)) == cfg


@pytest.mark.parametrize("ram, size", [
    ("16M", 16 << 20), ("1M", 1 << 20), ("256M", 256 << 20), ("4096K", 4 << 20), ("8m", 8 << 20),
    (2 << 20, 2 << 20), ("1052672", 1052672),
])
def test_ram_sizes(ram: object, size: int) -> None:
    cfg = parse_config({"machine": {"cpu": "e500mc", "ram": ram}, "guest": {"program": "loop"}}, "x.toml")
    assert cfg.machine.ram == size


def test_frozen() -> None:
    cfg = parse_config({"machine": {"cpu": "e500mc"}, "guest": {"program": "loop"}}, "x.toml")
    assert isinstance(cfg, Config)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.machine.vcpus = 2  # type: ignore[misc]


def test_hw_with_many_breakpoints_is_not_a_config_error() -> None:
    bps = [{"at": f"sym{i}"} for i in range(4)]
    cfg = parse_config({"machine": {"cpu": "e500mc"}, "guest": {"program": "loop"},
                        "debug": {"strategy": "hw", "breakpoints": bps}}, "x.toml")
    assert len(cfg.debug.breakpoints) == 4


# --- errors: (TOML text, expected message after "<file>: ") ----------------------------------------

BAD = {
    # unknown keys, with suggestions
    "unknown-key": ('[machine]\ncpu = "e500mc"\nvcpu = 2\n[guest]\nprogram = "loop"\n',
                    "machine.vcpu: unknown key (did you mean 'vcpus' or 'cpu'?)"),
    "unknown-table": (MINIMAL + "[limit]\nwall_seconds = 1\n",
                      "limit: unknown key (did you mean 'limits'?)"),
    "unknown-bp-key": (MINIMAL + BP_A + 'ation = "count"\n',
                       "debug.breakpoints[0].ation: unknown key (did you mean 'action'?)"),
    "misplaced-key": (MINIMAL + 'strategy = "illegal"\n',
                      "guest.strategy: unknown key ('strategy' belongs in [debug])"),
    "misplaced-top": ('[machine]\ncpu = "e500mc"\nname = "x"\n[guest]\nprogram = "loop"\n',
                      "machine.name: unknown key ('name' belongs at the top level, before any [table])"),
    "unknown-no-match": (MINIMAL + "zzzz = 1\n",
                         "guest.zzzz: unknown key (expected one of: program, entry, iterations, until, kernel, initrd, bootargs)"),
    "unknown-quoted": (MINIMAL + '"a b" = 1\n',
                       'guest."a b": unknown key (expected one of: program, entry, iterations, until, kernel, initrd, bootargs)'),
    # wrong types
    "type-int": ('[machine]\ncpu = "e500mc"\nvcpus = "2"\n[guest]\nprogram = "loop"\n',
                 "machine.vcpus: expected an integer, got string '2'"),
    "type-bool-as-int": ('[machine]\ncpu = "e500mc"\nvcpus = true\n[guest]\nprogram = "loop"\n',
                         "machine.vcpus: expected an integer, got boolean true"),
    "type-bool": (MINIMAL + "[debug]\ndetach_at_end = 1\n",
                  "debug.detach_at_end: expected true or false, got integer 1"),
    "type-str": ('[machine]\ncpu = 500\n[guest]\nprogram = "loop"\n',
                 "machine.cpu: expected a string, got integer 500"),
    "type-table": ('machine = "e500mc"\n[guest]\nprogram = "loop"\n',
                   "machine: expected a table [machine], got string 'e500mc'"),
    "type-bp-table": (MINIMAL + '[debug.breakpoints]\nat = "bp_target_a"\n',
                      "debug.breakpoints: expected an array of tables ([[debug.breakpoints]]), got table"),
    "type-float": (MINIMAL + '[limits]\nwall_seconds = "60"\n',
                   "limits.wall_seconds: expected a number, got string '60'"),
    "type-exit-code": (MINIMAL + "[expect]\nexit_code = 1.0\n",
                       "expect.exit_code: expected an integer, got float 1.0"),
    "type-findings": (MINIMAL + '[expect]\nfindings = "sc64-lost-hits"\n',
                      "expect.findings: expected an array, got string 'sc64-lost-hits'"),
    "type-finding": (MINIMAL + '[expect]\nfindings = ["a", 3]\n',
                     "expect.findings[1]: expected a finding id (string), got integer 3"),
    "type-at": (MINIMAL + "[[debug.breakpoints]]\nat = 1.5\n",
                "debug.breakpoints[0].at: expected a symbol name or an address (integer or '0x...'), "
                "got float 1.5"),
    # bad enums
    "enum-strategy": (MINIMAL + '[debug]\nstrategy = "foo"\n',
                      "debug.strategy: unknown strategy 'foo' "
                      "(expected one of: sc64, trap-user, trap-kernel, ehpriv, illegal, hw)"),
    "enum-cpu": ('[machine]\ncpu = "e500"\n[guest]\nprogram = "loop"\n',
                 "machine.cpu: unknown cpu 'e500' (expected one of: e500v2, e500mc)"),
    "enum-transport": ('[machine]\ncpu = "e500mc"\ntransport = "udp"\n[guest]\nprogram = "loop"\n',
                       "machine.transport: unknown transport 'udp' (expected one of: ipc, tcp)"),
    "enum-action": (MINIMAL + BP_A + 'action = "stop"\n',
                    "debug.breakpoints[0].action: unknown action 'stop' "
                    "(expected one of: count, log-registers, remove-after, single-step)"),
    # out of range
    "range-vcpus": ('[machine]\ncpu = "e500mc"\nvcpus = 17\n[guest]\nprogram = "loop"\n',
                    "machine.vcpus: 17 out of range (1..16)"),
    "range-vcpus-0": ('[machine]\ncpu = "e500mc"\nvcpus = 0\n[guest]\nprogram = "loop"\n',
                      "machine.vcpus: 0 out of range (1..16)"),
    "range-iterations": (MINIMAL + "iterations = 0\n", "guest.iterations: 0 out of range (1..4294967295)"),
    "range-wall": (MINIMAL + "[limits]\nwall_seconds = 0\n",
                   "limits.wall_seconds: 0 out of range (must be > 0 and finite)"),
    "range-instructions": (MINIMAL + "[limits]\ninstructions = -1\n",
                           "limits.instructions: -1 out of range (0..9223372036854775807)"),
    "range-hits": (MINIMAL + BP_A + 'action = "remove-after"\nhits = 0\n',
                   "debug.breakpoints[0].hits: 0 out of range (1..9223372036854775807)"),
    "range-ram": ('[machine]\ncpu = "e500mc"\nram = "512M"\n[guest]\nprogram = "loop"\n',
                  "machine.ram: '512M' out of range (1M..256M)"),
    "range-ram-int": ('[machine]\ncpu = "e500mc"\nram = 4096\n[guest]\nprogram = "loop"\n',
                      "machine.ram: 4096 out of range (1M..256M)"),
    "range-interval": (MINIMAL + BP_A + '[debug.stress]\ntoggle = ["bp_target_a"]\ninterval_ms = [0, 1]\n',
                       "debug.stress.interval_ms: [0, 1] out of range (both must be > 0 and finite)"),
    "interval-order": (MINIMAL + BP_A + '[debug.stress]\ntoggle = ["bp_target_a"]\ninterval_ms = [5, 1.5]\n',
                       "debug.stress.interval_ms: min 5 is greater than max 1.5"),
    "interval-shape": (MINIMAL + BP_A + '[debug.stress]\ntoggle = ["bp_target_a"]\ninterval_ms = [1]\n',
                       "debug.stress.interval_ms: expected [min, max] in milliseconds, got array [1]"),
    "range-toggles": (MINIMAL + BP_A + '[debug.stress]\ntoggle = ["bp_target_a"]\ntoggles = 0\n',
                      "debug.stress.toggles: 0 out of range (1..9223372036854775807)"),
    "range-address": (MINIMAL + "[[debug.breakpoints]]\nat = 0x100000000\n",
                      "debug.breakpoints[0].at: address 0x100000000 out of range (32-bit)"),
    "unaligned-address": (MINIMAL + '[[debug.breakpoints]]\nat = "0x1002"\n',
                          "debug.breakpoints[0].at: address 0x1002 is not 4-byte aligned"),
    "bad-symbol": (MINIMAL + '[[debug.breakpoints]]\nat = "1abc"\n',
                   "debug.breakpoints[0].at: expected a symbol name or an address (integer or '0x...'), "
                   "got '1abc'"),
    "bad-entry": (MINIMAL + 'entry = "0xzz"\n',
                  "guest.entry: expected a symbol name or an address (integer or '0x...'), got '0xzz'"),
    # ram sizes
    "ram-4k": ('[machine]\ncpu = "e500mc"\nram = "1025K"\n[guest]\nprogram = "loop"\n',
               "machine.ram: '1025K' is not a multiple of 4 KiB"),
    "ram-4k-int": ('[machine]\ncpu = "e500mc"\nram = 1050000\n[guest]\nprogram = "loop"\n',
                   "machine.ram: 1050000 is not a multiple of 4 KiB"),
    "ram-4k-bytes": ('[machine]\ncpu = "e500mc"\nram = 2097153\n[guest]\nprogram = "loop"\n',
                     "machine.ram: 2097153 is not a multiple of 4 KiB"),
    "ram-suffix": ('[machine]\ncpu = "e500mc"\nram = "1G"\n[guest]\nprogram = "loop"\n',
                   "machine.ram: invalid size '1G' (expected bytes or a number with K or M suffix, e.g. '16M')"),
    "ram-type": ('[machine]\ncpu = "e500mc"\nram = 1.5\n[guest]\nprogram = "loop"\n',
                 "machine.ram: expected bytes (integer) or a size string like '16M', got float 1.5"),
    # missing required
    "missing-cpu": ('[machine]\nvcpus = 1\n[guest]\nprogram = "loop"\n', "machine.cpu: missing required key"),
    "missing-machine": ('[guest]\nprogram = "loop"\n', "machine: missing required table [machine]"),
    "missing-guest": ('[machine]\ncpu = "e500mc"\n', "guest: missing required table [guest]"),
    "missing-program": ('[machine]\ncpu = "e500mc"\n[guest]\niterations = 1\n',
                        "guest.program: missing required key"),
    "missing-at": (MINIMAL + '[[debug.breakpoints]]\naction = "count"\n',
                   "debug.breakpoints[0].at: missing required key"),
    "missing-hits": (MINIMAL + BP_A + 'action = "remove-after"\n',
                     "debug.breakpoints[0].hits: missing required key"),
    "missing-steps": (MINIMAL + BP_A + 'action = "single-step"\n',
                      "debug.breakpoints[0].steps: missing required key"),
    "missing-toggle": (MINIMAL + BP_A + "[debug.stress]\ntoggles = 5\n", "debug.stress.toggle: missing required key"),
    "missing-race-at": (MINIMAL + BP_A + "[debug.race]\nafter_hits = 3\n", "debug.race.at: missing required key"),
    # keys that contradict each other
    "hits-without-remove": (MINIMAL + BP_A + "hits = 3\n",
                            "debug.breakpoints[0].hits: only valid with action = 'remove-after' (action is 'count')"),
    "steps-without-step": (MINIMAL + BP_A + 'action = "remove-after"\nhits = 1\nsteps = 2\n',
                           "debug.breakpoints[0].steps: only valid with action = 'single-step' "
                           "(action is 'remove-after')"),
    "duplicate-bp": (MINIMAL + BP_A + '[[debug.breakpoints]]\nat = "bp_target_a"\naction = "log-registers"\n',
                     "debug.breakpoints[1].at: duplicate breakpoint 'bp_target_a' (also debug.breakpoints[0])"),
    "bad-program": ('[machine]\ncpu = "e500mc"\n[guest]\nprogram = "guests/loop.S"\n',
                    "guest.program: expected a guest name like 'warn_storm' or a path ending in .elf, "
                    "got 'guests/loop.S'"),
    "empty-name": ('name = ""\n' + MINIMAL, "name: must not be empty"),
    # cross-references
    "xref-race": (MINIMAL + BP_A + '[debug.race]\nat = "bp_target_b"\n',
                  "debug.race.at: 'bp_target_b' is not one of debug.breakpoints (did you mean 'bp_target_a'?)"),
    "xref-toggle": (MINIMAL + BP_A + '[debug.stress]\ntoggle = ["bp_target_a", "main"]\n',
                    "debug.stress.toggle[1]: 'main' is not one of debug.breakpoints (have: bp_target_a)"),
    "xref-toggle-addr": (MINIMAL + BP_A + '[debug.stress]\ntoggle = ["0x100"]\n',
                         "debug.stress.toggle[0]: 0x100 is not one of debug.breakpoints (have: bp_target_a)"),
    "xref-none": (MINIMAL + '[debug.race]\nat = "bp_target_a"\n',
                  "debug.race.at: 'bp_target_a' is not one of debug.breakpoints (there are none)"),
    "toggle-twice": (MINIMAL + BP_A + '[debug.stress]\ntoggle = ["bp_target_a", "bp_target_a"]\n',
                     "debug.stress.toggle[1]: 'bp_target_a' listed twice"),
    "toggle-empty": (MINIMAL + BP_A + "[debug.stress]\ntoggle = []\n",
                     "debug.stress.toggle: must name at least one breakpoint"),
    "race-unreachable": (MINIMAL + BP_A + 'action = "remove-after"\nhits = 2\n'
                         '[debug.race]\nat = "bp_target_a"\nafter_hits = 3\n',
                         "debug.race.after_hits: breakpoint 'bp_target_a' is removed after 2 hits, "
                         "so it never reaches hit 3"),
    # TOML syntax
    "syntax-unterminated": ('[machine]\ncpu = "e500mc\n', "line 2: Illegal character '\\n' (column 14)"),
    "syntax-no-equals": ('[machine]\ncpu "e500mc"\n',
                         "line 2: Expected '=' after a key in a key/value pair (column 5)"),
    "syntax-duplicate": ('[machine]\ncpu = "e500mc"\ncpu = "e500v2"\n', "line 3: Cannot overwrite a value (column 15)"),
    "syntax-eof": ("[machine]\ncpu = ", "line 2: Invalid value (at end of file)"),
}


@pytest.mark.parametrize("text, expected", BAD.values(), ids=BAD.keys())
def test_bad_config(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message == f"{path}: {expected}"
    assert "\n" not in message
    assert info.value.file == str(path)


def test_error_fields(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(MINIMAL + '[debug]\nstrategy = "foo"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert (err.key, err.line) == ("debug.strategy", None)
    assert err.problem.startswith("unknown strategy 'foo'")
    assert isinstance(err, ValueError)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"^.*nope\.toml: no such file$") as info:
        load_config(path)
    assert str(info.value) == f"{path}: no such file"


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value) == f"{tmp_path}: is a directory, not a TOML file"


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bin.toml"
    path.write_bytes(b'[machine]\ncpu = "\xff"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: line 2: not valid UTF-8"


def test_file_named_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("configs").mkdir()
    Path("configs/x.toml").write_text(MINIMAL + '[debug]\nstrategy = "foo"\n')
    with pytest.raises(ConfigError) as info:
        load_config("configs/x.toml")
    assert str(info.value).startswith("configs/x.toml: debug.strategy: unknown strategy 'foo' (expected one of: ")


def test_parse_config_errors_name_source() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"machine": {"cpu": "e500mc"}}, "report.json")
    assert str(info.value) == "report.json: guest: missing required table [guest]"
    with pytest.raises(ConfigError) as info:
        parse_config([], "report.json")  # type: ignore[arg-type]
    assert str(info.value) == "report.json: expected a table at the top level, got array"
