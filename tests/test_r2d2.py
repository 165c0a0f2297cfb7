"""R2D2 and recurrent DQN: the agent's stored state, training unrolls that replay what sampling
computed, the update's n-step double-Q targets through the value rescaling h, determinism, exact
resume in the middle of episodes, a memory task, and config errors."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from cli_helpers import rlfleet
from conftest import QUIET, assert_exact_resume, assert_same_model, eval_returns, latest_state
from rlfleet import load_agent
from rlfleet.algos.dqn.value_transform import h, h_inverse
from rlfleet.build import build_experiment
from rlfleet.config.loader import resolve, validate
from rlfleet.envs.make import make_env
from rlfleet.errors import ConfigError
from rlfleet.evaluate import load_run
from rlfleet.experiment import train
from rlfleet.models.core import episode_starts
from rlfleet.samplers.evaluation import evaluate_agent
from rlfleet.utils.buffers import map_buffer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = [
    "model.core_size=16",
    "model.hidden_sizes=[16]",
    "sampler.batch_T=16",
    "sampler.batch_B=4",
    "replay.size=4000",
    "replay.sequence_length=8",
    "replay.sequence_overlap=4",
    "replay.burn_in=4",
    "algo.n_step=3",
    "algo.batch_size=8",
    "algo.learning_starts=200",
    "algo.replay_ratio=4",
    "algo.target_update_interval=20",
    "agent.eps_steps=500",
    "runner.eval_interval_steps=0",
    *QUIET,
]


def experiment(algo: str, overrides: list[str], env: str = "CartPole-v1"):
    return build_experiment(validate(resolve(algo, env, [*SMALL, *overrides])))


def collect(exp, n_batches: int) -> list:
    """Sample ``n_batches`` batches, append each to the replay, return copies of them."""
    batches = []
    for _ in range(n_batches):
        exp.agent.sample_mode(0)
        samples = exp.sampler.obtain_samples().samples
        exp.replay.append(samples)
        batches.append(map_buffer(np.copy, samples))
    return batches


def test_stored_state_is_zero_at_episode_starts_and_unrolls_replay_sampling():
    """prev_rnn_state is zero exactly at the first step of every episode; unrolling the online
    network from the state stored at a batch start (resets inside) gives the Q-values computed
    while sampling; so does unrolling a replayed window from its stored start state, at every
    valid step."""
    exp = experiment("r2d2", ["env.max_episode_steps=20"])
    agent, B = exp.agent, exp.sampler.batch_B
    batches = collect(exp, 6)
    previous_done = torch.ones(B, dtype=torch.bool)  # the first step starts episodes
    n_starts = 0
    agent.train_mode(0)
    for samples in batches:
        s = map_buffer(torch.from_numpy, samples)
        done = s.env.terminated | s.env.truncated
        starts = torch.cat([previous_done.unsqueeze(0), done[:-1]])
        previous_done = done[-1]
        norm = s.agent.agent_info.prev_rnn_state.abs().sum(-1)
        assert (norm[starts] == 0).all() and (norm[~starts] > 0).all()
        n_starts += int(starts.sum())
        with torch.no_grad():
            q, _ = agent(
                s.env.observation,
                s.agent.prev_action,
                s.env.prev_reward,
                s.agent.agent_info.prev_rnn_state[0],
                episode_starts(done),
            )
        torch.testing.assert_close(q, s.agent.agent_info.q, rtol=0, atol=1e-5)
    assert n_starts > 10
    # replayed windows: every window of every env, unrolled from its stored start state
    q_all = np.concatenate([b.agent.agent_info.q for b in batches])  # [T_total, B, A]
    replay = exp.replay
    first, last = replay.live_windows()
    k = np.repeat(np.arange(first, last + 1), B)
    env = np.tile(np.arange(B), last - first + 1)
    batch = replay.sequences_at(k, env)
    s, N = batch.samples, len(k)
    with torch.no_grad():
        q, _ = agent(*s.agent_inputs[:, :N], batch.start_state[:N], s.episode_start[:, :N])
    expected = torch.from_numpy(
        np.stack([q_all[kk * replay.period : kk * replay.period + replay.window, b] for kk, b in zip(k, env)], 1)
    )
    valid = s.valid[:, :N]
    torch.testing.assert_close(q[valid], expected[valid], rtol=0, atol=1e-5)
    assert valid.all(0).any() and not valid.all()  # windows whose burn-in crosses an episode start
    assert batch.return_.shape[1] < s.action.shape[1]  # truncations (20-step limit) gave truncation columns
    exp.close()


def reference_td(exp, batch):
    """The update's per-step TD errors, written out step by step: both networks burn in from the
    stored state, then ``y = h(R + discount * h^-1(Q_target(s', argmax_a Q(s', a))))``."""
    agent, b, eps = exp.agent, batch.samples, exp.algo.config.value_transform_eps
    inputs, starts, burn = b.samples.agent_inputs, b.samples.episode_start, b.burn_in
    with torch.no_grad():
        _, online = agent(*inputs[:burn], b.start_state, starts[:burn])
        _, target = agent.target(*inputs[:burn], b.start_state, starts[:burn])
        q, _ = agent(*inputs[burn:], online, starts[burn:])
        q_target, _ = agent.target(*inputs[burn:], target, starts[burn:])
    L, N = b.return_.shape
    td = torch.zeros(L, N)
    double_differs = False
    for i in range(L):
        for n in range(N):
            t, c = int(b.bootstrap_t[i, n]) - burn, int(b.bootstrap_b[i, n])
            a_star = int(q[t, c].argmax())
            double_differs |= a_star != int(q_target[t, c].argmax())
            y = h(b.return_[i, n] + b.discount[i, n] * h_inverse(q_target[t, c, a_star], eps), eps)
            td[i, n] = y - q[i, n, int(b.samples.action[burn + i, n])]
    return td * b.samples.valid[burn : burn + L, :N], double_differs


def test_update_targets_are_double_q_through_h():
    exp = experiment("r2d2", ["env.max_episode_steps=20"])
    collect(exp, 6)
    with torch.no_grad():  # a target network unlike the online one, so that double Q matters
        for p in exp.agent.target_model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    exp.agent.train_mode(0)
    batch = exp.replay.sample_batch(16, env_steps=0)
    expected, double_differs = reference_td(exp, batch)
    assert double_differs
    td, diagnostics = exp.algo.gradient_step(batch.samples, batch.weights)
    torch.testing.assert_close(td, expected, rtol=1e-5, atol=1e-5)
    loss = (batch.weights * (0.5 * expected.square()).sum(0)).mean()  # summed over time, weighted mean
    torch.testing.assert_close(diagnostics["loss"], loss, rtol=1e-5, atol=1e-6)
    exp.close()


def test_rdqn_starts_from_zero_state_without_burn_in():
    """rdqn's defaults: no burn-in, and the stored start state is ignored (zeros instead)."""
    assert validate(resolve("rdqn", "CartPole-v1")).replay.burn_in == 0
    exp = experiment("rdqn", ["replay.burn_in=0"])
    assert exp.algo.config.stored_state is False and exp.replay.burn_in == 0
    collect(exp, 4)
    exp.agent.train_mode(0)
    batch = exp.replay.sample_batch(8, env_steps=0)
    assert batch.samples.start_state.abs().sum() > 0  # stored, but not used
    agent_state, algo_state = copy.deepcopy(exp.agent.state_dict()), copy.deepcopy(exp.algo.state_dict())
    td, _ = exp.algo.gradient_step(batch.samples, batch.weights)
    exp.agent.load_state_dict(agent_state)
    exp.algo.load_state_dict(algo_state)
    zero = batch.samples._replace(start_state=torch.zeros_like(batch.samples.start_state))
    td_zero, _ = exp.algo.gradient_step(zero, batch.weights)
    torch.testing.assert_close(td, td_zero, rtol=0, atol=0)
    exp.close()


