"""The asynchronous runner (``runner.kind=async``): replay ratio held, the batches handed over
through shared-memory slots are complete sampler batches and the replay holds what a serial
sampler produces, weights reach the sampler, failures of the sampler process
shut down cleanly, checkpoints, resume and Ctrl-C, and on-policy algorithms are rejected."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cli_helpers import interrupt_after_rows, rlfleet_cmd
from conftest import QUIET, latest_state, read_progress
from custom_components import CorridorEnv
from rlfleet.build import build_experiment
from rlfleet.checkpoint import Checkpointer
from rlfleet.config.loader import resolve, validate
from rlfleet.errors import ConfigError
from rlfleet.experiment import train
from rlfleet.runners.async_rl import AsyncSamplerError
from rlfleet.runners.shared_params import SharedParameters
from rlfleet.utils.buffers import map_buffer, numpify_buffer

T, B = 64, 2  # one sampler batch: 128 env steps
UPDATES_PER_BATCH = 16  # replay_ratio 4 * 128 / batch_size 32
# DQN on CartPole, small: 16 updates per 128-step batch from 256 env steps on.
DQN_ARGS = [
    "runner.kind=async",
    f"sampler.batch_T={T}",
    f"sampler.batch_B={B}",
    "model.hidden_sizes=[32]",
    "algo.batch_size=32",
    "algo.replay_ratio=4",
    "algo.learning_starts=256",
    "replay.size=4096",
    "algo.target_update_interval=64",
    "runner.log_interval_steps=256",
    "runner.eval_interval_steps=0",
    *QUIET,
]


def child_pids(pid: int) -> set[int]:
    """Live (not zombie) processes whose parent is ``pid``, multiprocessing's resource tracker
    (which lives as long as its parent) aside."""
    found = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == pid and b"resource_tracker" not in cmdline:
            found.add(int(proc.name))
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_replay_ratio_held_and_weights_versions_advance(tmp_path):
    config = validate(resolve("dqn", "CartPole-v1", [*DQN_ARGS, "runner.n_steps=1536"], None, 0))
    exp = build_experiment(config, tmp_path)
    try:
        row = exp.runner.train()
    finally:
        exp.close()
    assert not child_pids(os.getpid()), "the sampler process outlived the run"
    rows = read_progress(tmp_path)
    learning = [r for r in rows if int(r["CumSteps"]) >= 256]
    assert len(learning) == 6 and int(learning[-1]["CumSteps"]) == row["CumSteps"] == 1536
    for r in learning:
        steps, updates = int(r["CumSteps"]), int(r["CumUpdates"])
        # every batch from the one reaching learning_starts on (env steps 128 .. steps) was
        # trained on at the replay ratio: 4 samples per env step
        assert updates * 32 / (steps - 128) == 4
        assert float(r["ReplayRatio"]) == pytest.approx(updates * 32 / steps)
    # the optimiser published after every batch; the sampler picked the newer weights up
    assert exp.sampler.weights_version > 2


@pytest.mark.parametrize("lead_batches", [1, 3])
def test_replay_holds_what_a_serial_sampler_produces(tmp_path, lead_batches):
    """With a behaviour policy that ignores the weights (epsilon 1), the async run's replay
    holds bit for bit what the minibatch runner's holds, PER and truncations included, and
    (training on each batch exactly as the minibatch runner does) learns the same weights."""
    args = [
        *DQN_ARGS,
        f"runner.async_lead_batches={lead_batches}",
        "runner.n_steps=1024",
        "runner.save_replay=true",
        "agent.eps_start=1.0",
        "agent.eps_end=1.0",
        "env.max_episode_steps=12",
        "replay.kind=prioritized",
        "algo.n_step=3",
    ]
    sync_dir, _ = train("dqn", "CartPole-v1", [*args, "runner.kind=minibatch"], name="sync", root=tmp_path)
    async_dir, _ = train("dqn", "CartPole-v1", args, name="async", root=tmp_path)
    sync, asynchronous = latest_state(sync_dir), latest_state(async_dir)
    a, b = sync["replay"]["whole"], asynchronous["replay"]["whole"]
    t = a["t"]
    assert t == b["t"] == 1024 // B
    for field in a["buffer"]._fields:
        np.testing.assert_array_equal(getattr(a["buffer"], field)[:t], getattr(b["buffer"], field)[:t], field)
    np.testing.assert_array_equal(a["observations"]["observation"][:t], b["observations"]["observation"][:t])
    assert a["buffer"].truncated[:t].any() and a["final_observation"].keys() == b["final_observation"].keys()
    for key, final in a["final_observation"].items():
        np.testing.assert_array_equal(final, b["final_observation"][key])
    np.testing.assert_array_equal(a["tree"]["priorities"], b["tree"]["priorities"])  # PER priorities
    assert a["max_priority"] == b["max_priority"] and a["rng"] == b["rng"]
    assert sync["algo"]["updates"] == asynchronous["algo"]["updates"] > 0
    for key, value in sync["agent"]["model"].items():
        assert torch.equal(value, asynchronous["agent"]["model"][key]), key


def _leaves(buffer) -> list:
    leaves: list = []
    map_buffer(leaves.append, buffer)
    return leaves


@pytest.mark.parametrize("lead_batches", [1, 2])
def test_async_sampler_batches_are_complete_views_of_shared_slots(tmp_path, lead_batches):
    """Every `SamplerBatch` field is filled; ``torch_samples`` views the memory of ``samples``;
    consecutive batches come from the L slots in turn; and without training (weights unchanged)
    the batches, ``last`` and trajectory statistics are those of a minibatch runner's sampler
    built from the same config and seed."""
    overrides = [*DQN_ARGS, f"runner.async_lead_batches={lead_batches}", "env.max_episode_steps=20"]
    config = validate(resolve("dqn", "CartPole-v1", overrides, None, 0))
    serial_config = validate(resolve("dqn", "CartPole-v1", [*overrides, "runner.kind=minibatch"], None, 0))
    exp, ref = build_experiment(config), build_experiment(serial_config)
    try:
        previous, trajectories = None, 0
        for n in range(4):
            exp.agent.sample_mode(n * T * B)
            ref.agent.sample_mode(n * T * B)
            batch, expected = exp.sampler.obtain_samples(), ref.sampler.obtain_samples()
            assert batch.samples is not None and batch.torch_samples is not None and batch.last is not None
            assert batch.samples.env.reward.shape == (T, B) and batch.last.observation.shape[0] == B
            samples, torch_samples = _leaves(batch.samples), _leaves(batch.torch_samples)
            assert len(samples) == len(torch_samples) == len(_leaves(expected.samples))
            for array, tensor in zip(samples, torch_samples):
                assert isinstance(array, np.ndarray) and isinstance(tensor, torch.Tensor)
                assert np.shares_memory(array, tensor.numpy()), "torch_samples is not a view of samples"
            assert all(isinstance(leaf, torch.Tensor) for leaf in _leaves(batch.last))
            for got, want in zip(samples, _leaves(expected.samples)):
                np.testing.assert_array_equal(got, want)
            for got, want in zip(_leaves(batch.last), _leaves(expected.last)):
                np.testing.assert_array_equal(numpify_buffer(got), numpify_buffer(want))
            assert batch.traj_infos == expected.traj_infos
            trajectories += len(batch.traj_infos)
            if previous is not None:  # slot n % L
                assert np.shares_memory(previous, batch.samples.env.reward) == (lead_batches == 1)
            previous = batch.samples.env.reward
        assert trajectories > 0
    finally:
        exp.close()
        ref.close()
    assert not child_pids(os.getpid()), "the sampler process outlived close"


def _pull_in_child(params: SharedParameters, results) -> None:
    module = nn.Linear(3, 2)
    version = params.pull(module, 0)
    results.put((version, {k: v.numpy().copy() for k, v in module.state_dict().items()}))  # by value


def test_weights_reach_another_process_and_pulls_never_wait():
    ctx = mp.get_context("spawn")
    module = nn.Linear(3, 2)
    params = SharedParameters(module, ctx)
    with torch.no_grad():
        module.weight.add_(1.0)
    assert params.publish(module) == params.version == 2
    results = ctx.Queue()
    proc = ctx.Process(target=_pull_in_child, args=(params, results))
    proc.start()
    version, state = results.get(timeout=120)
    proc.join(timeout=30)
    assert version == 2
    for key, value in module.state_dict().items():
        np.testing.assert_array_equal(state[key], value.numpy())
    # a reader never blocks: while a publish holds the lock, the pull is skipped
    other = nn.Linear(3, 2)
    with params.lock:
        assert params.pull(other, 0) == 0
    assert params.pull(other, 0) == 2 and torch.equal(other.weight, module.weight)
    assert params.pull(other, 2) == 2  # nothing new


class FailingCorridor(CorridorEnv):
    """A corridor whose ``fail_at``-th step raises, or with ``exit_code`` ends its process."""

    def __init__(self, fail_at: int = 300, exit_code: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.fail_at, self.exit_code, self.steps = fail_at, exit_code, 0

    def step(self, action):
        self.steps += 1
        if self.steps >= self.fail_at:
            if self.exit_code:
                os._exit(self.exit_code)
            raise RuntimeError("the corridor collapsed")
        return super().step(action)


@pytest.mark.parametrize(
    "exit_code, message",
    [(0, "failed:(.|\n)*RuntimeError: the corridor collapsed"), (3, "died \\(exit code 3\\)")],
)
def test_sampler_failure_raises_and_leaves_no_process(tmp_path, exit_code, message):
    args = [*DQN_ARGS, "runner.n_steps=100000", f"env.kwargs.exit_code={exit_code}"]
    before = child_pids(os.getpid())
    with pytest.raises(AsyncSamplerError, match=message):
        train("dqn", "test_async_runner:FailingCorridor", args, root=tmp_path)
    assert child_pids(os.getpid()) <= before


@pytest.mark.slow
def test_checkpoint_and_resume(tmp_path):
    args = [*DQN_ARGS, "runner.save_replay=true", "runner.checkpoint_interval_steps=512", "runner.n_steps=1024"]
    run_dir, _ = train("dqn", "CartPole-v1", args, name="run", root=tmp_path)
    first = latest_state(run_dir)
    assert first["runner"]["cum_steps"] == 1024 and first["replay"]["whole"]["t"] == 1024 // B
    assert [p.name for p in Checkpointer(run_dir / "checkpoints").checkpoints()] == [
        "ckpt_0000000512.pt",
        "ckpt_0000001024.pt",
    ]
    _, row = train(resume=run_dir, overrides=["runner.n_steps=1536"])
    final = latest_state(run_dir)
    assert row["CumSteps"] == final["runner"]["cum_steps"] == 1536
    assert final["algo"]["updates"] == UPDATES_PER_BATCH * (1536 - 256 + T * B) // (T * B)
    assert final["replay"]["whole"]["t"] == 1536 // B  # the sampler continued the replay
    steps = [int(r["CumSteps"]) for r in read_progress(run_dir)]
    assert steps == sorted(set(steps)) and steps[-1] == 1536


@pytest.mark.slow
def test_ctrl_c_writes_checkpoint_and_closes_the_sampler(tmp_path):
    run_dir = tmp_path / "runs/CartPole-v1/dqn/long/seed0"
    args = ["train", "dqn", "-e", "CartPole-v1", "--runs-dir", "runs", "--name", "long", *DQN_ARGS]
    sampler: list[int] = []
    returncode, _, err = interrupt_after_rows(
        rlfleet_cmd(*args, "runner.n_steps=10000000"),
        tmp_path,
        run_dir,
        rows=2,
        before_interrupt=lambda pid: sampler.extend(child_pids(pid)),
    )
    assert sampler, "no sampler process"
    assert returncode == 130, err
    assert "checkpoint written" in err
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in sampler):
        assert time.monotonic() < deadline, "the sampler process outlived the run"
        time.sleep(0.1)
    state = latest_state(run_dir)
    assert state["runner"]["cum_steps"] >= 512 and state["runner"]["cum_steps"] % (T * B) == 0


def test_on_policy_algorithm_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"runner.kind=async runs off-policy algorithms .*; ppo is on-policy"):
        train("ppo", "CartPole-v1", ["runner.kind=async", *QUIET], root=tmp_path)
