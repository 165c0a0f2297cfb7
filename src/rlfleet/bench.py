"""``rlfleet bench SUITE``: learning benchmarks defined as data, reported as tables and plots.

A suite (``benchmarks/suites/<name>.yaml``) lists entries; each names an algorithm, an env,
optional config overrides (and a ``preset`` YAML file in place of the shipped preset), a step
budget, seeds, the return threshold and the anchor it comes from. Every (entry, seed) is one
training run in a fresh process; runs go ``workers`` at a time. The report
``<out_dir>/<suite>.md`` gives per entry the median and spread of the final evaluation return
over seeds (or of an entry's ``metric``, a progress.csv column), pass/fail (median final figure
>= threshold), the steps and wall time at which the
median seed first reached the threshold, steps/second and peak memory, and links one PNG of
learning curves per env.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import re
import resource
import shutil
import signal
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlfleet.config.validate import build_dataclass
from rlfleet.errors import ConfigError
from rlfleet.utils.atomic import atomic_write


@dataclass
class Anchor:
    """A published result to compare against: ``value`` and where it comes from."""

    value: float
    source: str


@dataclass
class BenchEntry:
    """One algorithm on one env, run for several seeds; ``label`` names a variant (e.g.
    ``dqn+per`` for dqn with ``replay.kind=prioritized``) in the report, plots and run names.
    A ``control`` entry shows what a task needs (a feed-forward agent on a memory task): it
    passes when its median final return stays *below* ``threshold``.

    ``metric`` (None: the final evaluation return) names a progress.csv column whose last
    logged value is the entry's figure instead, and whose first logged value at or above the
    threshold gives the steps to it: e.g. ``found_treasureAverage`` on ``DeepSea-v0``, the found
    rate over the last 100 training episodes. The run then needs no evaluation
    (``runner.eval_interval_steps=0``)."""

    algorithm: str
    env: str
    steps: int
    threshold: float
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    overrides: list[str] = field(default_factory=list)
    preset: str | None = None
    anchor: Anchor | None = None
    label: str | None = None
    control: bool = False
    metric: str | None = None

    def passed(self, median_final: float) -> bool:
        return median_final < self.threshold if self.control else median_final >= self.threshold

    @property
    def title(self) -> str:
        return self.label or self.algorithm


@dataclass
class Suite:
    name: str
    entries: list[BenchEntry]
    description: str = ""


RESULT_FILE = "bench_result.json"


@dataclass
class SeedResult:
    """What one training run gave."""

    run_dir: str
    final_return: float
    steps_to_threshold: int | None
    time_to_threshold: float | None
    steps_per_second: float
    peak_memory_mb: float
    wall_time: float


def find_suite(name: str) -> Path:
    """``name`` as a YAML path, else ``benchmarks/suites/<name>.yaml`` here or in the repository."""
    candidates = [
        Path(name),
        Path("benchmarks/suites") / f"{name}.yaml",
        Path(__file__).resolve().parents[2] / "benchmarks" / "suites" / f"{name}.yaml",
    ]
    for path in candidates:
        if path.is_file():
            return path
    known = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "benchmarks" / "suites").glob("*.yaml"))
    raise ConfigError(f"unknown benchmark suite {name!r} (suites: {', '.join(known) or 'none found'})")


def load_suite(path: str | Path) -> Suite:
    data = yaml.safe_load(Path(path).read_text()) or {}
    entries = [build_dataclass(BenchEntry, e, f"entries[{i}]") for i, e in enumerate(data.get("entries", []))]
    if not entries:
        raise ConfigError(f"benchmark suite {path} has no entries")
    return Suite(name=str(data.get("name", Path(path).stem)), entries=entries, description=data.get("description", ""))


_ORPHAN_POLL_S = 2.0


def stop_when_orphaned(parent_pid: int) -> None:
    """Watch (in a daemon thread) for the bench process that started this worker to die
    without a Ctrl-C (killed, or its terminal closed); then interrupt this run as Ctrl-C would,
    so it writes its checkpoint and stops instead of training on unseen."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(_ORPHAN_POLL_S)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, name="rlfleet-bench-orphan-watch", daemon=True).start()


