"""``rlfleet.load_agent``: a trained run as a policy acting on raw Gymnasium observations."""

from __future__ import annotations

import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from conftest import QUIET
from rlfleet import load_agent
from rlfleet.envs.make import make_env
from rlfleet.errors import RlfleetError
from rlfleet.evaluate import evaluate_run, load_run
from rlfleet.experiment import train
from rlfleet.utils.buffers import buffer_from_example

README = Path(__file__).resolve().parents[1] / "README.md"
TINY = ["runner.n_steps=512", "runner.eval_interval_steps=0", "runner.checkpoint_interval_steps=512", *QUIET]
PPO_TINY = ["sampler.batch_T=32", "sampler.batch_B=4", "algo.minibatch_size=32", "algo.epochs=2", *TINY]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def cartpole(root):
    return train("ppo", "CartPole-v1", PPO_TINY, seed=0, name="la", root=root)[0]


@pytest.fixture(scope="module")
def cartpole_norm(root):
    return train("ppo", "CartPole-v1", [*PPO_TINY, "env.normalize_obs=true"], seed=0, name="norm", root=root)[0]


@pytest.fixture(scope="module")
def pendulum(root):
    return train("ppo", "Pendulum-v1", PPO_TINY, seed=0, name="la", root=root)[0]


def agent_action(run, obs):
    """The action the evaluator's agent takes for ``[N, ...]`` raw observations (torch)."""
    if run.obs_normalizer is not None:
        obs = run.obs_normalizer(obs, update=False)
    n = len(obs)
    prev = torch.from_numpy(buffer_from_example(run.agent.env_spaces.action.null_value(), (n,)))
    return run.agent.step(torch.from_numpy(obs), prev, torch.zeros(n)).action.numpy()


def observations(env_id, n, seed=0):
    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    out = []
    for _ in range(n):
        out.append(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    return np.stack(out)


def test_cartpole_discrete_actions_and_batch(cartpole):
    policy = load_agent(cartpole)
    obs = observations("CartPole-v1", 16)
    actions = [policy.act(o) for o in obs]
    assert all(type(a) is int and a in (0, 1) for a in actions)
    batch = policy.act(obs)
    assert batch.shape == (16,) and batch.tolist() == actions
    run = load_run(cartpole)
    try:
        assert agent_action(run, obs.astype(np.float32)).tolist() == actions
    finally:
        run.close()
    sampled = policy.act(obs, deterministic=False)
    assert sampled.shape == (16,) and set(sampled.tolist()) <= {0, 1}
    assert [policy.act(o) for o in obs] == actions  # back to deterministic


def test_act_matches_rlfleet_eval(cartpole):
    """The same episodes as ``rlfleet eval`` (its env seeds: 12346, then unseeded resets)."""
    expected = evaluate_run(cartpole, episodes=3)
    policy = load_agent(cartpole)
    env = gym.make("CartPole-v1")
    returns = []
    obs, _ = env.reset(seed=12_345 + 1)
    for _ in range(3):
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy.act(obs))
            total += reward
            done = terminated or truncated
        returns.append(total)
        obs, _ = env.reset()
    assert np.mean(returns) == pytest.approx(expected["mean"])
    assert min(returns) == expected["min"] and max(returns) == expected["max"]


def test_pendulum_box_actions_in_env_bounds(pendulum):
    policy = load_agent(pendulum, device="cpu")
    obs = observations("Pendulum-v1", 32)
    run = load_run(pendulum)
    try:
        agent_actions = agent_action(run, obs.astype(np.float32))
    finally:
        run.close()
    env = make_env(run.config.env, training=False)
    expected = np.stack([env.env_action(a) for a in agent_actions])
    env.close()
    single = np.stack([policy.act(o) for o in obs])
    batch = policy.act(obs)
    assert single.shape == batch.shape == (32, 1)
    np.testing.assert_array_equal(batch, expected)  # the same [32] forward pass
    np.testing.assert_allclose(single, expected, rtol=0, atol=1e-6)  # [1] passes: float rounding only
    assert np.all(np.abs(batch) <= 2.0) and np.all(np.isfinite(batch))
    np.testing.assert_array_equal(expected, np.clip(2.0 * np.clip(agent_actions, -1, 1), -2, 2).astype(np.float32))
    sampled = policy.act(obs, deterministic=False)
    assert sampled.shape == (32, 1) and np.all(np.abs(sampled) <= 2.0)


def test_normalize_obs_applied(cartpole_norm):
    policy = load_agent(cartpole_norm)
    assert policy.obs_normalizer is not None and policy.obs_normalizer.stats.count > 1  # the saved statistics
    obs = observations("CartPole-v1", 64).astype(np.float32)
    normed = policy.obs_normalizer(obs, update=False)
    prev = torch.zeros(len(obs), dtype=torch.int64)
    expected = policy.agent.step(torch.from_numpy(normed), prev, torch.zeros(len(obs))).action.numpy()
    count = policy.obs_normalizer.stats.count
    assert policy.act(obs).tolist() == expected.tolist()
    assert policy.obs_normalizer.stats.count == count  # frozen
    raw = policy.agent.step(torch.from_numpy(obs), prev, torch.zeros(len(obs))).action.numpy()
    assert not np.array_equal(normed, obs) and raw.shape == expected.shape


def test_bad_directory_and_checkpoint(tmp_path, cartpole):
    with pytest.raises(RlfleetError, match="is not a run directory") as info:
        load_agent(tmp_path)
    assert "\n" not in str(info.value)
    empty = tmp_path / "run"
    empty.mkdir()
    (empty / "config.yaml").write_text((cartpole / "config.yaml").read_text())
    with pytest.raises(RlfleetError, match="no checkpoint in"):
        load_agent(empty)
    bad = tmp_path / "bad.pt"
    good = sorted((cartpole / "checkpoints").glob("ckpt_*.pt"))[-1].read_bytes()
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(RlfleetError, match="corrupt or truncated") as info:
        load_agent(cartpole, checkpoint=bad)
    assert "\n" not in str(info.value)
    with pytest.raises(RlfleetError, match="does not exist"):
        load_agent(cartpole, checkpoint=tmp_path / "missing.pt")
    policy = load_agent(cartpole)
    with pytest.raises(RlfleetError, match="shape"):
        policy.act(np.zeros(3))


def test_readme_snippet_runs(cartpole):
    text = README.read_text()
    python = text[text.index("## Python") :]
    snippets = [s for s in re.findall(r"```python\n(.*?)```", python, re.S) if "load_agent" in s]
    assert snippets, "README's Python section has no load_agent snippet"
    code = snippets[0].replace('"runs/CartPole-v1/ppo/x/seed0"', repr(str(cartpole)))
    assert repr(str(cartpole)) in code
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the README's own example
    assert namespace["total"] >= 1
