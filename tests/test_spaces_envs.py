"""Spaces (from_gym), the GymEnv adapter and running normalisers."""

import gymnasium as gym
import numpy as np
import pytest

from rlfleet.envs.gym_env import EnvStep, GymEnv
from rlfleet.envs.normalize import ObservationNormalizer, RewardNormalizer, RunningMeanStd
from rlfleet.envs.spaces import Box, Composite, Discrete, MultiDiscrete, from_gym
from rlfleet.utils.buffers import buffer_from_example
from rlfleet.utils.namedarraytuple import is_namedarraytuple

# ---------------------------------------------------------------- from_gym


def test_from_gym_box():
    space = from_gym(gym.spaces.Box(low=np.array([-1.0, 0.0]), high=np.array([1.0, 5.0]), dtype=np.float64))
    assert isinstance(space, Box)
    assert space.shape == (2,) and space.dtype == np.float64 and space.size == 2
    np.testing.assert_array_equal(space.low, [-1, 0])
    np.testing.assert_array_equal(space.high, [1, 5])
    null = space.null_value()
    assert null.shape == (2,) and null.dtype == np.float64 and not null.any()
    samples = np.stack([space.sample(np.random.default_rng(i)) for i in range(50)])
    assert (samples >= space.low).all() and (samples <= space.high).all()


def test_from_gym_box_unbounded_and_integer_samples():
    unbounded = from_gym(gym.spaces.Box(-np.inf, np.inf, (3,), np.float32))
    s = unbounded.sample(np.random.default_rng(0))
    assert s.dtype == np.float32 and np.isfinite(s).all() and (np.abs(s) <= 1).all()
    image = from_gym(gym.spaces.Box(0, 255, (4, 4), np.uint8))
    rng = np.random.default_rng(0)
    samples = np.stack([image.sample(rng) for _ in range(20)])
    assert samples.dtype == np.uint8 and samples.shape == (20, 4, 4)
    assert samples.max() > 200 and samples.min() < 50  # spans the range, no wrap-around at 255


def test_from_gym_discrete_multidiscrete_multibinary():
    d = from_gym(gym.spaces.Discrete(4, start=2))
    assert isinstance(d, Discrete) and (d.n, d.start, d.shape, d.dtype) == (4, 2, (), np.int64)
    assert d.null_value().shape == () and d.null_value().dtype == np.int64
    assert {int(d.sample(np.random.default_rng(i))) for i in range(40)} == {0, 1, 2, 3}

    md = from_gym(gym.spaces.MultiDiscrete([3, 5], start=[1, -2]))
    assert isinstance(md, MultiDiscrete) and md.shape == (2,) and md.dtype == np.int64
    np.testing.assert_array_equal(md.nvec, [3, 5])
    np.testing.assert_array_equal(md.start, [1, -2])
    samples = np.stack([md.sample(np.random.default_rng(i)) for i in range(40)])
    assert (samples >= 0).all() and (samples < md.nvec).all()  # rlfleet values are 0-based

    mb = from_gym(gym.spaces.MultiBinary([2, 3]))
    assert isinstance(mb, MultiDiscrete) and mb.shape == (2, 3)
    np.testing.assert_array_equal(mb.nvec, np.full((2, 3), 2))


def _dict_space():
    return gym.spaces.Dict(
        {
            "pos": gym.spaces.Box(-1.0, 1.0, (2,), np.float64),
            "count": gym.spaces.Discrete(5),
            "flags": gym.spaces.MultiBinary(3),
            "nested": gym.spaces.Tuple((gym.spaces.Box(0.0, 1.0, (1,), np.float32), gym.spaces.MultiDiscrete([2, 3]))),
        }
    )


