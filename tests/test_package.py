"""The project as a package: a non-editable wheel carries the guest ELFs and runs a scenario from
anywhere; `python -m cosim`, `--version`, `cosim list` (the static checks run in tools/lint.sh)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cosim

REPO = Path(__file__).resolve().parents[1]


def _cosim(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "cosim", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def test_wheel_ships_guests_and_runs_a_scenario(tmp_path):
    """pip builds a wheel (not editable); installed into a bare directory put first on the path, it
    finds its guest ELFs as package data and runs the demo from an unrelated directory."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--disable-pip-version-check", "-w", str(wheels), str(REPO)], check=True,
                   capture_output=True, timeout=600, cwd=tmp_path)
    (wheel,) = wheels.glob("kvmppc_cosim-*.whl")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
                    "--target", str(site), str(wheel)], check=True, capture_output=True, timeout=600)
    assert sorted(p.name for p in (site / "cosim" / "guests").glob("*.elf")) == \
        sorted(p.name for p in (REPO / "guests").glob("*.elf"))
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "from cosim.machine.image import GUESTS_DIR; print(GUESTS_DIR)"],
                           capture_output=True, text=True, cwd=tmp_path, env=env, check=True)
    assert Path(where.stdout.strip()) == site / "cosim" / "guests"
    shutil.copy(REPO / "configs" / "demo.toml", tmp_path / "demo.toml")
    r = _cosim("run", "demo.toml", "--quiet", "--json", "out.json", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["ok"] and report["debugger_hits"]["total"] > 0
    assert report["tool"]["version"] == cosim.__version__

    # issue 23: the example configs ship too and are taken by name, as the README writes them, from a
    # directory that has no configs/ (the wheel, not the checkout, provides them)
    shipped = sorted(str(p.relative_to(site / "cosim" / "configs")) for p in (site / "cosim" / "configs").rglob("*.toml"))
    assert shipped == sorted(str(p.relative_to(REPO / "configs")) for p in (REPO / "configs").rglob("*.toml"))
    for name in ("configs/demo.toml", "demo", "strategies/hw-e500mc"):
        r = _cosim("run", name, "--quiet", "--set", "guest.iterations=5", "--json", "named.json",
                   cwd=tmp_path, env=env)
        assert r.returncode == 0, (name, r.stderr)
        assert json.loads((tmp_path / "named.json").read_text())["scenario"]["source"] == name
    r = _cosim("run", "dmeo", cwd=tmp_path, env=env)
    assert r.returncode == 2 and "did you mean demo" in r.stderr, r.stderr
    # what `cosim sweep` imports at run time is a dependency of the package, not a test extra
    from importlib.metadata import PathDistribution
    (info,) = site.glob("kvmppc_cosim-*.dist-info")
    requires = [x.replace(" ", "") for x in PathDistribution(info).requires or [] if "extra" not in x]
    for dep in ("pytest", "pytest-xdist"):
        assert any(x.startswith(dep + ">") or x == dep for x in requires), (dep, requires)


def test_python_m_cosim_version():
    r = _cosim("--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"cosim {cosim.__version__}"


def test_list_strategies_programs_symbols():
    r = _cosim("list")
    assert r.returncode == 0, r.stderr
    from cosim.strategies import STRATEGIES
    for s in STRATEGIES.values():
        assert s.name in r.stdout and s.summary in r.stdout
    assert "warn_storm" in r.stdout and "e500mc" in r.stdout
    assert "example configs (cosim run NAME" in r.stdout and "foreign, gdb" in r.stdout
    r = _cosim("list", "warn_storm")
    assert r.returncode == 0, r.stderr
    from cosim.machine.image import GuestImage
    image = GuestImage.load("warn_storm")
    line = next(x for x in r.stdout.splitlines() if x.split()[-1:] == ["bp_target_a"])
    assert int(line.split()[0], 16) == image.symbol("bp_target_a")
    # (issue 23) a kind column; the assembler's constants are listed apart, as values, not addresses
    assert line.split()[2] == "code"
    head, _, consts = r.stdout.partition("assembler constants (values, not addresses):\n")
    assert consts and "MAX_VCPUS" in consts and "MAX_VCPUS" not in head
    assert any(x.split()[2:] == ["data", "cnt_warn"] for x in head.splitlines()[2:])
    r = _cosim("list", "warn_strom")
    assert r.returncode == 2 and "did you mean" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [["-m", "cosim", "--help"], ["tools/chaos.py", "--help"],
                                  ["tools/crosscheck_qemu.py", "--help"]], ids=["cosim", "chaos", "crosscheck"])
def test_help_is_whole_sentences_for_a_new_user(argv):
    """A description that ends where its sentence ends, citing no issue numbers (issue 23)."""
    r = subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    description = r.stdout.split("\n\n")[1]
    assert " ".join(description.split()).endswith("."), description
    assert "issue" not in r.stdout.lower(), r.stdout


def test_the_design_document_is_in_the_repository_and_names_real_files():
    """(issue 23) A clone has its design document: the README points into the repository, and every
    module path docs/DESIGN.md names exists."""
    import re
    readme = (REPO / "README.md").read_text()
    assert "../shared" not in readme and "docs/DESIGN.md" in readme
    design = (REPO / "docs" / "DESIGN.md").read_text()
    for heading in ("## Processes", "## Messages", "## Invariants", "To add a strategy", "To add a CPU model",
                    "## The machine a real guest boots on"):
        assert heading in design, heading
    paths = set(re.findall(r"\b((?:cosim|tools|tests|configs|guests)/[\w/]+\.(?:py|c|toml|md))\b", design))
    assert len(paths) > 20
    missing = sorted(p for p in paths if not (REPO / p).exists())
    assert not missing, missing
