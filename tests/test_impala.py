"""IMPALA's learner: the loss by hand and against an independent V-trace sum, the behaviour policy
read from the stored ``dist_info``, on-policy value targets equal to lambda=1 returns (truncations
bootstrapped), learning, determinism, exact resume and config errors."""

from __future__ import annotations

import math

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
from rlfleet.algos.pg.impala import impala_loss
from rlfleet.algos.pg.returns import generalized_advantage_estimation, next_values
from rlfleet.algos.specs.impala import IMPALAConfig
from rlfleet.build import build_experiment
from rlfleet.config.loader import resolve, validate
from rlfleet.errors import ConfigError
from rlfleet.experiment import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# CartPole, 16 x 4 = 64 steps per batch; a constant learning rate (the preset anneals it over
# runner.n_steps, which the resume changes on purpose).
SMALL = [
    "algo.anneal_lr=false",
    "sampler.batch_T=16",
    "sampler.batch_B=4",
    "runner.log_interval_steps=256",
    "runner.eval_interval_steps=512",
    "runner.eval_episodes=2",
    *QUIET,
]


# ----- (1) the loss, by hand and against eq. 1 of the paper written as a sum -----
def test_loss_terms_by_hand_with_the_three_clips():
    # pi/mu = [0.5/0.25, 0.25/0.5] = [2, 0.5]: rho = min(1.5, .) = [1.5, 0.5], c = min(1, .) = [1, 0.5],
    # rho_pg = min(1.2, .) = [1.2, 0.5]
    config = IMPALAConfig(rho_clip=1.5, c_clip=1.0, pg_rho_clip=1.2, value_coef=0.5, entropy_coef=0.01)
    log_prob = torch.log(torch.tensor([[0.5], [0.25]])).requires_grad_()
    behaviour_log_prob = torch.log(torch.tensor([[0.25], [0.5]]))
    entropy = torch.tensor([[0.6], [0.4]], requires_grad=True)
    value = torch.tensor([[0.5], [1.0]], requires_grad=True)
    reward, bootstrap, discount = torch.tensor([[1.0], [2.0]]), torch.tensor([2.0]), torch.full((2, 1), 0.5)
    out = impala_loss(log_prob, behaviour_log_prob, entropy, value, reward, bootstrap, discount, config)

    # V(x_{t+1}) = [1, 2]; delta = rho (r + gamma V(x_{t+1}) - V(x_t))
    #   = [1.5 (1 + 0.5 - 0.5), 0.5 (2 + 1 - 1)] = [1.5, 1]
    # v_1 = 1 + 1 = 2; v_0 = 0.5 + 1.5 + 0.5 * c_0 * (v_1 - V(x_1)) = 2.5
    torch.testing.assert_close(out.vtrace.vs, torch.tensor([[2.5], [2.0]]))
    torch.testing.assert_close(out.vtrace.clipped_rhos, torch.tensor([[1.5], [0.5]]))
    # A = rho_pg (r + gamma v_{t+1} - V(x_t)) = [1.2 (1 + 0.5 * 2 - 0.5), 0.5 (2 + 0.5 * 2 - 1)] = [1.8, 1]
    torch.testing.assert_close(out.vtrace.pg_advantages, torch.tensor([[1.8], [1.0]]))
    # pi: -(1.8 log 0.5 + 1 log 0.25) / 2 = 1.9 log 2; value: 0.5 ((2.5 - 0.5)^2 + (2 - 1)^2) / 2 = 1.25
    assert out.pi_loss.item() == pytest.approx(1.9 * math.log(2))
    assert out.value_loss.item() == pytest.approx(1.25)
    assert out.entropy.item() == pytest.approx(0.5)
    assert out.loss.item() == pytest.approx(1.9 * math.log(2) + 0.5 * 1.25 - 0.01 * 0.5)

    # the targets are constants: d/dlog pi = -A / N, d/dV = -c_v (v - V) / N, d/dH = -c_e / N
    out.loss.backward()
    torch.testing.assert_close(log_prob.grad, torch.tensor([[-0.9], [-0.5]]))
    torch.testing.assert_close(value.grad, torch.tensor([[-0.5], [-0.25]]))
    torch.testing.assert_close(entropy.grad, torch.full((2, 1), -0.005))