RUN = [*SMALL, "runner.log_interval_steps=128", "runner.eval_interval_steps=256", "runner.eval_episodes=2"]


def test_same_seed_same_parameters(tmp_path):
    a, _ = train("r2d2", "CartPole-v1", [*RUN, "runner.n_steps=640"], name="a", root=tmp_path)
    b, _ = train("r2d2", "CartPole-v1", [*RUN, "runner.n_steps=640"], name="b", root=tmp_path)
    assert latest_state(a)["algo"]["updates"] > 0
    assert_same_model(a, b)


def test_exact_resume_mid_episode(tmp_path):
    """N steps in one go == N/2 steps, then resume to N (whole replay saved): the checkpoint is
    taken with episodes in flight, so the agent's sampling state must come back exactly."""
    n = 1024
    common = [*RUN, "runner.save_replay=true"]
    full, _ = train("r2d2", "CartPole-v1", [*common, f"runner.n_steps={n}"], name="full", root=tmp_path)
    half, _ = train("r2d2", "CartPole-v1", [*common, f"runner.n_steps={n // 2}"], name="half", root=tmp_path)
    state = latest_state(half)
    assert state["agent"]["rnn_states"]["sample"].abs().sum(-1).gt(0).any()  # envs in the middle of an episode
    assert "whole" in state["replay"]
    train(resume=half, overrides=[f"runner.n_steps={n}"])
    assert_exact_resume(full, half, n)


