"""kvmppc-cosim: software-breakpoint strategies for KVM on PowerPC Book E, run as an experiment. Commands:
run (one scenario; the same as `python run.py CONFIG`), compare, list, sweep, hunt, replay, cleanup.

Exit status: 0 when every invariant holds (a predicted finding is not a failure), 1 when one fails,
2 for a bad config or bad arguments (one line naming the file, the key and the problem).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time

from rich.console import Console

from .cleanup import reclaim
from . import __version__, costs, preflight, resources
from .config import CPUS, STRATEGIES, VCPUS_MAX, WORD_MAX, ConfigError, load_config, parse_config
from .findings import FINDINGS
from .jsonout import write_json
from .junit import write_junit
from .machine.image import GUESTS_DIR, GuestImage, ImageError, guest_path, list_guests
from .strategies import STRATEGIES as STRATEGY_TABLE
from .render import render_compare, render_run, render_sweep
from .report import build_report, strategy_label
from .supervisor import run_config


class Progress:
    """Progress on stderr: a live line on a terminal, a line every few seconds otherwise."""

    def __init__(self, label: str, quiet: bool = False):
        self.label = label
        self.quiet = quiet
        self.err = Console(stderr=True)
        self.tty = self.err.is_terminal
        self.last = 0.0

    def __call__(self, p: dict) -> None:
        if self.quiet:
            return
        line = (f"{self.label}: {p['elapsed']:5.1f}/{p['wall_limit']:g} s  {p['instructions']:,} instructions"
                f"  {p['exits']:,} exits  {p['halted']}/{p['vcpus']} vCPUs done")
        if self.tty:
            self.err.file.write("\r\x1b[2K" + line)
            self.err.file.flush()
        elif time.monotonic() - self.last > 5:
            self.last = time.monotonic()
            self.err.print(line, highlight=False)

    def done(self):
        if self.tty and not self.quiet:
            self.err.file.write("\r\x1b[2K")
            self.err.file.flush()


DEFAULT_GDB = "127.0.0.1:1234"
"""`--gdb` without a port: QEMU's `-s` (tcp::1234)."""


def parse_gdb(value: str) -> str:
    host, _, port = value.rpartition(":")
    if not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"--gdb {value!r}: expected [HOST:]PORT (port 0 picks a free one)")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host   # [::] -> ::
    return f"{host or '127.0.0.1'}:{int(port)}"


