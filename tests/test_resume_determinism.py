"""Exact resume (N steps in one go == N/2 steps + ``--resume`` to N), determinism across
processes, and Ctrl-C (exit 130, a loadable checkpoint, ``--resume`` continues from it)."""

from __future__ import annotations

import pytest
import torch

from cli_helpers import interrupt_after_rows, rlfleet_cmd, run_cli, run_cli_concurrently
from conftest import (
    PPO_ARGS,
    QUIET,
    assert_exact_resume,
    assert_identical,
    assert_same_model,
    latest_state,
    learning_columns,
    read_progress,
)
from rlfleet.checkpoint import Checkpointer, load_checkpoint
from rlfleet.experiment import train


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
                "replay.size=5000",
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
        assert "whole" in half_state["replay"]  # runner.save_replay=true saved the replay
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