def recording(agent) -> list:
    """Record the inputs of every ``agent.step`` call (observation, prev_action, prev_reward)."""
    calls, step = [], agent.step

    def recorded(observation, prev_action, prev_reward):
        calls.append([torch.as_tensor(x).double().reshape(-1).numpy() for x in (observation, prev_action, prev_reward)])
        return step(observation, prev_action, prev_reward)

    agent.step = recorded
    return calls


def test_load_agent_feeds_previous_action_and_reward_as_evaluation_does(tmp_path):
    """R2D2's core reads the previous action and reward: ``load_agent(run).act(obs, reward=r)``
    with ``reset()`` at episode ends gives the agent the inputs the evaluator gives it, step for
    step (the last action, the last reward, both zero at an episode's first step)."""
    # epsilon 0.5 in evaluation (the same draws on both paths: one checkpointed eval generator), so
    # that both actions occur
    run, _ = train("r2d2", "CartPole-v1", [*RUN, "runner.n_steps=640", "agent.eps_eval=0.5"], name="la", root=tmp_path)
    loaded = load_run(run)
    loaded.agent.eval_mode(0)
    expected = recording(loaded.agent)
    env = make_env(loaded.config.env, training=False)
    evaluate_agent(loaded.agent, [env], 2, seed=7, max_episode_steps=30)
    env.close()
    loaded.close()

    policy = load_agent(run)
    actual = recording(policy.agent)
    gym_env = gym.make("CartPole-v1")
    obs, _ = gym_env.reset(seed=7)
    for _ in range(2):
        reward, length, done = None, 0, False
        while not done:
            obs, reward, terminated, truncated, _ = gym_env.step(policy.act(obs, reward=reward))
            length += 1
            done = terminated or truncated or length == 30
        policy.reset()
        obs, _ = gym_env.reset()
    assert len(actual) == len(expected) > 2
    for i, (a, e) in enumerate(zip(actual, expected)):
        for name, x, y in zip(("observation", "prev_action", "prev_reward"), a, e):
            np.testing.assert_allclose(x, y, rtol=1e-6, err_msg=f"step {i}: {name}")
    assert {float(e[1][0]) for e in expected} == {0.0, 1.0} and {float(e[2][0]) for e in expected} == {0.0, 1.0}


