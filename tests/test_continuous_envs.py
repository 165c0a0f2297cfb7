"""Continuous control: Box actions rescaled to [-1, 1] by GymEnv, Gymnasium MuJoCo v5 ids and
DeepMind Control ``dmc:<domain>-<task>`` ids through make_env."""

import functools
import importlib.util
import sys

import gymnasium as gym
import numpy as np
import pytest

from rlfleet.config.loader import env_suite
from rlfleet.envs.dmc import FlattenDictObservation
from rlfleet.envs.gym_env import GymEnv
from rlfleet.envs.make import EnvConfig, check_env_id, make_env
from rlfleet.envs.spaces import Box
from rlfleet.errors import ConfigError


class RecordingBoxEnv(gym.Env):
    """Records the actions it receives; Box actions with the given bounds."""

    def __init__(self, low, high, dtype=np.float32):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Box(np.array(low, dtype), np.array(high, dtype), dtype=dtype)
        self.received = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.received.append(action)
        return np.zeros(2, np.float32), 0.0, False, False, {}


def _sent(env: GymEnv, action) -> np.ndarray:
    """What the wrapped env receives for an agent action."""
    env.step(np.asarray(action, np.float32))
    return env.env.received[-1]


# ---------------------------------------------------------------- action rescaling


def test_asymmetric_box_rescaled_to_unit_box():
    env = GymEnv(RecordingBoxEnv(low=[0.0, -2.0], high=[1.0, 6.0]))
    for space in (env.action_space, env.spaces.action):
        assert isinstance(space, Box) and space.shape == (2,) and space.dtype == np.float32
        np.testing.assert_array_equal(space.low, [-1, -1])
        np.testing.assert_array_equal(space.high, [1, 1])
    env.reset()
    np.testing.assert_array_equal(_sent(env, [-1, -1]), [0.0, -2.0])  # low
    np.testing.assert_array_equal(_sent(env, [1, 1]), [1.0, 6.0])  # high
    np.testing.assert_array_equal(_sent(env, [0, 0]), [0.5, 2.0])  # midpoint
    np.testing.assert_array_equal(_sent(env, [0.5, -0.5]), [0.75, 0.0])  # low + (a + 1) / 2 * (high - low)
    # Outside [-1, 1]: clipped first, so the env never sees an action out of its bounds.
    np.testing.assert_array_equal(_sent(env, [-3.0, 7.5]), [0.0, 6.0])
    sent = _sent(env, [2.0, -1.5])
    np.testing.assert_array_equal(sent, [1.0, -2.0])
    assert sent.dtype == np.float32 and env.env.action_space.contains(sent)


def test_float64_env_gets_float64_actions():
    env = GymEnv(RecordingBoxEnv(low=[-0.5], high=[0.5], dtype=np.float64))
    assert env.action_space.dtype == np.float32
    env.reset()
    sent = _sent(env, [1.0])
    assert sent.dtype == np.float64 and sent.tolist() == [0.5]


def test_unbounded_box_unchanged_and_half_bounded_dims_only_clipped():
    inner = RecordingBoxEnv(low=[-np.inf], high=[np.inf], dtype=np.float64)
    env = GymEnv(inner)
    assert env.action_space.dtype == np.float64 and np.isinf(env.action_space.low).all()
    env.reset()
    assert _sent(env, [5.0]).tolist() == [5.0]

    # Dimension 0 is bounded (rescaled), 1 has only a lower bound (clipped), 2 is free.
    env = GymEnv(RecordingBoxEnv(low=[0.0, 1.0, -np.inf], high=[4.0, np.inf, np.inf]))
    np.testing.assert_array_equal(env.action_space.low, [-1, 1, -np.inf])
    np.testing.assert_array_equal(env.action_space.high, [1, np.inf, np.inf])
    env.reset()
    np.testing.assert_array_equal(_sent(env, [0.5, -3.0, -7.0]), [3.0, 1.0, -7.0])
    np.testing.assert_array_equal(_sent(env, [9.0, 3.0, 7.0]), [4.0, 3.0, 7.0])


def test_pendulum_torque_from_unit_action():
    env = make_env(EnvConfig(id="Pendulum-v1"))
    np.testing.assert_array_equal(env.spaces.action.low, [-1])
    np.testing.assert_array_equal(env.spaces.action.high, [1])
    assert env.spaces.action.dtype == np.float32
    env.reset(seed=0)
    pendulum = env.env.unwrapped
    env.step(np.array([1.0], np.float32))
    assert pendulum.last_u == pytest.approx(2.0)  # max_torque
    env.step(np.array([-0.25], np.float32))
    assert pendulum.last_u == pytest.approx(-0.5)
    env.step(np.array([3.0], np.float32))
    assert pendulum.last_u == pytest.approx(2.0)
    env.close()


# ---------------------------------------------------------------- Gymnasium MuJoCo v5

needs_mujoco = pytest.mark.skipif(importlib.util.find_spec("mujoco") is None, reason="needs mujoco")


