"""Replay with ``frame_stack``: each frame is stored once and the stacks it rebuilds (current and
bootstrap observations) equal the observations FrameStackObservation produced, across episode
starts, truncations, B > 1 and ring wrap-around; also under PER and on real Pong frames."""

import numpy as np
import pytest
import torch

from rlfleet.replays.n_step import NStepReplayBuffer
from rlfleet.replays.prioritized import PrioritizedReplayBuffer
from rlfleet.samplers.sampler import AgentSamples, EnvSamples, Samples
from rlfleet.utils.buffers import map_buffer


class StackedEnvs:
    """B synthetic envs stacking k frames as ``FrameStackObservation(padding_type="reset")`` does:
    each step appends a new frame, a reset repeats the reset frame k times. Every frame is
    distinct (``frame_shape`` int32 filled from a running id)."""

    def __init__(self, B: int, k: int, seed: int = 0, frame_shape=(2, 3), dtype=np.int32):
        self.B, self.k, self.frame_shape, self.dtype = B, k, frame_shape, dtype
        self.rng = np.random.default_rng(seed)
        self.frame_id = 0
        self.stacks = [self.reset_stack() for _ in range(B)]

    def frame(self) -> np.ndarray:
        self.frame_id += 1
        return (np.arange(np.prod(self.frame_shape)).reshape(self.frame_shape) + 7 * self.frame_id).astype(self.dtype)

    def reset_stack(self) -> np.ndarray:
        return np.repeat(self.frame()[None], self.k, axis=0)

    def shifted(self, stack: np.ndarray) -> np.ndarray:
        return np.concatenate([stack[1:], self.frame()[None]])

    def batch(self, T: int, p_terminate: float = 0.1, p_truncate: float = 0.1, silent_reset: bool = False) -> Samples:
        """``[T,B]`` Samples; ``silent_reset`` resets every env first without any done flag (as
        when a run resumes with fresh envs)."""
        if silent_reset:
            self.stacks = [self.reset_stack() for _ in range(self.B)]
        obs = np.zeros((T, self.B, self.k) + self.frame_shape, self.dtype)
        final = np.zeros_like(obs)
        u = self.rng.random((T, self.B))
        terminated, truncated = u < p_terminate, (u >= p_terminate) & (u < p_terminate + p_truncate)
        for t in range(T):
            for b in range(self.B):
                obs[t, b] = self.stacks[b]
                following = self.shifted(self.stacks[b])
                final[t, b] = following
                self.stacks[b] = self.reset_stack() if terminated[t, b] or truncated[t, b] else following
        return Samples(
            agent=AgentSamples(
                action=self.rng.integers(0, 4, (T, self.B)),
                prev_action=np.zeros((T, self.B), np.int64),
                agent_info=None,
            ),
            env=EnvSamples(
                observation=obs,
                reward=self.rng.normal(size=(T, self.B)).astype(np.float32),
                prev_reward=np.zeros((T, self.B), np.float32),
                terminated=terminated,
                truncated=truncated,
                final_observation=final,
            ),
        )


def assert_same_samples(a, b) -> None:
    leaves_a, leaves_b = [], []
    map_buffer(leaves_a.append, a)
    map_buffer(leaves_b.append, b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b):
        assert torch.equal(x, y)


def all_sampleable(replay: NStepReplayBuffer) -> tuple[np.ndarray, np.ndarray]:
    """Ring rows and envs ``[M]`` of every sampleable transition."""
    first, last = replay.sampleable_rows()
    rows = np.repeat(np.arange(first, last + 1) % replay.T, replay.B)
    return rows, np.tile(np.arange(replay.B), last - first + 1)


def check_against_whole(replay: NStepReplayBuffer, whole: NStepReplayBuffer, history: list[np.ndarray]) -> None:
    """Every sampleable transition of ``replay`` equals the one the whole-observation replay
    gives (``whole`` keeps what the env produced), and its current observation is the env's."""
    rows, b = all_sampleable(replay)
    if len(rows) == 0:
        return
    samples = replay.samples_at(rows, b)
    assert_same_samples(samples, whole.samples_at(rows, b))
    first, _ = replay.sampleable_rows()
    t_abs = first + np.arange(len(rows)) // replay.B
    expected = np.stack([history[t][env] for t, env in zip(t_abs, b)])
    np.testing.assert_array_equal(samples.agent_inputs.observation.numpy(), expected)


