"""``rlfleet sweep``: a grid of training runs, run as a local queue or as Ray tasks.

The grid comes from the command line, where a comma-separated value makes an axis
(``algo.lr=1e-3,3e-4 seed=0,1``) and a single value is a fixed override, or from a YAML file::

    algorithm: ppo
    env: CartPole-v1
    grid: {algo.lr: [1e-3, 3e-4], seed: [0, 1]}
    overrides: [runner.n_steps=50000]

The runs are the cartesian product of the axes (seeds innermost). Every grid point is resolved
and validated before anything starts. Each run is its own ``rlfleet train`` process writing to
``<runs>/<env>/<algo>/<sweep>/<tag>/seed<N>/``, where the tag names the non-seed axis values
(``lr=1e-3``). Locally the runs go through a queue with ``slots`` places, each slot pinned to
its own core when there are enough cores; with Ray every run is a ``num_cpus=1`` task. The
sweep directory ``<runs>/sweeps/<sweep>/`` holds ``sweep.yaml`` (the grid, rerunnable with
``--config``), ``logs/<run>.log`` (each run's output), ``logs/<run>.pid`` (while a local run
is alive) and ``summary.csv`` / ``summary.md`` (rewritten whenever a run ends).
"""

from __future__ import annotations

import csv
import functools
import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlfleet.config.loader import load_yaml
from rlfleet.config.validate import build_dataclass
from rlfleet.errors import ConfigError, RlfleetError
from rlfleet.utils.atomic import atomic_write

POLL_SECONDS = 0.2
SEED = "seed"
RESERVED_KEYS = ("algorithm", "env.id")
INTERRUPTED_EXIT = 130  # what `rlfleet train` returns after Ctrl-C (checkpoint written)

Echo = Callable[[str], None]


@dataclass
class SweepSpec:
    """A sweep: one algorithm on one env over a grid of config values.

    Attributes:
        algorithm: algorithm name (see ``rlfleet list``).
        env: env id, as for ``rlfleet train -e``.
        grid: config key -> override values as ``key=value`` text (``"1e-3"``, ``"[64, 64]"``);
            a key with several values is an axis, a key with one value a fixed override.
        name: the sweep's name (runs are named ``<name>/<tag>``).
    """

    algorithm: str | None = None
    env: str | None = None
    grid: dict[str, list[str]] = field(default_factory=dict)
    name: str | None = None

    def axes(self) -> dict[str, list[str]]:
        """The keys with more than one value, seed included."""
        return {key: values for key, values in self.grid.items() if len(values) > 1}


@dataclass
class SweepFile:
    """The keys a sweep YAML file may hold (``grid`` values: a list, or one value)."""

    algorithm: str | None = None
    env: str | None = None
    grid: dict[str, Any] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    name: str | None = None


@dataclass
class SweepRun:
    """One grid point, ready to start.

    Attributes:
        label: the run's name in lines and file names (``lr=1e-3,seed=0``).
        params: axis key -> value text, seed excluded.
        seed: the run's seed.
        run_dir: where ``rlfleet train`` writes the run.
        args: the ``rlfleet`` command line arguments (``train ALGO -e ENV ...``).
    """

    label: str
    params: dict[str, str]
    seed: int
    run_dir: Path
    args: list[str]


@dataclass
class RunResult:
    """How a run ended.

    Attributes:
        status: ``ok``, ``failed``, ``interrupted`` (stopped by Ctrl-C; it wrote a checkpoint),
            ``cancelled`` (a Ray task cancelled by Ctrl-C) or ``not started``.
        returncode: the training process's exit status (negative: killed by that signal).
        wall_time: seconds from start to exit.
        eval_return: the last ``EvalReturnAverage`` in ``progress.csv``.
        steps: the last ``CumSteps`` in ``progress.csv``.
    """

    status: str = "not started"
    returncode: int | None = None
    wall_time: float | None = None
    eval_return: float | None = None
    steps: int | None = None

    @property
    def detail(self) -> str:
        """The status with the exit code or signal of a failed run (``failed (SIGKILL)``)."""
        if self.status != "failed" or self.returncode is None:
            return self.status
        if self.returncode < 0:
            try:
                return f"failed ({signal.Signals(-self.returncode).name})"
            except ValueError:
                return f"failed (signal {-self.returncode})"
        return f"failed (exit {self.returncode})"


