"""EnvpoolStepper: Gymnasium's semantics (CartPole dynamics, terminated vs truncated, final
observations, trajectory statistics, no reset steps in batches), Box action rescaling, Atari
reward clipping, spaces, errors, resume, and PPO solving CartPole with ``sampler.kind=envpool``."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from conftest import QUIET, best_eval
from rlfleet.agents.pg import CategoricalPgAgent
from rlfleet.envs.envpool_envs import BOX2D_IDS, CLASSIC_CONTROL_IDS, MUJOCO_IDS, envpool_task
from rlfleet.envs.make import EnvConfig
from rlfleet.errors import ConfigError
from rlfleet.experiment import train
from rlfleet.models import CategoricalActorCriticModel
from rlfleet.samplers.sampler import Sampler

pytest.importorskip("envpool")
from rlfleet.samplers.envpool_stepper import EnvpoolStepper  # noqa: E402 - needs envpool


def _balancing_actions(obs: np.ndarray) -> np.ndarray:
    """A controller that keeps CartPole up for 500 steps (from most starts)."""
    x, x_dot, theta, theta_dot = obs.T
    return (theta + 0.3 * theta_dot + 0.01 * x + 0.1 * x_dot > 0).astype(np.int64)


def test_cartpole_steps_like_gymnasium():
    """Every transition equals Gymnasium's CartPole stepped from the same state with the same
    action: terminations, truncation at 500 (final observation kept, terminated false), the
    first step after a reset (no envpool reset step in between), and the trajectory records."""
    n_envs, gamma = 4, 0.99
    stepper = EnvpoolStepper(EnvConfig(id="CartPole-v1"), n_envs, discount=gamma)
    reference = gym.make("CartPole-v1").unwrapped
    reference.reset(seed=0)
    stepper.reset([0, 1, 2, 3])
    buf = stepper.buffers
    length = np.zeros(n_envs, int)
    expected, completed = [], []
    for t in range(1100):
        obs = buf.observation.copy()
        actions = _balancing_actions(obs)
        actions[2:] = t % 3 == 0  # envs 2 and 3 fall over: short terminated episodes
        stepper.step(actions)
        length += 1
        for b in range(n_envs):
            reference.state, reference.steps_beyond_terminated = obs[b].astype(np.float64), None
            next_obs, reward, terminated, _, _ = reference.step(int(actions[b]))
            truncated = length[b] == 500 and not terminated
            assert (buf.reward[b], buf.terminated[b], buf.truncated[b]) == (reward, terminated, truncated), (t, b)
            if truncated:
                np.testing.assert_allclose(buf.final_observation[b], next_obs, atol=1e-6)
            if terminated or truncated:
                assert np.all(np.abs(buf.observation[b]) <= 0.05)  # a new episode's first observation
                discounted = sum(gamma**k for k in range(length[b]))
                expected.append({"Return": float(length[b]), "Length": int(length[b]), "DiscountedReturn": discounted})
                length[b] = 0
            else:
                np.testing.assert_allclose(buf.observation[b], next_obs, atol=1e-6)
        completed += stepper.pop_completed()
    stepper.close()
    assert sum(r["Length"] == 500 for r in expected) >= 2 and len(expected) > 50
    assert [r["Length"] for r in completed] == [r["Length"] for r in expected]
    for got, want in zip(completed, expected):
        assert got["Return"] == want["Return"] and math.isclose(got["DiscountedReturn"], want["DiscountedReturn"])


def test_box_actions_rescaled_like_gym_env():
    """Pendulum's torque in [-2, 2] is presented as [-1, 1]: agent action a reaches the env as
    2a (clipped), exactly as with rlfleet's Gymnasium adapter."""
    stepper = EnvpoolStepper(EnvConfig(id="Pendulum-v1"), 3)
    action_space = stepper.env_spaces.action
    assert action_space.shape == (1,) and np.all(action_space.low == -1) and np.all(action_space.high == 1)
    reference = gym.make("Pendulum-v1").unwrapped
    reference.reset(seed=0)
    stepper.reset([0, 1, 2])
    actions = np.array([[1.0], [0.5], [-3.0]], np.float32)  # torques 2, 1, -2 (clipped)
    for _ in range(5):
        obs = stepper.buffers.observation.copy()
        stepper.step(actions)
        for b, torque in enumerate([2.0, 1.0, -2.0]):
            cos, sin, theta_dot = obs[b].astype(np.float64)
            reference.state = np.array([math.atan2(sin, cos), theta_dot])
            next_obs, reward, *_ = reference.step(np.array([torque]))
            np.testing.assert_allclose(stepper.buffers.observation[b], next_obs, atol=1e-4)
            assert stepper.buffers.reward[b] == pytest.approx(reward, abs=1e-4)
    stepper.close()


