"""Retrace(lambda) targets (``algo.target=retrace``): the recursion against the paper's sum form
computed independently, for lambda in {0, 0.5, 1} with terminated and truncated steps inside the
sequence; a hand-computed case; the uncorrected multi-step return when ``pi == mu`` and lambda = 1,
through the sequence replay's windows and truncation columns; and DQN's update on sequences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlfleet.algos.dqn.retrace import epsilon_greedy_probabilities, retrace_returns, sequence_retrace_targets
from rlfleet.build import build_experiment
from rlfleet.config.loader import resolve, validate
from rlfleet.errors import ConfigError
from rlfleet.replays.sequence import SequenceReplayBuffer
from test_sequence_replay import make_samples

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def paper_sum_form(reward, gamma, terminated, truncated, q_taken, next_value, next_trace):
    """``G_s = Q(x_s, a_s) + sum_{t >= s} gamma^(t-s) (prod_{s < i <= t} c_i) delta_t`` with
    ``delta_t = r_t + gamma_t V(x_{t+1}) - Q(x_t, a_t)``, the sum stopping at the first episode
    end and at the sequence's last step (``next_trace[t]`` is ``c_{t+1}``). One sequence, numpy."""
    S = len(reward)
    returns = np.zeros(S)
    for s in range(S):
        total, weight = q_taken[s], 1.0
        for t in range(s, S):
            discount_t = 0.0 if terminated[t] else gamma
            delta = reward[t] + discount_t * next_value[t] - q_taken[t]
            total += weight * delta
            if terminated[t] or truncated[t] or t == S - 1:
                break
            weight *= gamma * next_trace[t]
        returns[s] = total
    return returns


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_recursion_matches_the_sum_form_with_episode_ends_inside(lam):
    rng = np.random.default_rng(0)
    S, gamma = 9, 0.9
    terminated = np.zeros(S, bool)
    truncated = np.zeros(S, bool)
    terminated[2], truncated[5] = True, True  # episodes: 0-2 (terminated), 3-5 (truncated), 6-8
    reward = rng.normal(size=S)
    q_taken = rng.normal(size=S)  # Q(x_s, a_s) under the target network
    next_value = rng.normal(size=S)  # V(x_{s+1}); after step 5, V of its final observation
    ratio = rng.uniform(0.2, 2.0, size=S)  # pi / mu at s + 1
    next_trace = lam * np.minimum(1.0, ratio)
    # Q(x_{s+1}, a_{s+1}) is Q(x_s, a_s) of the next step within an episode
    next_q = np.append(q_taken[1:], 0.0)
    expected = paper_sum_form(reward, gamma, terminated, truncated, q_taken, next_value, next_trace)

    def t(x):
        return torch.as_tensor(x, dtype=torch.float64)[:, None]

    got = retrace_returns(
        t(reward),
        t(gamma * ~terminated),
        t(~(terminated | truncated)),
        t(next_value),
        t(next_q),
        t(next_trace),
    )
    np.testing.assert_allclose(got[:, 0].numpy(), expected, rtol=1e-12)
    if lam == 0.0:  # one-step targets: r + gamma V, r alone after the termination
        one_step = reward + gamma * ~terminated * next_value
        np.testing.assert_allclose(got[:, 0].numpy(), one_step, rtol=1e-12)


def test_a_hand_computed_two_step_case():
    # S = 2, gamma 0.5: G_1 = r_1 + 0.5 V_2 = 1 + 0.5 * 4 = 3;
    # G_0 = r_0 + 0.5 (V_1 + c_1 (G_1 - Q_1)) = 2 + 0.5 (6 + 0.4 (3 - 5)) = 4.6
    one = torch.ones(2, 1)
    got = retrace_returns(
        torch.tensor([[2.0], [1.0]]),
        0.5 * one,
        one,
        torch.tensor([[6.0], [4.0]]),
        torch.tensor([[5.0], [0.0]]),
        torch.tensor([[0.4], [0.0]]),
    )
    torch.testing.assert_close(got, torch.tensor([[4.6], [3.0]]))


def test_epsilon_greedy_target_policy():
    q = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    torch.testing.assert_close(epsilon_greedy_probabilities(q, 0.0), torch.tensor([[0.0, 1.0, 0.0, 0.0]]))
    torch.testing.assert_close(epsilon_greedy_probabilities(q, 0.4), torch.tensor([[0.1, 0.7, 0.1, 0.1]]))


def window_batch(steps: int = 20):
    """A sequence replay of one env: episodes 0-4 (terminated), 5-10 (truncated, final
    observation 99), 11-...; windows of 0 burn-in + 6 trained + 3 tail steps, one every 3 steps."""
    replay = SequenceReplayBuffer(
        200, 1, sequence_length=6, overlap=3, burn_in=0, n_step=3, gamma=0.5, alpha=0.0, recurrent=False
    )
    episodes = dict(terminated=[(4, 0)], truncated=[(10, 0)], final={(10, 0): 99.0})
    for t0 in range(0, steps, 5):
        replay.append(make_samples(t0, 5, 1, **episodes))
    k = np.arange(replay.live_windows()[1] + 1)
    return replay, replay.sequences_at(k, np.zeros_like(k))