@dataclass
class SweepPlan:
    """A validated sweep: its runs and where it writes.

    Attributes:
        short_keys: each non-seed axis key -> its short name in tags and tables.
        runs_dir: ``<runs>/<env>/<algo>/<name>``, the folder above every run of the sweep.
    """

    spec: SweepSpec
    name: str
    sweep_dir: Path
    runs: list[SweepRun]
    short_keys: dict[str, str]
    runs_dir: Path

    @property
    def log_dir(self) -> Path:
        return self.sweep_dir / "logs"

    def log_path(self, run: SweepRun) -> Path:
        return self.log_dir / f"{run.label}.log"

    def pid_path(self, run: SweepRun) -> Path:
        return self.log_dir / f"{run.label}.pid"


# ----- the grid -----
def split_values(text: str) -> list[str]:
    """Split ``text`` at the commas outside brackets and quotes: ``1,[2,3]`` -> ``1``, ``[2,3]``."""
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth or quote:
        raise ConfigError(f"unbalanced brackets or quotes in {text!r}")
    return [*parts, text[start:]]


def value_text(value: Any) -> str:
    """A YAML value as override text that parses back to it (strings are taken as written)."""
    if isinstance(value, str):
        return value
    text = yaml.safe_dump(value, default_flow_style=True, width=1_000_000).strip()
    return text.removesuffix("...").strip()


def _check_values(key: str, values: list[str]) -> list[str]:
    """``values`` of ``key``, checked: a valid key, at least one value, none empty or repeated."""
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"grid key {key!r} must look like section.key (e.g. algo.lr) or seed")
    if key in RESERVED_KEYS:
        raise ConfigError(f"grid key {key!r}: a sweep covers one algorithm on one env (rlfleet sweep ALGO -e ENV)")
    if not values:
        raise ConfigError(f"grid key {key!r} has no values")
    if len(values) > 1 and any(not v.strip() for v in values):
        raise ConfigError(f"grid entry {key}={','.join(values)} has an empty value")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ConfigError(f"grid key {key!r} repeats the value {repeated[0]!r}")
    return values


def parse_grid_args(args: list[str]) -> dict[str, list[str]]:
    """``key=value`` (fixed) and ``key=v1,v2,...`` (an axis) arguments as key -> values."""
    grid: dict[str, list[str]] = {}
    for text in args:
        key, sep, raw = text.partition("=")
        if not sep:
            raise ConfigError(f"grid entry {text!r} must look like key=value or key=v1,v2,...")
        try:
            values = split_values(raw)
        except ConfigError as err:
            raise ConfigError(f"grid entry {text!r}: {err}") from None
        grid.pop(key, None)  # a repeated key: the last one counts, in its new place
        grid[key] = _check_values(key, values)
    return grid


def load_sweep_file(path: str | Path) -> SweepSpec:
    """Read a sweep YAML file (`SweepFile`'s keys) into a `SweepSpec`."""
    data = build_dataclass(SweepFile, load_yaml(path))
    grid: dict[str, list[str]] = {}
    for text in data.overrides:  # fixed values: commas here do not make an axis
        key, sep, raw = text.partition("=")
        if not sep:
            raise ConfigError(f"override {text!r} in {path} must look like key=value")
        grid.pop(key, None)
        grid[key] = _check_values(key, [raw])
    for key, values in data.grid.items():
        items = values if isinstance(values, list) else [values]
        grid.pop(str(key), None)
        grid[str(key)] = _check_values(str(key), [value_text(v) for v in items])
    return SweepSpec(data.algorithm, data.env, grid, data.name)


def merge_command_line(spec: SweepSpec, algorithm: str | None, env: str | None, args: list[str]) -> SweepSpec:
    """``spec`` with the command line's algorithm, env and grid entries taking precedence."""
    grid = dict(spec.grid)
    for key, values in parse_grid_args(args).items():
        grid.pop(key, None)
        grid[key] = values
    return SweepSpec(algorithm or spec.algorithm, env or spec.env, grid, spec.name)


def grid_points(spec: SweepSpec) -> list[dict[str, str]]:
    """Every combination of the grid's values (key -> value text), seeds varying fastest."""
    keys = [k for k in spec.grid if k != SEED] + ([SEED] if SEED in spec.grid else [])
    return [dict(zip(keys, combo)) for combo in itertools.product(*(spec.grid[k] for k in keys))]


