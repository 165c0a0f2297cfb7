"""Distributions checked against torch.distributions and hand values; LinearSchedule."""

import math

import pytest
import torch
from torch import distributions as td

from rlfleet.distributions import Categorical, DistInfo, DistInfoStd, EpsilonGreedy, Gaussian
from rlfleet.utils.schedules import LinearSchedule


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- Categorical


def test_categorical_matches_torch():
    g = _gen(1)
    logits = torch.randn(3, 4, 5, generator=g, dtype=torch.float64) * 2
    other = torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    actions = torch.randint(5, (3, 4), generator=g)
    dist = Categorical(5)
    ref, ref_other = td.Categorical(logits=logits), td.Categorical(logits=other)
    info, info_other = DistInfo(logits), DistInfo(other)

    ll = dist.log_likelihood(actions, info)
    assert ll.shape == (3, 4)
    torch.testing.assert_close(ll, ref.log_prob(actions))
    torch.testing.assert_close(dist.entropy(info), ref.entropy())
    torch.testing.assert_close(dist.kl(info, info_other), td.kl_divergence(ref, ref_other))
    assert torch.equal(dist.mode(info), logits.argmax(-1))
    # KL(p || p) = 0 and KL >= 0.
    torch.testing.assert_close(dist.kl(info, info), torch.zeros(3, 4, dtype=torch.float64))
    assert (dist.kl(info_other, info) >= 0).all()


def test_categorical_log_likelihood_accepts_float_actions():
    logits = torch.tensor([[0.0, math.log(3.0)]])
    ll = Categorical(2).log_likelihood(torch.tensor([1.0]), DistInfo(logits))
    torch.testing.assert_close(ll, torch.tensor([math.log(0.75)]))


def test_categorical_sample_frequencies():
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    info = DistInfo(probs.log().expand(20000, 4))
    samples = Categorical(4).sample(info, generator=_gen(0))
    assert samples.shape == (20000,) and samples.dtype == torch.int64
    freq = torch.bincount(samples, minlength=4).double() / 20000
    # Binomial std of a frequency is sqrt(p(1-p)/N) <= 0.0035 here; 0.02 is > 5 std.
    torch.testing.assert_close(freq, probs.double(), atol=0.02, rtol=0)
    # Reproducible with the same generator seed.
    assert torch.equal(Categorical(4).sample(info, generator=_gen(0)), samples)


# ---------------------------------------------------------------- Gaussian


def _gauss_info(shape, seed, dtype=torch.float64):
    g = _gen(seed)
    return DistInfoStd(
        torch.randn(shape, generator=g, dtype=dtype), torch.rand(shape, generator=g, dtype=dtype) * 2 - 1.5
    )


def test_gaussian_matches_torch_independent_normal():
    info, other = _gauss_info((5, 3), 0), _gauss_info((5, 3), 1)
    dist = Gaussian(3)
    ref = td.Independent(td.Normal(info.mean, info.log_std.exp()), 1)
    ref_other = td.Independent(td.Normal(other.mean, other.log_std.exp()), 1)
    x = torch.randn(5, 3, generator=_gen(2), dtype=torch.float64)
    ll = dist.log_likelihood(x, info)
    assert ll.shape == (5,)
    torch.testing.assert_close(ll, ref.log_prob(x))
    torch.testing.assert_close(dist.entropy(info), ref.entropy())
    torch.testing.assert_close(dist.kl(info, other), td.kl_divergence(ref, ref_other))
    torch.testing.assert_close(dist.kl(info, info), torch.zeros(5, dtype=torch.float64), atol=1e-7, rtol=0)
    assert torch.equal(dist.mode(info), info.mean)


