"""``rlfleet sweep``: grids from the command line and YAML, validation before anything starts,
a local queue of training processes with a summary table, a killed run reported as failed while
the others finish, Ctrl-C stopping the runs with a checkpoint, and Ray tasks."""

from __future__ import annotations

import csv
import functools
import importlib.util
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from cli_helpers import cli_env, rlfleet, rlfleet_cmd
from conftest import QUIET
from rlfleet.errors import ConfigError
from rlfleet.sweep import (
    RunResult,
    SweepSpec,
    exit_status,
    grid_points,
    load_sweep_file,
    merge_command_line,
    parse_grid_args,
    plan_sweep,
    short_names,
    split_values,
)
from test_cli_errors import check_one_line_error

# PPO on CartPole with a tiny budget: 2048 steps of 256-step batches, evaluated at the start
# and at the end on 2 episodes.
TINY = [
    "runner.n_steps=2048",
    "sampler.batch_T=32",
    "sampler.batch_B=8",
    "algo.epochs=2",
    "runner.log_interval_steps=1024",
    "runner.eval_interval_steps=2048",
    "runner.eval_episodes=2",
    *QUIET,
]


def read_summary(sweep_dir: Path) -> list[dict[str, str]]:
    with open(sweep_dir / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def table_rows(stdout: str, status: str) -> list[str]:
    """Lines of the printed summary table whose status column is ``status``."""
    return [line for line in stdout.splitlines() if f"  {status}  " in line]


def start_sweep(cwd: Path, *args: str) -> subprocess.Popen:
    """The sweep CLI, started with SIGINT ignored as a shell script's background job is: it must
    still stop its runs with a checkpoint on Ctrl-C."""
    return subprocess.Popen(
        rlfleet_cmd("sweep", *args),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        preexec_fn=functools.partial(signal.signal, signal.SIGINT, signal.SIG_IGN),
    )


def wait_for(path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.1)


def kill_leftovers(log_dir: Path) -> None:
    """SIGKILL the training processes this test's sweep left running (their pid files)."""
    for pid_file in log_dir.glob("*.pid"):
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


# ----- the grid -----
def test_split_values_keeps_brackets_and_quotes_whole():
    assert split_values("1e-3,3e-4") == ["1e-3", "3e-4"]
    assert split_values("[64,64],[128,128]") == ["[64,64]", "[128,128]"]
    assert split_values("'a,b',c") == ["'a,b'", "c"]
    assert split_values("5") == ["5"]
    with pytest.raises(ConfigError, match="unbalanced"):
        split_values("[1,2")


def test_command_line_grid_is_a_cartesian_product_with_seeds_innermost():
    spec = merge_command_line(
        SweepSpec(), "ppo", "CartPole-v1", ["seed=0,1", "algo.lr=1e-3,3e-4", "runner.n_steps=2048"]
    )
    assert spec.grid == {"seed": ["0", "1"], "algo.lr": ["1e-3", "3e-4"], "runner.n_steps": ["2048"]}
    assert spec.axes() == {"seed": ["0", "1"], "algo.lr": ["1e-3", "3e-4"]}
    points = grid_points(spec)
    assert [(p["algo.lr"], p["seed"]) for p in points] == [("1e-3", "0"), ("1e-3", "1"), ("3e-4", "0"), ("3e-4", "1")]
    assert all(p["runner.n_steps"] == "2048" for p in points)


def test_short_names_are_the_shortest_unique_suffixes():
    assert short_names(["algo.lr", "model.hidden_sizes"]) == {"algo.lr": "lr", "model.hidden_sizes": "hidden_sizes"}
    assert short_names(["algo.lr", "agent.lr"]) == {"algo.lr": "algo.lr", "agent.lr": "agent.lr"}


def test_sweep_file_and_command_line_precedence(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "algorithm": "ppo",
                "env": "CartPole-v1",
                "grid": {"algo.lr": [1e-3, "3e-4"], "model.hidden_sizes": [[8, 8], [16, 16]], "seed": [0, 1]},
                "overrides": ["runner.n_steps=2048", "model.activation=relu"],
            }
        )
    )
    spec = load_sweep_file(path)
    assert spec.algorithm == "ppo" and spec.env == "CartPole-v1"
    assert spec.grid["algo.lr"] == ["0.001", "3e-4"]
    assert spec.grid["model.hidden_sizes"] == ["[8, 8]", "[16, 16]"]
    assert spec.grid["runner.n_steps"] == ["2048"] and spec.grid["seed"] == ["0", "1"]
    assert len(grid_points(spec)) == 8
    # the command line wins: a fixed value replaces the file's axis, an axis replaces a fixed value
    merged = merge_command_line(spec, None, None, ["seed=3", "model.activation=tanh,relu"])
    assert merged.grid["seed"] == ["3"] and merged.grid["model.activation"] == ["tanh", "relu"]
    assert len(grid_points(merged)) == 8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["algo.lr=1e-3,,3e-4"], "empty value"),
        (["algo.lr"], "must look like key=value"),
        (["=1,2"], "must look like"),
        (["model.hidden_sizes=[64,64"], "unbalanced"),
        (["seed=0,0"], "repeats the value '0'"),
        (["env.id=CartPole-v1,Acrobot-v1"], "one algorithm on one env"),
    ],
)
def test_malformed_grid_entries(args, message):
    with pytest.raises(ConfigError, match=message):
        parse_grid_args(args)


