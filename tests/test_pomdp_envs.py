"""Partially observable envs (`rlfleet.envs.pomdp`): the velocity-masked classic control ids of
rl-baselines3-zoo, POPGym and MiniGrid, built through rlfleet's env maker."""

from __future__ import annotations

import sys

import gymnasium as gym
import numpy as np
import pytest

from conftest import QUIET
from rlfleet.config.loader import env_suite
from rlfleet.config.schema import EnvConfig
from rlfleet.envs.make import check_env_id, make_env, own_time_limit, register_extra_envs
from rlfleet.envs.pomdp import NO_VEL_IDS, VELOCITY_INDICES, missing_package_message
from rlfleet.envs.spaces import Box, Discrete
from rlfleet.errors import ConfigError

# rl-baselines3-zoo's ids and the indices each one zeroes
ZOO_MASKS = {
    "CartPoleNoVel-v1": ("CartPole-v1", [1, 3]),
    "MountainCarNoVel-v0": ("MountainCar-v0", [1]),
    "MountainCarContinuousNoVel-v0": ("MountainCarContinuous-v0", [1]),
    "PendulumNoVel-v1": ("Pendulum-v1", [2]),
    "LunarLanderNoVel-v3": ("LunarLander-v3", [2, 3, 5]),
    "LunarLanderContinuousNoVel-v3": ("LunarLanderContinuous-v3", [2, 3, 5]),
}


def needs_box2d(base_id: str) -> None:
    if base_id.startswith("LunarLander"):
        pytest.importorskip("Box2D")


def test_the_ids_and_indices_are_the_zoos():
    assert {i: (b, list(VELOCITY_INDICES[b])) for i, b in NO_VEL_IDS.items()} == ZOO_MASKS


@pytest.mark.parametrize("env_id", sorted(ZOO_MASKS))
def test_no_vel_observation_is_the_base_one_with_velocities_zeroed(env_id):
    base_id, masked = ZOO_MASKS[env_id]
    needs_box2d(base_id)
    check_env_id(env_id)  # registers the NoVel ids
    env, base = gym.make(env_id), gym.make(base_id)
    assert env.spec.max_episode_steps == base.spec.max_episode_steps
    assert own_time_limit(env) == own_time_limit(base) == gym.spec(base_id).max_episode_steps
    assert env.observation_space == base.observation_space
    kept = [i for i in range(base.observation_space.shape[0]) if i not in masked]
    obs, _ = env.reset(seed=3)
    base_obs, _ = base.reset(seed=3)
    env.action_space.seed(3)
    velocities = []
    for _ in range(5):
        assert obs.dtype == base_obs.dtype
        assert np.all(obs[masked] == 0) and np.array_equal(obs[kept], base_obs[kept])
        velocities.append(base_obs[masked])
        action = env.action_space.sample()
        obs, reward, terminated, truncated, _ = env.step(action)
        base_obs, base_reward, base_terminated, base_truncated, _ = base.step(action)
        assert (reward, terminated, truncated) == (base_reward, base_terminated, base_truncated)
    assert np.any(np.asarray(velocities) != 0)  # the masked entries did hold something
    env.close()
    base.close()


def test_no_vel_through_rlfleet_keeps_the_time_limit():
    env = make_env(EnvConfig(id="CartPoleNoVel-v1"))
    assert env.spaces.observation == Box(
        env.observation_space.low, env.observation_space.high, np.dtype(np.float32)
    ) and isinstance(env.spaces.action, Discrete)
    assert own_time_limit(env.env) == 500
    obs = env.reset(seed=0)
    assert obs[1] == 0 and obs[3] == 0
    env.close()
    short = make_env(EnvConfig(id="CartPoleNoVel-v1", max_episode_steps=7))
    assert own_time_limit(short.env) == 7
    short.close()


def test_check_env_id_accepts_the_ids_and_suggests_the_closest():
    for env_id in ZOO_MASKS:
        check_env_id(env_id)
    with pytest.raises(ConfigError, match=r"unknown env id 'CartPoleNoVell-v1'; did you mean 'CartPoleNoVel-v1'\?"):
        check_env_id("CartPoleNoVell-v1")
    with pytest.raises(ConfigError, match="did you mean 'PendulumNoVel-v1'"):
        check_env_id("PendulumNoVel-v2")


def test_registration_is_lazy_by_id(monkeypatch):
    """A classic id imports neither POPGym nor MiniGrid (nor registers through them)."""
    calls = []
    monkeypatch.setattr("rlfleet.envs.pomdp._register_package", calls.append)
    register_extra_envs("CartPole-v1")
    register_extra_envs("CartPoleNoVel-v1")
    assert calls == []
    register_extra_envs("popgym-RepeatPreviousEasy-v0")
    register_extra_envs("MiniGrid-MemoryS7-v0")
    assert calls == ["popgym", "minigrid"]