def test_gaussian_log_std_clamped():
    dist = Gaussian(1, min_log_std=-2.0, max_log_std=1.0)
    info = DistInfoStd(torch.zeros(2, 1, dtype=torch.float64), torch.tensor([[-10.0], [10.0]], dtype=torch.float64))
    ref = td.Normal(torch.zeros(2, 1, dtype=torch.float64), torch.tensor([[math.exp(-2.0)], [math.exp(1.0)]]))
    x = torch.full((2, 1), 0.3, dtype=torch.float64)
    torch.testing.assert_close(dist.log_likelihood(x, info), ref.log_prob(x).sum(-1))


def test_gaussian_sample_moments_and_reproducibility():
    info = DistInfoStd(torch.tensor([1.0, -2.0]).expand(40000, 2), torch.tensor([0.0, math.log(0.5)]).expand(40000, 2))
    dist = Gaussian(2)
    x = dist.sample(info, generator=_gen(3))
    assert x.shape == (40000, 2)
    # Std error of the mean is sigma / 200 <= 0.005; 0.03 is 6 std errors.
    torch.testing.assert_close(x.mean(0), torch.tensor([1.0, -2.0]), atol=0.03, rtol=0)
    torch.testing.assert_close(x.std(0), torch.tensor([1.0, 0.5]), atol=0.03, rtol=0)
    assert torch.equal(dist.sample(info, generator=_gen(3)), x)


