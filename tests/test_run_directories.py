"""Run directories: claimed atomically (concurrent runs never share one, default names stay
unique within a second), a finished run resumed leaves it untouched, Ctrl-C names the resume
command, TensorBoard scalars grouped as SB3 does (progress.csv columns unchanged), and the
console's progress bar never passes its total."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from rich.progress import MofNCompleteColumn

from cli_helpers import interrupt_after_rows, rlfleet, rlfleet_cmd
from conftest import read_progress
from rlfleet.build import build_experiment, probe_spaces
from rlfleet.config.loader import resolve, validate
from rlfleet.logging.console import ConsoleProgress

# 128 env steps per batch, cheap updates, no evaluation
FAST = ["sampler.batch_B=4", "algo.epochs=2", "algo.minibatch_size=128", "runner.eval_interval_steps=0"]
N_STEPS = 1024
LOG_INTERVALS = [256, 512, 768, 1024]  # one per concurrent run, so each run's rows are its own


def expected_steps(log_interval: int) -> list[int]:
    rows = list(range(log_interval, N_STEPS + 1, log_interval))
    return rows if rows[-1] == N_STEPS else [*rows, N_STEPS]


@pytest.fixture(scope="module")
def concurrent_runs(tmp_path_factory) -> tuple[Path, list[Path]]:
    """Four ``rlfleet train`` processes started at once without --name (seed 0 all)."""
    cwd = tmp_path_factory.mktemp("concurrent")
    args = ["train", "ppo", "-e", "CartPole-v1", "--runs-dir", "runs", f"runner.n_steps={N_STEPS}", *FAST]
    procs = [
        subprocess.Popen(
            rlfleet_cmd(*args, f"runner.log_interval_steps={interval}", "logger.console=false"),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for interval in LOG_INTERVALS
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    return cwd, sorted((cwd / "runs" / "CartPole-v1" / "ppo").glob("*/seed0"))


def test_concurrent_runs_without_name_get_distinct_directories(concurrent_runs):
    _, run_dirs = concurrent_runs
    assert len(run_dirs) == 4, run_dirs
    assert len({d.parent.name for d in run_dirs}) == 4
    seen_intervals = []
    for run_dir in run_dirs:
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["algorithm"] == "ppo" and config["env"]["id"] == "CartPole-v1"
        assert config["runner"]["n_steps"] == N_STEPS and config["sampler"]["batch_B"] == 4
        interval = config["runner"]["log_interval_steps"]
        seen_intervals.append(interval)
        steps = [int(r["CumSteps"]) for r in read_progress(run_dir)]
        assert all(a < b for a, b in zip(steps, steps[1:])), (run_dir, steps)
        assert steps == expected_steps(interval), (run_dir, steps)
        assert (run_dir / "checkpoints" / f"ckpt_{N_STEPS:010d}.pt").is_file()
    assert sorted(seen_intervals) == LOG_INTERVALS


def test_resume_of_a_finished_run_changes_nothing(concurrent_runs):
    cwd, run_dirs = concurrent_runs
    run_dir = run_dirs[0].relative_to(cwd)
    before = {p: p.read_bytes() for p in sorted((cwd / run_dir).rglob("*")) if p.is_file()}
    proc = rlfleet("train", "--resume", str(run_dir), cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        f"run {run_dir} already finished at {N_STEPS} steps; raise runner.n_steps to continue "
        f"(e.g. --resume {run_dir} runner.n_steps={2 * N_STEPS})"
    )
    assert "Traceback" not in proc.stderr
    after = {p: p.read_bytes() for p in sorted((cwd / run_dir).rglob("*")) if p.is_file()}
    assert after == before  # progress.csv byte-identical, no new checkpoint or event file


def test_tensorboard_tags_are_grouped_and_csv_columns_unchanged(concurrent_runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run_dirs = concurrent_runs
    run_dir = run_dirs[0]
    rows = read_progress(run_dir)
    columns = list(rows[0])
    assert not [c for c in columns if "/" in c]
    assert {"Iteration", "CumSteps", "ReturnAverage", "loss", "pi_loss", "ReplayRatio"} <= set(columns)
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    groups = {
        "rollout": ["ReturnAverage", "ReturnStd", "LengthAverage", "DiscountedReturnAverage", "NewCompletedTrajs"],
        "train": ["loss", "pi_loss", "value_loss", "entropy", "grad_norm", "ReplayRatio", "CumUpdates"],
        "time": ["CumTime", "StepsPerSecond", "UpdatesPerSecond", "Iteration", "CumSteps"],
    }
    for group, keys in groups.items():
        for key in keys:
            if key in columns:
                assert f"{group}/{key}" in tags, (key, sorted(tags))
    assert {t.split("/", 1)[0] for t in tags} <= {"rollout", "train", "eval", "time"}
    assert {t.split("/", 1)[1] for t in tags} <= set(columns)  # every tag is a csv column
    assert [e.step for e in events.Scalars("time/StepsPerSecond")] == [int(r["CumSteps"]) for r in rows]


def test_eval_scalars_go_to_eval():
    from rlfleet.logging.progress import scalar_tag

    assert scalar_tag("EvalReturnAverage") == "eval/EvalReturnAverage"
    assert scalar_tag("EvalEpisodes") == "eval/EvalEpisodes"
    assert scalar_tag("critic_loss") == "train/critic_loss"
    assert scalar_tag("livesAverage") == "rollout/livesAverage"  # an env info value's mean


def test_same_explicit_name_twice_exactly_one_wins(tmp_path):
    args = ["train", "ppo", "-e", "CartPole-v1", "--runs-dir", "runs", "--name", "same", "runner.n_steps=256"]
    args += ["logger.console=false", "logger.tensorboard=false", *FAST]
    procs = [
        subprocess.Popen(rlfleet_cmd(*args), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(proc, *proc.communicate(timeout=300)) for proc in procs]
    assert sorted(p.returncode for p, _, _ in results) == [0, 2], [err for _, _, err in results]
    _, _, err = next(r for r in results if r[0].returncode == 2)
    lines = err.strip().splitlines()
    run_dir = Path("runs", "CartPole-v1", "ppo", "same", "seed0")
    assert len(lines) == 1 and lines[0].startswith("rlfleet: error:"), err
    assert "already holds a run" in lines[0] and str(run_dir) in lines[0]
    assert [int(r["CumSteps"]) for r in read_progress(tmp_path / run_dir)] == [256]


def test_ctrl_c_prints_the_resume_command(tmp_path):
    run_dir = Path("runs", "CartPole-v1", "ppo", "long", "seed0")
    cmd = rlfleet_cmd(
        "train", "ppo", "-e", "CartPole-v1", "--runs-dir", "runs", "--name", "long", "runner.n_steps=10000000",
        "runner.log_interval_steps=128", "logger.console=false", "logger.tensorboard=false", *FAST,
    )  # fmt: skip
    returncode, _, err = interrupt_after_rows(cmd, tmp_path, tmp_path / run_dir, rows=2)
    assert returncode == 130, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("rlfleet: interrupted at ") and "; checkpoint written; " in line, err
    assert line.endswith(f"; resume with: rlfleet train --resume {run_dir}"), line


def test_console_progress_never_shows_more_than_its_total():
    console = Console(file=io.StringIO(), force_terminal=True, width=200)
    progress = ConsoleProgress(20000, console=console)
    try:
        assert progress.live
        for steps in range(0, 20224 + 1, 256 * 8):
            progress.update(steps, 1000.0, 10.0, None)
        progress.update(20224, 1000.0, 10.0, None)  # the last batch passes the budget
        task = progress.progress.tasks[0]
        assert task.completed == 20224 and task.total == 20224
        assert MofNCompleteColumn().render(task).plain == "20224/20224"
    finally:
        progress.close()
    assert "return (last 100)" in console.file.getvalue()


def test_runner_sets_the_bar_total_to_the_steps_it_reaches():
    """n_steps=1000 with 128-step batches: the run reaches 1024, the bar's total too."""
    data = resolve("ppo", "CartPole-v1", ["runner.n_steps=1000", "logger.console=false", *FAST])
    config = validate(data, probe_spaces(validate(data)))
    exp = build_experiment(config)
    try:
        row = exp.runner.train()
    finally:
        exp.close()
    assert row["CumSteps"] == 1024 and exp.runner.console.total == 1024
