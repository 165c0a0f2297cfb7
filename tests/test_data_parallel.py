"""runner.kind=data_parallel: averaged gradients, identical replicas, rank-0-only files, exact
resume, Ctrl-C, and every replica stopped when one fails (2 gloo processes on CPU)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from cli_helpers import interrupt_after_rows, rlfleet_cmd
from conftest import (
    PPO_ARGS,
    QUIET,
    assert_exact_resume,
    assert_identical,
    latest_state,
    learning_columns,
    read_progress,
)
from rlfleet.algos.optimizer import FlatOptimizer
from rlfleet.checkpoint import Checkpointer, load_checkpoint
from rlfleet.errors import ConfigError
from rlfleet.experiment import train
from rlfleet.runners.data_parallel import average_over_replicas, weights_digest
from rlfleet.runners.replicas import Replica, ReplicaError, launch

DP = ["runner.kind=data_parallel", "runner.n_replicas=2"]


def mlp_updates(x: torch.Tensor, y: torch.Tensor, steps: int, averaged: bool):
    """``steps`` clipped Adam steps of an MLP regressing ``y [N,1]`` on ``x [N,4]``; returns the
    gradient norms, the (clipped) gradients and the final parameters."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    optimizer = FlatOptimizer(model.parameters(), "adam", lr=0.01, max_grad_norm=0.05)
    if averaged:
        optimizer.grad_hook = average_over_replicas
    norms, grads = [], []
    for _ in range(steps):
        norms.append(optimizer.step((model(x) - y).pow(2).mean()))
        grads.append(optimizer.flat_grad.clone())
    return torch.stack(norms), torch.stack(grads), optimizer.flat.clone()


def replica_mlp_updates(replica: Replica, x: torch.Tensor, y: torch.Tensor, steps: int):
    n = len(x) // replica.n_replicas
    shard = slice(replica.rank * n, (replica.rank + 1) * n)
    return mlp_updates(x[shard], y[shard], steps, averaged=True)


