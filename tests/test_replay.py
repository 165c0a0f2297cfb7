"""n-step replay targets: rewards summed to the first episode end, no bootstrap after a
termination, bootstrap from the final observation after a truncation."""

import numpy as np
import pytest

from rlfleet.replays.n_step import NStepReplayBuffer
from rlfleet.samplers.sampler import AgentSamples, EnvSamples, Samples


def make_samples(T, obs, reward, terminated, truncated, final_obs=None):
    """B=1 batch; observations are scalars in a (1,) vector so each step is identifiable."""
    obs = np.asarray(obs, np.float32).reshape(T, 1, 1)
    final = np.zeros_like(obs) if final_obs is None else np.asarray(final_obs, np.float32).reshape(T, 1, 1)
    return Samples(
        agent=AgentSamples(action=np.arange(T).reshape(T, 1), prev_action=np.zeros((T, 1), np.int64), agent_info=None),
        env=EnvSamples(
            observation=obs,
            reward=np.asarray(reward, np.float32).reshape(T, 1),
            prev_reward=np.zeros((T, 1), np.float32),
            terminated=np.asarray(terminated, bool).reshape(T, 1),
            truncated=np.asarray(truncated, bool).reshape(T, 1),
            final_observation=final,
        ),
    )


def sample_at(replay, t):
    return replay.samples_at(np.array([t]), np.array([0]))


@pytest.fixture
def replay():
    gamma = 0.5
    r = NStepReplayBuffer(size=100, batch_B=1, n_step=3, gamma=gamma, seed=0)
    # t:            0    1    2    3     4     5    6    7
    # obs:         10   11   12   13    20    21   22   30 (obs at a reset after an episode end)
    # reward:       1    2    4    8     1     1    1    1
    # terminated:                  x(3)
    # truncated:                                  x(5): final obs 99
    r.append(
        make_samples(
            8,
            obs=[10, 11, 12, 13, 20, 21, 30, 31],
            reward=[1, 2, 4, 8, 1, 1, 1, 1],
            terminated=[0, 0, 0, 1, 0, 0, 0, 0],
            truncated=[0, 0, 0, 0, 0, 1, 0, 0],
            final_obs=[0, 0, 0, 0, 0, 99, 0, 0],
        )
    )
    return r


def test_full_window_bootstraps_from_s_t_plus_n(replay):
    s = sample_at(replay, 0)
    assert s.return_.item() == pytest.approx(1 + 0.5 * 2 + 0.25 * 4)
    assert s.discount.item() == pytest.approx(0.5**3)
    assert s.bootstrap_inputs.observation.item() == 13
    assert s.agent_inputs.observation.item() == 10
    assert s.bootstrap_inputs.prev_action.item() == 2  # action taken at t+n-1
    assert s.bootstrap_inputs.prev_reward.item() == 4


def test_termination_inside_window_stops_return_and_bootstrap(replay):
    s = sample_at(replay, 2)
    assert s.return_.item() == pytest.approx(4 + 0.5 * 8)  # t=2,3 then the episode terminated
    assert s.discount.item() == 0.0


def test_truncation_inside_window_bootstraps_from_final_observation(replay):
    s = sample_at(replay, 4)
    assert s.return_.item() == pytest.approx(1 + 0.5 * 1)  # t=4,5 then truncated
    assert s.discount.item() == pytest.approx(0.5**2)
    assert s.bootstrap_inputs.observation.item() == 99


def test_only_written_windows_are_sampled(replay):
    # 8 steps written, n=3: starts 0..4 have s_{t+3} written
    s = replay.sample(2000)
    starts = set(s.agent_inputs.observation.flatten().tolist())
    assert starts == {10, 11, 12, 13, 20}


def test_ring_overwrite_drops_stale_final_observations():
    r = NStepReplayBuffer(size=4, batch_B=1, n_step=1, gamma=0.9, seed=0)
    r.append(
        make_samples(
            4, obs=[0, 1, 2, 3], reward=[0] * 4, terminated=[0] * 4, truncated=[0, 1, 0, 0], final_obs=[0, 7, 0, 0]
        )
    )
    assert set(r.final_observation) == {1}
    r.append(make_samples(1, obs=[4], reward=[0], terminated=[0], truncated=[0]))  # overwrites ring slot 0
    assert set(r.final_observation) == {1}
    r.append(make_samples(1, obs=[5], reward=[0], terminated=[0], truncated=[0]))  # overwrites ring slot 1
    assert r.final_observation == {}
    assert len(r) == 4


def test_state_dict_round_trip(replay):
    state = replay.state_dict()
    other = NStepReplayBuffer(size=100, batch_B=1, n_step=3, gamma=0.5, seed=123)
    other.load_state_dict(state)
    a, b = replay.sample(16), other.sample(16)
    assert (a.return_ == b.return_).all() and (a.agent_inputs.observation == b.agent_inputs.observation).all()