@needs_mujoco
@pytest.mark.parametrize(
    "env_id, obs_size, action_size, action_high",
    [("HalfCheetah-v5", 17, 6, 1.0), ("Hopper-v5", 11, 3, 1.0), ("Humanoid-v5", 348, 17, 0.4)],
)
def test_mujoco_v5_steps(env_id, obs_size, action_size, action_high, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo writes MUJOCO_LOG.TXT into the working directory
    assert env_suite(env_id) == "mujoco"
    check_env_id(env_id)
    env = make_env(EnvConfig(id=env_id))
    spaces = env.spaces
    assert spaces.observation.shape == (obs_size,) and spaces.observation.dtype == np.float32
    assert spaces.action.shape == (action_size,) and spaces.action.dtype == np.float32
    assert (spaces.action.low == -1).all() and (spaces.action.high == 1).all()
    np.testing.assert_allclose(env.env_action(np.ones(action_size)), action_high, rtol=1e-6)
    obs = env.reset(seed=0)
    assert obs.shape == (obs_size,) and obs.dtype == np.float32
    rng = np.random.default_rng(0)
    for _ in range(5):
        step = env.step(spaces.action.sample(rng))
        assert step.observation.dtype == np.float32 and np.isfinite(step.reward)
    env.close()


# ---------------------------------------------------------------- DeepMind Control


@functools.cache
def _dmc_unusable() -> str:
    """Why the dmc tests cannot run here ('' when they can)."""
    try:
        from dm_control import suite
    except ImportError:
        return "needs dm_control (pip install 'rlfleet[dmc]')"
    if importlib.util.find_spec("shimmy") is None:
        return "needs shimmy (pip install 'rlfleet[dmc]')"
    try:
        suite.load("cheetah", "run").close()
    except AttributeError as err:  # dm_control 1.0.50 on mujoco 4.0: MjModel fields it reads were removed
        return f"dm_control cannot load a task with this mujoco (rlfleet[dmc] pins mujoco<4): {err}"
    return ""


@pytest.fixture
def dmc(tmp_path, monkeypatch):
    """Skips where DMC cannot run; MuJoCo's MUJOCO_LOG.TXT goes to a temporary directory."""
    reason = _dmc_unusable()
    if reason:
        pytest.skip(reason)
    monkeypatch.chdir(tmp_path)


def test_dmc_suite_name_needs_no_dm_control():
    assert env_suite("dmc:cheetah-run") == "dmc"
    assert env_suite("dmc:walker-walk") == "dmc"


def test_flatten_dict_observation_sorted_keys_and_scalars():
    class DictEnv(gym.Env):
        observation_space = gym.spaces.Dict(
            {
                "velocity": gym.spaces.Box(-np.inf, np.inf, (2,), np.float64),
                "height": gym.spaces.Box(-np.inf, np.inf, (), np.float64),
                "angles": gym.spaces.Box(-1.0, 1.0, (2, 2), np.float64),
            }
        )
        action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float64)

        def reset(self, *, seed=None, options=None):
            obs = {"velocity": np.array([5.0, 6.0]), "height": np.float64(4.0), "angles": np.arange(4.0).reshape(2, 2)}
            return obs, {}

    env = FlattenDictObservation(DictEnv())
    assert env.keys == ("angles", "height", "velocity")
    assert env.observation_space.shape == (7,) and env.observation_space.dtype == np.float32
    np.testing.assert_array_equal(env.observation_space.low[:5], [-1, -1, -1, -1, -np.inf])
    obs, _ = env.reset()
    assert obs.dtype == np.float32
    np.testing.assert_array_equal(obs, [0, 1, 2, 3, 4, 5, 6])


def test_dmc_cheetah_run_flat_obs_and_truncates_at_1000(dmc):
    check_env_id("dmc:cheetah-run")
    env = make_env(EnvConfig(id="dmc:cheetah-run"))
    spaces = env.spaces
    assert spaces.observation.shape == (17,) and spaces.observation.dtype == np.float32  # position 8 + velocity 9
    assert spaces.action.shape == (6,) and (spaces.action.low == -1).all() and (spaces.action.high == 1).all()
    obs = env.reset(seed=3)
    assert obs.shape == (17,) and obs.dtype == np.float32
    np.testing.assert_array_equal(env.reset(seed=3), obs)  # seeded resets repeat
    rng = np.random.default_rng(0)
    for t in range(1, 1001):
        step = env.step(spaces.action.sample(rng))
        assert step.observation.shape == (17,) and step.observation.dtype == np.float32
        assert not step.terminated
        assert step.truncated == (t == 1000)
        if step.truncated:
            break
    assert t == 1000
    env.close()


def test_dmc_max_episode_steps_shortens_the_episode(dmc):
    env = make_env(EnvConfig(id="dmc:walker-walk", max_episode_steps=5))
    assert env.spaces.observation.shape == (24,)  # height 1 + orientations 14 + velocity 9
    env.reset(seed=0)
    flags = [env.step(np.zeros(6, np.float32)).truncated for _ in range(5)]
    assert flags == [False] * 4 + [True]
    env.close()


def test_unknown_dmc_id_names_closest():
    pytest.importorskip("dm_control")  # the task list needs dm_control, not a working mujoco
    with pytest.raises(ConfigError, match="did you mean 'dmc:cheetah-run'") as info:
        check_env_id("dmc:cheetah-runn")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="did you mean 'dmc:walker-walk'"):
        make_env(EnvConfig(id="dmc:walkerr-walk"))
    with pytest.raises(ConfigError, match="dmc:<domain>-<task>"):
        check_env_id("dmc:zzz")


def test_dmc_without_dm_control_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dm_control", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"rlfleet\[dmc\]"):
        check_env_id("dmc:cheetah-run")
