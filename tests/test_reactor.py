"""Reactor: the distributional Retrace target (mass one, mean equal to scalar Retrace), the
beta-leave-one-out gradient against a hand-computed case, the model's heads, determinism, exact
resume, config errors, and a learning test (slow)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import (
    QUIET,
    assert_exact_resume,
    assert_same_model,
    eval_returns,
    latest_state,
    learning_columns,
    read_progress,
)
from rlfleet.algos.dqn.retrace import retrace_returns
from rlfleet.algos.reactor.reactor import beta_loo_surrogate
from rlfleet.algos.reactor.retrace import categorical_retrace_targets
from rlfleet.build import build_experiment
from rlfleet.config.loader import resolve, validate
from rlfleet.errors import ConfigError
from rlfleet.experiment import train
from test_retrace import window_batch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def retrace_inputs(seed: int = 0, v_min: float = -1000.0, v_max: float = 1000.0, n_atoms: int = 401):
    """A window of the sequence replay (episode ends inside, a truncation column) with random
    target-critic distributions on the atoms within +-200 of a support wide enough that no
    shifted atom is clipped (returns of rewards ``t + 1`` stay under 200), a random policy and
    random behaviour probabilities."""
    replay, batch = window_batch()
    samples = batch.samples
    W, C = samples.action.shape
    N = batch.return_.shape[1]
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(W, C, 2, n_atoms, generator=generator, dtype=torch.float64)
    support = torch.linspace(v_min, v_max, n_atoms, dtype=torch.float64)
    probs = (logits * 3).masked_fill(support.abs() > 200, -torch.inf).softmax(-1)
    pi = torch.rand(W, C, 2, generator=generator, dtype=torch.float64).softmax(-1)
    mu = torch.rand(W, N, generator=generator, dtype=torch.float64) * 0.8 + 0.1
    args = (
        probs,
        pi,
        batch.next_column[: W - 1],
        samples.action[:, :N],
        mu,
        batch.reward[: W - 1].double(),
        batch.terminated[: W - 1],
        batch.truncated[: W - 1],
        6,
        0.9,
        0.8,
        v_min,
        v_max,
    )
    return batch, args


def test_categorical_retrace_conserves_mass_and_its_mean_is_scalar_retrace():
    batch, args = retrace_inputs()
    probs, pi, next_column, action, mu, reward, terminated, truncated, L, gamma, lam, v_min, v_max = args
    target = categorical_retrace_targets(*args)
    S, N = reward.shape
    assert target.shape == (L, N, probs.shape[-1])
    torch.testing.assert_close(target.sum(-1), torch.ones(L, N, dtype=torch.float64))  # signed weights, mass 1

    # scalar Retrace on the means of the same distributions
    support = torch.linspace(v_min, v_max, probs.shape[-1], dtype=torch.float64)
    q = (probs * support).sum(-1)  # [W, C, A]
    steps = torch.arange(S)[:, None]
    next_value = (pi[steps + 1, next_column] * q[steps + 1, next_column]).sum(-1)
    taken = action[1:].long().unsqueeze(-1)
    next_q = q[1:, :N].gather(-1, taken).squeeze(-1)
    next_trace = lam * (pi[1:, :N].gather(-1, taken).squeeze(-1) / mu[1:]).clamp(max=1.0)
    scalar = retrace_returns(
        reward, gamma * (~terminated).double(), (~(terminated | truncated)).double(), next_value, next_q, next_trace
    )
    torch.testing.assert_close((target * support).sum(-1), scalar[:L], rtol=1e-9, atol=1e-9)


def test_categorical_retrace_with_no_trace_is_the_projected_one_step_target():
    batch, args = retrace_inputs(n_atoms=11, v_min=-5.0, v_max=5.0)
    args = (*args[:10], 0.0, *args[11:])  # lambda 0: every c is 0
    probs, pi, next_column, action, mu, reward, terminated, truncated, L, gamma, _, v_min, v_max = args
    target = categorical_retrace_targets(*args)
    # step 0 of window 0 (absolute step 0, no episode end): sum_b pi(b|x_1) Phi(r_0 + gamma z | Z(x_1, b))
    from rlfleet.algos.dqn.losses import categorical_projection

    expected = sum(
        pi[1, 0, b]
        * categorical_projection(probs[1, 0, b][None], reward[0, :1], torch.tensor([gamma]), v_min, v_max)[0]
        for b in range(2)
    )
    torch.testing.assert_close(target[0, 0], expected.double())


def test_beta_loo_gradient_by_hand():
    # A = 2, pi = softmax(theta) with theta = (0, ln 3): pi = (0.25, 0.75); Q = (1, 2), action 0,
    # G = 3, beta = 2: d/dtheta [beta (G - Q_0) pi_0 + Q . pi] = (beta (G - Q_0) e_0 + Q) . dpi/dtheta
    # dpi/dtheta_j = pi (e_j - pi_j): dpi_0/dtheta = (0.1875, -0.1875), dpi_1/dtheta = (-0.1875, 0.1875)
    # weights (4 + 1, 2) = (5, 2): gradient = 5 (0.1875, -0.1875) + 2 (-0.1875, 0.1875) = (0.5625, -0.5625)
    theta = torch.tensor([0.0, float(np.log(3.0))], requires_grad=True)
    surrogate = beta_loo_surrogate(
        theta.softmax(-1), torch.tensor([1.0, 2.0]), torch.tensor(0), torch.tensor(3.0), torch.tensor(2.0)
    )
    surrogate.backward()
    torch.testing.assert_close(theta.grad, torch.tensor([0.5625, -0.5625]))
    assert surrogate.item() == pytest.approx(2 * 2 * 0.25 + 0.25 + 1.5)


TINY = [
    "sampler.batch_T=16",
    "sampler.batch_B=2",
    "model.hidden_sizes=[16]",
    "model.n_atoms=11",
    "replay.size=4000",
    "replay.sequence_length=4",
    "replay.sequence_overlap=2",
    "algo.n_step=2",
    "algo.batch_size=4",
    "algo.learning_starts=64",
    "algo.replay_ratio=2",
    "runner.n_steps=256",
    "runner.log_interval_steps=64",
    "runner.eval_interval_steps=0",
    *QUIET,
]
RECURRENT = ["model.core=lstm", "model.core_size=8", "replay.burn_in=2"]


def test_model_heads_and_acting():
    exp = build_experiment(validate(resolve("reactor", "CartPole-v1", TINY)))
    agent = exp.agent
    out = agent(torch.zeros(3, 4), torch.zeros(3), torch.zeros(3))
    assert out.shape == (3, 2, 12)  # per action: 11 atoms and the policy logit
    agent.sample_mode(0)
    step = agent.step(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long), torch.zeros(3))
    pi = out[..., -1].softmax(-1).detach()
    torch.testing.assert_close(step.agent_info.action_prob, pi.gather(-1, step.action[:, None]).squeeze(-1))
    agent.eval_mode(0)
    assert torch.equal(agent.step(torch.zeros(3, 4), torch.zeros(3), torch.zeros(3)).action, pi.argmax(-1))
    exp.close()


@pytest.mark.parametrize("extra", [[], RECURRENT], ids=["feed-forward", "lstm"])
def test_same_seed_same_run_and_exact_resume(tmp_path, extra):
    env = "CartPoleNoVel-v1" if extra else "CartPole-v1"
    args = [*TINY, *extra, "runner.save_replay=true", "replay.beta_steps=256"]  # beta: not by n_steps
    a, _ = train("reactor", env, args, seed=3, name="a", root=tmp_path)
    b, _ = train("reactor", env, args, seed=3, name="b", root=tmp_path)
    c, _ = train("reactor", env, args, seed=4, name="c", root=tmp_path)
    assert learning_columns(read_progress(a)) == learning_columns(read_progress(b))
    assert_same_model(a, b)
    assert [r["critic_loss"] for r in read_progress(a)] != [r["critic_loss"] for r in read_progress(c)]
    assert latest_state(a)["algo"]["updates"] > 0
    half, _ = train("reactor", env, [*args, "runner.n_steps=128"], seed=3, name="half", root=tmp_path)
    train(resume=half, overrides=["runner.n_steps=256"])
    assert_exact_resume(a, half, 256)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["replay.burn_in=4"], "replay.burn_in=4 warms a recurrent state"),
        (["replay.kind=uniform"], "replay.kind=uniform does not train reactor"),
        (["algo.retrace_lambda=1.5"], "algo.retrace_lambda"),
        (["agent.v_min=5", "agent.v_max=1"], "v_min < v_max"),
    ],
)
def test_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(resolve("reactor", "CartPole-v1", [*TINY, *overrides]))


@pytest.mark.slow
def test_learns_cartpole(tmp_path):
    """The classic preset, 60k steps: greedy evaluation of 10 episodes."""
    overrides = ["runner.n_steps=61440", "runner.eval_interval_steps=20480", *QUIET]
    run, _ = train("reactor", "CartPole-v1", overrides, root=tmp_path)
    returns = eval_returns(run)
    assert returns[0] < 100  # the untrained policy
    assert max(returns) >= 300, returns
