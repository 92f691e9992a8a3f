"""Race hunting: one scenario under the deterministic schedule, over many seeds, in parallel; the seeds
whose invariants failed, each replayable exactly (`cosim run CONFIG --seed N`, or `cosim replay` of
the record kept for it).
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import re
from collections.abc import Callable, Iterable

from .config import Config, parse_config

SEEDS_MAX = 1_000_000


def parse_seeds(text: str) -> list[int]:
    """'1-500', '7', '1-10,42,100-105' -> the seeds, in order, without repeats. Raises ValueError."""
    out: list[int] = []
    seen: set[int] = set()
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if m is None:
            raise ValueError(f"{part.strip()!r}: expected N or FIRST-LAST")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise ValueError(f"{part.strip()!r}: {hi} is below {lo}")
        if hi - lo + 1 + len(out) > SEEDS_MAX:
            raise ValueError(f"more than {SEEDS_MAX:,} seeds")
        for s in range(lo, hi + 1):
            if s not in seen:
                seen.add(s)
                out.append(s)
    if not out:
        raise ValueError("no seeds")
    return out


def seeded(cfg: Config, seed: int) -> dict:
    d = cfg.to_dict()
    d["machine"]["schedule"] = "deterministic"
    d["machine"]["seed"] = seed
    return d


def run_seed(cfg_dict: dict, source: str, seed: int, record_dir: str | None) -> dict:
    """One seed's run (in a worker process): its verdict and where its record went."""
    from .report import build_report
    from .supervisor import Supervisor
    cfg = parse_config(cfg_dict, source)
    keep = os.path.join(record_dir, f"seed-{seed}") if record_dir else None
    data = Supervisor(cfg, record_dir=keep).run()
    report = build_report(data)
    return {"seed": seed, "ok": report["ok"], "failed": report["failed"], "outcome": data.outcome,
            "problems": data.problems[:3], "seconds": round(data.seconds, 3),
            "digest": data.record["digest_hash"] if data.record else None,
            "record": keep if keep and report["ok"] is False else None}


def hunt(cfg: Config, seeds: Iterable[int], jobs: int = 1, record_dir: str | None = None,
         on_result: Callable[[dict], None] | None = None) -> list[dict]:
    """Run every seed (`jobs` at a time); results in seed order. Records are kept (under record_dir,
    one directory per seed) for the failing seeds only."""
    seeds = list(seeds)
    results: dict[int, dict] = {}
    if jobs <= 1:
        for s in seeds:
            r = run_seed(seeded(cfg, s), cfg.source, s, record_dir)
            results[s] = r
            _tidy(r, record_dir)
            if on_result is not None:
                on_result(r)
    else:
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
            futures = [pool.submit(run_seed, seeded(cfg, s), cfg.source, s, record_dir) for s in seeds]
            for f in concurrent.futures.as_completed(futures):
                r = f.result()
                results[r["seed"]] = r
                _tidy(r, record_dir)
                if on_result is not None:
                    on_result(r)
    return [results[s] for s in seeds]


def _tidy(r: dict, record_dir: str | None) -> None:
    """A passing seed's record is not kept (hundreds of seeds; only failures are worth replaying)."""
    if record_dir and r["ok"]:
        import shutil
        shutil.rmtree(os.path.join(record_dir, f"seed-{r['seed']}"), ignore_errors=True)