def test_from_gym_dict_and_tuple_to_composite():
    space = from_gym(_dict_space(), typename="TObs")
    assert isinstance(space, Composite)
    assert space.names == ("count", "flags", "nested", "pos")  # sorted keys
    assert space.typename == "TObs"
    nested = space.spaces[2]
    assert isinstance(nested, Composite) and nested.names == ("f0", "f1") and nested.typename == "TObs_nested"
    assert space.shape == ((), (3,), ((1,), (2,)), (2,))

    null = space.null_value()
    assert is_namedarraytuple(null) and type(null).__name__ == "TObs" and null._fields == space.names
    assert is_namedarraytuple(null.nested) and null.nested._fields == ("f0", "f1")
    assert null.pos.shape == (2,) and null.nested.f1.shape == (2,) and null.count.shape == ()

    sample = space.sample(np.random.default_rng(0))
    assert type(sample) is type(null) and (np.abs(sample.pos) <= 1).all()

    raw = {"pos": [0.5, -0.5], "count": 3, "flags": [1, 0, 1], "nested": (np.array([0.25]), [1, 2])}
    obs = space.convert(raw)
    assert type(obs) is type(null)
    np.testing.assert_array_equal(obs.pos, [0.5, -0.5])
    assert obs.count == 3 and obs.count.dtype == np.int64
    np.testing.assert_array_equal(obs.flags, [1, 0, 1])
    np.testing.assert_array_equal(obs.nested.f0, [0.25])
    np.testing.assert_array_equal(obs.nested.f1, [1, 2])

    tup = from_gym(gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Box(0, 1, (3,)))))
    assert isinstance(tup, Composite) and tup.names == ("f0", "f1")
    converted = tup.convert((1, np.ones(3, np.float32)))
    assert converted.f0 == 1 and converted.f1.shape == (3,)


def test_from_gym_unsupported_space_is_named():
    with pytest.raises(ValueError, match="Text"):
        from_gym(gym.spaces.Text(5))


# ---------------------------------------------------------------- GymEnv with a custom env


class DictObsEnv(gym.Env):
    """Dict observations; MultiDiscrete actions with a non-zero start; terminates after 3 steps."""

    def __init__(self):
        self.observation_space = _dict_space()
        self.action_space = gym.spaces.MultiDiscrete([3, 5], start=[1, -2])
        self.received = []
        self.t = 0

    def _obs(self):
        return {
            "pos": np.array([0.1 * self.t, -0.1 * self.t]),
            "count": self.t,
            "flags": np.array([self.t % 2, 1, 0], np.int8),
            "nested": (np.array([0.5], np.float32), np.array([1, self.t % 3])),
        }

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.received.append(np.asarray(action).copy())
        self.t += 1
        return self._obs(), float(self.t), self.t >= 3, False, {"t": self.t}


def test_gym_env_dict_observation_is_namedarraytuple():
    env = GymEnv(DictObsEnv())
    obs_space = env.observation_space
    assert isinstance(obs_space, Composite)
    # float64 Boxes become float32 also inside Dict observations.
    assert obs_space.spaces[obs_space.names.index("pos")].dtype == np.float32
    obs = env.reset(seed=3)
    assert is_namedarraytuple(obs) and obs._fields == ("count", "flags", "nested", "pos")
    assert obs.pos.dtype == np.float32 and obs.count.dtype == np.int64 and obs.flags.dtype == np.int64
    assert is_namedarraytuple(obs.nested)

    step = env.step(np.array([0, 0]))
    assert isinstance(step, EnvStep)
    np.testing.assert_allclose(step.observation.pos, [0.1, -0.1], rtol=1e-6)
    assert step.observation.pos.dtype == np.float32
    assert step.observation.count == 1 and step.reward == 1.0 and step.info == {"t": 1}
    assert step.terminated is False and step.truncated is False

    # The observation fits a buffer built from the space's null value.
    buf = buffer_from_example(obs_space.null_value(), 4)
    buf[2] = step.observation
    np.testing.assert_array_equal(buf.nested.f1[2], [1, 1])
    np.testing.assert_allclose(buf.pos[2], [0.1, -0.1], rtol=1e-6)
    assert buf.count[2] == 1 and buf.count[[0, 1, 3]].sum() == 0


def test_gym_env_multidiscrete_action_start_offset():
    inner = DictObsEnv()
    env = GymEnv(inner)
    env.reset()
    env.step(np.array([0, 0]))
    env.step(np.array([2, 4]))
    # rlfleet actions are 0-based; the env receives them shifted by its start.
    np.testing.assert_array_equal(inner.received[0], [1, -2])
    np.testing.assert_array_equal(inner.received[1], [3, 2])
    assert all(inner.action_space.contains(a.astype(inner.action_space.dtype)) for a in inner.received)
    assert env.step(np.array([1, 1])).terminated is True


