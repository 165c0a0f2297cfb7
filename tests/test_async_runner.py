"""The asynchronous runner (``runner.kind=async``): replay ratio held, the shared-memory replay
holds what the sampler produced, weights reach the sampler, failures of the sampler process
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
from rlfleet.checkpoint import Checkpointer
from rlfleet.config.loader import resolve, validate
from rlfleet.errors import ConfigError
from rlfleet.build import build_experiment
from rlfleet.experiment import train
from rlfleet.replays.n_step import NStepReplayBuffer, StoredBatch, truncation_finals
from rlfleet.replays.prioritized import PrioritizedReplayBuffer
from rlfleet.runners.async_rl import AsyncSamplerError
from rlfleet.runners.async_worker import map_storage
from rlfleet.runners.shared_params import SharedParameters
from test_frame_replay import StackedEnvs, assert_same_samples

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


def test_shared_replay_holds_what_a_serial_sampler_produces(tmp_path):
    """With a behaviour policy that ignores the weights (epsilon 1), the async run stores the
    same transitions as the minibatch runner, PER priorities and truncations included, and
    (training on each batch exactly as the minibatch runner does) learns the same weights."""
    args = [
        *DQN_ARGS,
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
    sync, asynchronous = latest_state(sync_dir)["algo"], latest_state(async_dir)["algo"]
    a, b = sync["replay"], asynchronous["replay"]
    t = a["t"]
    assert t == b["t"] == 1024 // B
    for field in a["buffer"]._fields:
        np.testing.assert_array_equal(getattr(a["buffer"], field)[:t], getattr(b["buffer"], field)[:t], field)
    np.testing.assert_array_equal(a["observations"]["observation"][:t], b["observations"]["observation"][:t])
    assert a["buffer"].truncated[:t].any() and a["final_observation"].keys() == b["final_observation"].keys()
    for key, final in a["final_observation"].items():
        np.testing.assert_array_equal(final, b["final_observation"][key])
    assert sync["updates"] == asynchronous["updates"] > 0
    for key, value in latest_state(sync_dir)["agent"]["model"].items():
        assert torch.equal(value, latest_state(async_dir)["agent"]["model"][key]), key


def _arrays(storage) -> list[np.ndarray]:
    leaves: list[np.ndarray] = []
    map_storage(leaves.append, storage)
    return leaves


def assert_live_leaves_sampleable(replay: PrioritizedReplayBuffer) -> None:
    """PER leaves are positive exactly on the sampleable transitions (reserved rows at 0)."""
    first, last = replay.sampleable_rows()
    sampleable = ((np.arange(first, last + 1) % replay.T)[:, None] * replay.B + np.arange(replay.B)).ravel()
    live = np.flatnonzero(replay.tree.get(np.arange(replay.T * replay.B)) > 0)
    np.testing.assert_array_equal(live, np.sort(sampleable))


@pytest.mark.parametrize("frame_stack", [0, 3])
@pytest.mark.parametrize("replay_class", [NStepReplayBuffer, PrioritizedReplayBuffer])
def test_replay_written_by_another_writer_equals_appending(frame_stack, replay_class):
    """`store` by a writer + `append(StoredBatch)` by the reader == `append` of the batch (ring
    wrap-around, truncations, frame stacks); the reserved rows are kept out of sampling."""
    envs = StackedEnvs(B, 3, seed=1)
    batches = [envs.batch(4) for _ in range(12)]
    reference, reader = (replay_class(40, B, n_step=2, frame_stack=frame_stack) for _ in range(2))
    writer = NStepReplayBuffer(40, B, n_step=2, frame_stack=frame_stack)
    for batch in batches[:6]:  # held before attaching (past a ring wrap): copied into the shared ring
        reference.append(batch)
        reader.append(batch)
    writer.allocate(batches[0], share_memory=True)
    reader.attach(writer.storage(), reserved_rows=4)
    if replay_class is PrioritizedReplayBuffer:
        assert_live_leaves_sampleable(reader)
    for batch in batches[6:]:
        reference.append(batch)
        writer.store(reader.t, batch)
        reader.append(StoredBatch(4, truncation_finals(batch)))
    for a, b in zip(_arrays(reference.storage()), _arrays(reader.storage())):
        np.testing.assert_array_equal(a, b)
    assert reference.final_observation.keys() == reader.final_observation.keys()
    oldest, newest = reference.sampleable_rows()
    assert reader.sampleable_rows() == (oldest + 4, newest)
    rows = np.repeat(np.arange(oldest + 4, newest + 1) % reader.T, B)
    envs_b = np.tile(np.arange(B), len(rows) // B)
    assert_same_samples(reference.samples_at(rows, envs_b), reader.samples_at(rows, envs_b))
    if replay_class is PrioritizedReplayBuffer:
        assert_live_leaves_sampleable(reader)
    with pytest.raises(ValueError, match="too small"):
        NStepReplayBuffer(40, B, n_step=2).attach(writer.storage(), reserved_rows=18)


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


def test_checkpoint_and_resume(tmp_path):
    args = [*DQN_ARGS, "runner.save_replay=true", "runner.checkpoint_interval_steps=512", "runner.n_steps=1024"]
    run_dir, _ = train("dqn", "CartPole-v1", args, name="run", root=tmp_path)
    first = latest_state(run_dir)
    assert first["runner"]["cum_steps"] == 1024 and first["algo"]["replay"]["t"] == 1024 // B
    assert [p.name for p in Checkpointer(run_dir / "checkpoints").checkpoints()] == [
        "ckpt_0000000512.pt",
        "ckpt_0000001024.pt",
    ]
    _, row = train(resume=run_dir, overrides=["runner.n_steps=1536"])
    final = latest_state(run_dir)
    assert row["CumSteps"] == final["runner"]["cum_steps"] == 1536
    assert final["algo"]["updates"] == UPDATES_PER_BATCH * (1536 - 256 + T * B) // (T * B)
    assert final["algo"]["replay"]["t"] == 1536 // B  # the sampler continued the replay
    steps = [int(r["CumSteps"]) for r in read_progress(run_dir)]
    assert steps == sorted(set(steps)) and steps[-1] == 1536


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
    with pytest.raises(ConfigError, match="off-policy"):
        train("ppo", "CartPole-v1", ["runner.kind=async", *QUIET], root=tmp_path)