def short_names(keys: list[str]) -> dict[str, str]:
    """Each dotted key's shortest suffix that no other key ends with (``algo.lr`` -> ``lr``)."""
    names = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if not any(other != key and (other == suffix or other.endswith("." + suffix)) for other in keys):
                break
        names[key] = suffix
    return names


def _path_safe(text: str) -> str:
    return re.sub(r"[^\w.+=,\[\]-]", "-", text.replace(" ", ""))


# ----- planning -----
def plan_sweep(spec: SweepSpec, name: str | None = None, runs_root: str | Path = "runs") -> SweepPlan:
    """Validate every grid point's config and lay out the runs; nothing is written or started."""
    from rlfleet.build import probe_spaces
    from rlfleet.config.loader import resolve, validate
    from rlfleet.experiment import run_dir_for

    if not spec.algorithm:
        raise ConfigError("name an algorithm (rlfleet sweep ALGO -e ENV ...) or give --config FILE with 'algorithm'")
    if not spec.env:
        raise ConfigError("name an env with -e ENV (e.g. -e CartPole-v1) or give --config FILE with 'env'")
    name = name or spec.name or time.strftime("sweep-%Y%m%d-%H%M%S")
    if not re.fullmatch(r"[\w.+=,-]+", name) or name.strip(".") == "":
        raise ConfigError(f"sweep name {name!r} may hold only letters, digits and . _ - + = ,")
    sweep_dir = Path(runs_root) / "sweeps" / name
    if sweep_dir.exists():
        raise ConfigError(f"sweep directory {sweep_dir} already exists; pass another --name")
    validate(resolve(spec.algorithm, spec.env))  # unknown algorithm or env: no grid point named
    axes = [k for k in spec.axes() if k != SEED]
    short = short_names(axes)
    spaces: dict[str, Any] = {}
    runs: list[SweepRun] = []
    seen: dict[Path, str] = {}
    for point in grid_points(spec):
        params = {k: point[k] for k in axes}
        tag = ",".join(f"{short[k]}={_path_safe(v)}" for k, v in params.items())
        label = ",".join(filter(None, [tag, f"seed={point[SEED]}" if SEED in spec.axes() else ""])) or "run"
        overrides = [f"{k}={v}" for k, v in point.items()]
        try:
            data = resolve(spec.algorithm, spec.env, overrides)
            config = validate(data)
            env_key = repr(config.env)
            if env_key not in spaces:
                spaces[env_key] = probe_spaces(config)
            config = validate(data, spaces[env_key])
        except ConfigError as err:
            raise ConfigError(f"grid point {label}: {err}") from None
        run_name = f"{name}/{tag}" if tag else name
        run_dir = run_dir_for(config, run_name, runs_root)
        if run_dir in seen:
            raise ConfigError(f"grid points {seen[run_dir]} and {label} would share the run directory {run_dir}")
        if run_dir.exists():  # as `rlfleet train` claims it: any directory there counts as taken
            raise ConfigError(f"run directory {run_dir} already holds a run; pass another --name")
        seen[run_dir] = label
        args = ["train", config.algorithm, "-e", config.env.id, "--seed", str(config.seed), "--name", run_name]
        args += ["--runs-dir", str(runs_root), *(o for o in overrides if not o.startswith(f"{SEED}="))]
        runs.append(SweepRun(label, params, config.seed, run_dir, args))
    resolved = SweepSpec(spec.algorithm, spec.env, spec.grid, name)
    return SweepPlan(resolved, name, sweep_dir, runs, short, run_dir_for(config, name, runs_root).parent)


# ----- running one training process -----
def _prepare_child(core: int | None) -> None:
    """Runs in a new training process before it starts Python: SIGINT unblocked (Ray workers
    block it, and a blocked signal stays blocked across exec), pinned to ``core`` if given."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    if core is not None:
        os.sched_setaffinity(0, {core})


def _spawn(args: list[str], log_path: Path, core: int | None) -> subprocess.Popen:
    """Start ``python -m rlfleet ARGS`` in its own session (Ctrl-C reaches it only through
    the sweep), output to ``log_path``, pinned to ``core`` when one is given."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "rlfleet", *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
            preexec_fn=functools.partial(_prepare_child, core),
        )


