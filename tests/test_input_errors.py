"""Bad input ends with exit 2 and one line naming the file, the key and the problem, before any process
starts (run_config is never called), for `cosim run` and `cosim compare`."""
import shutil
from pathlib import Path

import pytest

from cosim import cli

REPO = Path(__file__).resolve().parents[1]
DEMO = str(REPO / "configs" / "demo.toml")

CASES = {
    "symbol": (["run", DEMO, "--set", "debug.breakpoints[0].at=bp_targt_a"],
               ["demo.toml", "debug.breakpoints[0].at", "no symbol 'bp_targt_a'", "near matches: bp_target_a"]),
    "program": (["run", DEMO, "--set", "guest.program=warn_strom"],
                ["demo.toml", "guest.program", "did you mean warn_storm"]),
    "outside-ram": (["run", DEMO, "--set", "debug.breakpoints[1].at=0x1000000"],
                    ["demo.toml", "debug.breakpoints[1].at", "0x1000000 is outside guest RAM"]),
    "entry-outside-ram": (["run", DEMO, "--set", "guest.entry=0x2000000"],
                          ["demo.toml", "guest.entry", "outside guest RAM"]),
    "x86-elf": (["run", DEMO, "--set", "guest.program=X86"],
                ["demo.toml", "guest.program", "machine EM_X86_64 (need EM_PPC"]),
    "finding-typo": (["run", DEMO, "--set", 'expect.findings=["sc64-lost-hit"]'],
                     ["demo.toml", "expect.findings[0]", "did you mean 'sc64-lost-hits'?"]),
    "json-dir": (["run", DEMO, "--json", "/nonexistent-dir/r.json"],
                 ["--json", "'/nonexistent-dir' does not exist"]),
    "set-syntax": (["run", DEMO, "--set", "machine.vcpus"], ["demo.toml", "expected dotted.key=value"]),
    "set-range": (["run", DEMO, "--set", "machine.vcpus=0"], ["demo.toml", "machine.vcpus", "out of range"]),
    "compare-vcpus": (["compare", "--vcpus", "0"], ["--vcpus", "0 out of range (1..16)"]),
    "compare-program": (["compare", "--program", "warn_strom"], ["--program", "did you mean warn_storm"]),
    "compare-json-dir": (["compare", "--json", "/nonexistent-dir/c.json"], ["--json", "does not exist"]),
    # issue 23: the holes a new user found
    "compare-x86-elf": (["compare", "--program", "TMP/x86.elf"], ["--program", "machine EM_X86_64"]),
    "compare-little-endian-elf": (["compare", "--program", "TMP/le.elf"], ["--program", "little-endian"]),
    "compare-directory": (["compare", "--program", "TMP/dir.elf"], ["--program", "Is a directory"]),
    "compare-foreign-guest": (["compare", "--program", "foreign_traps"],
                              ["--program foreign_traps", "cfg_iterations", "bp_target", "configs/foreign.toml"]),
    "sweep-n": (["sweep", "TMP/spec.toml", "-n", "lots"], ["-n: 'lots'", "auto"]),
    "sweep-tx": (["sweep", "TMP/spec.toml", "--tx", "foo"], ["--tx: 'foo'", "popen"]),
    "record-existing-file": (["run", DEMO, "--record", "TMP/file"], ["--record", "exists and is not a directory"]),
    "replay-runs-0": (["replay", "TMP", "--runs", "0"], ["--runs", "must be >= 1"]),
    "byte-order-mark": (["run", "TMP/bom.toml"], ["bom.toml", "machine.vcpus", "out of range"]),
    "program-dot-elf": (["run", DEMO, "--set", "guest.program=loop.elf"],
                        ["guest.program", "named without .elf: did you mean loop?"]),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_exit_2_one_line_before_start(case, monkeypatch, capsys, tmp_path):
    argv, wanted = CASES[case]
    x86 = shutil.which("true") or "/bin/true"
    (tmp_path / "x86.elf").write_bytes(Path(x86).read_bytes())
    argv = [a.replace("guest.program=X86", f"guest.program={tmp_path / 'x86.elf'}") for a in argv]
    le = bytearray((REPO / "guests" / "loop.elf").read_bytes())
    le[5] = 1                                                       # EI_DATA: ELFDATA2LSB
    (tmp_path / "le.elf").write_bytes(bytes(le))
    (tmp_path / "dir.elf").mkdir()
    (tmp_path / "file").write_text("")
    (tmp_path / "spec.toml").write_text("[sweep]\n")
    (tmp_path / "bom.toml").write_bytes("\ufeff".encode() + Path(DEMO).read_bytes().replace(b"vcpus = ", b"vcpus = 0 #"))
    argv = [a.replace("TMP", str(tmp_path)) for a in argv]

    def boom(*a, **k):
        raise AssertionError("a process was started for bad input")
    monkeypatch.setattr(cli, "run_config", boom)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    for w in wanted:
        assert w in err, (w, err)


def test_json_dash_writes_the_report_to_stdout(capfd):
    import json
    assert cli.main(["run", DEMO, "--quiet", "--json", "-", "--set", "guest.iterations=20",
                     "--set", "machine.vcpus=1"]) == 0
    doc = json.loads(capfd.readouterr().out)
    assert doc["schema_version"] == 1 and doc["tool"]["document"] == "run"
    assert doc["config"]["machine"]["vcpus"] == 1 and doc["config"]["guest"]["iterations"] == 20
    assert not Path("-").exists()
