"""Sum tree against brute force, and prioritized replay: sampling proportions, importance
weights, priorities of new and of not-yet-sampleable transitions, checkpoint round trip."""

import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlfleet.replays.prioritized import PrioritizedReplayBuffer
from rlfleet.replays.sum_tree import SumTree
from rlfleet.samplers.sampler import AgentSamples, EnvSamples, Samples


def make_batch(t0: int, T: int, B: int, done_every: int = 0) -> Samples:
    """``[T,B]`` batch whose observation ``[1]`` is ``1000 * b + t`` (absolute time step t)."""
    t = np.arange(t0, t0 + T)[:, None]
    obs = (1000 * np.arange(B)[None] + t).astype(np.float32)[..., None]
    terminated = (t % done_every == done_every - 1) & np.ones((T, B), bool) if done_every else np.zeros((T, B), bool)
    return Samples(
        agent=AgentSamples(action=np.zeros((T, B), np.int64), prev_action=np.zeros((T, B), np.int64), agent_info=None),
        env=EnvSamples(
            observation=obs,
            reward=np.ones((T, B), np.float32),
            prev_reward=np.zeros((T, B), np.float32),
            terminated=terminated,
            truncated=np.zeros((T, B), bool),
            final_observation=np.zeros_like(obs),
        ),
    )


def live_leaves(replay: PrioritizedReplayBuffer) -> np.ndarray:
    return np.flatnonzero(replay.tree.get(np.arange(replay.tree.capacity)) > 0)


def sampleable_leaves(replay: PrioritizedReplayBuffer) -> np.ndarray:
    first, last = replay.sampleable_rows()
    rows = np.arange(first, last + 1) % replay.T
    return np.sort((rows[:, None] * replay.B + np.arange(replay.B)).ravel())


# ----- SumTree -----


def check_tree(tree: SumTree, p: np.ndarray, rng: np.random.Generator) -> None:
    assert tree.total == p.sum()
    assert tree.min == (p[p > 0].min() if (p > 0).any() else np.inf)
    np.testing.assert_array_equal(tree.get(np.arange(len(p))), p)
    if p.sum() > 0:
        s = rng.uniform(0, p.sum(), size=500)
        np.testing.assert_array_equal(tree.find(s), np.searchsorted(np.cumsum(p), s, side="right"))


@pytest.mark.parametrize("capacity", [1, 2, 5, 37, 64])
def test_sum_tree_matches_cumsum_with_duplicate_updates(capacity):
    rng = np.random.default_rng(capacity)
    tree, p = SumTree(capacity), np.zeros(capacity)
    for _ in range(20):
        indices = rng.integers(0, capacity, size=rng.integers(0, 2 * capacity + 1))  # many repeats
        values = rng.integers(0, 10, size=len(indices)).astype(np.float64)  # integers: exact sums
        tree.update(indices, values)
        for i, v in zip(indices, values):
            p[i] = v  # the last write wins
        check_tree(tree, p, rng)


@settings(max_examples=60, deadline=None)
@given(
    capacity=st.integers(1, 40),
    updates=st.lists(st.tuples(st.integers(0, 10**6), st.floats(0, 1e6, allow_nan=False)), max_size=60),
)
def test_sum_tree_property(capacity, updates):
    tree, p = SumTree(capacity), np.zeros(capacity)
    indices = np.array([i % capacity for i, _ in updates], np.int64)
    values = np.array([v for _, v in updates], np.float64)
    tree.update(indices, values)
    for i, v in zip(indices, values):
        p[i] = v
    np.testing.assert_allclose(tree.total, p.sum(), rtol=1e-12)
    np.testing.assert_array_equal(tree.get(np.arange(capacity)), p)
    if p.sum() > 0:
        leaves = tree.find(np.linspace(0, tree.total, 50))  # including s == total
        assert (p[leaves] > 0).all()


def test_sum_tree_rejects_bad_input():
    tree = SumTree(4)
    with pytest.raises(ValueError, match="all 0"):
        tree.find(np.array([0.0]))
    with pytest.raises(ValueError, match=">= 0"):
        tree.update(np.array([0]), np.array([-1.0]))
    with pytest.raises(IndexError):
        tree.update(np.array([4]), np.array([1.0]))


def test_sum_tree_state_dict_round_trip():
    tree = SumTree(10)
    tree.update(np.arange(10), np.arange(10.0))
    other = SumTree(10)
    other.load_state_dict(pickle.loads(pickle.dumps(tree.state_dict())))
    assert other.total == 45.0 and other.min == 1.0
    np.testing.assert_array_equal(other.find(np.array([0.5, 44.9])), [1, 9])


# ----- PrioritizedReplayBuffer -----