def read_progress(run_dir: Path) -> tuple[float | None, int | None]:
    """(last ``EvalReturnAverage`` in ``progress.csv``, steps trained) of a run. The steps are
    those of the last progress row or of the newest checkpoint, whichever is later (a run
    stopped by Ctrl-C checkpoints between progress rows)."""
    from rlfleet.checkpoint import Checkpointer

    eval_return, steps = None, None
    path = run_dir / "progress.csv"
    if path.is_file():
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row.get("EvalReturnAverage"):
                    eval_return = float(row["EvalReturnAverage"])
                if row.get("CumSteps"):
                    steps = int(float(row["CumSteps"]))
    checkpoints = Checkpointer(run_dir / "checkpoints").checkpoints()
    if checkpoints:
        steps = max(steps or 0, int(checkpoints[-1].stem.removeprefix("ckpt_")))
    return eval_return, steps


def outcome(returncode: int, run_dir: Path, wall_time: float) -> RunResult:
    """The result of a training process that exited with ``returncode``."""
    status = {0: "ok", INTERRUPTED_EXIT: "interrupted"}.get(returncode, "failed")
    eval_return, steps = read_progress(run_dir)
    return RunResult(status, returncode, wall_time, eval_return, steps)


def run_process(args: list[str], run_dir: str, log_path: str) -> RunResult:
    """Run one training process to its end (the body of a Ray task). An interrupt (Ray's
    cancel) is passed on as SIGINT, so the run writes a checkpoint before it stops."""
    start = time.perf_counter()
    proc = _spawn(args, Path(log_path), None)
    try:  # polled, not proc.wait(): Ray's cancel raises KeyboardInterrupt between bytecodes
        while (returncode := proc.poll()) is None:
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        returncode = proc.wait()
    return outcome(returncode, Path(run_dir), time.perf_counter() - start)


# ----- the local queue -----
def slot_cores(slots: int) -> list[int | None]:
    """The core each slot is pinned to; no pinning (None) when there are fewer cores than slots."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return list(cores[:slots]) if len(cores) >= slots else [None] * slots


def default_slots() -> int:
    """One slot per core this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt meanwhile, so an interrupted or terminated sweep
    stops its runs, even when it was launched with SIGINT ignored (a background job of a script)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done, so a run is never left half started."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@dataclass
class _Job:
    """A started run: its index in the plan, its process and when it started."""

    index: int
    proc: subprocess.Popen
    start: float


def run_local(plan: SweepPlan, slots: int, echo: Echo = print) -> list[RunResult]:
    """Run the plan ``slots`` runs at a time, each slot pinned to its own core where possible.

    A run that fails does not stop the others. Ctrl-C (or SIGTERM) sends SIGINT to the running
    runs, which write a checkpoint and stop; a second Ctrl-C kills them."""
    results = [RunResult() for _ in plan.runs]
    cores = slot_cores(slots)
    pending = deque(range(len(plan.runs)))
    running: dict[int, _Job] = {}

    def finish(slot: int, returncode: int) -> None:
        job = running.pop(slot)
        run = plan.runs[job.index]
        results[job.index] = outcome(returncode, run.run_dir, time.perf_counter() - job.start)
        plan.pid_path(run).unlink(missing_ok=True)
        echo(finish_line(plan, job.index, results[job.index]))
        write_summary(plan, results)

    def reap() -> None:
        for slot, job in list(running.items()):
            returncode = job.proc.poll()
            if returncode is not None:
                finish(slot, returncode)

    try:
        with _terminate_as_interrupt():
            while pending or running:
                for slot in range(slots):
                    if slot not in running and pending:
                        with _signals_deferred():
                            index = pending.popleft()
                            run = plan.runs[index]
                            proc = _spawn(run.args, plan.log_path(run), cores[slot])
                            running[slot] = _Job(index, proc, time.perf_counter())
                            plan.pid_path(run).write_text(f"{proc.pid}\n")
                        core = f" on core {cores[slot]}" if cores[slot] is not None else ""
                        echo(f"[{index + 1}/{len(plan.runs)}] start {run.label}{core}: {run.run_dir}")
                reap()
                time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        if running:
            echo(f"interrupting {len(running)} running run(s): they write a checkpoint (Ctrl-C again kills them)")
        _stop(running, reap)
    return results