def _seed(value: str) -> int:
    try:
        n = int(value, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seed {value!r}: expected a non-negative integer") from None
    if not 0 <= n < 2**63:
        raise argparse.ArgumentTypeError(f"--seed {value!r}: out of range (0..2**63-1)")
    return n


def check_gdb_bind(addr: str) -> str | None:
    """Can the stub listen on `addr`? (A problem here is the user's: say it in one line, exit 2.)"""
    host, _, port = addr.rpartition(":")
    try:
        socket.create_server((host, int(port))).close()
    except OSError as e:
        shown = f"[{host}]:{port}" if ":" in host else addr
        return f"--gdb {shown}: cannot listen there: {str(e.strerror or e).split(' (while attempting')[0]}"
    return None


def parse_serial(value: str) -> str:
    if value == "stdio":
        return value
    if value.startswith("tcp:"):
        host, _, port = value[4:].rpartition(":")
        if port.isdigit() and int(port) <= 65535:
            return f"tcp:{host or '127.0.0.1'}:{int(port)}"
    raise argparse.ArgumentTypeError(f"--serial {value!r}: expected stdio or tcp:[HOST]:PORT")


def check_serial_bind(value: str) -> str | None:
    """Can userspace serve the UART on `tcp:HOST:PORT`? (One line, exit 2, before anything starts.)"""
    host, _, port = value[4:].rpartition(":")
    try:
        socket.create_server((host, int(port))).close()
    except OSError as e:
        return f"--serial {value}: cannot listen there: {str(e.strerror or e).split(' (while attempting')[0]}"
    return None


def with_overrides(cfg, sets: list[str]):
    """`cfg` whose description says which `--set` overrides it runs with (the report's header would
    otherwise describe the file's scenario), unless an override set the description itself."""
    if not sets or any(s.split("=", 1)[0].strip() == "description" for s in sets):
        return cfg
    import dataclasses
    return dataclasses.replace(cfg, description=(cfg.description + " " if cfg.description else "")
                               + f"(with --set {', '.join(sets)})")


def cmd_run(args) -> int:
    overrides = list(args.set)
    if args.seed is not None:         # a seed means the deterministic schedule
        overrides += ['machine.schedule="deterministic"', f"machine.seed={args.seed}"]
    try:
        cfg = with_overrides(load_config(args.config, overrides), args.set)
        preflight.check(cfg)
        preflight.check_output(args.json, "--json")
        preflight.check_output(args.junit, "--junit")
        preflight.check_output(args.trace, "--trace")
        if args.record is not None:   # a directory, made at the end if its parent exists
            if os.path.exists(args.record) and not os.path.isdir(args.record):
                raise ConfigError("--record", None, f"{args.record!r} exists and is not a directory (the record "
                                  "is a directory: name a new one or an existing directory)")
            preflight.check_output(os.path.join(args.record, "record.json") if os.path.isdir(args.record)
                                   else args.record, "--record")
        _check_plot(args.plot)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.running and args.gdb is None:
        print("error: --running needs --gdb [HOST:]PORT", file=sys.stderr)
        return 2
    if args.gdb is not None and cfg.machine.schedule == "deterministic":
        print("error: --gdb with machine.schedule = \"deterministic\": a person's pace is not "
              "replayable (run without --gdb, or with schedule = \"free\")", file=sys.stderr)
        return 2
    if args.gdb is not None and (problem := check_gdb_bind(args.gdb)):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.serial is not None and cfg.machine.board == "bare":
        print("error: --serial needs a board with a UART ([machine] board = \"ppce500\")", file=sys.stderr)
        return 2
    if args.serial is not None and args.serial.startswith("tcp:") and (problem := check_serial_bind(args.serial)):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:                              # open files, /dev/shm: known before anything starts
        resources.check(cfg.machine.vcpus, cfg.machine.ram)
    except resources.ResourceShortage as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    progress = Progress(cfg.name, args.quiet)
    if args.gdb is not None:
        from .gdb.stub import parse_address, wildcard_warning
        warning = wildcard_warning(parse_address(args.gdb)[0])
        if warning:
            print(f"warning: {warning}", file=sys.stderr, flush=True)
    how = "scenario running; attaching stops it" if args.running else "scenario stopped"

    def gdb_ready(addr, shm=None):
        progress.done()
        print(f"gdb: listening on {addr} ({how}): gdb-multiarch "
              f"{cfg.guest.elf_path or guest_path(cfg.guest.program)} -ex 'target remote {addr}'",
              file=sys.stderr, flush=True)
        if shm:
            print(f"gdb: shared memory: ram={shm['ram']} ram_size={shm['ram_size']:#x} "
                  f"runpages={shm['runpages']} vcpus={shm['vcpus']}", file=sys.stderr, flush=True)

    data = run_config(cfg, progress=progress, gdb=args.gdb, on_gdb_ready=gdb_ready,
                      gdb_running=args.running, trace=args.trace, record_dir=args.record, serial=args.serial)
    progress.done()
    report = build_report(data)
    unwritten = report["outputs_unwritten"]       # (the trace's and the record's, from the run)

    def output(option: str, write) -> None:
        """A full disk, a read-only file, /dev/full: the output is lost, the report goes on (exit 2)."""
        try:
            write()
        except OSError as e:           # outfile.OutputError: `PATH: could not write: REASON`
            unwritten.append(f"{option} {e}")

    if args.json:
        output("--json", lambda: write_json(args.json, "run", report))
    if args.junit:
        output("--junit", lambda: write_junit(args.junit, [report]))
    if args.plot:
        from . import plot
        output("--plot", lambda: plot.save(plot.run_figure(report), args.plot))
    if not args.quiet:
        render_run(report, Console(stderr=True) if args.json == "-" else None)
        if args.record is not None and data.record is not None and not any(
                u.startswith("--record") for u in unwritten):
            print(f"record: {args.record} (digest {data.record['digest_hash']}); "
                  f"replay with: cosim replay {args.record}", file=sys.stderr)
    for u in unwritten:
        print(f"error: {u}", file=sys.stderr)
    if unwritten:
        return 2
    return 0 if report["ok"] else 1


def replay_command(config: str, seed: int, sets: list[str], mutations) -> str:
    """The command line that runs one seed of a hunt again: its --set overrides, and the mutation
    switch when one is active (without it, a seeded bug's seed passes)."""
    import shlex
    env = f"COSIM_MUTATION={','.join(sorted(mutations))} " if mutations else ""
    return (env + f"cosim run {shlex.quote(config)} --seed {seed}"
            + "".join(f" --set {shlex.quote(x)}" for x in sets))


def cmd_hunt(args) -> int:
    """Run a scenario under the deterministic schedule over many seeds (pytest-xdist items, here or
    on other machines); list the failing ones, each with the command that replays it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

    from . import hunt, mutation, sweep
    try:
        seeds = hunt.parse_seeds(args.seeds)
    except ValueError as e:
        print(f"error: --seeds {args.seeds!r}: {e}", file=sys.stderr)
        return 2
    workers = args.n
    if args.jobs is not None:
        if args.jobs < 1:
            print("error: --jobs: must be >= 1", file=sys.stderr)
            return 2
        if workers is None:
            workers = str(args.jobs) if args.jobs > 1 else None
    elif workers is None and not args.tx:
        workers = str(os.cpu_count() or 1) if (os.cpu_count() or 1) > 1 else None
    if args.resume and not args.json:
        print("error: --resume: needs --json PATH (the hunt to continue)", file=sys.stderr)
        return 2
    try:
        sweep.check_workers(workers, args.tx)
        cfg = with_overrides(load_config(args.config, args.set), args.set)
        preflight.check(cfg)
        preflight.check_output(args.json, "--json")
        if args.record is not None:
            os.makedirs(args.record, exist_ok=True)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: --record {args.record}: {e.strerror or e}", file=sys.stderr)
        return 2
    scenario = hunt.seeded(cfg, 0)
    done: dict[int, dict] = {}
    if args.resume and os.path.exists(args.json):
        try:
            with open(args.json) as f:
                before = json.load(f)
            if before.get("scenario") != scenario or before.get("mutations", []) != sorted(mutation.ACTIVE):
                print(f"error: --resume: {args.json} is a hunt of another scenario (config, --set or "
                      "COSIM_MUTATION differ)", file=sys.stderr)
                return 2
            done = {r["seed"]: r for r in before.get("results", []) if r.get("seed") in set(seeds)}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            print(f"error: --resume: {args.json}: not a hunt's JSON ({e})", file=sys.stderr)
            return 2
    todo = [s for s in seeds if s not in done]
    err = Console(stderr=True)
    failing = [s for s, r in done.items() if not r["ok"]]
    t0 = time.monotonic()
    last_write = [t0]

    def summary(final: bool) -> dict:
        results = [done[s] for s in seeds if s in done]
        return {"config": args.config, "sets": list(args.set), "mutations": sorted(mutation.ACTIVE),
                "scenario": scenario, "seeds": len(seeds), "finished": len(results), "complete": final,
                "failing": [r["seed"] for r in results if not r["ok"]],
                "seconds": round(time.monotonic() - t0, 1), "results": results}

    where = f" on -n {workers}" if workers else ""
    where += "".join(f" --tx {t}" for t in args.tx)
    if not args.quiet:
        err.print(f"hunt: {len(todo)} seed(s) of {cfg.name}{where}"
                  + (f" ({len(done)} already done in {args.json})" if done else ""), highlight=False)
    with Bar(TextColumn("hunting {task.description}"), BarColumn(), MofNCompleteColumn(),
             TextColumn("{task.fields[rate]:.1f} seeds/min"), TextColumn("[red]{task.fields[failing]} failing"),
             TimeRemainingColumn(), console=err, transient=True, disable=args.quiet) as bar:
        task = bar.add_task(cfg.name, total=len(seeds), completed=len(done), failing=len(failing), rate=0.0)

        def on_result(r: dict) -> None:
            done[r["seed"]] = r
            if not r["ok"]:
                failing.append(r["seed"])
            minutes = max(time.monotonic() - t0, 1e-6) / 60
            bar.update(task, advance=1, failing=len(failing),
                       rate=(len(done) - (len(seeds) - len(todo))) / minutes)
            if args.json and args.json != "-" and time.monotonic() - last_write[0] > 5:
                last_write[0] = time.monotonic()        # --resume picks up from here if we are stopped
                write_json(args.json, "hunt", summary(False))

        results, errors, out = hunt.hunt(cfg, todo, workers=workers, tx=args.tx, record_dir=args.record,
                                         on_result=on_result) if todo else ([], {}, "")
    elapsed = time.monotonic() - t0
    doc = summary(not errors and all(s in done for s in seeds))
    doc["errors"] = {str(k): v for k, v in errors.items()}
    doc["seeds_per_minute"] = round(len(results) / (elapsed / 60), 2) if elapsed > 0 and results else None
    if args.json:
        write_json(args.json, "hunt", doc)
    bad = [done[s] for s in seeds if s in done and not done[s]["ok"]]
    missing = [s for s in seeds if s not in done]
    if not args.quiet:
        out_c = Console(stderr=True) if args.json == "-" else Console()
        rate = f" ({doc['seeds_per_minute']} seeds/min)" if doc["seeds_per_minute"] else ""
        out_c.print(f"{len(seeds) - len(missing)} of {len(seeds)} seed(s) of {cfg.name} in {elapsed:.1f} s"
                    f"{rate}: {len(bad)} failing", highlight=False, soft_wrap=True)
        for r in bad:
            why = ", ".join(r["failed"]) or r["outcome"]
            out_c.print(f"  seed {r['seed']}: {why} -- replay: "
                        + replay_command(args.config, r["seed"], args.set, mutation.ACTIVE)
                        + (f" (record: cosim replay {r['record']})" if r.get("record") else ""),
                        highlight=False, soft_wrap=True, markup=False)
    for s, text in sorted(errors.items()):
        print(f"hunt: seed {s}: no result: {text.strip().splitlines()[-1] if text.strip() else '?'}",
              file=sys.stderr)
    if missing and not errors:
        tail = "\n".join(out.strip().splitlines()[-15:])
        print(f"hunt: {len(missing)} seed(s) without a result; pytest said:\n{tail}", file=sys.stderr)
    if bad and args.shrink:
        from . import shrink
        for r in bad[:args.shrink_max]:
            shrink.report(cfg, r, args.config, args.set, err if args.json == "-" else Console(),
                          quiet=args.quiet)
    return 1 if bad or missing else 0


def cmd_replay(args) -> int:
    """Run a recorded scenario again and compare its record with the original."""
    import tempfile

    from . import record
    from .config import parse_config
    if args.runs < 1:
        print(f"error: --runs: {args.runs}: must be >= 1", file=sys.stderr)
        return 2
    try:
        rec = record.load(args.rundir)
        cfg = parse_config(rec["config"], rec["source"])
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {args.rundir}: not a run record ({e})", file=sys.stderr)
        return 2
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from . import mutation
    made = sorted(rec.get("schedule", {}).get("mutations", []))
    if made != sorted(mutation.ACTIVE):
        now = ",".join(sorted(mutation.ACTIVE)) or "none"
        print(f"warning: the record was made with COSIM_MUTATION={','.join(made) or '(none)'}, this replay "
              f"runs with {now}: it will not reproduce the run"
              + (f" (run it as: COSIM_MUTATION={','.join(made)} cosim replay {args.rundir})" if made else ""),
              file=sys.stderr)
    worst = 0
    for n in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="cosim-replay-") as tmp:
            data = run_config(cfg, record_dir=tmp)
            report = build_report(data)
            diff = record.compare(args.rundir, tmp) if data.record is not None else "no record written"
        verdict = "identical" if diff is None else f"diverged: {diff}"
        inv = "invariants hold" if report["ok"] else f"invariants failed: {', '.join(report['failed'])}"
        print(f"replay {n + 1}/{args.runs}: {verdict} ({inv})")
        worst = max(worst, 0 if diff is None else 1)
    if rec["schedule"].get("mode") == "free-running" and worst:
        print("note: the run was free-running: its interleaving was the OS scheduler's and is not "
              "replayable", file=sys.stderr)
    return worst


# breakpoint sites of the stand-alone guests that `compare` knows (issue 20): own_code's word it reads
# and the instruction it rewrites; spe's evaddw that runs with MSR[SPE] = 1; dec_step's decrementer
# handler and the instruction its pending interrupt is taken at (issue 21: a hit with an interrupt due);
# dec_same's instruction the decrementer expires at (a hit and an expiry on the same instruction)
COMPARE_TARGETS = ("read_spot", "patch_site", "spe_on", "on_dec", "after_site", "tick_site")


def compare_config(strategy: str, cpu: str, program: str, iterations: int, vcpus: int,
                   msrp_dep: bool | None = None) -> dict:
    image = GuestImage.load(guest_path(program))
    targets = ([s for s in ("bp_target_a", "bp_target_b") if s in image]
               or [s for s in COMPARE_TARGETS if s in image] or ["bp_target"])
    dep = "" if msrp_dep is None else f"-dep{int(msrp_dep)}"
    # a stand-alone guest (no cfg_iterations) runs to its parking symbol `done`
    guest = ({"program": program, "iterations": iterations} if "cfg_iterations" in image
             else {"program": program, "until": "done"})
    return {
        "name": f"{strategy}-{cpu}{dep}", "description": f"compare: {strategy} on {cpu}{dep}, {program}",
        "machine": {"cpu": cpu, "vcpus": vcpus, "msrp_dep": msrp_dep},
        "guest": guest,
        "debug": {"strategy": strategy, "breakpoints": [{"at": t} for t in targets]},
        "limits": {"wall_seconds": 120.0},
    }


def compare_row(report: dict, repeats: list[dict] | None = None) -> dict:
    """One cell of the comparison: verdict and machine-independent costs from the first run, latency
    p50/p90/p99 of userspace round trips (hits) with their spread over `repeats` (all runs of the cell)."""
    sc = report["scenario"]
    dh = report["debugger_hits"]
    runs = repeats or [report]
    executed = sum(r["executed"] for r in dh["by_breakpoint"].values())
    worst = next((r for r in runs if not r["ok"]), None) or next(
        (r for r in runs if any(v["ok"] is False for v in r["invariants"].values())), report)
    bad = [k for k, v in worst["invariants"].items() if v["ok"] is False]
    lat = {q: costs.interval([r["exits"]["latency_us"]["userspace"].get(q) for r in runs])
           for q in ("p50", "p90", "p99")}
    return {
        "strategy": strategy_label(sc),
        "cpu": sc["cpu"], "repeats": len(runs),
        "verdict": "ok" if not bad else ("finding" if worst["ok"] else "fail"),
        "failed": worst["failed"], "hits": dh["total"], "executed": executed,
        "warns": report["guest_warns"]["total"], "warns_expected": report["guest_warns"]["expected"],
        "per_hit": report["costs"]["per_hit"], "per_warn": report["costs"]["per_warn"],
        "user_exits_per_hit": report["costs"]["per_hit"]["exits_by_level"]["userspace"],
        "user_latency_us": lat,
        "user_p50_us": lat["p50"]["mid"],
        "kernel_p50_us": costs.interval([r["exits"]["latency_us"]["kernel"]["p50"] for r in runs])["mid"],
        "exits_by_level": report["exits"]["by_level"], "mips": report["mips"],
        "findings": sorted({f["id"] for r in runs for f in r["findings"]}),
    }


def _check_plot(path: str | None) -> None:
    if path is not None:
        from .plot import check_path
        problem = check_path(path)
        if problem:
            raise ConfigError("--plot", None, problem)


def _run_cell(cfg_dict: dict) -> dict:
    """One compare run (in a worker process when --jobs > 1)."""
    return build_report(run_config(parse_config(cfg_dict, "<compare>")))


def compare_program_problem(program: str) -> str | None:
    """Why `cosim compare` cannot run `program` (one line), or None: it must be a guest image and have
    what every compare cell sets and breaks on (cfg_iterations, bp_target or bp_target_a/b)."""
    try:
        image = GuestImage.load(guest_path(program))
    except ImageError as e:
        return str(e)
    if "done" in image and any(s in image for s in COMPARE_TARGETS):
        return None                       # a stand-alone guest compare knows: runs to `done`, breaks on its sites
    missing = [s for s in ("cfg_iterations",) if s not in image]
    if not any(s in image for s in ("bp_target", "bp_target_a", "bp_target_b")):
        missing.append("bp_target (or bp_target_a/bp_target_b)")
    if missing:
        return (f"{image.path.name} lacks the symbols every compare run uses: {', '.join(missing)}; judge a "
                "guest of your own with a config of its own ([guest] program, [[debug.breakpoints]], "
                "[expect]: see configs/foreign.toml)")
    return None


def cmd_compare(args) -> int:
    problem = compare_program_problem(args.program)
    if problem:
        print(f"error: --program {args.program}: {problem}", file=sys.stderr)
        return 2
    for name in ("iterations", "vcpus"):
        lo, hi = (1, WORD_MAX) if name == "iterations" else (1, VCPUS_MAX)
        if not lo <= getattr(args, name) <= hi:
            print(f"error: --{name}: {getattr(args, name)} out of range ({lo}..{hi})", file=sys.stderr)
            return 2
    try:
        preflight.check_output(args.json, "--json")
        preflight.check_output(args.junit, "--junit")
        _check_plot(args.plot)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.repeat < 1 or args.jobs < 1:
        print(f"error: --{'repeat' if args.repeat < 1 else 'jobs'}: must be >= 1", file=sys.stderr)
        return 2
    # E.HV's two debug modes (machine.msrp_dep): hw on e500mc runs with MSRP[DEP] = 1 and = 0
    cells = [(s, c, d) for s in args.strategies for c in args.cpus
             for d in ((None, False) if (s, c) == ("hw", "e500mc") else (None,))]
    runs = [(s, c, d, k) for k in range(args.repeat) for s, c, d in cells]
    err = Console(stderr=True)
    t0 = time.monotonic()
    by_cell: dict[tuple, list[dict]] = {cell: [] for cell in cells}
    todo = [compare_config(s, c, args.program, args.iterations, args.vcpus, d) for s, c, d, _ in runs]
    if args.jobs == 1:
        results = map(_run_cell, todo)
    else:
        import concurrent.futures
        import multiprocessing
        pool = concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"))
        results = pool.map(_run_cell, todo)
    for n, ((s, c, d, k), report) in enumerate(zip(runs, results), 1):
        if not args.quiet:
            err.print(f"[{n}/{len(runs)}] {s} on {c}" + (" MSRP[DEP]=0" if d is False else "")
                      + (f" (repeat {k + 1})" if args.repeat > 1 else "")
                      + f": {'ok' if report['ok'] else 'FAIL'}", highlight=False)
        if args.repeat > 1:
            report["repeat"] = k + 1          # (JUnit names each repeat's cases apart)
        by_cell[(s, c, d)].append(report)
    if args.jobs > 1:
        pool.shutdown()
    reports = [r for cell in cells for r in by_cell[cell]]
    rows = [compare_row(by_cell[cell][0], by_cell[cell]) for cell in cells]
    if not args.quiet:
        err.print(f"{len(runs)} runs in {time.monotonic() - t0:.1f} s", highlight=False)
    if args.json:
        write_json(args.json, "compare", {"rows": rows, "reports": reports})
    if args.junit:
        write_junit(args.junit, reports)
    if args.plot:
        from . import plot
        plot.save(plot.compare_figure(rows, reports), args.plot)
    if not args.quiet:
        render_compare(rows, Console(stderr=True) if args.json == "-" else None)
    return 0 if all(r["verdict"] != "fail" for r in rows) else 1


def cmd_cleanup(args) -> int:
    removed = reclaim()
    if not args.quiet:
        for path in removed:
            print(f"removed {path}")
        print(f"{len(removed)} orphan(s) of dead runs removed")
    return 0


def cmd_list(args) -> int:
    """Strategies (with their summaries), CPU models, guest programs and findings; with a program,
    its symbols by address."""
    if args.program:
        try:
            image = GuestImage.load(guest_path(args.program))
        except ImageError as e:
            print(f"error: {args.program}: {e}", file=sys.stderr)
            return 2
        kinds = {name: image.symbol_kind(name) for name in image.symbols}
        consts = sorted((n for n, k in kinds.items() if k == "const"), key=lambda n: (image.symbols[n], n))
        print(f"{image.path.name}: entry {image.entry:#010x}, {len(image.symbols) - len(consts)} symbols"
              + (f" and {len(consts)} assembler constants" if consts else ""))
        print(f"  {'address':10s}  {'size':>5s}  {'kind':4s}  name")
        for name, addr in sorted(image.symbols.items(), key=lambda kv: (kv[1], kv[0])):
            if kinds[name] != "const":
                print(f"  {addr:#010x}  {image.symbol_sizes.get(name, 0):5d}  {kinds[name]:4s}  {name}")
        if consts:
            print("assembler constants (values, not addresses):")
            for name in consts:
                print(f"  {image.symbols[name]:#010x}  {name}")
        return 0
    print("strategies (debug.strategy):")
    for s in STRATEGY_TABLE.values():
        print(f"  {s.name:12s} {s.summary}")
    print("CPU models (machine.cpu): " + ", ".join(CPUS))
    print(f"guest programs (guest.program, in {GUESTS_DIR}): " + ", ".join(list_guests()))
    from .bundled import CONFIGS_DIR, list_configs
    print(f"example configs (cosim run NAME, in {CONFIGS_DIR}): " + ", ".join(list_configs()))
    print("findings ([expect] findings):")
    for fid, what in FINDINGS.items():
        print(f"  {fid:26s} {what}")
    print("symbols of a program: cosim list PROGRAM")
    return 0


def cmd_sweep(args) -> int:
    from . import sweep
    try:
        sweep.check_workers(args.n, args.tx)
        spec = sweep.load_spec(args.spec)
        matrix = sweep.cells(spec)
        for path, key in ((args.json, "--json"), (args.junit, "--junit")):
            preflight.check_output(path, key)
        _check_plot(args.plot)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    err = Console(stderr=True)
    t0 = time.monotonic()
    if not args.quiet:
        err.print(f"sweep: {len(matrix)} runs" + (f" on -n {args.n}" if args.n else "")
                  + "".join(f" --tx {t}" for t in args.tx), highlight=False)
    reports, errors = sweep.run_sweep(spec, matrix, args.n, args.tx, args.quiet)
    rows = []
    for (_, _, vcpus, program), runs in sweep.group(reports):
        rows.append({**compare_row(runs[0], runs), "vcpus": vcpus, "program": program})
    if not args.quiet:
        err.print(f"sweep: {len(reports)} of {len(matrix)} runs reported in {time.monotonic() - t0:.1f} s",
                  highlight=False)
    if args.json:
        write_json(args.json, "sweep", sweep.as_dict(spec, rows, reports, errors))
    if args.junit:
        write_junit(args.junit, reports)
    if args.plot and rows:
        from . import plot
        plot.save(plot.sweep_figure(rows, reports), args.plot)
    if not args.quiet:
        render_sweep(rows, Console(stderr=True) if args.json == "-" else None)
    for name, text in errors.items():
        print(f"sweep: {name}: no report: {text.splitlines()[-1] if text else '?'}", file=sys.stderr)
    return 0 if not errors and len(reports) == len(matrix) and all(r["verdict"] != "fail" for r in rows) else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="cosim", description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--version", action="version", version=f"cosim {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="strategies, CPU models, guest programs, findings; or a program's symbols")
    ls.add_argument("program", nargs="?", help="a guest program name or ELF path: list its symbols")
    ls.set_defaults(func=cmd_list)
    r = sub.add_parser("run", help="run one scenario file")
    r.add_argument("config")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key (dotted, value in TOML syntax), e.g. machine.vcpus=4; repeatable")
    r.add_argument("--json", metavar="PATH", help="also write the report as JSON (- for stdout)")
    r.add_argument("--junit", metavar="PATH", help="also write JUnit XML: a testcase per invariant and finding")
    r.add_argument("--plot", metavar="PATH", help="also draw exits per vCPU and round trips (.png or .svg)")
    r.add_argument("--gdb", metavar="[HOST:]PORT", type=parse_gdb, nargs="?", const=DEFAULT_GDB,
                   help="serve the GDB remote protocol, start stopped (QEMU's -s -S; without a port: "
                        "127.0.0.1:1234 as QEMU's -s; port 0: pick a free port)")
    r.add_argument("--running", action="store_true",
                   help="with --gdb: start running, a gdb that attaches stops every vCPU (QEMU's -s)")
    r.add_argument("--trace", metavar="PATH",
                   help="also write a timeline (Chrome JSON trace events; open in ui.perfetto.dev)")
    r.add_argument("--record", metavar="DIR",
                   help="keep the run's record (schedule and digest) in DIR, for `cosim replay DIR`")
    r.add_argument("--seed", type=_seed, metavar="N",
                   help="run the deterministic schedule with seed N (machine.schedule and machine.seed): "
                        "the same seed replays the same interleaving")
    r.add_argument("--serial", type=parse_serial, metavar="stdio|tcp:[HOST]:PORT",
                   help="the board's console: typed on this terminal, or served on a TCP port (as QEMU's -serial)")
    r.add_argument("--quiet", action="store_true", help="no progress, no text report")
    r.set_defaults(func=cmd_run)
    h = sub.add_parser("hunt", help="run a scenario under the deterministic schedule over many seeds; "
                                    "list the seeds whose invariants fail")
    h.add_argument("config")
    h.add_argument("--seeds", required=True, metavar="LIST", help="e.g. 1-500 or 1-10,42")
    h.add_argument("-n", metavar="N", help="xdist workers on this machine (a number or auto; default: one "
                                           "per CPU when no --tx is given)")
    h.add_argument("--tx", action="append", default=[], metavar="SPEC",
                   help="xdist worker spec, repeatable: popen, 2*popen, socket=HOST:PORT or "
                        "ssh=HOST//python=PATH for other machines (kvmppc-cosim installed there)")
    h.add_argument("--jobs", type=int, default=None, metavar="N", help="the same as -n N")
    h.add_argument("--resume", action="store_true",
                   help="continue the hunt whose --json PATH exists: its finished seeds are not run again")
    h.add_argument("--shrink", action="store_true",
                   help="for a failing seed, look for a smaller run that still fails (fewer instructions, "
                        "vCPUs, toggles) and print it")
    h.add_argument("--shrink-max", type=int, default=1, metavar="K", help="shrink the first K failing seeds (1)")
    h.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, as for run; repeatable")
    h.add_argument("--record", metavar="DIR", help="keep each failing seed's record in DIR/seed-N "
                                                   "(for cosim replay)")
    h.add_argument("--json", metavar="PATH", help="also write every seed's result as JSON (- for stdout)")
    h.add_argument("--quiet", action="store_true", help="no progress bar, no list")
    h.set_defaults(func=cmd_hunt)
    rp = sub.add_parser("replay", help="run a recorded scenario again: identical, or the first divergence")
    rp.add_argument("rundir", help="a directory written by `run --record DIR`")
    rp.add_argument("--runs", type=int, default=1, metavar="N", help="replay N times (default: 1)")
    rp.set_defaults(func=cmd_replay)
    c = sub.add_parser("compare", help="every strategy x CPU model on one guest: the thread as a table")
    c.add_argument("--program", default="warn_storm", help="guest program name or ELF path (default: warn_storm)")
    c.add_argument("--iterations", type=int, default=100, help="guest iterations per vCPU (default: 100)")
    c.add_argument("--vcpus", type=int, default=1, help=f"vCPUs per run, 1..{VCPUS_MAX} (default: 1)")
    c.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES, metavar="S",
                   help=f"strategies to compare (default: all: {' '.join(STRATEGIES)})")
    c.add_argument("--cpus", nargs="+", default=list(CPUS), choices=CPUS, metavar="CPU",
                   help=f"CPU models (default: {' '.join(CPUS)})")
    c.add_argument("--json", metavar="PATH", help="also write rows and full reports as JSON (- for stdout)")
    c.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="run every cell N times: latency shown as an interval over the repeats (default: 1)")
    c.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="runs in parallel (default: 1; counts are unaffected, latencies get noisier)")
    c.add_argument("--junit", metavar="PATH", help="also write JUnit XML: a testsuite per run")
    c.add_argument("--plot", metavar="PATH", help="also draw costs and round trips by strategy x CPU (.png or .svg)")
    c.add_argument("--quiet", action="store_true", help="no progress, no table")
    c.set_defaults(func=cmd_compare)
    k = sub.add_parser("cleanup", help="remove shared memory and run directories of runs whose owner is dead")
    k.add_argument("--quiet", action="store_true")
    k.set_defaults(func=cmd_cleanup)
    w = sub.add_parser("sweep", help="a matrix of runs from a spec file, through pytest-xdist (local or remote)")
    w.add_argument("spec", help="sweep spec (TOML: [sweep] strategies, cpus, vcpus, programs, seeds; [base])")
    w.add_argument("-n", metavar="N", help="xdist workers on this machine (a number or auto)")
    w.add_argument("--tx", action="append", default=[], metavar="SPEC",
                   help="xdist worker spec, repeatable: popen, or ssh=HOST//python=PATH for other machines")
    w.add_argument("--json", metavar="PATH", help="also write rows and reports as JSON (- for stdout)")
    w.add_argument("--junit", metavar="PATH", help="also write JUnit XML: a testsuite per run")
    w.add_argument("--plot", metavar="PATH", help="also draw costs and round trips per cell (.png or .svg)")
    w.add_argument("--quiet", action="store_true", help="no progress, no table")
    w.set_defaults(func=cmd_sweep)
    args = ap.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:     # before a run owns the signals (a run ends with its report instead)
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