def test_pi_equal_to_a_deterministic_mu_and_lambda_1_give_the_uncorrected_multi_step_return():
    replay, batch = window_batch()
    samples = batch.samples
    W, columns = samples.action.shape
    N = batch.return_.shape[1]
    assert columns > N  # a truncation column for the cut at step 10
    # the online network prefers the action the behaviour took: greedy pi is the behaviour's choice
    q = torch.nn.functional.one_hot(samples.action.long(), 2).double()
    # target-network values: Q(x, a) = observation + 10 a (the final observation 99 included)
    target_q = samples.agent_inputs.observation.double() + torch.tensor([0.0, 10.0]).double()
    identity = lambda x: x  # noqa: E731
    y = sequence_retrace_targets(batch, q, target_q, 0.5, 1.0, 0.0, identity, identity)

    observation, action = samples.agent_inputs.observation[..., 0].double(), samples.action.long()
    for j in range(N):
        start = int(observation[0, j].item())  # window j covers steps start .. start + W - 1
        for i in range(6):
            s, ret, m = start + i, 0.0, 0
            while True:  # rewards r = t + 1 up to the episode end or the window's last step
                ret += 0.5**m * (s + m + 1)
                m += 1
                if s + m - 1 == 4:  # terminated: no bootstrap
                    break
                if s + m - 1 == 10:  # truncated: Q of the final observation at the action pi takes there
                    ret += 0.5**m * (99.0 + 10.0 * action[i + m, j].item())
                    break
                if i + m == W - 1:  # the window's last step bootstraps with V = Q(x, a_taken)
                    ret += 0.5**m * (observation[i + m, j].item() + 10.0 * action[i + m, j].item())
                    break
            assert y[i, j].item() == pytest.approx(ret), (j, i)


def test_stochastic_pi_weights_the_traces_by_the_stored_behaviour_probabilities():
    replay, batch = window_batch()
    samples = batch.samples
    step = samples.agent_inputs.observation[..., 0]  # observation t at step t of env 0
    samples.behaviour_prob[:] = torch.where(step % 2 == 0, 0.9, 0.3)  # mu(a_t | x_t)
    q = torch.nn.functional.one_hot(samples.action.long(), 2).double()
    target_q = torch.zeros(q.shape, dtype=torch.float64)
    identity = lambda x: x  # noqa: E731
    lam, eps = 0.8, 0.5
    y = sequence_retrace_targets(batch, q, target_q, 0.5, lam, eps, identity, identity)
    # with Q = 0, G_s = r_s + gamma c_{s+1} G_{s+1} within an episode; pi(a_taken) = 0.75 (the
    # online network's greedy action, epsilon 0.5 over 2 actions), so c = lam min(1, 0.75 / mu):
    # lam * 0.75 / 0.9 after an even step's action, lam after an odd one's
    for j in range(batch.return_.shape[1]):
        start = int(step[0, j].item())
        S = samples.action.shape[0] - 1
        expected = np.zeros(S + 1)
        for i in range(S - 1, -1, -1):
            s = start + i
            ends = s in (4, 10) or i == S - 1
            trace = 0.0 if ends else lam * min(1.0, 0.75 / (0.9 if (s + 1) % 2 == 0 else 0.3))
            expected[i] = (s + 1) + 0.5 * trace * expected[i + 1]
        np.testing.assert_allclose(y[:, j].numpy(), expected[:6], rtol=1e-6)


RETRACE = [
    "algo.target=retrace",
    "replay.kind=sequence",
    "replay.burn_in=0",
    "replay.sequence_length=8",
    "replay.sequence_overlap=4",
    "replay.size=4000",
    "replay.alpha=0",
    "algo.n_step=3",
    "algo.batch_size=4",
    "algo.learning_starts=64",
    "sampler.batch_T=32",
    "sampler.batch_B=2",
    "model.hidden_sizes=[16]",
    "runner.eval_interval_steps=0",
    "logger.console=false",
    "logger.tensorboard=false",
]


def test_dqn_updates_on_sequences_towards_retrace_targets():
    exp = build_experiment(validate(resolve("dqn", "CartPole-v1", RETRACE)))
    assert exp.algo.samples_per_update == 4 * 8
    for _ in range(4):
        exp.agent.sample_mode(0)
        exp.replay.append(exp.sampler.obtain_samples().samples)
    exp.agent.train_mode(0)
    batch = exp.replay.sample_batch(4, env_steps=0)
    samples = batch.samples.samples
    with torch.no_grad():
        q = exp.agent(*samples.agent_inputs)
        y = exp.algo.retrace_target(batch.samples, q, exp.agent.target(*samples.agent_inputs))
        q_taken = q[:8, :4].gather(-1, samples.action[:8, :4].long().unsqueeze(-1)).squeeze(-1)
    valid = samples.valid[:8, :4].float()
    errors, diagnostics = exp.algo.gradient_step(batch.samples, batch.weights)
    torch.testing.assert_close(errors, (y - q_taken) * valid)
    huber = torch.nn.functional.huber_loss(q_taken, y, reduction="none")
    torch.testing.assert_close(diagnostics["loss"], ((huber * valid).sum(0) / valid.sum(0)).mean())
    exp.close()


@pytest.mark.parametrize(
    ("algorithm", "overrides", "message"),
    [
        ("dqn", ["algo.target=retrace"], "algo.target=retrace computes its returns over sequences"),
        ("dqn", ["replay.kind=sequence"], "only with algo.target=retrace"),
        ("dqn", ["algo.target=retrace", "replay.kind=sequence"], "replay.burn_in=40 warms a recurrent state"),
        ("c51", ["algo.target=retrace"], "algo.target=retrace computes its returns over sequences"),
    ],
)
def test_retrace_config_errors(algorithm, overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_experiment(validate(resolve(algorithm, "CartPole-v1", overrides)))