def _stop(running: dict[int, _Job], reap: Callable[[], None]) -> None:
    """SIGINT to every running job, then wait for them all; a further interrupt kills them."""
    for job in running.values():
        job.proc.send_signal(signal.SIGINT)
    try:
        with _terminate_as_interrupt():
            while running:
                reap()
                time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        for job in running.values():
            job.proc.kill()
        for job in list(running.values()):
            job.proc.wait()
        reap()


# ----- Ray -----
def run_ray(plan: SweepPlan, address: str, slots: int, echo: Echo = print) -> list[RunResult]:
    """Run the plan as Ray tasks (one CPU each) on the cluster at ``address``, or on a local Ray
    with ``slots`` CPUs when ``address`` is ``local``. Run and sweep directories must be on
    storage that the cluster's nodes share."""
    try:
        import ray
    except ImportError:
        raise RlfleetError("--ray needs Ray: pip install 'rlfleet[ray]'") from None
    try:
        if address == "local":
            ray.init(num_cpus=slots, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise RlfleetError(f"cannot start Ray at {address!r}: {str(err).strip().splitlines()[0]}") from None
    results = [RunResult() for _ in plan.runs]
    try:
        task = ray.remote(num_cpus=1)(run_process)
        refs = {}
        for index, run in enumerate(plan.runs):
            refs[task.remote(run.args, str(run.run_dir), str(plan.log_path(run)))] = index
            echo(f"[{index + 1}/{len(plan.runs)}] submitted {run.label}: {run.run_dir}")
        try:
            with _terminate_as_interrupt():
                while refs:
                    (ref,), _ = ray.wait(list(refs), num_returns=1)
                    index = refs.pop(ref)
                    try:
                        results[index] = ray.get(ref)
                    except ray.exceptions.RayError as err:
                        echo(f"[{index + 1}/{len(plan.runs)}] Ray error: {str(err).strip().splitlines()[0]}")
                        results[index] = RunResult("failed")
                    echo(finish_line(plan, index, results[index]))
                    write_summary(plan, results)
        except KeyboardInterrupt:
            echo(f"cancelling {len(refs)} Ray task(s): running ones write a checkpoint (Ctrl-C again kills them)")
            _cancel(ray, list(refs))
            for ref, index in refs.items():
                try:
                    results[index] = ray.get(ref)  # a task that was running: its run, interrupted
                except ray.exceptions.RayError:
                    results[index] = RunResult("cancelled", None, None, *read_progress(plan.runs[index].run_dir))
    finally:
        ray.shutdown()
    return results


def _cancel(ray: Any, refs: list[Any]) -> None:
    """Cancel Ray tasks and wait for them to end (a running one passes the interrupt on to its
    training process, which checkpoints); a further interrupt force-kills them."""
    for ref in refs:
        ray.cancel(ref)
    try:
        with _terminate_as_interrupt():
            ray.wait(refs, num_returns=len(refs))
    except KeyboardInterrupt:
        for ref in refs:
            ray.cancel(ref, force=True)


# ----- reporting -----
def _last_line(path: Path) -> str:
    """The last non-empty line of a log file (at most 200 characters)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""


def finish_line(plan: SweepPlan, index: int, result: RunResult) -> str:
    """``[2/4] ok lr=1e-3,seed=1: eval 500.0, 2048 steps, 31 s`` (a failure adds its log)."""
    run = plan.runs[index]
    facts = []
    if result.eval_return is not None:
        facts.append(f"eval {result.eval_return:.1f}")
    if result.steps is not None:
        facts.append(f"{result.steps} steps")
    if result.wall_time is not None:
        facts.append(f"{result.wall_time:.0f} s")
    line = f"[{index + 1}/{len(plan.runs)}] {result.detail} {run.label}: {', '.join(facts) or '-'}"
    if result.status == "failed":
        line += f"; log {plan.log_path(run)}"
        last = _last_line(plan.log_path(run)) if (result.returncode or 0) > 0 else ""
        line += f" ({last})" if last else ""
    return line


def summary_rows(plan: SweepPlan, results: list[RunResult]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary table: axis values, seed, status, eval return, steps, time."""
    keys = list(plan.short_keys)
    header = [plan.short_keys[k] for k in keys] + ["seed", "status", "eval return", "steps", "time (s)"]
    rows = []
    for run, result in zip(plan.runs, results):
        rows.append(
            [run.params[k] for k in keys]
            + [
                str(run.seed),
                result.detail,
                "-" if result.eval_return is None else f"{result.eval_return:.1f}",
                "-" if result.steps is None else str(result.steps),
                "-" if result.wall_time is None else f"{result.wall_time:.0f}",
            ]
        )
    return header, rows


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows])