class RecordingEnv(gym.Env):
    def __init__(self, action_space):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float64)
        self.action_space = action_space
        self.received = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2), {}

    def step(self, action):
        self.received.append(action)
        return np.ones(2), 0.0, False, False, {}


def test_gym_env_box_action_clipped_and_discrete_start():
    inner = RecordingEnv(gym.spaces.Box(np.array([-1.0, 0.0], np.float32), np.array([1.0, 2.0], np.float32)))
    env = GymEnv(inner)
    assert env.observation_space.dtype == np.float32 and env.reset().dtype == np.float32
    # Agents act in [-1, 1]; dimension 1 ([0, 2]) is rescaled: a -> 1 + a after clipping.
    np.testing.assert_array_equal(env.action_space.low, [-1, -1])
    np.testing.assert_array_equal(env.action_space.high, [1, 1])
    env.step(np.array([-5.0, 0.5]))
    env.step(np.array([0.25, 9.0]))
    np.testing.assert_array_equal(inner.received[0], [-1.0, 1.5])
    np.testing.assert_array_equal(inner.received[1], [0.25, 2.0])

    inner = RecordingEnv(gym.spaces.Discrete(3, start=-1))
    env = GymEnv(inner)
    env.reset()
    for a in (0, 1, 2):
        env.step(np.int64(a))
    assert inner.received == [-1, 0, 1]


def test_gym_env_rejects_dict_action_space():
    inner = RecordingEnv(gym.spaces.Dict({"a": gym.spaces.Discrete(2)}))
    with pytest.raises(ValueError, match="action"):
        GymEnv(inner)


# ---------------------------------------------------------------- GymEnv on CartPole


def _rollout(env, seed, actions):
    obs = [env.reset(seed=seed)]
    for a in actions:
        step = env.step(a)
        obs.append(step.observation)
        if step.terminated or step.truncated:
            break
    return np.stack(obs)


def test_cartpole_reset_seed_reproducible():
    env_a, env_b = GymEnv(gym.make("CartPole-v1")), GymEnv(gym.make("CartPole-v1"))
    assert isinstance(env_a.action_space, Discrete) and env_a.action_space.n == 2
    assert env_a.observation_space.shape == (4,) and env_a.observation_space.dtype == np.float32
    actions = [0, 1, 1, 0, 1, 0, 0, 1]
    run_a, run_b = _rollout(env_a, 123, actions), _rollout(env_b, 123, actions)
    assert run_a.dtype == np.float32
    np.testing.assert_array_equal(run_a, run_b)
    # Same env object, same seed again: the same trajectory.
    np.testing.assert_array_equal(_rollout(env_a, 123, actions), run_a)
    # A different seed gives a different initial state.
    assert not np.array_equal(env_a.reset(seed=124), run_a[0])
    env_a.close()
    env_b.close()


def test_cartpole_terminated_vs_truncated():
    env = GymEnv(gym.make("CartPole-v1"))
    env.reset(seed=0)
    for _ in range(200):  # always pushing right topples the pole in ~10 steps
        step = env.step(1)
        if step.terminated or step.truncated:
            break
    assert step.terminated is True and step.truncated is False

    env = GymEnv(gym.make("CartPole-v1", max_episode_steps=5))
    env.reset(seed=0)
    flags = [(s.terminated, s.truncated) for s in (env.step(t % 2) for t in range(5))]
    # Alternating pushes keep the pole up; the time limit cuts the episode at step 5.
    assert flags == [(False, False)] * 4 + [(False, True)]


# ---------------------------------------------------------------- normalisers