@pytest.mark.parametrize("B, k, n_step", [(1, 4, 1), (3, 4, 3), (2, 2, 5), (2, 1, 2)])
def test_rebuilt_stacks_equal_env_observations(B, k, n_step):
    envs = StackedEnvs(B, k, seed=B * 10 + k)
    size = 16 * B
    replay = NStepReplayBuffer(size, B, n_step=n_step, gamma=0.9, frame_stack=k)
    whole = NStepReplayBuffer(size, B, n_step=n_step, gamma=0.9)
    history: list[np.ndarray] = []
    rng = np.random.default_rng(0)
    episode_ends = np.zeros(2, int)
    for i in range(20):  # about 70 steps: the ring wraps four times
        batch = envs.batch(int(rng.integers(1, 7)), silent_reset=i == 9)
        history.extend(batch.env.observation)
        episode_ends += batch.env.terminated.sum(), batch.env.truncated.sum()
        replay.append(batch)
        whole.append(batch)
        check_against_whole(replay, whole, history)
    assert replay.t > 3 * replay.T and (episode_ends > 3).all()
    assert replay.sampleable_rows() == (replay.t - replay.T + k - 1, replay.t - 1 - n_step)


def test_sampled_stacks_respect_episode_starts_and_truncations():
    """Hand-made B=1 sequence, k=3, n=2: an episode of frames 1,2,3 truncated with final frame 4,
    then 5,6 terminated, then 7,8,..."""
    f = {i: np.full((1, 1), i, np.uint8) for i in range(1, 12)}

    def stack(*ids):
        return np.stack([f[i] for i in ids])

    obs = [stack(1, 1, 1), stack(1, 1, 2), stack(1, 2, 3), stack(5, 5, 5), stack(5, 5, 6), stack(7, 7, 7)]
    obs += [stack(7, 7, 8), stack(7, 8, 9)]
    T = len(obs)
    final = np.zeros((T, 1, 3, 1, 1), np.uint8)
    final[2, 0] = stack(2, 3, 4)
    samples = Samples(
        agent=AgentSamples(np.zeros((T, 1), np.int64), np.zeros((T, 1), np.int64), None),
        env=EnvSamples(
            observation=np.stack(obs)[:, None],
            reward=np.ones((T, 1), np.float32),
            prev_reward=np.zeros((T, 1), np.float32),
            terminated=np.array([0, 0, 0, 0, 1, 0, 0, 0], bool)[:, None],
            truncated=np.array([0, 0, 1, 0, 0, 0, 0, 0], bool)[:, None],
            final_observation=final,
        ),
    )
    replay = NStepReplayBuffer(size=20, batch_B=1, n_step=2, gamma=0.5, frame_stack=3)
    replay.append(samples)
    assert replay.observations.frames[:T, 0, 0, 0].tolist() == [1, 2, 3, 5, 6, 7, 8, 9]
    assert replay.observations.episode_start[:T, 0].tolist() == [1, 0, 0, 1, 0, 1, 0, 0]
    s = replay.samples_at(np.arange(6), np.zeros(6, np.int64))
    np.testing.assert_array_equal(s.agent_inputs.observation.numpy(), np.stack(obs[:6]))
    boot = [obs[2], final[2, 0], final[2, 0], obs[5], obs[5], obs[7]]  # truncated at 2, terminated at 4
    np.testing.assert_array_equal(s.bootstrap_inputs.observation.numpy(), np.stack(boot))
    np.testing.assert_allclose(s.discount.numpy(), [0.25, 0.25, 0.5, 0.0, 0.0, 0.25])


