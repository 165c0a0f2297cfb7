"""Sequence replay (replay.kind=sequence, R2D2): windows and their stored start states, episode
boundaries inside a window (burn-in never reads an earlier episode), n-step targets with the
terminated/truncated rules, sequence priorities, frame-once storage and checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import buffer_leaves
from rlfleet.checkpoint import Checkpointer, load_checkpoint
from rlfleet.envs.spaces import Box, Discrete
from rlfleet.models.q import QModel
from rlfleet.replays.sequence import SequenceReplayBuffer, sequence_priorities
from rlfleet.samplers.sampler import AgentSamples, EnvSamples, Samples
from rlfleet.utils.namedarraytuple import namedarraytuple

pytestmark = pytest.mark.usefixtures("one_torch_thread")

Info = namedarraytuple("Info", ["q", "action_prob", "prev_rnn_state"])
GAMMA = 0.5


def make_samples(t0, T, B, terminated=(), truncated=(), final=None, state=None):
    """``[T,B]`` samples of time steps ``t0 .. t0+T-1``: observation ``t + 1000 b`` (one float),
    action ``t % 2``, its behaviour probability ``1 / (t + 2)``, reward ``t + 1``,
    prev_rnn_state ``[t + 1000 b, -(t + 1000 b)]`` unless given; ``terminated`` / ``truncated``
    list absolute ``(t, b)``; ``final`` maps a truncated ``(t, b)`` to its final observation."""
    t = np.arange(t0, t0 + T)[:, None] + np.zeros((1, B), int)
    b = np.zeros((T, 1), int) + np.arange(B)[None, :]
    ident = (t + 1000 * b).astype(np.float32)
    term, trunc = np.zeros((T, B), bool), np.zeros((T, B), bool)
    for tt, bb in terminated:
        if t0 <= tt < t0 + T:
            term[tt - t0, bb] = True
    for tt, bb in truncated:
        if t0 <= tt < t0 + T:
            trunc[tt - t0, bb] = True
    final_obs = np.zeros((T, B, 1), np.float32)
    for (tt, bb), value in (final or {}).items():
        if t0 <= tt < t0 + T:
            final_obs[tt - t0, bb] = value
    done = term | trunc
    action = (t % 2).astype(np.int64)
    reward = (t + 1).astype(np.float32)
    prev_action, prev_reward = np.roll(action, 1, axis=0), np.roll(reward, 1, axis=0)  # first row fixed below
    prev_action[0], prev_reward[0] = (t[0] - 1) % 2, t[0]
    prev_done = np.concatenate([np.zeros((1, B), bool), done[:-1]])
    prev_action[prev_done], prev_reward[prev_done] = 0, 0.0
    if state is None:
        state = np.stack([ident, -ident], axis=-1)
    return Samples(
        agent=AgentSamples(
            action=action,
            prev_action=prev_action,
            agent_info=Info(
                q=np.zeros((T, B, 2)), action_prob=(1.0 / (t + 2)).astype(np.float32), prev_rnn_state=state
            ),
        ),
        env=EnvSamples(
            observation=ident[..., None],
            reward=reward,
            prev_reward=prev_reward.astype(np.float32),
            terminated=term,
            truncated=trunc,
            final_observation=final_obs,
        ),
    )


# One env; L=4, overlap 2 (a window every 2 steps), burn-in 3, n=2: windows of W=9 steps,
# window k covers steps [2k, 2k+9): burn-in 2k..2k+2, trained 2k+3..2k+6, tail 2k+7, 2k+8.
# Episodes: steps 0-4 (terminated at 4), 5-10 (truncated at 10, final observation 99), 11-...
EPISODES = dict(terminated=[(4, 0)], truncated=[(10, 0)], final={(10, 0): 99.0})


@pytest.fixture
def replay():
    r = SequenceReplayBuffer(100, 1, sequence_length=4, overlap=2, burn_in=3, n_step=2, gamma=GAMMA, alpha=0.0)
    for t0 in range(0, 20, 5):
        r.append(make_samples(t0, 5, 1, **EPISODES))
    return r


def test_window_layout(replay):
    assert (replay.window, replay.period) == (9, 2)
    assert replay.live_windows() == (0, (20 - 9) // 2)
    batch = replay.sequences_at(np.array([0, 2]), np.array([0, 0]))
    obs = batch.samples.agent_inputs.observation[..., 0]
    assert obs.shape == (9, 2 + 1)  # two sequences and one truncation column
    assert obs[:, 0].tolist() == list(range(0, 9)) and obs[:, 1].tolist() == list(range(4, 13))
    assert batch.return_.shape == (4, 2) and batch.burn_in == 3


def test_n_step_targets_terminated_episode(replay):
    """Window 0: trained steps 3, 4, 5, 6; the episode terminates at step 4 (reward t + 1)."""
    batch = replay.sequences_at(np.array([0]), np.array([0]))
    r = {t: t + 1.0 for t in range(20)}
    expected_return = [r[3] + GAMMA * r[4], r[4], r[5] + GAMMA * r[6], r[6] + GAMMA * r[7]]
    np.testing.assert_allclose(batch.return_[:, 0].numpy(), expected_return)
    np.testing.assert_allclose(batch.discount[:, 0].numpy(), [0.0, 0.0, GAMMA**2, GAMMA**2])
    # steps 5 and 6 bootstrap from steps 7 and 8 (window indices 7, 8), in their own column
    assert batch.bootstrap_t[2:, 0].tolist() == [7, 8] and batch.bootstrap_b[:, 0].tolist() == [0, 0, 0, 0]
    assert batch.samples.episode_start[:, 0].tolist() == [False] * 5 + [True] + [False] * 3  # step 5
    assert batch.samples.valid[:, 0].all()


def test_n_step_targets_truncated_episode_bootstrap_from_the_final_observation(replay):
    """Window 2 (steps 4..12): trained steps 7, 8, 9, 10; the episode is cut at step 10 by a
    time limit with final observation 99, which the truncation column holds at step 11's place."""
    batch = replay.sequences_at(np.array([2]), np.array([0]))
    r = {t: t + 1.0 for t in range(20)}
    expected_return = [r[7] + GAMMA * r[8], r[8] + GAMMA * r[9], r[9] + GAMMA * r[10], r[10]]
    np.testing.assert_allclose(batch.return_[:, 0].numpy(), expected_return)
    np.testing.assert_allclose(batch.discount[:, 0].numpy(), [GAMMA**2, GAMMA**2, GAMMA**2, GAMMA])
    assert batch.bootstrap_t[:, 0].tolist() == [5, 6, 7, 7]  # steps 9, 10, then step 11's place
    assert batch.bootstrap_b[:, 0].tolist() == [0, 0, 1, 1]  # ... in the truncation column
    s = batch.samples
    obs = s.agent_inputs.observation[..., 0]
    assert obs[:, 1].tolist() == [4, 5, 6, 7, 8, 9, 10, 99, 12]
    assert s.agent_inputs.prev_action[7, 1] == 10 % 2 and s.agent_inputs.prev_reward[7, 1] == r[10]
    assert s.agent_inputs.prev_action[7, 0] == 0 and s.agent_inputs.prev_reward[7, 0] == 0  # a new episode
    assert s.episode_start[7, 0] and not s.episode_start[7, 1]  # the final observation continues the episode
    assert s.valid[1:8, 1].all() and not s.valid[8:, 1].any()  # step 4: an earlier episode
    assert torch.equal(batch.start_state[1], batch.start_state[0])