def test_bad_sweep_file_keys(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"algorithm": "ppo", "env": "CartPole-v1", "gird": {"seed": [0, 1]}}))
    with pytest.raises(ConfigError, match="did you mean 'grid'"):
        load_sweep_file(path)
    path.write_text(yaml.safe_dump({"algorithm": "ppo", "grid": {"algo.lr": []}}))
    with pytest.raises(ConfigError, match="no values"):
        load_sweep_file(path)


@pytest.mark.parametrize(
    ("algorithm", "env", "args", "message"),
    [
        ("ppx", "CartPole-v1", ["seed=0,1"], "unknown algorithm 'ppx'; did you mean 'ppo'"),
        ("ppo", "CartPol-v1", ["seed=0,1"], "unknown env id 'CartPol-v1'"),
        ("ppo", "CartPole-v1", ["algo.lrr=1e-3,3e-4"], "grid point lrr=1e-3: unknown config key 'algo.lrr'"),
        ("ppo", "CartPole-v1", ["algo.lr=1e-3,abc"], "grid point lr=abc: config key 'algo.lr' expects float"),
        ("ppo", "CartPole-v1", ["seed=0,x"], "grid point seed=x: config key 'seed' expects int"),
        ("ppo", "CartPole-v1", ["seed=0,00"], "would share the run directory"),
        (None, "CartPole-v1", ["seed=0,1"], "name an algorithm"),
    ],
)
def test_every_grid_point_is_validated_before_anything_is_written(tmp_path, algorithm, env, args, message):
    spec = merge_command_line(SweepSpec(), algorithm, env, args)
    with pytest.raises(ConfigError, match=message):
        plan_sweep(spec, "s", tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_plan_names_runs_by_their_axis_values(tmp_path):
    spec = merge_command_line(SweepSpec(), "ppo", "CartPole-v1", ["algo.lr=1e-3,3e-4", "seed=0,1", *QUIET])
    plan = plan_sweep(spec, "s", tmp_path)
    assert [r.label for r in plan.runs] == ["lr=1e-3,seed=0", "lr=1e-3,seed=1", "lr=3e-4,seed=0", "lr=3e-4,seed=1"]
    assert plan.runs[1].run_dir == tmp_path / "CartPole-v1" / "ppo" / "s" / "lr=1e-3" / "seed1"
    assert plan.runs[1].args[:8] == ["train", "ppo", "-e", "CartPole-v1", "--seed", "1", "--name", "s/lr=1e-3"]
    assert "algo.lr=1e-3" in plan.runs[1].args and not any(a.startswith("seed=") for a in plan.runs[1].args)


def test_exit_status():
    assert exit_status([RunResult("ok"), RunResult("ok")]) == 0
    assert exit_status([RunResult("ok"), RunResult("failed", -9)]) == 1
    assert exit_status([RunResult("interrupted", 130), RunResult("not started")]) == 130
    assert RunResult("failed", -9).detail == "failed (SIGKILL)"
    assert RunResult("failed", 1).detail == "failed (exit 1)"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["ppo2", "-e", "CartPole-v1", "seed=0,1"], ["unknown algorithm", "'ppo2'"]),
        (["ppo", "-e", "CartPole-v1", "algo.lrr=1e-3,3e-4"], ["unknown config key", "'algo.lrr'", "'algo.lr'"]),
        (["ppo", "-e", "CartPole-v1", "algo.lr=1e-3,,3e-4"], ["empty value"]),
        (["--config", "missing.yaml"], ["missing.yaml", "does not exist"]),
    ],
)
def test_bad_sweep_command_is_one_line(tmp_path, args, expected):
    check_one_line_error(tmp_path, ["sweep", *args, "--runs-dir", "runs"], *expected)