def test_averaged_gradient_equals_gradient_of_concatenated_batch():
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 4, generator=generator), torch.randn(64, 1, generator=generator)
    norms, grads, params = mlp_updates(x, y, steps=3, averaged=False)
    assert (norms > 0.05).all()  # the clip acts, on the averaged gradient
    shard_norms, _, _ = mlp_updates(x[:32], y[:32], steps=3, averaged=False)
    assert not torch.allclose(shard_norms, norms)  # one shard alone is not enough
    results = launch(replica_mlp_updates, 2, "gloo", (x, y, 3))
    for rank_norms, rank_grads, rank_params in results:
        torch.testing.assert_close(rank_norms, norms, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(rank_grads, grads, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(rank_params, params, rtol=1e-5, atol=1e-6)
    assert torch.equal(results[0][2], results[1][2])  # the replicas hold identical weights


def fail_on_rank_1(replica: Replica, pid_dir: str) -> None:
    Path(pid_dir, f"{replica.rank}.pid").write_text(str(os.getpid()))
    if replica.rank == 1:
        raise ValueError("replica 1 broke")
    dist.all_reduce(torch.zeros(1))  # rank 0 waits for rank 1 here


def test_failing_replica_stops_every_replica(tmp_path):
    with pytest.raises(ReplicaError, match=r"(?s)replica 1 of 2 failed.*ValueError: replica 1 broke"):
        launch(fail_on_rank_1, 2, "gloo", (str(tmp_path),))
    for rank in (0, 1):
        pid = int((tmp_path / f"{rank}.pid").read_text())
        with pytest.raises(ProcessLookupError):  # exited and reaped: no orphan
            os.kill(pid, 0)


@pytest.mark.parametrize(
    ("algo", "args", "message"),
    [
        ("dqn", [], "on-policy algorithms"),
        ("ppo", ["algo.target_kl=0.01"], "algo.target_kl"),
        ("ppo", ["runner.dist_backend=nccl"], "needs a CUDA runner.device"),
        ("ppo", ["runner.n_replicas=0"], "must be >= 1"),
    ],
)
def test_unsupported_configs_are_one_config_error(tmp_path, algo, args, message):
    with pytest.raises(ConfigError, match=message):
        train(algo, "CartPole-v1", [*DP, *QUIET, *args], root=tmp_path)


def test_one_replica_is_the_minibatch_runner(tmp_path):
    args = ["sampler.batch_T=8", "sampler.batch_B=4", "runner.n_steps=512", "runner.log_interval_steps=128"]
    args += ["runner.eval_interval_steps=256", "runner.eval_episodes=2", *QUIET]
    minibatch, _ = train("a2c", "CartPole-v1", args, name="minibatch", root=tmp_path)
    parallel, _ = train("a2c", "CartPole-v1", [*args, *DP, "runner.n_replicas=1"], name="dp", root=tmp_path)
    assert learning_columns(read_progress(minibatch)) == learning_columns(read_progress(parallel))
    assert_identical(latest_state(minibatch)["algo"], latest_state(parallel)["algo"], "algo")
    assert_identical(latest_state(minibatch)["agent"], latest_state(parallel)["agent"], "agent")


def replica_parts(state: dict) -> list[dict]:
    """The other replicas' saved state without their pickled envs (pickles of equal envs may
    differ byte-wise)."""
    return [
        {**part, "sampler": {k: v for k, v in part["sampler"].items() if k != "stepper"}} for part in state["replicas"]
    ]


@pytest.mark.slow
def test_ctrl_c_checkpoints_every_replica_and_resume_is_exact(tmp_path):
    """Ctrl-C to the launching process stops both replicas after the same iteration with one
    checkpoint by rank 0; resuming from it continues exactly as an uninterrupted run."""
    runs = tmp_path / "runs"
    run_dir = runs / "CartPole-v1/ppo/long/seed0"
    # 2 replicas x 32 steps x 2 envs = 128 env steps per iteration; a row every 256
    args = [a for a in PPO_ARGS if not a.startswith("runner.eval")]
    args += [*DP, "sampler.batch_B=2", "runner.eval_interval_steps=0"]
    cli = ["train", "ppo", "-e", "CartPole-v1", "--runs-dir", "runs", "--name", "long", "runner.n_steps=10000000"]
    returncode, out, err = interrupt_after_rows(rlfleet_cmd(*cli, *args), tmp_path, run_dir, rows=3)
    assert returncode == 130, err  # SIGINT to the launching process only: it tells the replicas
    assert "Traceback" not in out + err
    (checkpoint,) = Checkpointer(run_dir / "checkpoints").checkpoints()
    stopped = load_checkpoint(checkpoint)["runner"]["cum_steps"]
    assert f"interrupted at {stopped} steps" in err
    assert stopped >= 512 and stopped % 128 == 0

    target = stopped + 512
    train(resume=run_dir, overrides=[f"runner.n_steps={target}"])
    full, _ = train("ppo", "CartPole-v1", [*args, f"runner.n_steps={target}"], name="full", root=runs)
    assert_exact_resume(full, run_dir, target)
    full_state, resumed_state = latest_state(full), latest_state(run_dir)
    assert_identical(replica_parts(full_state), replica_parts(resumed_state), "replicas")

    # only rank 0 wrote files: one row per interval, counting both replicas' steps
    assert sorted(p.name for p in full.iterdir()) == ["checkpoints", "config.yaml", "progress.csv"]
    rows = read_progress(full)
    on_grid = list(range(256, target + 1, 256))
    final_row = [] if target % 256 == 0 else [target]  # a run ending off the grid logs its last step
    assert [int(r["CumSteps"]) for r in rows] == on_grid + final_row
    assert {r["ReplayRatio"] for r in rows} == {"4.0"}  # 4 epochs, all replicas' samples
    assert full_state["runner"]["itr"] == target // 128
    # the other replica: its own envs and RNGs, the same weights
    (other,) = full_state["replicas"]
    assert not torch.equal(other["agent"]["generator"], full_state["agent"]["generator"])
    assert not (other["sampler"]["observation"] == full_state["sampler"]["observation"]).all()
    assert other["weights"] == weights_digest(full_state["agent"]["model"])
