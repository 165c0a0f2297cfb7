"""SAC, SAC-discrete and TAC: the squashed-Gaussian density, the targets and losses by hand,
TAC(q=1) == SAC, and every algorithm training, resuming exactly and repeating itself."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from conftest import QUIET, assert_exact_resume, assert_identical, latest_state, learning_columns, read_progress
from rlfleet.agents.base import AgentInputs
from rlfleet.agents.sac import SacAgent, SacDiscreteAgent
from rlfleet.algos.qpg.sac import SAC, SACConfig
from rlfleet.algos.qpg.sac_discrete import SACDiscrete, SACDiscreteConfig
from rlfleet.algos.qpg.tac import TAC, TACConfig, ln_q, ln_q_of_log
from rlfleet.distributions import DistInfoStd
from rlfleet.envs.spaces import Box, Discrete, EnvSpaces
from rlfleet.experiment import train
from rlfleet.models.sac import SacDiscreteModel, SacModel
from rlfleet.replays.n_step import ReplaySamples

OBS_DIM, ACT_DIM, N_ACTIONS = 3, 2, 3


def _box(dim: int, bound: float) -> Box:
    return Box(np.full(dim, -bound, np.float32), np.full(dim, bound, np.float32), np.dtype(np.float32))


def sac_agent(act_dim: int = ACT_DIM, seed: int = 0) -> SacAgent:
    spaces = EnvSpaces(observation=_box(OBS_DIM, np.inf), action=_box(act_dim, 1.0))
    torch.manual_seed(seed)
    agent = SacAgent(lambda s: SacModel(s.observation, s.action, hidden_sizes=(16, 16)))
    agent.initialize(spaces, seed=seed)
    return agent


def discrete_agent(seed: int = 0) -> SacDiscreteAgent:
    spaces = EnvSpaces(observation=_box(OBS_DIM, np.inf), action=Discrete(N_ACTIONS))
    torch.manual_seed(seed)
    agent = SacDiscreteAgent(lambda s: SacDiscreteModel(s.observation, s.action, hidden_sizes=(16, 16)))
    agent.initialize(spaces, seed=seed)
    return agent


def inputs(n: int, seed: int, action_shape: tuple[int, ...] = (ACT_DIM,)) -> AgentInputs:
    g = torch.Generator().manual_seed(seed)
    return AgentInputs(torch.randn(n, OBS_DIM, generator=g), torch.zeros(n, *action_shape), torch.zeros(n))


def batch(n: int = 8, seed: int = 0) -> ReplaySamples:
    """n transitions of the continuous test agent, every other one terminal."""
    g = torch.Generator().manual_seed(seed + 100)
    action = torch.rand(n, ACT_DIM, generator=g) * 2 - 1
    discount = torch.tensor([0.99, 0.0] * (n // 2))
    return ReplaySamples(inputs(n, seed), action, torch.randn(n, generator=g), inputs(n, seed + 1), discount)


def initialized(algo, agent):
    algo.initialize(agent, n_steps=1000, batch_T=1, batch_B=1)
    agent.train_mode(0)
    return algo


# --- the squashed Gaussian --------------------------------------------------------------------


def test_squashed_gaussian_log_prob_is_the_change_of_variables():
    """log pi(a|s) of the agent's samples == log N(atanh(a)) + log|det d atanh(a)/da|, the
    Jacobian taken numerically by autograd in float64."""
    agent = sac_agent()
    agent.train_mode(0)
    obs = inputs(16, seed=1)
    action, log_pi = agent.pi(*obs)
    dist_info = agent.dist_info(*obs)
    for i in range(16):
        a = action[i].double().detach()
        u = torch.atanh(a)
        mean, std = dist_info.mean[i].double().detach(), dist_info.log_std[i].double().detach().exp()
        log_normal = torch.distributions.Normal(mean, std).log_prob(u).sum()
        jacobian = torch.autograd.functional.jacobian(torch.atanh, a)  # [d, d]
        expected = log_normal + torch.linalg.slogdet(jacobian).logabsdet
        torch.testing.assert_close(log_pi[i].double(), expected, rtol=1e-4, atol=1e-4)


def test_squashed_gaussian_density_matches_monte_carlo_histogram():
    """In 1-d, the frequencies of a million sampled actions in 20 bins match the integral of
    exp(log pi) over each bin, and the log-probabilities returned with the samples are that
    density at the samples."""
    agent = sac_agent(act_dim=1)
    agent.train_mode(0)
    with torch.no_grad():
        agent.model.actor.mean.weight.zero_()
        agent.model.actor.mean.bias.fill_(0.4)  # skewed towards +1
        agent.model.actor.log_std.weight.zero_()
        agent.model.actor.log_std.bias.fill_(0.3)  # wide enough to pile up near the bounds
    n = 1_000_000
    obs = AgentInputs(torch.zeros(n, OBS_DIM), torch.zeros(n, 1), torch.zeros(n))
    with torch.no_grad():
        action, log_pi = agent.pi(*obs)
    edges = torch.linspace(-0.99, 0.99, 21, dtype=torch.float64)
    frequency = torch.histogram(action[:, 0].double(), edges).hist / n
    dist_info = DistInfoStd(mean=torch.tensor([[0.4]]), log_std=torch.tensor([[0.3]]))
    grid = torch.stack([torch.linspace(lo, hi, 201, dtype=torch.float64) for lo, hi in zip(edges[:-1], edges[1:])])
    density = agent.distribution.log_likelihood(grid.float().reshape(-1, 1), dist_info).exp().double()
    probability = torch.trapezoid(density.reshape(grid.shape), grid, dim=-1)
    torch.testing.assert_close(frequency, probability, rtol=0.02, atol=5e-4)
    inside = action[:, 0].abs() < 0.99  # away from the bounds, where atanh of a float32 action is exact enough
    some, some_log_pi = action[inside][:1000], log_pi[inside][:1000]
    expected = agent.distribution.log_likelihood(some, DistInfoStd(*(x.expand(1000, 1) for x in dist_info)))
    torch.testing.assert_close(some_log_pi, expected, rtol=1e-4, atol=1e-4)


def test_sac_agent_actions_in_bounds_eval_is_tanh_mean_and_random_warmup():
    agent = sac_agent()
    agent.random_action_steps = 100
    obs = inputs(4096, seed=2)
    agent.sample_mode(0)
    random = agent.step(*obs).action
    assert random.abs().max() <= 1 and abs(random.mean().item()) < 0.05 and random.std().item() > 0.55  # U[-1,1]
    agent.sample_mode(100)
    sampled = agent.step(*obs).action
    assert sampled.abs().max() <= 1
    agent.eval_mode(100)
    torch.testing.assert_close(agent.step(*obs).action, torch.tanh(agent.dist_info(*obs).mean.detach()))


def test_discrete_agent_greedy_in_eval():
    agent = discrete_agent()
    obs = inputs(64, seed=3, action_shape=())
    agent.eval_mode(0)
    greedy = agent.logits(*obs).argmax(-1)
    assert torch.equal(agent.step(*obs).action, greedy)
    agent.sample_mode(0)
    assert not torch.equal(agent.step(*obs).action, greedy)  # samples from pi


@pytest.mark.parametrize("shape", [(4, 84, 84), (6, 10, 10)], ids=["atari", "minatar"])
def test_discrete_model_on_images(shape):
    image = Box(np.zeros(shape, np.uint8), np.full(shape, 255, np.uint8), np.dtype(np.uint8))
    model = SacDiscreteModel(image, Discrete(N_ACTIONS))
    observation = torch.randint(256, (5, 2, *shape), dtype=torch.uint8)  # [T, B, ...]
    logits = model.actor(observation, torch.zeros(5, 2), torch.zeros(5, 2))
    q1, q2 = model.critic(observation, torch.zeros(5, 2), torch.zeros(5, 2))
    assert logits.shape == q1.shape == q2.shape == (5, 2, N_ACTIONS)


# --- targets and losses by hand ----------------------------------------------------------------


class _StubAgent:
    """Fixed policy outputs and target values, to check the targets by hand."""

    def __init__(self, log_pi=None, pi=None, q1=None, q2=None):
        self.log_pi, self.pi_probs, self.q1, self.q2 = log_pi, pi, q1, q2
        self.seen = []

    def to_model_inputs(self, *arrays):
        return arrays

    def pi(self, observation, prev_action, prev_reward):
        self.seen.append(observation)
        return torch.zeros(len(observation), ACT_DIM), self.log_pi

    def policy(self, observation, prev_action, prev_reward):
        self.seen.append(observation)
        return self.pi_probs, self.pi_probs.log()

    def target_q(self, observation, *rest):
        return self.q1, self.q2

    q = target_q


def test_soft_target_by_hand():
    algo = SAC(SACConfig(reward_scale=2.0))
    algo.log_alpha = torch.tensor(math.log(0.2))
    algo.agent = _StubAgent(
        log_pi=torch.tensor([-1.0, 0.5, 2.0]), q1=torch.tensor([10.0, 5, -1]), q2=torch.tensor([8.0, 6, -2])
    )
    samples = ReplaySamples(
        AgentInputs(torch.zeros(3, OBS_DIM), None, None),
        None,
        torch.tensor([1.0, 2.0, 0.5]),  # n-step returns
        AgentInputs(torch.ones(3, OBS_DIM), None, None),
        torch.tensor([0.99, 0.0, 0.9801]),  # gamma^n, 0 after termination
    )
    y = algo.soft_target(samples)
    # y = 2 R + gamma_n (min(Q'_1, Q'_2) - 0.2 log pi(a'|s'))
    expected = torch.tensor([2 + 0.99 * (8 + 0.2), 4.0, 1 + 0.9801 * (-2 - 0.4)])
    torch.testing.assert_close(y, expected)
    assert torch.equal(algo.agent.seen[0], torch.ones(3, OBS_DIM))  # a' drawn at s', not s


def test_sac_discrete_soft_value_and_actor_loss_by_hand():
    algo = SACDiscrete(SACDiscreteConfig())
    algo.log_alpha = torch.tensor(math.log(0.1))
    pi = torch.tensor([[0.5, 0.25, 0.25]])
    algo.agent = _StubAgent(pi=pi, q1=torch.tensor([[1.0, 2.0, 3.0]]), q2=torch.tensor([[2.0, 1.0, 4.0]]))
    samples = ReplaySamples(
        AgentInputs(torch.zeros(1, OBS_DIM), None, None),
        None,
        torch.tensor([0.5]),
        AgentInputs(torch.ones(1, OBS_DIM), None, None),
        torch.tensor([0.9]),
    )
    # V(s') = sum_a pi (min Q' - 0.1 log pi) = (0.5 * 1 + 0.25 * 1 + 0.25 * 3) + 0.1 * H(pi)
    entropy = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    value = 1.5 + 0.1 * entropy
    torch.testing.assert_close(algo.soft_target(samples), torch.tensor([0.5 + 0.9 * value]))
    # J_pi = sum_a pi (0.1 log pi - min Q) = -value; its second output is E_pi[log pi] = -H
    loss, expected_log_pi = algo.actor_loss(samples)
    torch.testing.assert_close(loss, torch.tensor(-value))
    torch.testing.assert_close(expected_log_pi, torch.tensor([-entropy]))


@pytest.mark.parametrize(("log_pi", "alpha_grows"), [([2.0, 3.0], True), ([-2.0, 0.0], False)])
def test_temperature_loss_by_hand_and_gradient_sign(log_pi, alpha_grows):
    """Target entropy -1: entropy -log pi below it (log pi = 2, 3) must raise alpha, above it
    (log pi = -2, 0) lower it."""
    algo = initialized(SAC(SACConfig(alpha=0.5, target_entropy=-1.0, alpha_lr=0.01)), sac_agent())
    log_pi = torch.tensor(log_pi)
    loss = algo.temperature_loss(log_pi)
    by_hand = -math.log(0.5) * ((log_pi[0] - 1) + (log_pi[1] - 1)) / 2
    torch.testing.assert_close(loss, by_hand)
    (grad,) = torch.autograd.grad(loss, algo.log_alpha)
    torch.testing.assert_close(grad, -(log_pi - 1).mean())  # d/d log alpha
    algo.alpha_optimizer.step(algo.temperature_loss(log_pi))
    assert (algo.alpha.item() > 0.5) == alpha_grows


def test_default_target_entropies():
    assert initialized(SAC(SACConfig()), sac_agent()).target_entropy == -ACT_DIM
    assert initialized(SACDiscrete(SACDiscreteConfig(target_entropy_scale=0.5)), discrete_agent()).target_entropy == (
        pytest.approx(0.5 * math.log(N_ACTIONS))
    )
    # TAC: -ln_q(e^dim): equal to SAC's at q = 1; at q = 2, -(e^2 - 1)
    assert initialized(TAC(TACConfig(entropic_index=1.0)), sac_agent()).target_entropy == pytest.approx(-ACT_DIM)
    assert initialized(TAC(TACConfig(entropic_index=2.0)), sac_agent()).target_entropy == pytest.approx(-math.expm1(2))


def test_critic_loss_is_weighted_and_priority_is_mean_abs_td_error():
    agent = sac_agent()
    algo = initialized(SAC(SACConfig(policy_delay=2)), agent)
    samples = batch()
    weights = torch.linspace(0.1, 1.0, 8)
    state = agent.generator.get_state()
    with torch.no_grad():
        y = algo.soft_target(samples)
        q1, q2 = algo.critic_values(samples)
    agent.generator.set_state(state)
    priority, info = algo.gradient_step(samples, weights)
    torch.testing.assert_close(info["critic_loss"], (weights * 0.5 * ((y - q1) ** 2 + (y - q2) ** 2)).mean())
    torch.testing.assert_close(priority, ((y - q1).abs() + (y - q2).abs()) / 2)
    assert "actor_loss" not in info  # policy_delay=2: the first update trains the critics only
    algo.updates += 1  # counted by OffPolicyAlgorithm.optimize_agent
    _, info = algo.gradient_step(samples, weights)
    assert "actor_loss" in info and "alpha_loss" in info
    assert all(p.requires_grad for p in agent.model.critic.parameters())


# --- TAC ---------------------------------------------------------------------------------------


def test_ln_q_by_hand():
    x = torch.tensor([0.25, 0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    torch.testing.assert_close(ln_q(x, 2.0), x - 1)  # (x^(2-1) - 1) / (2 - 1)
    torch.testing.assert_close(ln_q(x, 3.0), (x**2 - 1) / 2)
    root2 = math.sqrt(2)
    expected = torch.tensor([-2.0, 2 - 2 * root2, 0.0, 2 - root2, 1.0], dtype=torch.float64)
    torch.testing.assert_close(ln_q(x, 0.5), expected)  # 2 - 2 / sqrt(x)
    assert torch.equal(ln_q(x, 1.0), x.log())  # q = 1 is the logarithm itself
    torch.testing.assert_close(ln_q(x, 1.0 + 1e-7), x.log())  # and the limit q -> 1
    # from log x, where x itself would overflow float32
    log_x = torch.tensor([100.0])
    torch.testing.assert_close(ln_q_of_log(log_x, 1.5), torch.expm1(torch.tensor([50.0])) / 0.5)


def _one_update(algo_class, config, agent, samples):
    agent = copy.deepcopy(agent)
    algo = initialized(algo_class(config), agent)
    _, info = algo.gradient_step(samples, None)
    return info, agent


def test_tac_with_q_1_is_sac():
    """Same batch, parameters and noise: TAC(q=1) and SAC give the same losses and updates."""
    agent, samples = sac_agent(), batch()
    sac_info, sac_after = _one_update(SAC, SACConfig(), agent, samples)
    tac_info, tac_after = _one_update(TAC, TACConfig(entropic_index=1.0), agent, samples)
    for key in ("critic_loss", "actor_loss", "alpha_loss", "entropy"):
        torch.testing.assert_close(tac_info[key], sac_info[key], rtol=1e-6, atol=1e-6)
    for (name, p), t in zip(sac_after.model.named_parameters(), tac_after.model.parameters()):
        torch.testing.assert_close(t, p, rtol=1e-6, atol=1e-7, msg=name)
    other_info, _ = _one_update(TAC, TACConfig(entropic_index=1.5), agent, samples)
    assert not torch.allclose(other_info["actor_loss"], sac_info["actor_loss"])


def test_tac_losses_use_the_q_logarithm():
    """TAC(q=2): the actor loss is SAC's with log pi replaced by ln_2 pi = pi - 1."""
    agent, samples = sac_agent(), batch()
    algo = initialized(TAC(TACConfig(entropic_index=2.0, alpha=0.3)), agent)
    state = agent.generator.get_state()
    loss, tsallis_log = algo.actor_loss(samples)
    agent.generator.set_state(state)
    action, log_pi = agent.pi(*samples.agent_inputs)
    q1, q2 = agent.q(samples.agent_inputs.observation, action)
    torch.testing.assert_close(tsallis_log, log_pi.exp() - 1)
    torch.testing.assert_close(loss, (0.3 * (log_pi.exp() - 1) - torch.min(q1, q2)).mean())


