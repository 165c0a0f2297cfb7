"""Ape-X's pieces without Ray: the actor epsilons, prioritized appends with actor-computed
errors, the cut at an actor restart, the multi-source replay shard's sampling and priorities,
and the actor's scoring alignment."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlfleet.distributed.exploration import apex_epsilons
from rlfleet.replays.multi_source import MultiSourceReplay
from rlfleet.replays.n_step import NStepReplayBuffer
from rlfleet.replays.prioritized import PrioritizedReplayBuffer
from test_prioritized_replay import make_batch


def test_apex_epsilons_by_hand():
    # eps^(1 + alpha * i / (N - 1)) with eps 0.4, alpha 7, N = 3: exponents 1, 4.5, 8
    np.testing.assert_allclose(apex_epsilons(3, 0.4, 7.0), [0.4, 0.4**4.5, 0.4**8])
    assert apex_epsilons(3, 0.4, 7.0)[2] == pytest.approx(0.00065536)
    np.testing.assert_allclose(apex_epsilons(1, 0.4, 7.0), [0.4])
    eps = apex_epsilons(16)
    assert eps[0] == 0.4 and np.all(np.diff(eps) < 0) and eps[-1] == pytest.approx(0.4**8)
    with pytest.raises(ValueError):
        apex_epsilons(0)


def test_prioritized_append_takes_the_actors_errors():
    T, B, n = 4, 2, 2
    replay = PrioritizedReplayBuffer(size=64, batch_B=B, n_step=n, alpha=0.5, eps=0.0)
    errors = np.full((T, B), np.nan)  # first batch: rows -2, -1 unknown; rows 0, 1 get errors
    errors[2:] = [[4.0, 9.0], [16.0, 25.0]]
    replay.append(make_batch(0, T, B), errors)
    leaves = np.arange(2 * B)  # rows 0 and 1 became sampleable
    np.testing.assert_allclose(replay.tree.get(leaves), [2.0, 3.0, 4.0, 5.0])  # |e|^0.5
    assert replay.max_priority == 5.0
    second = np.full((T, B), np.nan)
    second[0] = [1.0, 1.0]  # row 2 (= t0 - n + 0): priority 1; row 3 unknown: max priority
    replay.append(make_batch(T, T, B), second)
    np.testing.assert_allclose(replay.tree.get(np.arange(2 * B, 6 * B)), [1, 1, 5, 5, 5, 5, 5, 5])


def test_cut_bootstraps_from_the_observation_after_the_stream():
    replay = NStepReplayBuffer(size=64, batch_B=2, n_step=3, gamma=0.5)
    replay.append(make_batch(0, 4, 2))
    replay.cut(np.array([[777.0], [888.0]], np.float32))
    replay.append(make_batch(100, 4, 2))  # a restarted actor: unrelated observations
    s = replay.samples_at(np.array([2, 3]), np.array([1, 1]))
    # t=2: rewards r2 + 0.5 r3 (the window ends at the cut), bootstrap from 888 with 0.5^2
    np.testing.assert_allclose(s.return_.numpy(), [1.5, 1.0])
    np.testing.assert_allclose(s.discount.numpy(), [0.25, 0.5])
    np.testing.assert_allclose(s.bootstrap_inputs.observation.numpy()[:, 0], [888.0, 888.0])
    assert replay.buffer.truncated[3].all()


def test_one_source_samples_like_its_own_prioritized_replay():
    shard = MultiSourceReplay(lambda source: PrioritizedReplayBuffer(64, 2, n_step=1, alpha=1.0, eps=0.0), seed=0)
    shard.add(0, "a", make_batch(0, 8, 2), np.zeros((2, 1), np.float32), np.arange(16, dtype=float).reshape(8, 2))
    batch = shard.sample_batch(4000, env_steps=10**9)  # beta 1 at the end of the anneal
    ring = shard.sources[0]
    p = ring.tree.get(batch.indices % ring.tree.capacity)
    total, M = ring.tree.total, 7 * 2  # rows 0..6 sampleable with n = 1 (row 7 waits for its successor)
    expected = (M * p / total) ** -1.0 / (M * ring.tree.min / total) ** -1.0
    np.testing.assert_allclose(batch.weights.numpy(), expected, rtol=1e-6)
    assert batch.samples.agent_inputs.observation.shape == (4000, 1)


def test_two_sources_are_sampled_in_proportion_to_their_priority_mass():
    def ring(source):
        return PrioritizedReplayBuffer(64, 1, n_step=1, alpha=1.0, eps=0.0, beta=lambda steps: 0.5)

    shard = MultiSourceReplay(ring, seed=1)
    shard.add(0, "a", make_batch(0, 5, 1), np.zeros((1, 1), np.float32), np.array([[0], [1], [1], [1], [1]], float))
    shard.add(1, "b", make_batch(0, 5, 1), np.zeros((1, 1), np.float32), np.array([[0], [3], [3], [3], [3]], float))
    # each ring: rows 0..3 sampleable; source 0 priorities 1,1,1,1 (mass 4), source 1 3,3,3,3 (mass 12)
    batch = shard.sample_batch(20_000, env_steps=0)
    from_second = batch.indices // shard.sources[0].tree.capacity == 1
    assert from_second.mean() == pytest.approx(0.75, abs=0.01)
    # P(i) = p_i / 16 over M = 8 transitions; min priority 1: w = (8 P)^-0.5 / (8 / 16)^-0.5
    w = batch.weights.numpy()
    np.testing.assert_allclose(w[from_second], (8 * 3 / 16) ** -0.5 / (8 / 16) ** -0.5, rtol=1e-6)
    np.testing.assert_allclose(w[~from_second], 1.0, rtol=1e-6)
    shard.update_priorities(batch.indices[:1], np.array([10.0]))
    k, leaf = divmod(int(batch.indices[0]), shard.sources[0].tree.capacity)
    assert shard.sources[k].tree.get(np.array([leaf]))[0] == pytest.approx(10.0)


def test_a_new_incarnation_cuts_its_sources_ring_and_state_round_trips():
    shard = MultiSourceReplay(lambda source: NStepReplayBuffer(64, 1, n_step=2, gamma=0.5), seed=0)
    shard.add(0, "first", make_batch(0, 4, 1), np.array([[50.0]], np.float32))
    shard.add(0, "second", make_batch(200, 4, 1), np.array([[60.0]], np.float32))
    ring = shard.sources[0]
    assert ring.buffer.truncated[3, 0] and not ring.buffer.truncated[7, 0]
    s = ring.samples_at(np.array([3]), np.array([0]))
    assert s.bootstrap_inputs.observation.item() == 50.0 and s.discount.item() == 0.5
    copy = MultiSourceReplay(lambda source: NStepReplayBuffer(64, 1, n_step=2, gamma=0.5), seed=5)
    copy.load_state_dict(shard.state_dict())
    a, b = shard.sample_batch(16, 0), copy.sample_batch(16, 0)
    torch.testing.assert_close(a.samples.return_, b.samples.return_)
    assert len(copy) == len(shard) == 8


def test_uniform_sources_share_draws_by_size():
    shard = MultiSourceReplay(lambda source: NStepReplayBuffer(256, 1, n_step=1), seed=3)
    shard.add(0, "a", make_batch(0, 11, 1), np.zeros((1, 1), np.float32))  # 10 sampleable
    shard.add(1, "b", make_batch(0, 31, 1), np.zeros((1, 1), np.float32))  # 30 sampleable
    batch = shard.sample_batch(8000, 0)
    assert batch.indices is None and batch.weights is None
    # observations are t in both sources; only source 1 (3/4 of the draws) has t in 11..29 (19 of its 30)
    share_above = (batch.samples.agent_inputs.observation.numpy()[:, 0] >= 11).mean()
    assert share_above == pytest.approx(0.75 * 19 / 30, abs=0.02)


# ----- distributed R2D2: sequence rings in a shard -----


def sequence_ring(source, alpha=1.0):
    from rlfleet.replays.sequence import SequenceReplayBuffer

    return SequenceReplayBuffer(
        100,
        1,
        sequence_length=4,
        overlap=2,
        burn_in=2,
        n_step=1,
        gamma=0.5,
        alpha=alpha,
        eps=0.0,
        beta=lambda steps: 0.5,
        seed=source,
    )


def test_a_sequence_batch_comes_from_one_source_by_priority_mass_with_the_shards_weights():
    from test_sequence_replay import make_samples

    shard = MultiSourceReplay(sequence_ring, seed=2)
    shard.add(0, "a", make_samples(0, 15, 1), np.zeros((1, 1), np.float32))
    shard.add(1, "b", make_samples(0, 15, 1), np.zeros((1, 1), np.float32))
    first, last = shard.sources[1].live_windows()  # windows of W = 7 steps every 2: k = 0..4
    assert (first, last) == (0, 4)
    ring1 = shard.sources[1]
    ring1.update_priorities(ring1._leaves(np.arange(5)), np.full(5, 3.0))  # mass 15 against 5
    capacity = ring1.tree.capacity
    draws = [shard.sample_batch(4, env_steps=0) for _ in range(2000)]
    sources = np.array([np.unique(d.indices // capacity) for d in draws])
    assert sources.shape == (2000, 1)  # one source per batch
    assert (sources == 1).mean() == pytest.approx(0.75, abs=0.03)
    # P(i) = p_i / 20 over M = 10 windows, smallest priority 1: w = (10 P)^-0.5 / (10 / 20)^-0.5
    batch = next(d for d in draws if d.indices[0] // capacity == 1)
    np.testing.assert_allclose(batch.weights.numpy(), (10 * 3 / 20) ** -0.5 / (10 / 20) ** -0.5, rtol=1e-6)
    assert batch.samples.samples.agent_inputs.observation.shape == (7, 4, 1)
    # per-step errors [L, N] reach the ring as sequence priorities (eta 0.9 of the max + 0.1 of the mean)
    errors = np.zeros((4, 4))
    errors[1] = 8.0
    shard.update_priorities(batch.indices, errors)
    np.testing.assert_allclose(ring1.tree.get(batch.indices % capacity), 0.9 * 8.0 + 0.1 * 2.0)


def test_uniform_sequence_sources_are_drawn_by_their_sampleable_windows():
    from test_sequence_replay import make_samples

    shard = MultiSourceReplay(lambda source: sequence_ring(source, alpha=0.0), seed=4)
    shard.add(0, "a", make_samples(0, 9, 1), np.zeros((1, 1), np.float32))  # windows k = 0, 1
    shard.add(1, "b", make_samples(0, 19, 1), np.zeros((1, 1), np.float32))  # windows k = 0..6
    draws = [shard.sample_batch(1, 0).samples.samples.agent_inputs.observation for _ in range(4000)]
    first_steps = [observation[0, 0, 0].item() for observation in draws]
    # both sources' observations are t; only source 1 (7 of the 9 windows) starts windows at t >= 4
    assert np.mean(np.array(first_steps) >= 4) == pytest.approx(5 / 9, abs=0.03)
    assert shard.sample_batch(8, 0).indices is None


def test_a_restarted_sources_sequences_zero_the_state_at_the_cut():
    from test_sequence_replay import make_samples

    shard = MultiSourceReplay(lambda source: sequence_ring(source, alpha=0.0), seed=0)
    shard.add(0, "first", make_samples(0, 6, 1), np.array([[77.0]], np.float32))
    shard.add(0, "second", make_samples(500, 6, 1), np.array([[88.0]], np.float32))
    ring = shard.sources[0]
    assert ring.buffer.truncated[5, 0] and ring.final_observation[5] == pytest.approx([77.0])
    batch = ring.sequences_at(np.array([1]), np.array([0]))  # window k = 1: steps 2..8, trained 4..7
    samples = batch.samples
    # the step after the cut (t = 6, window step 4) starts an episode: the core zeroes the state there
    assert samples.episode_start[:, 0].tolist() == [False, False, False, False, True, False, False]
    # trained step t = 5 ends at the cut: its 1-step target bootstraps from the final observation
    # 77 in a truncation column, not from the restarted stream's 500
    assert samples.agent_inputs.observation.shape[1] == 1 + 1
    assert (batch.bootstrap_t[1, 0].item(), batch.bootstrap_b[1, 0].item()) == (4, 1)
    assert samples.agent_inputs.observation[4, 1, 0].item() == 77.0
    assert samples.agent_inputs.observation[4, 0, 0].item() == 500.0