def reference_terms(log_prob, behaviour_log_prob, entropy, value, reward, bootstrap, discount, c: IMPALAConfig):
    """The three terms from eq. 1 as an explicit sum per step, in Python floats (no recursion)."""
    T, B = reward.shape
    ratio = (log_prob - behaviour_log_prob).exp().tolist()
    V = [[*value[:, b].tolist(), bootstrap[b].item()] for b in range(B)]  # V(x_0..x_T) per column
    r, d = reward.tolist(), discount.tolist()
    vs = [[0.0] * B for _ in range(T + 1)]
    for b in range(B):
        vs[T][b] = V[b][T]
        for s in range(T):
            total, weight = V[b][s], 1.0
            for t in range(s, T):
                delta = min(c.rho_clip, ratio[t][b]) * (r[t][b] + d[t][b] * V[b][t + 1] - V[b][t])
                total += weight * delta
                weight *= d[t][b] * min(c.c_clip, ratio[t][b])
            vs[s][b] = total
    lp = log_prob.tolist()
    pg, sq = 0.0, 0.0
    for t in range(T):
        for b in range(B):
            advantage = min(c.pg_rho_clip, ratio[t][b]) * (r[t][b] + d[t][b] * vs[t + 1][b] - V[b][t])
            pg -= advantage * lp[t][b]
            sq += (vs[t][b] - V[b][t]) ** 2
    return pg / (T * B), 0.5 * sq / (T * B), entropy.mean().item()


@pytest.mark.parametrize(("rho_clip", "c_clip", "pg_rho_clip"), [(1.0, 1.0, 1.0), (2.0, 0.7, 1.3), (0.5, 0.5, 0.8)])
def test_loss_terms_equal_the_papers_sum(rho_clip, c_clip, pg_rho_clip):
    T, B, g = 6, 3, torch.Generator().manual_seed(0)
    terminated = torch.zeros(T, B, dtype=torch.bool)
    terminated[1, 0] = terminated[4, 2] = True
    log_prob = -torch.rand(T, B, generator=g) * 2
    behaviour_log_prob = log_prob + torch.randn(T, B, generator=g)  # ratios roughly in [0.2, 5]
    entropy, value = torch.rand(T, B, generator=g), torch.randn(T, B, generator=g)
    reward, bootstrap = torch.randn(T, B, generator=g), torch.randn(B, generator=g)
    discount = 0.9 * (~terminated).float()
    config = IMPALAConfig(rho_clip=rho_clip, c_clip=c_clip, pg_rho_clip=pg_rho_clip, value_coef=0.3, entropy_coef=0.1)
    out = impala_loss(log_prob, behaviour_log_prob, entropy, value, reward, bootstrap, discount, config)
    pi_loss, value_loss, mean_entropy = reference_terms(
        log_prob, behaviour_log_prob, entropy, value, reward, bootstrap, discount, config
    )
    assert out.pi_loss.item() == pytest.approx(pi_loss, rel=1e-5)
    assert out.value_loss.item() == pytest.approx(value_loss, rel=1e-5)
    assert out.entropy.item() == pytest.approx(mean_entropy)
    assert out.loss.item() == pytest.approx(pi_loss + 0.3 * value_loss - 0.1 * mean_entropy, rel=1e-5)


# ----- (2) on a sampled batch: mu from agent_info, lambda=1 returns on-policy -----
@pytest.fixture
def experiment():
    """CartPole with a 15-step time limit: a [32,4] batch holds terminations and truncations."""
    overrides = ["sampler.batch_T=32", "sampler.batch_B=4", "env.max_episode_steps=15", *QUIET]
    exp = build_experiment(validate(resolve("impala", "CartPole-v1", overrides, None, 0)))
    exp.agent.sample_mode(0)
    batch = exp.sampler.obtain_samples()
    exp.agent.train_mode(0)
    yield exp, batch
    exp.close()


def test_on_policy_value_targets_are_lambda_one_returns(experiment):
    exp, batch = experiment
    s, algo = batch.torch_samples, exp.algo
    assert s.env.terminated.any() and s.env.truncated.any()
    out = algo.loss(batch)
    # A2C's targets with gae_lambda=1 from the stored values: truncated steps bootstrap from V(final observation)
    value, bootstrap, truncated_value = algo.value_estimates(batch)
    next_value = next_values(value, bootstrap, s.env.terminated, s.env.truncated, truncated_value)
    advantage, return_ = generalized_advantage_estimation(
        s.env.reward, value, next_value, s.env.terminated | s.env.truncated, algo.gamma, 1.0
    )
    torch.testing.assert_close(out.vtrace.clipped_rhos, torch.ones_like(value))
    torch.testing.assert_close(out.vtrace.vs, return_)
    torch.testing.assert_close(out.vtrace.pg_advantages, advantage)


