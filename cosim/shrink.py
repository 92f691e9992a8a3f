"""`cosim hunt --shrink`: for a failing seed, a smaller run that still fails, as property-based testers
shrink a counterexample: fewer guest instructions per vCPU (fewer quanta: limits.instructions), fewer
vCPUs, a smaller stress (fewer toggles). Greedy: each candidate is one run of the same seed; one that
still fails invariants is kept and shrunk further, until none does or the budget of runs is spent.
The result is the `--set` overrides that reproduce it (fewer vCPUs or toggles give the seed another
interleaving: the shrunk run is another counterexample, not the same one made shorter).
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterator

from .config import Config, apply_overrides, parse_config

MAX_RUNS = 16


def candidates(d: dict, instructions: int | None) -> Iterator[tuple[str, object]]:
    """(dotted key, smaller value) of `d` (a scenario dict), most promising first."""
    limit = d.get("limits", {}).get("instructions") or instructions
    if limit and limit > 1000:
        yield "limits.instructions", limit // 2
    vcpus = d.get("machine", {}).get("vcpus", 1)
    if vcpus > 2:
        yield "machine.vcpus", vcpus - 1
    stress = (d.get("debug") or {}).get("stress")
    if stress and stress.get("toggles", 0) > 1:
        yield "debug.stress.toggles", stress["toggles"] // 2


def shrink(cfg: Config, seed: int, instructions: int | None,
           run: Callable[[dict], dict], max_runs: int = MAX_RUNS) -> tuple[list[str], dict | None, int]:
    """The overrides of the smallest failing run found, its result and the runs it took. `run(d)` runs
    the scenario dict `d` (seed set) and returns hunt.run_seed's result."""
    base = copy.deepcopy(cfg.to_dict())
    base["machine"]["schedule"] = "deterministic"
    base["machine"]["seed"] = seed
    sets: dict[str, object] = {}
    best: dict | None = None
    runs = 0
    current = base
    progress = True
    while progress and runs < max_runs:
        progress = False
        for key, value in candidates(current, instructions):
            if runs >= max_runs:
                break
            trial = apply_overrides(copy.deepcopy(current), [f"{key}={value}"], cfg.source)
            parse_config(trial, cfg.source)                # (a candidate the schema refuses is a bug here)
            runs += 1
            r = run(trial)
            if not r["ok"]:
                current, best = trial, r
                sets[key] = value
                if key == "limits.instructions":
                    instructions = int(value)     # type: ignore[call-overload]
                progress = True
                break
    return [f"{k}={v}" for k, v in sets.items()], best, runs


def report(cfg: Config, r: dict, config_path: str, sets: list[str], console, quiet: bool = False) -> None:
    """Shrink the failing result `r` of a hunt and print the smaller command."""
    from . import mutation
    from .cli import replay_command
    from .hunt import run_seed

    def run(d: dict) -> dict:
        return run_seed(d, cfg.source, r["seed"], None)
    found, best, runs = shrink(cfg, r["seed"], r.get("instructions"), run)
    if best is None:
        console.print(f"  shrink seed {r['seed']}: no smaller failing run in {runs} run(s)", highlight=False)
        return
    console.print(f"  shrink seed {r['seed']}: still fails ({', '.join(best['failed']) or best['outcome']}) with "
                  f"{' '.join(found)} ({runs} run(s)): "
                  + replay_command(config_path, r["seed"], list(sets) + found, mutation.ACTIVE),
                  highlight=False, soft_wrap=True, markup=False)