def test_prioritized_replay_with_frame_stack():
    B, k = 2, 4
    envs = StackedEnvs(B, k, seed=5)
    replay = PrioritizedReplayBuffer(24 * B, B, n_step=3, frame_stack=k, seed=0)
    whole = NStepReplayBuffer(24 * B, B, n_step=3)
    rng = np.random.default_rng(1)
    for _ in range(20):
        batch = envs.batch(int(rng.integers(1, 8)))
        replay.append(batch)
        whole.append(batch)
        first, last = replay.sampleable_rows()
        live = np.flatnonzero(replay.tree.get(np.arange(replay.tree.capacity)) > 0)
        expected = np.sort((np.arange(first, last + 1) % replay.T)[:, None] * B + np.arange(B)).ravel()
        np.testing.assert_array_equal(live, np.sort(expected))
        if replay.can_sample():
            out = replay.sample(32, beta=0.5)
            assert_same_samples(out.samples, whole.samples_at(out.indices // B, out.indices % B))
            replay.update_priorities(out.indices, rng.normal(size=32))
    assert replay.t > 2 * replay.T


def test_frame_stack_state_dict_round_trip():
    envs = StackedEnvs(2, 4, seed=2)
    replay = NStepReplayBuffer(40, 2, n_step=2, frame_stack=4, seed=0)
    for _ in range(8):
        replay.append(envs.batch(5))
    other = NStepReplayBuffer(40, 2, n_step=2, frame_stack=4, seed=1)
    other.load_state_dict(replay.state_dict())
    assert_same_samples(replay.sample(16), other.sample(16))


def test_observations_that_are_not_reset_padded_stacks_are_rejected():
    envs = StackedEnvs(1, 4)
    zero_padded = envs.batch(3)
    zero_padded.env.observation[0, 0, :3] = 0  # FrameStackObservation(padding_type="zero")
    with pytest.raises(ValueError, match="FrameStackObservation"):
        NStepReplayBuffer(40, 1, frame_stack=4).append(zero_padded)
    with pytest.raises(ValueError, match=r"\[T,B,4,...\]"):
        NStepReplayBuffer(40, 1, frame_stack=4).append(StackedEnvs(1, 3).batch(2))


def test_observation_bytes_per_transition():
    envs = StackedEnvs(2, 4, frame_shape=(84, 84), dtype=np.uint8)
    replay = NStepReplayBuffer(200, 2, n_step=3, frame_stack=4)
    whole = NStepReplayBuffer(200, 2, n_step=3)
    for _ in range(12):
        batch = envs.batch(10, p_terminate=0.01, p_truncate=0.0)
        replay.append(batch)
        whole.append(batch)
    assert len(replay) == 200
    assert replay.observations.nbytes / len(replay) <= 1.1 * 84 * 84
    assert whole.observations.nbytes / len(whole) == 4 * 84 * 84


def test_real_pong_frames():
    pytest.importorskip("ale_py")
    from rlfleet.envs.make import EnvConfig, make_env

    env = make_env(EnvConfig(id="ALE/Pong-v5", max_episode_steps=400))  # ~100 agent steps
    rng = np.random.default_rng(0)
    T = 260
    obs = np.zeros((T, 1, 4, 84, 84), np.uint8)
    final = np.zeros_like(obs)
    action = rng.integers(0, env.action_space.n, (T, 1))
    reward = np.zeros((T, 1), np.float32)
    terminated, truncated = np.zeros((T, 1), bool), np.zeros((T, 1), bool)
    current = env.reset(seed=0)
    for t in range(T):
        obs[t, 0] = current
        step = env.step(action[t, 0])
        reward[t, 0], terminated[t, 0], truncated[t, 0] = step.reward, step.terminated, step.truncated
        final[t, 0] = step.observation
        current = env.reset() if step.terminated or step.truncated else step.observation
    assert truncated.sum() >= 2
    samples = Samples(
        agent=AgentSamples(action, np.zeros_like(action), None),
        env=EnvSamples(obs, reward, np.zeros_like(reward), terminated, truncated, final),
    )
    replay = NStepReplayBuffer(200, 1, n_step=3, frame_stack=4)
    whole = NStepReplayBuffer(200, 1, n_step=3)
    for t0 in range(0, T, 20):  # the ring wraps after 200 steps
        batch = samples[t0 : t0 + 20]
        replay.append(batch)
        whole.append(batch)
        check_against_whole(replay, whole, list(obs[: t0 + 20]))