def test_behaviour_policy_is_the_stored_dist_info(experiment):
    exp, batch = experiment
    s = batch.torch_samples
    with torch.no_grad():
        dist_info, _ = exp.agent(s.env.observation, s.agent.prev_action, s.env.prev_reward)
    target = torch.softmax(dist_info.logits, -1).gather(-1, s.agent.action.long().unsqueeze(-1)).squeeze(-1)  # pi(a|x)
    # an acting policy that gave the action it took probability 0.9: rho = min(1, pi(a|x) / 0.9) (pi is near uniform)
    stored = s.agent.agent_info.dist_info.logits
    stored.zero_().scatter_(-1, s.agent.action.long().unsqueeze(-1), math.log(9.0))
    out = exp.algo.loss(batch)
    torch.testing.assert_close(out.vtrace.clipped_rhos, torch.clamp(target / 0.9, max=1.0))
    assert (out.vtrace.clipped_rhos < 0.7).all()


def test_one_update_with_continuous_actions():
    overrides = ["sampler.batch_T=8", "sampler.batch_B=2", *QUIET]
    exp = build_experiment(validate(resolve("impala", "Pendulum-v1", overrides, None, 0)))
    try:
        exp.agent.sample_mode(0)
        batch = exp.sampler.obtain_samples()
        exp.agent.train_mode(0)
        before = exp.algo.optimizer.flat.clone()
        info = exp.algo.optimize_agent(16, batch)
        assert not torch.equal(exp.algo.optimizer.flat, before)
        assert info["clipped_rho"] == pytest.approx(1.0)
        assert all(math.isfinite(v) for v in info.values())
    finally:
        exp.close()


# ----- (3) it learns -----
@pytest.mark.slow
def test_impala_learns_cartpole(tmp_path):
    """The CartPole preset for 60k steps (about 10 s on one core): seeds 0-5 evaluated 418-466
    at the end (the lr annealed to 0 over the 60k steps); the untrained policy scores about 9."""
    overrides = [
        "runner.n_steps=60000",
        "runner.log_interval_steps=20000",
        "runner.eval_interval_steps=20000",
        "runner.eval_episodes=10",
        "runner.torch_threads=1",
        *QUIET,
    ]
    run_dir, _ = train("impala", "CartPole-v1", overrides, seed=0, name="learn", root=tmp_path)
    returns = eval_returns(run_dir)
    assert returns[0] <= 50, returns  # untrained
    assert returns[-1] >= 300, returns


# ----- (4) determinism, (5) exact resume -----
def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    args = [*SMALL, "runner.n_steps=1024"]
    a, _ = train("impala", "CartPole-v1", args, seed=3, name="a", root=tmp_path)
    b, _ = train("impala", "CartPole-v1", args, seed=3, name="b", root=tmp_path)
    c, _ = train("impala", "CartPole-v1", args, seed=4, name="c", root=tmp_path)
    rows_a, rows_c = read_progress(a), read_progress(c)
    assert learning_columns(rows_a) == learning_columns(read_progress(b))
    assert_same_model(a, b)
    assert [r["CumSteps"] for r in rows_c] == [r["CumSteps"] for r in rows_a]
    for column in ("ReturnAverage", "loss", "value_loss"):
        assert [r[column] for r in rows_a] != [r[column] for r in rows_c], column


def test_exact_resume(tmp_path):
    n = 1024
    full, _ = train("impala", "CartPole-v1", [*SMALL, f"runner.n_steps={n}"], name="full", root=tmp_path)
    half, _ = train("impala", "CartPole-v1", [*SMALL, f"runner.n_steps={n // 2}"], name="half", root=tmp_path)
    assert latest_state(half)["runner"]["cum_steps"] == n // 2
    train(resume=half, overrides=[f"runner.n_steps={n}"])
    assert_exact_resume(full, half, n)
    assert latest_state(full)["algo"]["updates"] == n // 64


# ----- (6) config errors -----
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["algo.rho_clip=-1"], "config key 'algo.rho_clip' must be > 0, got -1"),
        (["algo.c_clip=0"], "config key 'algo.c_clip' must be > 0, got 0"),
        (["algo.pg_rho_clip=-0.5"], "config key 'algo.pg_rho_clip' must be > 0, got -0.5"),
        (["algo.rmsprop_alpha=1"], "config key 'algo.rmsprop_alpha' must be in [0, 1), got 1"),
        (["algo.optimizer=sgd"], "config key 'algo.optimizer' must be one of 'rmsprop', 'adam', got 'sgd'"),
        (["algo.rho_bar=1"], "unknown config key 'algo.rho_bar'; did you mean 'algo.rho_clip'?"),
        (["model.core=lstm"], "impala has no recurrent form"),
        (["runner.kind=data_parallel"], "runner.kind=data_parallel"),
    ],
)
def test_bad_config_is_one_line_config_error(args, message):
    with pytest.raises(ConfigError) as info:
        validate(resolve("impala", "CartPole-v1", args))
    text = str(info.value)
    assert "\n" not in text
    assert message in text
