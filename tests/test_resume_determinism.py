"""Exact resume (N steps in one go == N/2 steps + ``--resume`` to N), determinism across
processes, and Ctrl-C (exit 130, a loadable checkpoint, ``--resume`` continues from it)."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rlfleet.checkpoint import Checkpointer, load_checkpoint
from rlfleet.experiment import train

QUIET = ["logger.tensorboard=false", "logger.console=false"]
TIMING_COLUMNS = {"CumTime", "StepsPerSecond", "UpdatesPerSecond"}
# PPO on CartPole with a constant learning rate and clip range (the preset anneals both over
# runner.n_steps, which a resume with a larger budget changes on purpose); 128 steps per
# iteration, several minibatches per epoch.
PPO_ARGS = [
    "algo.anneal_lr=false",
    "algo.anneal_clip=false",
    "sampler.batch_T=32",
    "sampler.batch_B=4",
    "algo.epochs=4",
    "algo.minibatch_size=32",
    "runner.log_interval_steps=256",
    "runner.eval_interval_steps=512",
    "runner.eval_episodes=2",
    *QUIET,
]


def rlfleet_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "rlfleet", *args]


def run_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(rlfleet_cmd(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc


def run_cli_concurrently(commands: list[list[str]], cwd: Path, timeout: float = 300) -> None:
    procs = [
        subprocess.Popen(rlfleet_cmd(*c), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, err


def read_progress(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "progress.csv", newline="") as f:
        return list(csv.DictReader(f))


def interrupt_after_rows(
    cmd: list[str], cwd: Path, run_dir: Path, rows: int, before_interrupt: Callable[[int], None] | None = None
) -> tuple[int, str, str]:
    """Run ``cmd``; once ``run_dir``'s progress.csv has ``rows`` rows, call
    ``before_interrupt(pid)`` (if given) and send SIGINT. Returns (exit code, stdout, stderr);
    the process is killed if anything goes wrong on the way."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ((run_dir / "progress.csv").is_file() and len(read_progress(run_dir)) >= rows):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, f"fewer than {rows} progress rows after 120 s"
            time.sleep(0.05)
        if before_interrupt is not None:
            before_interrupt(proc.pid)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


def learning_columns(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]


def latest_state(run_dir: Path) -> dict[str, Any]:
    return load_checkpoint(Checkpointer(run_dir / "checkpoints").latest())