def test_sampling_proportions_match_priorities():
    replay = PrioritizedReplayBuffer(size=8, batch_B=1, alpha=0.5, eps=1e-6, seed=3)
    replay.append(make_batch(0, 8, 1))  # rows 0..6 sampleable (n_step 1)
    errors = np.array([0.5, 1, 2, 4, 8, 16, 64])
    replay.update_priorities(np.arange(7), errors)
    p = (errors + 1e-6) ** 0.5
    expected = p / p.sum()
    counts = np.zeros(8)
    draws = 200_000
    for _ in range(draws // 1000):
        np.add.at(counts, replay.sample(1000, beta=0.4).indices, 1)
    assert counts[7] == 0
    sigma = np.sqrt(draws * expected * (1 - expected))  # binomial; stratification only lowers it
    assert (np.abs(counts[:7] - draws * expected) < 5 * sigma).all(), (counts, draws * expected)


def test_importance_weights_by_hand():
    replay = PrioritizedReplayBuffer(size=4, batch_B=1, alpha=0.5, eps=0.5, seed=0)
    replay.append(make_batch(0, 4, 1))  # rows 0, 1, 2 sampleable: M = 3
    replay.update_priorities(np.array([0, 1, 2]), torch.tensor([0.5, -3.5, 15.5]))
    # p = (|e| + 0.5)^0.5 = 1, 2, 4; total 7; P = 1/7, 2/7, 4/7.
    # beta 0.5: w = (3 P)^-0.5 / (3 * 1/7)^-0.5 = (p / 1)^-0.5 = 1, 0.70710678, 0.5
    np.testing.assert_array_equal(replay.tree.get(np.arange(4)), [1.0, 2.0, 4.0, 0.0])
    assert replay.max_priority == 4.0
    out = replay.sample(64, beta=0.5)
    assert out.weights.dtype == torch.float32 and out.indices.dtype == np.int64
    expected = np.array([1.0, 0.70710678, 0.5])[out.indices]
    np.testing.assert_allclose(out.weights.numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(out.samples.agent_inputs.observation[:, 0].numpy(), out.indices)
    # beta 1: w = (p / 1)^-1 = 1, 0.5, 0.25
    out = replay.sample(64, beta=1.0)
    np.testing.assert_allclose(out.weights.numpy(), np.array([1.0, 0.5, 0.25])[out.indices], rtol=1e-6)


def test_new_transitions_get_max_priority_and_overwritten_ones_lose_theirs():
    replay = PrioritizedReplayBuffer(size=4, batch_B=1, alpha=0.5, eps=0.5, seed=0)
    replay.append(make_batch(0, 4, 1))
    np.testing.assert_array_equal(replay.tree.get(np.arange(4)), [1.0, 1.0, 1.0, 0.0])  # initial max 1
    replay.update_priorities(np.array([0, 1, 2]), np.array([0.5, 3.5, 15.5]))  # p = 1, 2, 4
    replay.append(make_batch(4, 1, 1))  # abs row 4 overwrites ring row 0; row 3 becomes sampleable
    np.testing.assert_array_equal(replay.tree.get(np.arange(4)), [0.0, 2.0, 4.0, 4.0])
    replay.update_priorities(np.array([0, 1]), np.array([100.0, 0.5]))  # leaf 0 is no longer sampleable
    np.testing.assert_array_equal(replay.tree.get(np.arange(4)), [0.0, 1.0, 4.0, 4.0])
    assert replay.max_priority == 4.0


def test_only_sampleable_transitions_have_priority():
    rng = np.random.default_rng(0)
    B, n_step = 3, 3
    replay = PrioritizedReplayBuffer(size=36, batch_B=B, n_step=n_step, seed=1)
    t = 0
    while t < 60:
        T = int(rng.integers(1, 7))
        replay.append(make_batch(t, T, B, done_every=5))
        t += T
        np.testing.assert_array_equal(live_leaves(replay), sampleable_leaves(replay))
        if not replay.can_sample():
            continue
        out = replay.sample(64, beta=0.5)
        assert np.isin(out.indices, sampleable_leaves(replay)).all()
        first, last = replay.sampleable_rows()
        starts = out.samples.agent_inputs.observation[:, 0].numpy() % 1000  # absolute time steps
        assert ((starts >= first) & (starts <= last)).all()  # s_{t+n} written: t <= t_written - 1 - n
        replay.update_priorities(out.indices, rng.normal(size=64))


def test_uniform_priorities_give_unit_weights():
    replay = PrioritizedReplayBuffer(size=20, batch_B=2, n_step=2, seed=0)
    replay.append(make_batch(0, 7, 2))
    assert (replay.sample(32, beta=1.0).weights == 1).all()
    out = replay.sample(32, beta=0.7)
    replay.update_priorities(out.indices, torch.full((32,), -2.0))
    replay.update_priorities(live_leaves(replay), np.full(len(live_leaves(replay)), 2.0))
    assert (replay.sample(32, beta=0.7).weights == 1).all()


def test_state_dict_round_trip_gives_identical_samples():
    def run(replay, t0):
        out = replay.sample(16, beta=0.6)
        replay.update_priorities(out.indices, out.samples.agent_inputs.observation[:, 0] % 7)
        replay.append(make_batch(t0, 3, 2))
        return out

    replay = PrioritizedReplayBuffer(size=20, batch_B=2, n_step=2, seed=0)
    replay.append(make_batch(0, 8, 2))
    run(replay, 8)
    other = PrioritizedReplayBuffer(size=20, batch_B=2, n_step=2, seed=99)
    other.load_state_dict(pickle.loads(pickle.dumps(replay.state_dict())))
    for t0 in (11, 14, 17):
        a, b = run(replay, t0), run(other, t0)
        np.testing.assert_array_equal(a.indices, b.indices)
        assert torch.equal(a.weights, b.weights)
        assert torch.equal(a.samples.return_, b.samples.return_)
    assert other.max_priority == replay.max_priority