def write_summary(plan: SweepPlan, results: list[RunResult]) -> None:
    """``summary.csv`` (full keys, exit codes, run directories, logs) and ``summary.md``."""
    keys = list(plan.short_keys)
    with atomic_write(plan.sweep_dir / "summary.csv") as f:
        writer = csv.writer(f)
        writer.writerow(
            [*keys, "seed", "status", "returncode", "eval_return", "steps", "wall_time_s", "run_dir", "log"]
        )
        for run, r in zip(plan.runs, results):
            writer.writerow(
                [run.params[k] for k in keys]
                + [run.seed, r.detail, r.returncode, r.eval_return, r.steps]
                + ["" if r.wall_time is None else round(r.wall_time, 1), run.run_dir, plan.log_path(run)]
            )
    header, rows = summary_rows(plan, results)
    lines = [
        f"# Sweep `{plan.name}`: {plan.spec.algorithm} on {plan.spec.env}",
        "",
        f"Runs under `{plan.runs_dir}`; logs in `{plan.log_dir}`. "
        "Eval return: the last evaluation in each run's progress.csv.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]
    with atomic_write(plan.sweep_dir / "summary.md") as f:
        f.write("\n".join(lines))


def _yaml_value(text: str) -> Any:
    """Override text as the YAML value it stands for, where that reads back as the same text."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if value_text(value) == text else text


def write_spec(plan: SweepPlan) -> None:
    """``sweep.yaml``: the grid and fixed overrides (``rlfleet sweep --config`` reruns it)."""
    spec = plan.spec
    data = {
        "algorithm": spec.algorithm,
        "env": spec.env,
        "grid": {key: [_yaml_value(v) for v in values] for key, values in spec.axes().items()},
        "overrides": [f"{k}={v[0]}" for k, v in spec.grid.items() if len(v) == 1],
    }
    with atomic_write(plan.sweep_dir / "sweep.yaml") as f:
        yaml.safe_dump(data, f, sort_keys=False)


def exit_status(results: list[RunResult]) -> int:
    """0 when every run is ok, 130 when the sweep was interrupted, else 1."""
    if any(r.status in ("interrupted", "cancelled", "not started") for r in results):
        return INTERRUPTED_EXIT
    return 1 if any(r.status == "failed" for r in results) else 0


def run_sweep(
    spec: SweepSpec,
    name: str | None = None,
    runs_root: str | Path = "runs",
    slots: int | None = None,
    ray_address: str | None = None,
    echo: Echo = print,
) -> int:
    """Validate, run and summarise a sweep; returns the exit status (see `exit_status`)."""
    if slots is not None and slots < 1:
        raise ConfigError(f"--slots must be at least 1, got {slots}")
    if ray_address is not None:
        runs_root = Path(runs_root).resolve()  # Ray workers may start elsewhere
    plan = plan_sweep(spec, name, runs_root)
    slots = min(slots or default_slots(), len(plan.runs))
    plan.log_dir.mkdir(parents=True)
    write_spec(plan)
    where = f"Ray at {ray_address}" if ray_address else f"{slots} slot(s)"
    echo(f"sweep {plan.name}: {len(plan.runs)} run(s) of {spec.algorithm} on {spec.env}, {where}")
    start = time.perf_counter()
    if ray_address is not None:
        results = run_ray(plan, ray_address, slots, echo)
    else:
        results = run_local(plan, slots, echo)
    write_summary(plan, results)
    header, rows = summary_rows(plan, results)
    counts = {s: sum(r.status == s for r in results) for s in dict.fromkeys(r.status for r in results)}
    echo("")
    echo(format_table(header, rows))
    echo("")
    echo(
        f"sweep {plan.name}: {', '.join(f'{n} {s}' for s, n in counts.items())} "
        f"in {time.perf_counter() - start:.0f} s; summary: {plan.sweep_dir / 'summary.md'}, summary.csv"
    )
    return exit_status(results)