# ----- running sweeps -----
@pytest.mark.slow
def test_sweep_of_two_learning_rates_and_two_seeds(tmp_path):
    proc = rlfleet(
        "sweep", "ppo", "-e", "CartPole-v1", "algo.lr=1e-3,3e-4", "seed=0,1", *TINY,
        "--slots", "2", "--name", "lr", "--runs-dir", "runs", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(table_rows(proc.stdout, "ok")) == 4, proc.stdout
    assert "4 ok" in proc.stdout
    for label in ("lr=1e-3,seed=0", "lr=1e-3,seed=1", "lr=3e-4,seed=0", "lr=3e-4,seed=1"):
        assert f"start {label}" in proc.stdout and f"ok {label}" in proc.stdout
    if len(os.sched_getaffinity(0)) >= 2:
        assert "on core" in proc.stdout
    sweep_dir = tmp_path / "runs" / "sweeps" / "lr"
    rows = read_summary(sweep_dir)
    assert [(r["algo.lr"], r["seed"], r["status"], r["steps"]) for r in rows] == [
        ("1e-3", "0", "ok", "2048"),
        ("1e-3", "1", "ok", "2048"),
        ("3e-4", "0", "ok", "2048"),
        ("3e-4", "1", "ok", "2048"),
    ]
    for row in rows:
        assert 8 <= float(row["eval_return"]) <= 500
        assert (tmp_path / row["run_dir"] / "progress.csv").is_file()
        assert "finished: steps 2048" in (tmp_path / row["log"]).read_text()
    assert (tmp_path / "runs/CartPole-v1/ppo/lr/lr=3e-4/seed1/config.yaml").is_file()
    assert "| lr | seed | status |" in (sweep_dir / "summary.md").read_text()
    assert not list((sweep_dir / "logs").glob("*.pid"))
    saved = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())
    assert saved["grid"] == {"algo.lr": ["1e-3", "3e-4"], "seed": [0, 1]}


def test_killed_run_is_reported_failed_and_the_others_complete(tmp_path):
    """One slot: a long run first (SIGKILLed once started), then a short one that must still
    run and finish; the sweep exits non-zero."""
    long_pid = tmp_path / "runs/sweeps/k/logs/n_steps=1000000.pid"
    proc = start_sweep(
        tmp_path, "ppo", "-e", "CartPole-v1", "runner.n_steps=1000000,2048", *TINY[1:],
        "--slots", "1", "--name", "k", "--runs-dir", "runs",
    )  # fmt: skip
    try:
        wait_for(long_pid)
        os.kill(int(long_pid.read_text()), signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    finally:
        kill_leftovers(tmp_path / "runs/sweeps/k/logs")
        proc.kill()
    assert proc.returncode == 1, out + err
    assert "failed (SIGKILL) n_steps=1000000" in out
    assert len(table_rows(out, "failed (SIGKILL)")) == 1 and len(table_rows(out, "ok")) == 1, out
    rows = read_summary(tmp_path / "runs/sweeps/k")
    assert [(r["runner.n_steps"], r["status"], r["returncode"]) for r in rows] == [
        ("1000000", "failed (SIGKILL)", "-9"),
        ("2048", "ok", "0"),
    ]


def test_ctrl_c_stops_the_runs_with_a_checkpoint_and_prints_the_table(tmp_path):
    first = tmp_path / "runs/CartPole-v1/ppo/c/seed0"
    proc = start_sweep(
        tmp_path, "ppo", "-e", "CartPole-v1", "seed=0,1", "runner.n_steps=1000000", *TINY[1:],
        "--slots", "1", "--name", "c", "--runs-dir", "runs",
    )  # fmt: skip
    try:
        wait_for(first / "progress.csv")  # the runner is in its loop: SIGINT means checkpoint
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        kill_leftovers(tmp_path / "runs/sweeps/c/logs")
        proc.kill()
    assert proc.returncode == 130, out + err
    assert len(table_rows(out, "interrupted")) == 1 and len(table_rows(out, "not started")) == 1, out
    assert list((first / "checkpoints").glob("ckpt_*.pt"))
    assert "checkpoint written" in (tmp_path / "runs/sweeps/c/logs/seed=0.log").read_text()
    assert not (tmp_path / "runs/CartPole-v1/ppo/c/seed1").exists()


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")
@pytest.mark.slow
def test_ray_local_runs_the_grid_as_tasks(tmp_path):
    proc = rlfleet(
        "sweep", "ppo", "-e", "CartPole-v1", *TINY, "--ray", "local", "--name", "r", "--runs-dir", "runs",
        cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Ray at local" in proc.stdout and len(table_rows(proc.stdout, "ok")) == 1, proc.stdout
    (row,) = read_summary(tmp_path / "runs/sweeps/r")
    assert row["status"] == "ok" and row["steps"] == "2048"
    assert (tmp_path / "runs/CartPole-v1/ppo/r/seed0/progress.csv").is_file()