def test_atari_options_clipped_rewards_and_raw_scores():
    """ALE ids run as envpool's game with rlfleet's preprocessing; training rewards are clipped
    to their sign while trajectory statistics keep the game score; the frame cap truncates."""
    task = envpool_task(EnvConfig(id="ALE/SpaceInvaders-v5"))
    assert task.task_id == "SpaceInvaders-v5" and task.clip_reward
    assert task.kwargs["repeat_action_probability"] == 0.25 and task.kwargs["max_episode_steps"] == 108_000 // 4
    assert (task.kwargs["stack_num"], task.kwargs["frame_skip"], task.kwargs["img_height"]) == (4, 4, 84)
    assert not task.kwargs["episodic_life"] and not task.kwargs["use_fire_reset"] and not task.kwargs["reward_clip"]
    assert not envpool_task(EnvConfig(id="ALE/SpaceInvaders-v5"), training=False).clip_reward

    stepper = EnvpoolStepper(EnvConfig(id="ALE/SpaceInvaders-v5", max_episode_steps=800), 2)  # 800 frames
    stepper.reset([0, 1])
    first = stepper.buffers.observation
    assert first.shape == (2, 4, 84, 84) and first.dtype == np.uint8
    assert np.array_equal(first[:, 0], first[:, 3])  # the stack starts as copies of the reset frame
    rng = np.random.default_rng(0)
    clipped = np.zeros(2)
    for t in range(200):
        previous = stepper.buffers.observation.copy()
        stepper.step(rng.integers(0, 6, 2))
        assert set(np.unique(stepper.buffers.reward)) <= {0.0, 1.0}
        clipped += stepper.buffers.reward
        if t < 199:  # frames shift by one, the newest last (as Gymnasium's FrameStackObservation)
            np.testing.assert_array_equal(stepper.buffers.observation[:, :-1], previous[:, 1:])
    assert stepper.buffers.truncated.all() and not stepper.buffers.terminated.any()  # 200 steps of 4 frames
    records = stepper.pop_completed()
    stepper.close()
    assert [r["Length"] for r in records] == [200, 200]
    assert all(r["Return"] > c > 0 for r, c in zip(records, clipped))  # invaders score 5 to 30 points


ATARI_IDS = ("ALE/Pong-v5", "ALE/Breakout-v5")


@pytest.mark.parametrize("env_id", CLASSIC_CONTROL_IDS + BOX2D_IDS + MUJOCO_IDS + ATARI_IDS)
def test_spaces_match_gymnasium(env_id):
    """The stepper checks envpool's spaces against rlfleet's own env's on construction."""
    for package, ids in (("Box2D", BOX2D_IDS), ("mujoco", MUJOCO_IDS), ("ale_py", ATARI_IDS)):
        if env_id in ids:
            pytest.importorskip(package)
    EnvpoolStepper(EnvConfig(id=env_id), 2).close()


def test_unsupported_id_names_closest():
    with pytest.raises(ConfigError, match=r"does not support env 'LunarLander-v2'.*'LunarLander-v3'"):
        EnvpoolStepper(EnvConfig(id="LunarLander-v2"), 2)
    with pytest.raises(ConfigError, match=r"'ALE/Pong-v4'.*'ALE/Pong-v5'"):
        EnvpoolStepper(EnvConfig(id="ALE/Pong-v4"), 2)
    with pytest.raises(ConfigError, match="envpool rejected the options"):
        EnvpoolStepper(EnvConfig(id="CartPole-v1", kwargs={"no_such_option": 1}), 2)


def test_resume_restarts_episodes():
    """envpool envs cannot be saved: loading a sampler state resets them (and the previous
    action and reward), and says so."""
    sampler = Sampler(EnvpoolStepper(EnvConfig(id="CartPole-v1"), 4), 16)
    agent = CategoricalPgAgent(lambda spaces: CategoricalActorCriticModel(spaces.observation, spaces.action))
    agent.initialize(sampler.env_spaces, seed=0)
    sampler.initialize(agent, seed=0)
    sampler.obtain_samples()
    state = sampler.state_dict()
    sampler.obtain_samples()
    assert sampler.load_state_dict(state) is False
    assert np.all(np.abs(sampler.stepper.buffers.observation) <= 0.05)
    assert not sampler.prev_action.any() and not sampler.prev_reward.any()
    batch = sampler.obtain_samples()
    assert batch.samples.env.observation.shape == (16, 4, 4)
    assert torch.equal(batch.torch_samples.env.reward, torch.ones(16, 4))
    sampler.close()


@pytest.mark.slow
def test_ppo_solves_cartpole_with_envpool(tmp_path):
    budget = 100_000
    overrides = [*QUIET, "sampler.kind=envpool", f"runner.n_steps={budget}"]
    run_dir, _ = train("ppo", "CartPole-v1", overrides, seed=0, name="t", root=tmp_path)
    assert best_eval(run_dir, budget) >= 475
