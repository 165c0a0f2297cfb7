"""DDPG and TD3: exploration noise statistics, the agent's actions, TD3's target (smoothing and
clipped double Q) and delayed updates by hand, critic shapes, and end to end: training,
checkpointing and exact resume (N steps in one go == N/2 steps + resume) on Pendulum-v1."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import QUIET, assert_exact_resume, latest_state, learning_columns, read_progress
from rlfleet.agents.base import AgentInputs
from rlfleet.agents.config import DdpgAgentConfig
from rlfleet.agents.ddpg import DdpgAgent
from rlfleet.algos.qpg.ddpg import DDPG, DDPGConfig
from rlfleet.algos.qpg.td3 import TD3, TD3Config, smoothed_target_action
from rlfleet.build import build_experiment
from rlfleet.config.loader import resolve, validate
from rlfleet.distributions.noise import GaussianNoise, OrnsteinUhlenbeckNoise
from rlfleet.envs.make import EnvConfig, make_env
from rlfleet.errors import ConfigError
from rlfleet.experiment import train
from rlfleet.models.ddpg import DeterministicActorCriticModel
from rlfleet.models.qpg import QCritic
from rlfleet.replays.n_step import ReplaySamples


def pendulum_spaces():
    env = make_env(EnvConfig(id="Pendulum-v1"))
    try:
        return env.spaces
    finally:
        env.close()


def make_agent(twin: bool = False, **agent_kwargs) -> DdpgAgent:
    def model_factory(spaces):
        return DeterministicActorCriticModel(spaces.observation, spaces.action, hidden_sizes=(16, 16), twin_critic=twin)

    agent = DdpgAgent(model_factory, DdpgAgentConfig(**agent_kwargs))
    agent.initialize(pendulum_spaces(), seed=0)
    return agent


# --- exploration noise -------------------------------------------------------------------------


@pytest.mark.parametrize("dt", [1e-2, 1.0])
def test_ou_noise_mean_std_and_autocorrelation(dt):
    theta, sigma, B = 0.15, 0.2, 256
    noise = OrnsteinUhlenbeckNoise(theta, sigma, dt)
    generator = torch.Generator().manual_seed(0)
    correlation_time = 1 / (theta * dt)  # steps for the autocorrelation to fall by 1/e
    for _ in range(round(10 * correlation_time)):  # the start at 0 is forgotten (e^-10)
        noise.sample((B, 1), generator)
    xs = torch.stack([noise.sample((B, 1), generator) for _ in range(round(20 * correlation_time))])  # [T, B, 1]
    stationary_std = sigma / math.sqrt(2 * theta - theta**2 * dt)
    assert noise.stationary_std == pytest.approx(stationary_std)
    assert stationary_std == pytest.approx(sigma / math.sqrt(2 * theta), rel=0.01 if dt < 1 else 0.1)
    # about B * 20 / 2 = 2560 independent samples: standard errors 2% (mean, in stds) and 1.4% (std)
    assert abs(xs.mean().item()) < 0.1 * stationary_std
    assert xs.std().item() == pytest.approx(stationary_std, rel=0.05)
    lag1 = (xs[1:] * xs[:-1]).sum() / (xs[:-1] ** 2).sum()
    assert lag1.item() == pytest.approx(1 - theta * dt, abs=2e-4 if dt < 1 else 1e-2)  # about 5 and 3 standard errors


def test_ou_noise_reset_and_state_round_trip():
    noise = OrnsteinUhlenbeckNoise(0.15, 0.2, 1e-2)
    generator = torch.Generator().manual_seed(1)
    for _ in range(100):
        x = noise.sample((3, 2), generator)
    assert (x != 0).all()
    noise.reset(torch.tensor([False, True, False]))
    assert (noise.x[1] == 0).all() and (noise.x[[0, 2]] == x[[0, 2]]).all()

    state, gen_state = noise.state_dict(), generator.get_state()
    expected = noise.sample((3, 2), generator)
    restored = OrnsteinUhlenbeckNoise(0.15, 0.2, 1e-2)
    restored.load_state_dict(state)
    generator.set_state(gen_state)
    assert torch.equal(restored.sample((3, 2), generator), expected)


def test_gaussian_noise_std():
    samples = GaussianNoise(0.1).sample((100_000, 2), torch.Generator().manual_seed(0))
    assert samples.mean().item() == pytest.approx(0.0, abs=1e-3)
    assert samples.std().item() == pytest.approx(0.1, rel=0.02)


# --- the agent ---------------------------------------------------------------------------------


def test_agent_actions_in_bounds_deterministic_in_eval_random_at_start():
    agent = make_agent(exploration_noise="gaussian", noise_std=5.0, random_action_steps=8)
    obs, prev_action, prev_reward = torch.randn(4, 3), torch.zeros(4, 1), torch.zeros(4)
    mu = agent(obs, prev_action, prev_reward)
    assert mu.shape == (4, 1) and (mu.abs() <= 1).all()

    agent.eval_mode(0)
    first = agent.step(obs, prev_action, prev_reward)
    assert torch.equal(first.action, mu.detach()) and torch.equal(agent.step(obs, prev_action, prev_reward).action, mu)

    agent.sample_mode(0)  # steps 0-3 and 4-7 uniform random (the policy is ignored), then mu + noise
    random_actions = [agent.step(obs, prev_action, prev_reward).action for _ in range(2)]
    for action in random_actions:
        assert (action.abs() <= 1).all() and not torch.allclose(action, mu)
    noisy = agent.step(obs, prev_action, prev_reward)
    assert torch.equal(noisy.agent_info.mu, mu.detach())
    assert (noisy.action.abs() <= 1).all() and (noisy.action.abs() == 1).any()  # std 5: clipped


def test_agent_ou_noise_restarts_at_episode_start():
    agent = make_agent(exploration_noise="ou", ou_sigma=1.0, ou_dt=1.0)
    agent.sample_mode(0)
    obs, prev_action, prev_reward = torch.randn(2, 3), torch.full((2, 1), 0.3), torch.full((2,), -1.5)
    for _ in range(20):
        agent.step(obs, prev_action, prev_reward)
    x = agent.noise.x.clone()
    eps = torch.randn((2, 1), generator=torch.Generator().set_state(agent.generator.get_state()))
    agent.reset_envs(torch.tensor([True, False]))  # the sampler reports that env 0's episode ended
    agent.step(obs, prev_action, prev_reward)
    theta, sigma = agent.noise.theta, agent.noise.sigma
    assert torch.allclose(agent.noise.x[0], sigma * eps[0])  # restarted from 0
    assert torch.allclose(agent.noise.x[1], (1 - theta) * x[1] + sigma * eps[1])  # carried on


def test_sampler_reports_episode_ends_to_the_agent():
    config = validate(resolve("ddpg", "Pendulum-v1", ["sampler.batch_T=250", "sampler.batch_B=2", *QUIET]))
    exp = build_experiment(config)
    ended = []
    reset_envs = exp.agent.reset_envs
    exp.agent.reset_envs = lambda done: ended.append(done.clone()) or reset_envs(done)
    exp.agent.sample_mode(0)
    batch = exp.sampler.obtain_samples()
    exp.close()
    done = batch.samples.env.terminated | batch.samples.env.truncated  # Pendulum truncates at 200 steps
    assert done.sum() == 2 and done[199].all()
    assert len(ended) == 1 and ended[0].tolist() == [True, True]


def test_agent_rejects_unscaled_or_discrete_actions():
    env = make_env(EnvConfig(id="CartPole-v1"))
    with pytest.raises(ConfigError, match="Box"):
        make_agent().check_spaces(env.spaces)
    env.close()
    with pytest.raises(ConfigError, match="exploration_noise"):
        validate(resolve("ddpg", "Pendulum-v1", ["agent.exploration_noise=uniform"]))


# --- models ------------------------------------------------------------------------------------


def test_critic_action_layer_shapes():
    spaces = pendulum_spaces()
    at_input = QCritic(spaces.observation, spaces.action, hidden_sizes=(400, 300), action_layer=0)
    after_first = QCritic(spaces.observation, spaces.action, hidden_sizes=(400, 300), action_layer=1)
    assert at_input.first is None and at_input.mlp.net[0].in_features == 3 + 1
    assert after_first.first[0].in_features == 3 and after_first.first[0].out_features == 400
    assert after_first.mlp.net[0].in_features == 400 + 1 and after_first.mlp.net[0].out_features == 300

    for layer in (0, 1):
        model = DeterministicActorCriticModel(
            spaces.observation, spaces.action, hidden_sizes=(8, 8), critic_action_layer=layer, output_init=3e-3
        )
        obs = torch.randn(5, 4, 3)  # [T, B, obs]
        action = model(obs, None, None)
        assert action.shape == (5, 4, 1) and (action.abs() < 1).all()
        assert model.q(obs, action).shape == (5, 4) and model.q(obs[0], action[0]).shape == (4,)
        assert model.critic.mlp.net[-1].weight.abs().max() <= 3e-3
    twin = DeterministicActorCriticModel(spaces.observation, spaces.action, hidden_sizes=(8, 8), twin_critic=True)
    q1, q2 = twin.q(obs, action)
    assert q1.shape == q2.shape == (5, 4) and not torch.equal(q1, q2)
    assert torch.equal(twin.q1(obs, action), q1)


# --- targets and update schedule by hand -------------------------------------------------------


def test_target_smoothing_noise_is_clipped_and_actions_stay_in_bounds():
    generator = torch.Generator().manual_seed(0)
    target_mu = torch.tensor([0.0, 0.9, -0.95]).repeat(10_000).unsqueeze(-1)  # [N, 1]
    action = smoothed_target_action(target_mu, noise_std=10.0, noise_clip=0.5, generator=generator)
    noise = action - target_mu
    assert (action.abs() <= 1).all()
    assert (noise.abs() <= 0.5 + 1e-6).all()
    at_zero = action[0::3]
    assert at_zero.max() == 0.5 and at_zero.min() == -0.5  # std 10: the clip is reached
    assert action[1::3].max() == 1.0 and action[1::3].min() == pytest.approx(0.4)  # then the bound
    assert action[2::3].min() == -1.0


class StubAgent:
    """Fixed target actor and critics; records the actions the target critic is asked about."""

    def __init__(self, target_mu, next_q1, next_q2=None):
        self.target_mu, self.next_q1, self.next_q2 = target_mu, next_q1, next_q2
        self.generator = torch.Generator().manual_seed(0)
        self.asked = None

    def to_model_inputs(self, *arrays):
        return arrays

    def target_pi(self, observation):
        return self.target_mu

    def target_q(self, observation, action):
        self.asked = action
        return self.next_q1 if self.next_q2 is None else (self.next_q1, self.next_q2)


def transitions(return_, discount) -> ReplaySamples:
    n = len(return_)
    inputs = AgentInputs(torch.zeros(n, 3), torch.zeros(n, 1), torch.zeros(n))
    return ReplaySamples(inputs, torch.zeros(n, 1), torch.tensor(return_), inputs, torch.tensor(discount))


def test_clipped_double_q_target_by_hand():
    samples = transitions([1.0, 2.0, 0.5], [0.99, 0.0, 0.9801])  # discount 0: terminated
    target_mu = torch.tensor([[0.9], [-0.2], [0.0]])
    algo = TD3(TD3Config(target_noise=0.2, target_noise_clip=0.5))
    algo.agent = StubAgent(target_mu, torch.tensor([10.0, 5.0, -3.0]), torch.tensor([8.0, 6.0, -4.0]))
    y = algo.target_value(samples)
    expected = torch.tensor([1.0 + 0.99 * 8.0, 2.0, 0.5 + 0.9801 * -4.0])  # min of the twins
    assert torch.allclose(y, expected)
    asked = algo.agent.asked
    assert (asked.abs() <= 1).all() and ((asked - target_mu).abs() <= 0.5 + 1e-6).all()
    assert not torch.equal(asked, target_mu)  # smoothed

    ddpg = DDPG(DDPGConfig())
    ddpg.agent = StubAgent(target_mu, torch.tensor([10.0, 5.0, -3.0]))
    assert torch.allclose(ddpg.target_value(samples), torch.tensor([1.0 + 0.99 * 10.0, 2.0, 0.5 + 0.9801 * -3.0]))
    assert torch.equal(ddpg.agent.asked, target_mu)  # DDPG: no smoothing


def random_batch(n: int = 32) -> ReplaySamples:
    g = torch.Generator().manual_seed(3)
    inputs = AgentInputs(torch.randn(n, 3, generator=g), torch.zeros(n, 1), torch.zeros(n))
    next_inputs = AgentInputs(torch.randn(n, 3, generator=g), torch.zeros(n, 1), torch.zeros(n))
    action = torch.rand(n, 1, generator=g) * 2 - 1
    return ReplaySamples(inputs, action, torch.randn(n, generator=g), next_inputs, torch.full((n,), 0.99))


def flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()]).clone()


@pytest.mark.parametrize("policy_delay", [1, 3])
def test_td3_actor_and_targets_move_every_policy_delay_updates(policy_delay):
    agent = make_agent(twin=True)
    algo = TD3(TD3Config(policy_delay=policy_delay))
    algo.initialize(agent, n_steps=1000, batch_T=1, batch_B=1)
    samples = random_batch()
    for update in range(1, 10):
        actor, critic, target = flat(agent.model.actor), flat(agent.model.critic), flat(agent.target_model)
        _, info = algo.gradient_step(samples, None)
        algo.updates += 1  # as OffPolicyAlgorithm.optimize_agent counts
        policy_update = update % policy_delay == 0
        assert not torch.equal(flat(agent.model.critic), critic)  # the critics learn every update
        assert torch.equal(flat(agent.model.actor), actor) != policy_update
        assert torch.equal(flat(agent.target_model), target) != policy_update
        assert ("actor_loss" in info) == policy_update
    assert algo.actor_optimizer.steps == 9 // policy_delay and algo.critic_optimizer.steps == 9


def test_ddpg_critic_weight_decay_and_priorities():
    agent = make_agent()
    algo = DDPG(DDPGConfig(critic_weight_decay=0.01))
    algo.initialize(agent, n_steps=1000, batch_T=1, batch_B=1)
    expected = 0.005 * sum(p.square().sum() for p in agent.model.critic.parameters())
    assert torch.allclose(algo.weight_decay(), expected)
    samples = random_batch()
    y = algo.target_value(samples)
    q = agent.q(samples.agent_inputs.observation, samples.action).detach()
    priority, info = algo.gradient_step(samples, torch.ones(32))
    assert torch.allclose(priority, y - q)  # signed TD error; the replay stores |.|
    assert info["critic_loss"] == pytest.approx(((y - q) ** 2).mean().item() + expected.item(), rel=1e-5)


# --- end to end --------------------------------------------------------------------------------

COMMON = [
    "sampler.batch_T=16",
    "sampler.batch_B=2",
    "replay.size=2000",
    "algo.learning_starts=128",
    "algo.batch_size=16",
    "algo.replay_ratio=4",
    "agent.random_action_steps=64",
    "model.hidden_sizes=[32,32]",
    "replay.beta_steps=1000",  # the default anneals over runner.n_steps, which resuming extends
    "runner.save_replay=true",
    "runner.log_interval_steps=128",
    "runner.eval_interval_steps=256",
    "runner.eval_episodes=2",
    *QUIET,
]

CASES = {
    # Lillicrap et al.'s form: OU noise, action after the critic's first layer, L2 on the critic
    "ddpg-lillicrap": [
        "agent.exploration_noise=ou",
        "model.critic_action_layer=1",
        "model.output_init=0.003",
        "algo.actor_lr=0.0001",
        "algo.tau=0.001",
        "algo.critic_weight_decay=0.01",
    ],
    "td3-per-nstep": ["replay.kind=prioritized", "algo.n_step=3", "algo.policy_delay=2"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_trains_and_resumes_exactly(tmp_path, case):
    n = 512
    algo = case.split("-")[0]
    args = [*COMMON, *CASES[case]]
    full, row = train(algo, "Pendulum-v1", [*args, f"runner.n_steps={n}"], name="full", root=tmp_path)
    assert row["CumUpdates"] > 0 and np.isfinite(row["critic_loss"]) and np.isfinite(row["actor_loss"])
    if "replay.kind=prioritized" in " ".join(args):
        assert "beta" in row
    state = latest_state(full)
    assert "actor_optimizer" in state["algo"] and "target_model" in state["agent"]
    half, _ = train(algo, "Pendulum-v1", [*args, f"runner.n_steps={n // 2}"], name="half", root=tmp_path)
    train(resume=half, overrides=[f"runner.n_steps={n}"])
    assert_exact_resume(full, half, n)  # also: two runs with one seed give the same numbers


def test_other_seed_other_numbers(tmp_path):
    args = [*COMMON, "runner.n_steps=256"]
    a, _ = train("td3", "Pendulum-v1", args, seed=0, name="a", root=tmp_path)
    b, _ = train("td3", "Pendulum-v1", args, seed=1, name="b", root=tmp_path)
    rows_a, rows_b = learning_columns(read_progress(a)), learning_columns(read_progress(b))
    assert [r["CumSteps"] for r in rows_a] == [r["CumSteps"] for r in rows_b]
    assert [r["critic_loss"] for r in rows_a] != [r["critic_loss"] for r in rows_b]


def test_td3_needs_twin_critics_and_box_actions(tmp_path):
    with pytest.raises(ConfigError, match="twin"):
        train("td3", "Pendulum-v1", [*COMMON, "runner.n_steps=32", "model.twin_critic=false"], root=tmp_path)
    with pytest.raises(ConfigError, match="Box"):
        train("ddpg", "CartPole-v1", [*COMMON, "runner.n_steps=32"], root=tmp_path)