# --- training end to end ------------------------------------------------------------------------

COMMON = [
    "sampler.batch_T=16",
    "replay.size=2000",
    "algo.learning_starts=128",
    "algo.batch_size=16",
    "algo.replay_ratio=4",
    "algo.policy_delay=2",
    "agent.random_action_steps=64",
    "model.hidden_sizes=[32,32]",
    "runner.save_replay=true",
    "runner.log_interval_steps=128",
    "runner.eval_interval_steps=256",
    "runner.eval_episodes=2",
    *QUIET,
]

CASES = {
    "sac": ("Pendulum-v1", []),
    "sac_discrete": (
        "CartPole-v1",
        ["replay.kind=prioritized", "algo.n_step=3", "replay.beta_steps=1000", "algo.target_update_interval=4"],
    ),
    "tac": ("Pendulum-v1", ["algo.entropic_index=1.5", "algo.auto_alpha=false", "algo.alpha=0.2"]),
}


@pytest.mark.parametrize("algo", list(CASES))
def test_trains_resumes_exactly_and_repeats(tmp_path, algo):
    env, extra = CASES[algo]
    n = 512
    args = [*COMMON, *extra]
    full, row = train(algo, env, [*args, f"runner.n_steps={n}"], name="full", root=tmp_path)
    assert row["CumUpdates"] > 0 and np.isfinite(row["critic_loss"]) and np.isfinite(row["actor_loss"])
    again, _ = train(algo, env, [*args, f"runner.n_steps={n}"], name="again", root=tmp_path)
    assert learning_columns(read_progress(full)) == learning_columns(read_progress(again))
    assert_identical(latest_state(full)["agent"], latest_state(again)["agent"], "agent")
    half, _ = train(algo, env, [*args, f"runner.n_steps={n // 2}"], name="half", root=tmp_path)
    train(resume=half, overrides=[f"runner.n_steps={n}"])
    assert_exact_resume(full, half, n)