def test_squashed_gaussian_log_likelihood_change_of_variables():
    info = _gauss_info((6, 2), 4)
    u = torch.randn(6, 2, generator=_gen(5), dtype=torch.float64) * 1.5
    squashed = Gaussian(2, squash=True)
    normal_lp = td.Normal(info.mean, info.log_std.exp()).log_prob(u).sum(-1)
    correction = torch.log(1 - torch.tanh(u) ** 2).sum(-1)  # computed directly
    expected = normal_lp - correction
    torch.testing.assert_close(squashed.log_likelihood_pre_squash(u, info), expected)
    # Through the squashed action (atanh inverts tanh up to the 1e-6 clamp, far from |u| <= ~4).
    torch.testing.assert_close(squashed.log_likelihood(torch.tanh(u), info), expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(
        squashed.log_likelihood(torch.tanh(u), info), squashed.log_likelihood_pre_squash(u, info), rtol=1e-6, atol=1e-6
    )
    # Squashing only adds a correction: it is non-negative since log(1 - tanh^2) <= 0.
    assert (expected >= normal_lp).all()


def test_squashed_gaussian_stable_for_large_u():
    info = DistInfoStd(torch.zeros(1, 1), torch.zeros(1, 1))
    u = torch.tensor([[30.0]])
    ll = Gaussian(1, squash=True).log_likelihood_pre_squash(u, info)
    # log(1 - tanh(u)^2) = log(sech^2 u) ~ 2 (log 2 - u) for large u; the naive formula gives -inf.
    expected = -0.5 * 30.0**2 - 0.5 * math.log(2 * math.pi) - 2 * (math.log(2) - 30.0)
    assert torch.isfinite(ll).all()
    torch.testing.assert_close(ll, torch.tensor([expected]))


def test_squashed_gaussian_sample_and_mode_in_bounds():
    info = DistInfoStd(torch.tensor([[3.0, -3.0]]).expand(1000, 2), torch.zeros(1000, 2))
    dist = Gaussian(2, squash=True)
    x = dist.sample(info, generator=_gen(6))
    assert (x.abs() <= 1).all()
    u = dist.sample_pre_squash(info, generator=_gen(6))
    torch.testing.assert_close(torch.tanh(u), x)
    torch.testing.assert_close(dist.mode(info)[0], torch.tanh(torch.tensor([3.0, -3.0])))


# ---------------------------------------------------------------- EpsilonGreedy


def test_epsilon_zero_is_argmax():
    q = torch.randn(7, 5, 6, generator=_gen(7))
    actions = EpsilonGreedy(6, epsilon=0.0).sample(q, generator=_gen(8))
    assert actions.shape == (7, 5) and actions.dtype == torch.int64
    assert torch.equal(actions, q.argmax(-1))


N_SAMPLES = 60000
N_ACTIONS = 4
# Each count is Binomial(N, p); with p <= 1/2 its std is at most sqrt(N) / 2 ~ 122 for N = 60000, i.e. 0.2% of N.
# A 1.5% tolerance is > 7 std: a correct sampler fails with probability < 1e-12 for any seed (the seed is
# fixed anyway), while a biased one (e.g. greedy with prob 1 - eps + eps/n vs eps) is off by >= 5%.
FREQ_TOL = 0.015


def test_epsilon_one_is_uniform():
    q = torch.zeros(N_SAMPLES, N_ACTIONS)
    q[:, 2] = 1.0  # greedy action 2 everywhere
    actions = EpsilonGreedy(N_ACTIONS, epsilon=1.0).sample(q, generator=_gen(9))
    freq = torch.bincount(actions, minlength=N_ACTIONS).double() / N_SAMPLES
    torch.testing.assert_close(
        freq, torch.full((N_ACTIONS,), 1 / N_ACTIONS, dtype=torch.float64), atol=FREQ_TOL, rtol=0
    )


def test_epsilon_half_mixes_greedy_and_uniform():
    q = torch.zeros(N_SAMPLES, N_ACTIONS)
    q[:, 0] = 1.0
    actions = EpsilonGreedy(N_ACTIONS, epsilon=0.5).sample(q, generator=_gen(10))
    freq = torch.bincount(actions, minlength=N_ACTIONS).double() / N_SAMPLES
    # Greedy with prob (1 - eps) + eps / n = 0.625, each other action eps / n = 0.125.
    expected = torch.tensor([0.625, 0.125, 0.125, 0.125], dtype=torch.float64)
    torch.testing.assert_close(freq, expected, atol=FREQ_TOL, rtol=0)


def test_epsilon_per_env_tensor():
    T, B = N_SAMPLES // 3, 3
    q = torch.zeros(T, B, N_ACTIONS)
    q[..., 3] = 1.0
    eps = torch.tensor([0.0, 1.0, 0.2])  # one epsilon per env, broadcast over T
    actions = EpsilonGreedy(N_ACTIONS, epsilon=eps).sample(q, generator=_gen(11))
    assert actions.shape == (T, B)
    assert (actions[:, 0] == 3).all()  # eps = 0: always greedy
    for b, e in ((1, 1.0), (2, 0.2)):
        freq = torch.bincount(actions[:, b], minlength=N_ACTIONS).double() / T
        expected = torch.full((N_ACTIONS,), e / N_ACTIONS, dtype=torch.float64)
        expected[3] += 1 - e
        # T = 20000 here: binomial std <= sqrt(T) / 2 / T ~ 0.35%, so 1.5% is > 4 std.
        torch.testing.assert_close(freq, expected, atol=FREQ_TOL, rtol=0)


def test_epsilon_reproducible_with_generator():
    q = torch.randn(100, 3, generator=_gen(12))
    greedy = EpsilonGreedy(3, epsilon=0.5)
    assert torch.equal(greedy.sample(q, generator=_gen(13)), greedy.sample(q, generator=_gen(13)))


# ---------------------------------------------------------------- LinearSchedule


@pytest.mark.parametrize(
    "step, value",
    [(0, 1.0), (25, 0.775), (50, 0.55), (100, 0.1), (150, 0.1), (10**9, 0.1), (-10, 1.0)],
)
def test_linear_schedule_hand_values(step, value):
    assert LinearSchedule(start=1.0, end=0.1, steps=100)(step) == pytest.approx(value, abs=1e-12)


def test_linear_schedule_increasing_and_zero_steps():
    sched = LinearSchedule(start=0.0, end=2.0, steps=4)
    assert [sched(s) for s in range(6)] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    assert LinearSchedule(start=1.0, end=0.05, steps=0)(0) == 0.05