def test_async_runner_stores_the_sampler_process_state(tmp_path):
    """runner.kind=async: the sampler process's agent keeps the per-env state; the replay in the
    main process holds, at every window start, zero exactly where an episode starts there."""
    run, _ = train(
        "r2d2",
        "CartPole-v1",
        [*RUN, "runner.kind=async", "runner.save_replay=true", "runner.n_steps=1024"],
        name="async",
        root=tmp_path,
    )
    state = latest_state(run)
    assert state["algo"]["updates"] > 0
    replay = state["replay"]["whole"]
    T_ring, period, t = replay["buffer"].terminated.shape[0], 4, replay["t"]
    assert t >= 1024 // 4 and t < T_ring  # the ring has not wrapped: every step is still there
    done = replay["buffer"].terminated | replay["buffer"].truncated  # [T_ring, B]
    starts = np.concatenate([np.ones((1, done.shape[1]), bool), done[: t - 1]])  # the first step starts episodes
    n_slots = replay["start_state"].shape[0]
    for k in range(0, (t - 1) // period + 1):
        norm = replay["start_state"][k % n_slots].abs().sum(-1).numpy()  # [B]
        np.testing.assert_array_equal(norm == 0, starts[k * period], err_msg=f"window {k}")


@pytest.mark.slow
def test_r2d2_learns_a_memory_task(tmp_path):
    """CueRecall (tests/memory_envs.py, delay 4): the cue is shown at the first step only and must
    be named at the query five steps later. A uniformly random policy averages 0 (measured:
    -0.001 +- 0.022 over 2,000 episodes) and no memoryless policy beats 0; R2D2 reaches >= 0.9
    (95% correct over 20 greedy evaluation episodes) within 5,000 steps (seeds 0-5 reach 1.0 by
    4,032 steps, about 11 s here)."""
    overrides = [
        "model.core_size=32",
        "model.hidden_sizes=[32]",
        "sampler.batch_T=16",
        "sampler.batch_B=4",
        "replay.size=8000",
        "replay.sequence_length=8",
        "replay.sequence_overlap=4",
        "replay.burn_in=4",
        "algo.n_step=3",
        "algo.gamma=0.9",
        "algo.lr=0.001",
        "algo.batch_size=32",
        "algo.replay_ratio=32",
        "algo.learning_starts=500",
        "algo.target_update_interval=50",
        "agent.eps_steps=2000",
        "agent.eps_end=0.1",
        "runner.n_steps=5000",
        "runner.eval_interval_steps=1000",
        "runner.log_interval_steps=1000",
        "runner.eval_episodes=20",
        "runner.eval_envs=4",
        *QUIET,
    ]
    run, _ = train("r2d2", "memory_envs:CueRecall", overrides, root=tmp_path)
    returns = eval_returns(run)
    assert returns[0] < 0.9  # the untrained agent
    assert returns[-1] >= 0.9, returns


def test_config_errors():
    with pytest.raises(ConfigError, match="model.core=none leaves it without memory"):
        validate(resolve("r2d2", "CartPole-v1", ["model.core=none"]))
    with pytest.raises(ConfigError, match="replay.kind=uniform does not train rdqn"):
        validate(resolve("rdqn", "CartPole-v1", ["replay.kind=uniform"]))
    with pytest.raises(ConfigError, match="replay.kind=sequence does not train c51"):
        validate(resolve("c51", "CartPole-v1", ["replay.kind=sequence"]))
    with pytest.raises(ConfigError, match="dqn trains on replay.kind=sequence only with algo.target=retrace"):
        validate(resolve("dqn", "CartPole-v1", ["replay.kind=sequence"]))
    with pytest.raises(ConfigError, match="sampler.kind=alternating"):
        validate(resolve("r2d2", "CartPole-v1", ["sampler.kind=alternating"]))
    with pytest.raises(ConfigError, match="runner.kind=data_parallel"):
        validate(resolve("r2d2", "CartPole-v1", ["runner.kind=data_parallel"]))
    assert validate(resolve("r2d2", "CartPole-v1", ["model.core=gru"])).model["core"] == "gru"


def test_model_core_none_cli_is_one_line(tmp_path):
    out = rlfleet("train", "r2d2", "-e", "CartPole-v1", "model.core=none", cwd=tmp_path)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlfleet: error: r2d2 trains a recurrent Q-network"), out.stderr
    assert not (tmp_path / "runs").exists()