def run_one(entry: BenchEntry, seed: int, runs_root: str, name: str) -> SeedResult:
    """Train one seed (in the calling process) and measure it.

    A seed whose run directory already holds its result (``RESULT_FILE``, written when a run
    finishes) is not trained again; one that was interrupted continues from its latest
    checkpoint (or starts over without one). So a suite stopped half way and started again with
    the same ``name`` only does what is left."""
    from rlfleet.checkpoint import Checkpointer
    from rlfleet.experiment import run_path, train
    from rlfleet.plotting import load_run
    from rlfleet.runners.minibatch_rl import RunAlreadyFinished

    run_dir = run_path(entry.env, entry.algorithm, f"{name}-{entry.label}" if entry.label else name, seed, runs_root)
    if multiprocessing.parent_process() is not None:  # a pool worker of run_suite
        stop_when_orphaned(os.getppid())
    if (run_dir / RESULT_FILE).is_file():
        return SeedResult(**json.loads((run_dir / RESULT_FILE).read_text()))
    start = time.perf_counter()
    overrides = [*entry.overrides, f"runner.n_steps={entry.steps}", "logger.console=false", "logger.tensorboard=false"]
    if (run_dir / "checkpoints").is_dir() and Checkpointer(run_dir / "checkpoints").checkpoints():
        try:
            train(resume=run_dir, overrides=[f"runner.n_steps={entry.steps}"])
        except RunAlreadyFinished:  # finished before its result was written: measure it
            pass
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        train(
            entry.algorithm,
            entry.env,
            overrides,
            seed=seed,
            name=run_dir.parent.name,
            config_file=entry.preset,
            root=runs_root,
        )
    wall = time.perf_counter() - start
    _, _, progress = load_run(run_dir)
    column = entry.metric or "EvalReturnAverage"
    if column not in progress:
        raise ConfigError(f"benchmark entry {entry.title}: progress.csv of {run_dir} has no column {column!r}")
    evals = progress.dropna(subset=[column])
    hit = evals[evals[column] >= entry.threshold]
    last = progress.iloc[-1]
    result = SeedResult(
        run_dir=str(run_dir),
        final_return=float(evals[column].iloc[-1]),
        steps_to_threshold=int(hit["CumSteps"].iloc[0]) if len(hit) else None,
        time_to_threshold=float(hit["CumTime"].iloc[0]) if len(hit) else None,
        steps_per_second=float(last["CumSteps"] / max(last["CumTime"], 1e-9)),
        peak_memory_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        wall_time=wall,
    )
    with atomic_write(run_dir / RESULT_FILE) as f:
        json.dump(dataclasses.asdict(result), f)
    return result


class SuiteInterrupted(Exception):
    """A run of the suite stopped on Ctrl-C (its checkpoint written); runs not started are
    cancelled. The message names the command that finishes the suite."""


def run_suite(
    suite: Suite,
    workers: int = 1,
    runs_root: str = "runs/bench",
    out_dir: str | Path = "docs/benchmarks",
    seeds: list[int] | None = None,
    name: str | None = None,
) -> Path:
    """Run every (entry, seed), each in a fresh process, ``workers`` at a time; write the report.
    Runs are named ``name`` (default: the suite and a timestamp); giving the name of an
    interrupted suite finishes it (see `run_one`)."""
    from rlfleet.runners.minibatch_rl import TrainingInterrupted  # torch: only once runs start

    name = name or time.strftime(f"{suite.name}-%Y%m%d-%H%M%S")
    jobs = [(i, seed) for i, entry in enumerate(suite.entries) for seed in (seeds or entry.seeds)]
    results: dict[int, list[SeedResult]] = {i: [] for i in range(len(suite.entries))}
    pool_options: dict[str, Any] = {"mp_context": multiprocessing.get_context("spawn")}
    if sys.version_info >= (3, 11):
        pool_options["max_tasks_per_child"] = 1  # a fresh process per run: honest peak memory
    with concurrent.futures.ProcessPoolExecutor(workers, **pool_options) as pool:
        queued = iter(jobs)
        running: dict[concurrent.futures.Future, tuple[int, int]] = {}

        def start_next() -> None:
            # one job per free worker, never more: a Ctrl-C then leaves nothing queued to start
            for i, seed in queued:
                running[pool.submit(run_one, suite.entries[i], seed, runs_root, name)] = (i, seed)
                return

        try:
            for _ in range(workers):
                start_next()
            while running:
                done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    i, seed = running.pop(future)
                    entry, result = suite.entries[i], future.result()
                    results[i].append(result)
                    print(
                        f"{entry.title} {entry.env} seed {seed}: final eval {format_return(result.final_return)}, "
                        f"{result.steps_per_second:.0f} steps/s, {result.wall_time:.0f} s",
                        flush=True,
                    )
                    start_next()
        except (TrainingInterrupted, KeyboardInterrupt):
            # Ctrl-C reaches the running runs too: each writes its checkpoint and stops
            pool.shutdown(wait=True)
            raise SuiteInterrupted(
                f"suite {suite.name} interrupted: the running runs wrote their checkpoints, the others did not "
                f"start; `rlfleet bench {suite.name} --name {name}` finishes it"
            ) from None
    return write_report(suite, results, Path(out_dir))


