"""Distributional, Munchausen and value-rescaling targets and losses against hand-computed numbers."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlfleet.algos.dqn.losses import (
    categorical_projection,
    fraction_proposal_loss,
    munchausen_quantile_target,
    munchausen_target,
    project_onto_support,
    quantile_huber_loss,
    sample_taus,
    tau_hats,
)
from rlfleet.algos.dqn.value_transform import h, h_inverse

F64 = torch.float64


def t64(values) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


# ---------------------------------------------------------------- C51 projection


def test_categorical_projection_hand_computed():
    # support z = [-2, -1, 0, 1, 2], dz = 1; position of a shifted atom b = Tz + 2
    p = [0.1, 0.2, 0.3, 0.2, 0.2]
    next_probs = t64([p] * 6)
    returns = t64([0.5, 1.5, -1.5, 0.3, -1.0, 5.0])
    discounts = t64([0.5, 0.5, 0.5, 0.0, 0.0, 0.0])
    expected = t64(
        [
            # Tz = [-0.5, 0, 0.5, 1, 1.5]: atoms 1 and 3 land exactly on z=0 and z=1
            [0.0, 0.05, 0.05 + 0.2 + 0.15, 0.15 + 0.2 + 0.1, 0.1],
            # Tz = [0.5, 1, 1.5, 2, 2.5 -> 2]: clamped at v_max, atom 3 exactly on the top edge
            [0.0, 0.0, 0.05, 0.05 + 0.2 + 0.15, 0.15 + 0.2 + 0.2],
            # Tz = [-2.5 -> -2, -2, -1.5, -1, -0.5]: clamped at v_min
            [0.1 + 0.2 + 0.15, 0.15 + 0.2 + 0.1, 0.1, 0.0, 0.0],
            # terminal, r = 0.3: all mass at b = 2.3, split 0.7 / 0.3 between z=0 and z=1
            [0.0, 0.0, 0.7, 0.3, 0.0],
            # terminal, r = -1 exactly on an atom
            [0.0, 1.0, 0.0, 0.0, 0.0],
            # terminal, r = 5 beyond v_max
            [0.0, 0.0, 0.0, 0.0, 1.0],
        ]
    )
    out = categorical_projection(next_probs, returns, discounts, -2.0, 2.0)
    torch.testing.assert_close(out, expected)


def test_categorical_projection_three_atoms_float32():
    # z = [0, 5, 10], dz = 5; r = 1, discount = 0.9: Tz = [1, 5.5, 10] -> b = [0.2, 1.1, 2]
    next_probs = torch.tensor([[0.5, 0.25, 0.25]])
    out = categorical_projection(next_probs, torch.tensor([1.0]), torch.tensor([0.9]), 0.0, 10.0)
    expected = torch.tensor([[0.5 * 0.8, 0.5 * 0.2 + 0.25 * 0.9, 0.25 * 0.1 + 0.25]])
    torch.testing.assert_close(out, expected)


def test_categorical_projection_conserves_mass_and_has_no_gradient():
    gen = torch.Generator().manual_seed(0)
    n, k = 256, 51
    logits = torch.randn(n, k, generator=gen, requires_grad=True)
    probs = torch.softmax(logits, dim=-1)
    returns = 30.0 * torch.randn(n, generator=gen)
    discounts = torch.rand(n, generator=gen)
    discounts[::4] = 0.0
    discounts[1::4] = 1.0
    out = categorical_projection(probs, returns, discounts, -10.0, 10.0)
    assert out.shape == (n, k)
    assert not out.requires_grad
    assert (out >= 0).all()
    torch.testing.assert_close(out.sum(-1), torch.ones(n))


def test_project_onto_support_arbitrary_atoms():
    # support z = [0, 1, 2]; atoms at -3 (clamped to 0), 1.25 and 2 (top edge) carrying 0.2, 0.4, 0.4
    out = project_onto_support(t64([[0.2, 0.4, 0.4]]), t64([[-3.0, 1.25, 2.0]]), 0.0, 2.0)
    torch.testing.assert_close(out, t64([[0.2, 0.4 * 0.75, 0.4 * 0.25 + 0.4]]))


def test_categorical_projection_rejects_bad_support():
    with pytest.raises(ValueError):
        categorical_projection(torch.ones(2, 1), torch.zeros(2), torch.zeros(2), -1.0, 1.0)
    with pytest.raises(ValueError):
        categorical_projection(torch.ones(2, 3) / 3, torch.zeros(2), torch.zeros(2), 1.0, 1.0)


# ---------------------------------------------------------------- quantile Huber loss (QR-DQN, IQN)

# one sample, K = 2 quantiles [0, 2] at taus [0.25, 0.75], M = 2 targets [1, 3]
# u_ij = T_j - theta_i: row i=0: [1, 3], row i=1: [-1, 1]
# asymmetric weights |tau_i - 1{u<0}|: row 0: [0.25, 0.25], row 1: [0.25, 0.75]


@pytest.mark.parametrize(
    ("kappa", "expected"),
    [
        # Huber_1(u): [0.5, 2.5], [0.5, 0.5]; rho: [0.125, 0.625], [0.125, 0.375]; sum 1.25 / M
        (1.0, 0.625),
        # |u|: [1, 3], [1, 1]; rho: [0.25, 0.75], [0.25, 0.75]; sum 2.0 / M
        (0.0, 1.0),
        # Huber_2(u) / 2: [0.25, 2.0], [0.25, 0.25]; rho: [0.0625, 0.5], [0.0625, 0.1875]; sum 0.8125 / M
        (2.0, 0.40625),
    ],
)
def test_quantile_huber_loss_hand_computed(kappa, expected):
    quantiles = t64([[0.0, 2.0]])
    targets = t64([[1.0, 3.0]])
    loss = quantile_huber_loss(quantiles, targets, t64([0.25, 0.75]), kappa)
    torch.testing.assert_close(loss, t64([expected]))


def test_quantile_loss_gradient_and_detached_targets():
    quantiles = t64([[0.0, 2.0]]).requires_grad_()
    targets = t64([[1.0, 3.0]]).requires_grad_()
    quantile_huber_loss(quantiles, targets, t64([0.25, 0.75]), kappa=0.0).sum().backward()
    # d/dtheta_i = -(1/M) sum_j (tau_i - 1{u_ij < 0}): i=0: -(0.25 + 0.25)/2, i=1: -(-0.25 + 0.75)/2
    torch.testing.assert_close(quantiles.grad, t64([[-0.25, -0.25]]))
    assert targets.grad is None


def test_quantile_huber_loss_samples_independent():
    gen = torch.Generator().manual_seed(1)
    quantiles = torch.randn(5, 4, generator=gen)
    targets = torch.randn(5, 6, generator=gen)
    taus = torch.rand(5, 4, generator=gen)
    full = quantile_huber_loss(quantiles, targets, taus)
    for i in range(5):
        alone = quantile_huber_loss(quantiles[i : i + 1], targets[i : i + 1], taus[i])
        torch.testing.assert_close(full[i : i + 1], alone)
    changed = targets.clone()
    changed[3] += 10.0
    torch.testing.assert_close(quantile_huber_loss(quantiles, changed, taus)[:3], full[:3])


def test_iqn_loss_with_per_sample_taus_hand_computed():
    quantiles = t64([[0.0, 2.0], [1.0, 1.0]])
    targets = t64([[1.0, 3.0], [0.0, 3.0]])
    taus = t64([[0.1, 0.9], [0.5, 0.2]])
    # sample 0: u = [[1, 3], [-1, 1]], Huber [[0.5, 2.5], [0.5, 0.5]], weights [[0.1, 0.1], [0.1, 0.9]]
    #   rho = [[0.05, 0.25], [0.05, 0.45]] -> 0.8 / 2 = 0.4
    # sample 1: u = [[-1, 2], [-1, 2]], Huber [[0.5, 1.5], [0.5, 1.5]], weights [[0.5, 0.5], [0.8, 0.2]]
    #   rho = [[0.25, 0.75], [0.4, 0.3]] -> 1.7 / 2 = 0.85
    loss = quantile_huber_loss(quantiles, targets, taus, kappa=1.0)
    torch.testing.assert_close(loss, t64([0.4, 0.85]))
    # sample 1 with sample 0's taus [0.1, 0.9]: rho = [[0.45, 0.15], [0.05, 1.35]] -> 1.0, so taus are per sample
    shared = quantile_huber_loss(quantiles, targets, taus[0], kappa=1.0)
    torch.testing.assert_close(shared, t64([0.4, 1.0]))


def test_sample_taus_uniform_and_reproducible():
    a = sample_taus((3, 8), torch.Generator().manual_seed(7))
    b = sample_taus((3, 8), torch.Generator().manual_seed(7))
    assert a.shape == (3, 8) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert ((a >= 0) & (a < 1)).all()
    assert sample_taus((2,), dtype=F64).dtype == F64


# ---------------------------------------------------------------- FQF


def test_tau_hats():
    torch.testing.assert_close(tau_hats(t64([[0.0, 0.2, 0.7, 1.0]])), t64([[0.1, 0.45, 0.85]]))


def test_fraction_proposal_loss_gradient_hand_computed():
    # K = 3: taus [0, 0.2, 0.7, 1]; F^-1(tau_1), F^-1(tau_2) = 1.5, 3; F^-1(hat tau_0..2) = 0.5, 2, 5
    # dW1/dtau_1 = 2 * 1.5 - 2 - 0.5 = 0.5;  dW1/dtau_2 = 2 * 3 - 5 - 2 = -1
    # second sample: taus [0, 0.5, 0.6, 1]; F^-1(tau) = [0, 1]; F^-1(hat tau) = [-1, 0.5, 2]
    # dW1/dtau_1 = 0 - 0.5 + 1 = 0.5;  dW1/dtau_2 = 2 - 2 - 0.5 = -0.5
    taus = t64([[0.0, 0.2, 0.7, 1.0], [0.0, 0.5, 0.6, 1.0]]).requires_grad_()
    at_taus = t64([[1.5, 3.0], [0.0, 1.0]]).requires_grad_()
    at_hats = t64([[0.5, 2.0, 5.0], [-1.0, 0.5, 2.0]]).requires_grad_()
    loss = fraction_proposal_loss(at_taus, at_hats, taus)
    torch.testing.assert_close(loss, t64([0.5 * 0.2 - 1.0 * 0.7, 0.5 * 0.5 - 0.5 * 0.6]))
    loss.sum().backward()
    torch.testing.assert_close(taus.grad, t64([[0.0, 0.5, -1.0, 0.0], [0.0, 0.5, -0.5, 0.0]]))
    assert at_taus.grad is None and at_hats.grad is None


def test_fraction_proposal_gradient_matches_finite_difference_of_w1():
    # F^-1(w) = w^3 + w; on [a, b] with midpoint m, int |F^-1(w) - F^-1(m)| dw = G(b) + G(a) - 2 G(m)
    # (G the antiderivative w^4/4 + w^2/2), so W1(taus) has a closed form to differentiate numerically.
    def inv_cdf(w):
        return w**3 + w

    def antiderivative(w):
        return w**4 / 4 + w**2 / 2

    def w1(taus):
        a, b = taus[:-1], taus[1:]
        return (antiderivative(b) + antiderivative(a) - 2 * antiderivative((a + b) / 2)).sum()

    taus = t64([[0.0, 0.15, 0.4, 0.8, 1.0]]).requires_grad_()
    fraction_proposal_loss(inv_cdf(taus[:, 1:-1]), inv_cdf(tau_hats(taus)), taus).sum().backward()
    step = 1e-6
    numeric = []
    for i in (1, 2, 3):
        up, down = taus.detach()[0].clone(), taus.detach()[0].clone()
        up[i] += step
        down[i] -= step
        numeric.append(((w1(up) - w1(down)) / (2 * step)).item())
    torch.testing.assert_close(taus.grad[0, 1:-1], t64(numeric), rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------- Munchausen

# tau = 0.5, alpha = 0.9. Q(s) = [1, 2] -> Q/tau = [2, 4], logsumexp = 4 + log(1 + e^-2) = 4 + 0.1269280110429726
#   log pi(s) = [-2.1269280110429727, -0.1269280110429726], tau log pi(s) = [-1.0634640055214863, -0.0634640055214863]
# Q(s') = [0, 1] -> log pi(s') is the same vector, pi(s') = [0.11920292202211753, 0.8807970779778823]
#   soft value sum pi (q - tau log pi) = tau * logsumexp(Q/tau) = 0.5 * 2.1269280110429727 = 1.0634640055214863
TAU, ALPHA = 0.5, 0.9
SOFT_NEXT = 1.0634640055214863


def test_munchausen_target_hand_computed():
    q_s = t64([[1.0, 2.0], [1.0, 2.0]])
    q_next = t64([[0.0, 1.0], [0.0, 1.0]])
    action = torch.tensor([0, 1])
    reward, discount = t64([1.0, 0.5]), t64([0.99, 0.0])
    y = munchausen_target(reward, discount, q_s, action, q_next, TAU, ALPHA)
    # sample 0: tau log pi(a=0) = -1.0634... is clipped to -1: y = 1 + 0.9 * (-1) + 0.99 * 1.0634640055214863
    # sample 1 (terminal): y = 0.5 + 0.9 * (-0.0634640055214863)
    torch.testing.assert_close(y, t64([1.1528293654662711, 0.44288239503066235]))
    # a looser clip no longer engages: y = 1 + 0.9 * (-1.0634640055214863) + 0.99 * 1.0634640055214863
    y_loose = munchausen_target(reward, discount, q_s, action, q_next, TAU, ALPHA, clip_min=-2.0)
    torch.testing.assert_close(y_loose[0], t64(1.0957117604969335))
    # alpha = 0: soft DQN target r + discount * tau * logsumexp(Q(s')/tau)
    y_soft = munchausen_target(reward, discount, q_s, action, q_next, TAU, 0.0)
    torch.testing.assert_close(y_soft, t64([1.0 + 0.99 * SOFT_NEXT, 0.5]))


def test_munchausen_target_stable_for_small_temperature_and_no_gradient():
    q_s = torch.tensor([[100.0, 0.0]], requires_grad=True)
    q_next = torch.tensor([[50.0, -50.0]], requires_grad=True)
    y = munchausen_target(torch.tensor([0.0]), torch.tensor([1.0]), q_s, torch.tensor([1]), q_next, 0.03, ALPHA)
    # log pi(a=1|s) is about -100/0.03, so the bonus is clipped to -1 * alpha; the soft value is max Q(s') = 50
    assert torch.isfinite(y).all() and not y.requires_grad
    torch.testing.assert_close(y, torch.tensor([-ALPHA + 50.0]))


def test_munchausen_quantile_target_hand_computed():
    # Z_0(s') = [-1, 0.5], Z_1(s') = [1, 1.5]: means [0, 1], so pi(s') is as above
    # sum_a pi (Z_j - tau log pi) = SOFT_NEXT + sum_a pi (Z_j - Q): j=0: 0.5038625445104276, j=1: 1.6230654665325448
    next_quantiles = t64([[[-1.0, 0.5], [1.0, 1.5]]])
    out = munchausen_quantile_target(
        t64([1.0]), t64([0.99]), t64([[1.0, 2.0]]), torch.tensor([0]), next_quantiles, TAU, ALPHA
    )
    torch.testing.assert_close(out, t64([[0.1 + 0.99 * 0.5038625445104276, 0.1 + 0.99 * 1.6230654665325448]]))


def test_munchausen_quantile_target_reduces_to_mdqn_with_equal_quantiles():
    gen = torch.Generator().manual_seed(3)
    n, m, a = 6, 5, 4
    q_s = torch.randn(n, a, generator=gen)
    q_next = torch.randn(n, a, generator=gen)
    action = torch.randint(a, (n,), generator=gen)
    reward, discount = torch.randn(n, generator=gen), torch.rand(n, generator=gen)
    expected = munchausen_target(reward, discount, q_s, action, q_next, 0.1, ALPHA)
    equal_quantiles = q_next.unsqueeze(1).expand(n, m, a)
    out = munchausen_quantile_target(reward, discount, q_s, action, equal_quantiles, 0.1, ALPHA)
    assert out.shape == (n, m)
    torch.testing.assert_close(out, expected.unsqueeze(1).expand(n, m))


def test_munchausen_rejects_bad_arguments():
    q, act, r = torch.zeros(1, 2), torch.tensor([0]), torch.zeros(1)
    with pytest.raises(ValueError):
        munchausen_target(r, r, q, act, q, 0.0, ALPHA)
    with pytest.raises(ValueError):
        munchausen_target(r, r, q, act, q, TAU, ALPHA, clip_min=0.5)


# ---------------------------------------------------------------- value transform

finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False).filter(lambda v: v == 0 or abs(v) > 1e-250)
epsilons = st.sampled_from([1e-3, 0.0, 1e-2])


def test_h_hand_values():
    # h(3) = sqrt(4) - 1 + 0.003; h(-8) = -(sqrt(9) - 1) - 0.008
    torch.testing.assert_close(h(t64([0.0, 3.0, -8.0])), t64([0.0, 1.003, -2.008]))
    torch.testing.assert_close(h_inverse(t64([0.0, 1.003, -2.008])), t64([0.0, 3.0, -8.0]))
    # eps = 0: h^-1(x) = sign(x) ((|x| + 1)^2 - 1)
    torch.testing.assert_close(h_inverse(t64([2.0, -1.0]), eps=0.0), t64([8.0, -3.0]))


def test_h_inverse_matches_pohlen_closed_form():
    eps = 1e-3
    x = torch.linspace(-1e4, 1e4, 2001, dtype=F64)
    closed = torch.sign(x) * (((torch.sqrt(1 + 4 * eps * (x.abs() + 1 + eps)) - 1) / (2 * eps)) ** 2 - 1)
    torch.testing.assert_close(h_inverse(x, eps), closed, rtol=1e-9, atol=1e-9)


@settings(max_examples=300, deadline=None)
@given(x=finite, eps=epsilons)
def test_h_inverse_of_h_is_identity(x, eps):
    value = t64([x])
    torch.testing.assert_close(h_inverse(h(value, eps), eps), value, rtol=1e-12, atol=0.0)


@settings(max_examples=300, deadline=None)
@given(x=finite, eps=epsilons)
def test_h_of_h_inverse_is_identity(x, eps):
    value = t64([x])
    torch.testing.assert_close(h(h_inverse(value, eps), eps), value, rtol=1e-12, atol=0.0)


@settings(max_examples=200, deadline=None)
@given(x=finite, y=finite, eps=epsilons)
def test_h_and_inverse_monotonic(x, y, eps):
    lo, hi = t64([min(x, y)]), t64([max(x, y)])
    assert h(lo, eps) <= h(hi, eps)
    assert h_inverse(lo, eps) <= h_inverse(hi, eps)


def test_h_strictly_increasing_on_grid_and_odd():
    x = torch.linspace(-1e3, 1e3, 10_001, dtype=F64)
    assert (h(x).diff() > 0).all() and (h_inverse(x).diff() > 0).all()
    torch.testing.assert_close(h(-x), -h(x))
