"""The example scenarios that ship with the package (package data `cosim/configs`, from the repository's
configs/): found by name, as guest programs are, so `cosim run demo` and the README's
`cosim run configs/demo.toml` work from any directory after `pip install .`.

`find(name)`: a path that exists is used as given; otherwise a bare name (`demo`, `demo.toml`,
`strategies/illegal-e500mc`) or a `configs/...` path is looked up among the shipped configs. None when
nothing matches (the caller reports the file as missing, with `near(name)`).
"""
from __future__ import annotations

import difflib
from pathlib import Path


def _configs_dir() -> Path:
    """cosim/configs inside an installed package, else configs/ next to the source tree of cosim."""
    import importlib.resources
    d = Path(str(importlib.resources.files("cosim").joinpath("configs")))
    if d.is_dir() and any(d.glob("*.toml")):
        return d
    return Path(__file__).resolve().parents[1] / "configs"


CONFIGS_DIR = _configs_dir()


def list_configs() -> list[str]:
    """Names of the shipped configs, without .toml (`demo`, `strategies/illegal-e500mc`, ...)."""
    if not CONFIGS_DIR.is_dir():
        return []
    return sorted(str(p.relative_to(CONFIGS_DIR).with_suffix("")) for p in CONFIGS_DIR.rglob("*.toml"))


def find(name: str) -> Path | None:
    p = Path(name)
    if p.exists():
        return p
    parts = p.parts[1:] if p.parts[:1] == ("configs",) else p.parts
    if not parts or ".." in parts or p.is_absolute():
        return None
    rel = Path(*parts)
    candidate = CONFIGS_DIR / (rel if rel.suffix == ".toml" else rel.with_name(rel.name + ".toml"))
    return candidate if candidate.is_file() else None


def near(name: str) -> list[str]:
    stem = str(Path(*Path(name).parts[1:]) if Path(name).parts[:1] == ("configs",) else Path(name))
    return difflib.get_close_matches(stem.removesuffix(".toml"), list_configs(), n=3)