def assert_identical(a: Any, b: Any, where: str = "") -> None:
    """Recursive exact equality of (nested) checkpoint state: tensors, arrays, numbers."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and np.array_equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where} keys differ"
        for key in a:
            assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where} length differs"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_model(run_a: Path, run_b: Path) -> None:
    model_a, model_b = latest_state(run_a)["agent"]["model"], latest_state(run_b)["agent"]["model"]
    assert model_a.keys() == model_b.keys()
    for key in model_a:
        assert torch.equal(model_a[key], model_b[key]), f"parameter {key} differs"


def assert_exact_resume(full: Path, resumed: Path, n_steps: int) -> None:
    full_state, resumed_state = latest_state(full), latest_state(resumed)
    assert full_state["runner"]["cum_steps"] == resumed_state["runner"]["cum_steps"] == n_steps
    assert full_state["algo"]["updates"] > 0
    assert_same_model(full, resumed)
    # the rest of the learner state too: optimizer moments, exploration RNGs, replay
    assert_identical(full_state["agent"], resumed_state["agent"], "agent")
    assert_identical(full_state["algo"], resumed_state["algo"], "algo")
    rows_full, rows_resumed = read_progress(full), read_progress(resumed)
    assert [int(r["CumSteps"]) for r in rows_full][-1] == n_steps
    assert any("loss" in k for k in rows_full[0]), "progress.csv has no learning columns"
    assert learning_columns(rows_full) == learning_columns(rows_resumed)


def test_ppo_exact_resume_cli(tmp_path):
    """``rlfleet train`` N steps vs N/2 steps then ``rlfleet train --resume RUN runner.n_steps=N``."""
    n = 2048
    base = ["train", "ppo", "-e", "CartPole-v1", "--runs-dir", "runs", *PPO_ARGS]
    run_cli_concurrently(
        [[*base, "--name", "full", f"runner.n_steps={n}"], [*base, "--name", "half", f"runner.n_steps={n // 2}"]],
        cwd=tmp_path,
    )
    full = tmp_path / "runs/CartPole-v1/ppo/full/seed0"
    half = tmp_path / "runs/CartPole-v1/ppo/half/seed0"
    assert latest_state(half)["runner"]["cum_steps"] == n // 2
    out = run_cli("train", "--resume", str(half.relative_to(tmp_path)), f"runner.n_steps={n}", cwd=tmp_path)
    assert f"steps {n}" in out.stdout
    assert_exact_resume(full, half, n)
    assert "note:" not in out.stderr  # CartPole envs are restored exactly, not reset


@pytest.mark.parametrize(
    ("algo", "args"),
    [
        pytest.param(
            "dqn",
            [
                "runner.save_replay=true",
                "sampler.batch_T=16",
                "algo.replay_size=5000",
                "algo.learning_starts=200",
                "algo.replay_ratio=8",
                "algo.target_update_interval=10",
                "agent.eps_steps=500",
            ],
            id="dqn-saved-replay",
        ),
        pytest.param("a2c", ["sampler.batch_T=8", "sampler.batch_B=4"], id="a2c"),
    ],
)
def test_exact_resume_api(tmp_path, algo, args):
    n = 1024
    common = [
        *args,
        "runner.log_interval_steps=256",
        "runner.eval_interval_steps=512",
        "runner.eval_episodes=2",
        *QUIET,
    ]
    full, _ = train(algo, "CartPole-v1", [*common, f"runner.n_steps={n}"], name="full", root=tmp_path)
    half, _ = train(algo, "CartPole-v1", [*common, f"runner.n_steps={n // 2}"], name="half", root=tmp_path)
    half_state = latest_state(half)
    assert half_state["runner"]["cum_steps"] == n // 2
    if algo == "dqn":
        assert half_state["algo"]["replay"] is not None  # runner.save_replay=true saved the replay
    train(resume=half, overrides=[f"runner.n_steps={n}"])
    assert_exact_resume(full, half, n)


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    base = ["train", "ppo", "-e", "CartPole-v1", "--runs-dir", "runs", "runner.n_steps=1024", *PPO_ARGS]
    run_cli_concurrently(
        [
            [*base, "--name", "a", "--seed", "3"],
            [*base, "--name", "b", "--seed", "3"],
            [*base, "--name", "c", "--seed", "4"],
        ],
        cwd=tmp_path,
    )
    runs = tmp_path / "runs/CartPole-v1/ppo"
    a, b, c = runs / "a/seed3", runs / "b/seed3", runs / "c/seed4"
    rows_a, rows_b, rows_c = read_progress(a), read_progress(b), read_progress(c)
    assert len(rows_a) == 5
    assert learning_columns(rows_a) == learning_columns(rows_b)
    assert_same_model(a, b)
    assert_identical(latest_state(a)["algo"], latest_state(b)["algo"], "algo")

    # another seed: the same schedule, different numbers
    assert [r["CumSteps"] for r in rows_c] == [r["CumSteps"] for r in rows_a]
    for column in ("EvalReturnAverage", "ReturnAverage", "loss"):
        assert [r[column] for r in rows_a] != [r[column] for r in rows_c], column
    model_a, model_c = latest_state(a)["agent"]["model"], latest_state(c)["agent"]["model"]
    assert all(not torch.equal(model_a[k], model_c[k]) for k in model_a)


def test_ctrl_c_writes_checkpoint_and_resume_continues(tmp_path):
    run_dir = tmp_path / "runs/CartPole-v1/ppo/long/seed0"
    args = [
        "train",
        "ppo",
        "-e",
        "CartPole-v1",
        "--runs-dir",
        "runs",
        "--name",
        "long",
        "runner.n_steps=10000000",
        "runner.eval_interval_steps=0",
        *[a for a in PPO_ARGS if not a.startswith("runner.eval")],
    ]
    returncode, out, err = interrupt_after_rows(rlfleet_cmd(*args), tmp_path, run_dir, rows=2)
    assert returncode == 130, err
    assert "Traceback" not in out + err
    assert "checkpoint written" in err

    checkpoints = Checkpointer(run_dir / "checkpoints").checkpoints()
    assert len(checkpoints) == 1
    state = load_checkpoint(checkpoints[0])
    stopped = state["runner"]["cum_steps"]
    assert checkpoints[0].name == f"ckpt_{stopped:010d}.pt"
    assert 512 <= stopped < 10_000_000 and stopped % 128 == 0
    assert f"interrupted at {stopped} steps" in err
    assert state["algo"]["updates"] == state["runner"]["itr"] * 4 * (128 // 32)  # epochs * minibatches

    target = stopped + 512
    run_cli("train", "--resume", str(run_dir.relative_to(tmp_path)), f"runner.n_steps={target}", cwd=tmp_path)
    final = latest_state(run_dir)
    assert final["runner"]["cum_steps"] == target
    assert final["runner"]["itr"] == target // 128  # continued from the checkpoint, not restarted
    steps = [int(r["CumSteps"]) for r in read_progress(run_dir)]
    assert steps == sorted(set(steps)) and steps[-1] == target

    # ... and continued exactly: the same as an uninterrupted run of `target` steps
    full, _ = train(
        "ppo",
        "CartPole-v1",
        [
            f"runner.n_steps={target}",
            "runner.eval_interval_steps=0",
            *[a for a in PPO_ARGS if not a.startswith("runner.eval")],
        ],
        name="uninterrupted",
        root=tmp_path / "runs",
    )
    assert_same_model(full, run_dir)
    rows_full = learning_columns(read_progress(full))
    rows_resumed = learning_columns(read_progress(run_dir))
    assert rows_full == rows_resumed