def test_burn_in_never_reads_a_step_of_an_earlier_episode(replay):
    """Window 2's burn-in (steps 4, 5, 6) starts in the episode that ends at step 4: that step is
    invalid, the state is zeroed before step 5, and nothing of step 4 nor of the start state
    (whatever it is) reaches the Q-values of the later steps (an LSTM Q-model unrolled over the
    window as the algorithm does)."""
    batch = replay.sequences_at(np.array([2]), np.array([0]))
    s = batch.samples
    assert s.episode_start[:, 0].tolist() == [False, True] + [False] * 5 + [True, False]
    assert s.valid[:, 0].tolist() == [False] + [True] * 8
    torch.manual_seed(0)
    model = QModel(
        Box(np.full(1, -1e3, np.float32), np.full(1, 1e3, np.float32), np.dtype(np.float32)),
        Discrete(2),
        hidden_sizes=(8, 8),
        core="lstm",
        core_size=8,
        core_prev_action_reward=True,
    )
    inputs = s.agent_inputs[:, :1]
    q, _ = model(*inputs, torch.zeros(1, model.rnn_state_size), s.episode_start[:, :1])
    other = inputs.observation.clone()
    other[0] = 1234.0  # an earlier episode's observation, changed
    q_other, _ = model(
        other, inputs.prev_action, inputs.prev_reward, torch.randn(1, model.rnn_state_size), s.episode_start[:, :1]
    )
    torch.testing.assert_close(q_other[1:], q[1:], rtol=0, atol=0)
    assert not torch.equal(q_other[0], q[0])