@pytest.mark.parametrize(
    "env_id",
    [*ZOO_MASKS, "popgym-RepeatPreviousEasy-v0", "popgym-PositionOnlyCartPoleHard-v0", "MiniGrid-MemoryS7-v0"],
)
def test_env_suite_is_memory(env_id):
    assert env_suite(env_id) == "memory"


def test_env_suite_of_other_ids_is_unchanged():
    assert env_suite("CartPole-v1") == "classic"
    assert env_suite("CartPoleNoVell-v1") == "custom"


@pytest.mark.parametrize(
    ("module", "env_id", "extra"),
    [("popgym", "popgym-Nope-v0", "popgym"), ("minigrid", "MiniGrid-Nope-v0", "minigrid")],
)
def test_a_missing_package_names_its_extra(monkeypatch, module, env_id, extra):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    message = missing_package_message(env_id)
    assert message is not None and "\n" not in message
    assert message.endswith(f"pip install 'rlfleet[{extra}]'")
    with pytest.raises(ConfigError, match=rf"pip install 'rlfleet\[{extra}\]'"):
        check_env_id(env_id)
    assert missing_package_message("CartPole-v1") is None


def run_episode(env, rng: np.random.Generator, limit: int) -> int:
    env.reset(seed=0)
    for t in range(1, limit + 1):
        step = env.step(env.action_space.sample(rng))
        assert env.observation_space.low.shape == step.observation.shape
        assert step.observation.dtype == env.observation_space.dtype
        if step.terminated or step.truncated:
            return t
    raise AssertionError(f"no episode end in {limit} steps")


def test_popgym_env_through_make_env():
    pytest.importorskip("popgym")
    env = make_env(EnvConfig(id="popgym-RepeatPreviousEasy-v0"))
    # Discrete(4) cards -> one-hot float32 Box
    assert isinstance(env.spaces.observation, Box) and env.spaces.observation.shape == (4,)
    assert env.spaces.observation.dtype == np.float32
    assert env.spaces.action == Discrete(n=4)
    obs = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.sum() == 1 and set(np.unique(obs)) <= {0.0, 1.0}
    assert own_time_limit(env.env) == 51
    assert run_episode(env, np.random.default_rng(0), 200) == 51
    env.close()


@pytest.mark.filterwarnings("ignore:.*share an object")  # CountRecall reuses its info dict
def test_popgym_tuple_and_multidiscrete_observations_flatten():
    pytest.importorskip("popgym")
    for env_id, size in [("popgym-AutoencodeEasy-v0", 2 + 4), ("popgym-CountRecallEasy-v0", 2 + 2)]:
        env = make_env(EnvConfig(id=env_id))
        assert env.spaces.observation.shape == (size,) and env.spaces.observation.dtype == np.float32
        assert run_episode(env, np.random.default_rng(1), 1000) <= own_time_limit(env.env)
        env.close()


def test_minigrid_memory_env_through_make_env():
    pytest.importorskip("minigrid")
    env = make_env(EnvConfig(id="MiniGrid-MemoryS7-v0"))
    space = env.spaces.observation
    assert isinstance(space, Box) and space.shape == (3, 7, 7) and space.dtype == np.uint8
    assert env.spaces.action == Discrete(n=7)
    obs = env.reset(seed=0)
    assert obs.shape == (3, 7, 7) and obs.dtype == np.uint8 and obs.flags.c_contiguous
    raw = env.env.unwrapped.gen_obs()["image"]
    assert np.array_equal(obs, raw.transpose(2, 0, 1))
    assert own_time_limit(env.env) == env.env.unwrapped.max_steps == 245
    assert run_episode(env, np.random.default_rng(0), 300) <= 245
    env.close()


def test_minigrid_view_goes_through_the_small_image_encoder():
    pytest.importorskip("minigrid")
    import torch

    from rlfleet.models.encoder import Encoder

    env = make_env(EnvConfig(id="MiniGrid-MemoryS7-v0"))
    encoder = Encoder(env.spaces.observation, hidden_sizes=[64])
    assert encoder.image
    obs = torch.as_tensor(np.stack([env.reset(seed=s) for s in range(2)]))
    assert encoder(obs, batch=2).shape == (2, 64)
    env.close()


def test_ppo_trains_on_cartpole_no_vel_from_the_cli(tmp_path):
    from rlfleet.cli import main

    args = ["sampler.batch_T=64", "sampler.batch_B=2", "runner.eval_episodes=1", *QUIET]
    assert main(["train", "ppo", "-e", "CartPoleNoVel-v1", "--steps", "256", "--runs-dir", str(tmp_path), *args]) == 0
    assert list(tmp_path.glob("CartPoleNoVel-v1/ppo/*/seed0/progress.csv"))