def format_return(value: float) -> str:
    """A return for the report: one decimal from 10 up, three significant digits below (returns
    in [0, 1], such as MiniGrid's, would all print as 1.0 otherwise)."""
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"


def _median_or_none(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    # a seed that never reached the threshold counts as "later than every other": the median
    # exists only when at least half of the seeds got there
    if len(present) * 2 < len(values):
        return None
    return statistics.median(sorted(present) + [float("inf")] * (len(values) - len(present)))


def write_report(suite: Suite, results: dict[int, list[SeedResult]], out_dir: Path) -> Path:
    """``out_dir/<suite>.md`` plus ``out_dir/<suite>_<env>.png`` per env."""
    from rlfleet.plotting import aggregate_curves, plot_curves

    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# Benchmark suite `{suite.name}`",
        "",
        suite.description,
        "",
        f"Reproduce: `rlfleet bench {suite.name}`. Final return: deterministic evaluation at the end of the "
        "budget, median [min, max] over seeds. Pass: median final return >= threshold (a control entry, "
        "threshold shown as `< t`: median final return below it); an entry with a metric reports that "
        "progress.csv column's last value in place of the return, named in brackets. Steps and time to "
        "threshold: median over seeds of the first evaluation at or above it.",
        "",
        "| algorithm | env | steps | seeds | final return | threshold | pass | steps to threshold "
        "| time to threshold (s) | steps/s | peak memory (MB) | anchor |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, entry in enumerate(suite.entries):
        runs = results.get(i, [])
        if not runs:
            continue
        finals = [r.final_return for r in runs]
        median_final = statistics.median(finals)
        steps_hit = _median_or_none([r.steps_to_threshold for r in runs])
        time_hit = _median_or_none([r.time_to_threshold for r in runs])
        anchor = f"{entry.anchor.value:g} ({entry.anchor.source})" if entry.anchor else ""
        lines.append(
            f"| {entry.title} | {entry.env} | {entry.steps:,} | {len(runs)} | {format_return(median_final)} "
            f"[{format_return(min(finals))}, {format_return(max(finals))}]"
            f"{f' ({entry.metric})' if entry.metric else ''} | "
            f"{'< ' if entry.control else ''}{entry.threshold:g} | "
            f"{'pass' if entry.passed(median_final) else 'FAIL'} | "
            f"{'-' if steps_hit in (None, float('inf')) else f'{steps_hit:,.0f}'} | "
            f"{'-' if time_hit in (None, float('inf')) else f'{time_hit:.0f}'} | "
            f"{statistics.median(r.steps_per_second for r in runs):,.0f} | "
            f"{max(r.peak_memory_mb for r in runs):.0f} | {anchor} |"
        )
    lines.append("")
    for env in dict.fromkeys(e.env for e in suite.entries):
        labels = {r.run_dir: e.title for i, e in enumerate(suite.entries) if e.env == env for r in results.get(i, [])}
        run_dirs = list(labels)
        if not run_dirs:
            continue
        anchored = [e.anchor.value for e in suite.entries if e.env == env and e.anchor]
        anchors = {env: max(anchored)} if anchored else None
        png = out_dir / f"{suite.name}_{re.sub(r'[^A-Za-z0-9_.-]', '-', env)}.png"  # procgen:x, dmc:x too
        metric = next((e.metric for e in suite.entries if e.env == env and e.metric), None)
        curves = aggregate_curves(run_dirs, y=metric or "EvalReturnAverage", labels=labels)
        y_label = metric or "Evaluation return"
        plot_curves(curves, png, anchors=anchors, title=f"suite {suite.name}", y_label=y_label)
        lines += [f"![{env}]({png.name})", ""]
    report = out_dir / f"{suite.name}.md"
    with atomic_write(report) as f:
        f.write("\n".join(lines))
    return report