def test_running_mean_std_matches_numpy_over_concatenated_batches():
    b1 = np.array([[1.0, 10.0], [3.0, 14.0]])
    b2 = np.array([[5.0, 6.0], [7.0, 2.0], [9.0, 8.0]])
    # Hand values: column 0 is 1,3,5,7,9 (mean 5, var 8); column 1 is 10,14,6,2,8 (mean 8, var 16).
    exact = RunningMeanStd((2,), epsilon=0.0)
    exact.update(b1)
    exact.update(b2)
    np.testing.assert_allclose(exact.mean, [5.0, 8.0], rtol=1e-12)
    np.testing.assert_allclose(exact.var, [8.0, 16.0], rtol=1e-12)
    assert exact.count == 5
    both = np.concatenate([b1, b2])
    np.testing.assert_allclose(exact.mean, both.mean(0), rtol=1e-12)
    np.testing.assert_allclose(exact.var, both.var(0), rtol=1e-12)

    # The default prior (mean 0, var 1, pseudo-count 1e-4) shifts the result by O(1e-4 / 5)
    # relative to the sample moments: far below rtol=1e-3, far above float error.
    default = RunningMeanStd((2,))
    default.update(b1)
    default.update(b2)
    np.testing.assert_allclose(default.mean, [5.0, 8.0], rtol=1e-3)
    np.testing.assert_allclose(default.var, [8.0, 16.0], rtol=1e-3)

    restored = RunningMeanStd((2,))
    restored.load_state_dict(default.state_dict())
    np.testing.assert_array_equal(restored.mean, default.mean)
    np.testing.assert_array_equal(restored.var, default.var)
    assert restored.count == default.count


def test_observation_normalizer_hand_values():
    norm = ObservationNormalizer((), clip=1.0)
    out = norm(np.array([1.0, 3.0, 5.0, 7.0, 9.0]), update=True)
    # mean 5, var 8 (up to the 1e-4 prior, see above): (x - 5) / sqrt(8) = [-1.414, -0.707, 0, .707, 1.414],
    # clipped to +-1.
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [-1.0, -2 / np.sqrt(8), 0.0, 2 / np.sqrt(8), 1.0], atol=1e-4)
    before = norm.state_dict()
    again = norm(np.array([5.0 + np.sqrt(8) / 2]), update=False)
    np.testing.assert_allclose(again, [0.5], atol=1e-4)
    np.testing.assert_array_equal(norm.state_dict()["mean"], before["mean"])


def test_reward_normalizer_hand_computed():
    norm = RewardNormalizer(n_envs=2, gamma=0.5)
    # Step 1: returns = [1, 3]; their mean 2, var 1 -> rewards / 1. Env 1 is done: its return resets
    # *after* it entered the statistics (resetting first would give var 0.25 and outputs [2, 6]).
    out1 = norm(np.array([1.0, 3.0]), np.array([False, True]))
    assert out1.dtype == np.float32
    np.testing.assert_allclose(out1, [1.0, 3.0], rtol=1e-3)  # tolerance: the 1e-4 prior pseudo-count
    np.testing.assert_array_equal(norm.returns, [1.0, 0.0])
    # Step 2: returns = [0.5 * 1 + 2, 0 + 2] = [2.5, 2]. All returns seen: 1, 3, 2.5, 2 -> mean 2.125,
    # var (1.125^2 + 0.875^2 + 0.375^2 + 0.125^2) / 4 = 0.546875.
    out2 = norm(np.array([2.0, 2.0]), np.array([True, False]))
    np.testing.assert_allclose(norm.stats.mean, 2.125, rtol=1e-3)
    np.testing.assert_allclose(norm.stats.var, 0.546875, rtol=1e-3)
    np.testing.assert_allclose(out2, [2.0 / np.sqrt(0.546875)] * 2, rtol=1e-3)
    np.testing.assert_array_equal(norm.returns, [0.0, 2.0])

    state = norm.state_dict()
    other = RewardNormalizer(n_envs=2, gamma=0.5)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.returns, [0.0, 2.0])
    assert other.stats.var == norm.stats.var


def test_reward_normalizer_clips():
    norm = RewardNormalizer(n_envs=2, gamma=0.0, clip=0.5)
    # Returns {100, -100}: std ~100, so unclipped outputs would be ~+-1.
    out = norm(np.array([100.0, -100.0]), np.array([False, False]))
    assert out.tolist() == [0.5, -0.5]