def test_stored_start_state_round_trips():
    """What goes in as prev_rnn_state at a window's first step comes out as its start state, for
    every sampled window of every env, also after the ring has wrapped, uniform or prioritized."""
    for alpha in (0.0, 0.9):
        r = SequenceReplayBuffer(
            48, 3, sequence_length=4, overlap=1, burn_in=2, n_step=1, gamma=0.9, alpha=alpha, seed=1
        )
        for t0 in range(0, 60, 6):
            r.append(make_samples(t0, 6, 3))
        batch = r.sample_batch(64, env_steps=0).samples
        first = batch.samples.agent_inputs.observation[0, :, 0]  # t + 1000 b of the window start
        np.testing.assert_array_equal(batch.start_state.numpy(), np.stack([first, -first], -1))
        steps = first.numpy() % 1000
        assert (steps % r.period == 0).all() and steps.min() >= 60 - r.T  # windows start on the grid, in the ring
        obs = batch.samples.agent_inputs.observation[..., 0].numpy()
        np.testing.assert_array_equal(np.diff(obs, axis=0), 1.0)  # consecutive steps of one env


def test_zero_stored_state_at_an_episode_start():
    """A window starting where an episode starts carries the zero state the agent recorded there."""
    r = SequenceReplayBuffer(100, 1, sequence_length=4, overlap=2, burn_in=0, n_step=1, gamma=0.9, alpha=0.0)
    state = np.ones((20, 1, 2), np.float32)
    state[6] = 0.0  # the agent's prev_rnn_state at the first step of the episode starting at 6
    r.append(make_samples(0, 20, 1, terminated=[(5, 0)], state=state))
    batch = r.sequences_at(np.array([3]), np.array([0]))
    assert batch.samples.agent_inputs.observation[0, 0, 0] == 6
    assert torch.equal(batch.start_state, torch.zeros(1, 2))


def test_sequence_priorities_formula():
    errors = np.array([[1.0, 0.0], [-2.0, 3.0], [0.5, -1.0], [0.5, 0.0]])  # [L=4, N=2]
    # sequence 0: max 2, mean 1 -> 0.9 * 2 + 0.1 * 1 = 1.9; sequence 1: max 3, mean 1 -> 2.8
    np.testing.assert_allclose(sequence_priorities(errors, 0.9), [1.9, 2.8])
    np.testing.assert_allclose(sequence_priorities(errors, 0.0), [1.0, 1.0])


def test_prioritized_sequences_priorities_and_weights():
    r = SequenceReplayBuffer(200, 2, sequence_length=4, overlap=2, burn_in=2, n_step=1, alpha=0.9, eps=1e-6, seed=0)
    r.append(make_samples(0, 12, 2))
    first, last = r.live_windows()
    assert (first, last) == (0, (12 - 7) // 2)
    leaves = r._leaves(np.arange(first, last + 1))
    np.testing.assert_array_equal(r.tree.get(leaves), 1.0)  # new windows at the max priority
    sampled = r.sample_batch(4, env_steps=0)
    errors = np.array([[1.0, 0.0, 0.2, 4.0], [-2.0, 3.0, 0.2, 0.0], [0.5, -1.0, 0.2, 0.0], [0.5, 0.0, 0.2, 0.0]])
    r.update_priorities(sampled.indices, errors)
    expected = (sequence_priorities(errors, 0.9) + 1e-6) ** 0.9
    last_write = {int(i): p for i, p in zip(sampled.indices, expected)}  # a window drawn twice: its last write
    np.testing.assert_allclose(r.tree.get(np.array(list(last_write))), list(last_write.values()))
    assert r.max_priority == pytest.approx(max(1.0, expected.max()))
    # importance weights (M P(i))^-beta normalised by the largest one in the buffer
    sampled = r.sample_batch(8, env_steps=0)
    p = r.tree.get(sampled.indices) / r.tree.total
    M = (last - first + 1) * 2
    w = (M * p) ** -1.0 / (M * r.tree.min / r.tree.total) ** -1.0
    np.testing.assert_allclose(sampled.weights.numpy(), w, rtol=1e-6)
    # windows pushed out of the ring get priority 0 and are never drawn
    for t0 in range(12, 200, 4):
        r.append(make_samples(t0, 4, 2))
    first, last = r.live_windows()
    live = set(r._leaves(np.arange(first, last + 1)).tolist())
    positive = set(np.flatnonzero(r.tree.get(np.arange(r.n_slots * 2)) > 0).tolist())
    assert positive == live
    for _ in range(5):
        sampled = r.sample_batch(16, env_steps=0)
        steps = sampled.samples.samples.agent_inputs.observation[0, :, 0].numpy() % 1000
        assert (steps >= r.t - r.T).all() and (steps + r.window <= r.t).all()


def test_frame_stacked_observations_stored_once():
    """frame_stack=k: observations come back as the stacks that went in."""
    k, T, B = 3, 30, 2
    frames = np.arange(T * B, dtype=np.uint8).reshape(T, B)  # frame value identifies (t, b)
    stacks = np.zeros((T, B, k, 2, 2), np.uint8)
    for b in range(B):
        for t in range(T):
            # one episode per env; padded with the first frame at the start
            stacks[t, b] = np.stack(
                [frames[max(t - j, 0), b] * np.ones((2, 2), np.uint8) for j in range(k - 1, -1, -1)]
            )
    samples = make_samples(0, T, B)
    samples = Samples(samples.agent, samples.env._replace(observation=stacks, final_observation=np.zeros_like(stacks)))
    r = SequenceReplayBuffer(60, B, sequence_length=4, overlap=2, burn_in=2, n_step=1, alpha=0.0, frame_stack=k, seed=0)
    r.append(samples)
    batch = r.sample_batch(8, env_steps=0).samples
    obs = batch.samples.agent_inputs.observation.numpy()  # [W, N, k, 2, 2]
    assert obs.shape[2:] == (k, 2, 2)
    assert r.observations.nbytes < stacks.nbytes  # one frame per step
    first = batch.samples.agent_inputs.observation[0, :, -1, 0, 0].numpy()
    for n in range(obs.shape[1]):
        t0, b = np.argwhere(frames == first[n])[0]
        np.testing.assert_array_equal(obs[:, n], stacks[t0 : t0 + r.window, b])


def test_state_dict_round_trips_through_a_safe_checkpoint(tmp_path):
    r = SequenceReplayBuffer(100, 1, sequence_length=4, overlap=2, burn_in=3, n_step=2, gamma=GAMMA, alpha=0.9, seed=3)
    for t0 in range(0, 20, 5):
        r.append(make_samples(t0, 5, 1, **EPISODES))
    r.update_priorities(r.sample_batch(4, 0).indices, np.arange(16.0).reshape(4, 4))
    path = Checkpointer(tmp_path).save({"replay": r.state_dict()}, 0)
    restored = SequenceReplayBuffer(100, 1, sequence_length=4, overlap=2, burn_in=3, n_step=2, gamma=GAMMA, alpha=0.9)
    restored.load_state_dict(load_checkpoint(path)["replay"])  # torch.load(weights_only=True)
    a, b = r.sample_batch(6, 0), restored.sample_batch(6, 0)
    np.testing.assert_array_equal(a.indices, b.indices)
    for x, y in zip(buffer_leaves(a.samples.samples), buffer_leaves(b.samples.samples)):
        assert torch.equal(x, y)
    for name in ("start_state", "return_", "discount", "bootstrap_t", "bootstrap_b"):
        assert torch.equal(getattr(a.samples, name), getattr(b.samples, name)), name
    assert torch.equal(a.weights, b.weights)


def test_too_small_a_replay_is_refused():
    with pytest.raises(ValueError, match="too few for windows"):
        SequenceReplayBuffer(40, 4, sequence_length=8, overlap=4, burn_in=4, n_step=3)
