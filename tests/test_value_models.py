"""Value models: noisy layers, QModel options and the distributional Q models (C51, QR, IQN, FQF)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rlfleet.envs.spaces import Box, Discrete
from rlfleet.models import (
    CategoricalQModel,
    FractionProposal,
    ImplicitQuantileModel,
    NoisyLinear,
    QModel,
    QuantileQModel,
    has_noise,
    reset_noise,
    set_noise,
)

VECTOR = Box(-np.ones(4, np.float32), np.ones(4, np.float32), np.dtype(np.float32))
IMAGE = Box(np.zeros((4, 84, 84), np.uint8), np.full((4, 84, 84), 255, np.uint8), np.dtype(np.uint8))
ACTIONS = Discrete(3)
K = 5  # IQN fractions per observation


def observations(space, *lead):
    if space is IMAGE:
        return torch.randint(0, 256, (*lead, *space.shape), dtype=torch.uint8)
    return torch.rand(*lead, *space.shape) * 2 - 1


def outputs(model, observation, taus):
    """Call any of the Q models; only IQN uses ``taus [..., K]``."""
    if isinstance(model, ImplicitQuantileModel):
        return model(observation, None, None, taus)
    return model(observation, None, None)


# name -> (constructor, trailing output shape after the action dim)
MODELS = {
    "q": (QModel, ()),
    "c51": (lambda *a, **kw: CategoricalQModel(*a, n_atoms=7, **kw), (7,)),
    "qr": (lambda *a, **kw: QuantileQModel(*a, n_quantiles=6, **kw), (6,)),
    "iqn": (lambda *a, **kw: ImplicitQuantileModel(*a, embedding_dim=16, **kw), (K,)),
}


# ---------------------------------------------------------------------------------- NoisyLinear


def test_noisy_linear_init_and_buffers():
    layer = NoisyLinear(16, 3, sigma0=0.5)
    bound = 1 / math.sqrt(16)
    assert layer.weight_mu.abs().max() <= bound and layer.bias_mu.abs().max() <= bound
    assert torch.all(layer.weight_sigma == 0.5 * bound) and torch.all(layer.bias_sigma == 0.5 * bound)
    assert {n for n, _ in layer.named_parameters()} == {"weight_mu", "weight_sigma", "bias_mu", "bias_sigma"}
    assert set(layer.state_dict()) == {"weight_mu", "weight_sigma", "bias_mu", "bias_sigma", "noise_in", "noise_out"}


def test_noisy_linear_factorised_noise():
    layer = NoisyLinear(5, 4)
    reset_noise(layer, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    eps_in, eps_out = torch.randn(5, generator=g), torch.randn(4, generator=g)
    f_in, f_out = eps_in.sign() * eps_in.abs().sqrt(), eps_out.sign() * eps_out.abs().sqrt()
    torch.testing.assert_close(layer.noise_in, f_in)
    torch.testing.assert_close(layer.noise_out, f_out)
    x = torch.randn(7, 5)
    weight = layer.weight_mu + layer.weight_sigma * torch.outer(f_out, f_in)
    bias = layer.bias_mu + layer.bias_sigma * f_out
    torch.testing.assert_close(layer(x), F.linear(x, weight, bias))


def test_noisy_linear_reset_determinism_and_toggle():
    torch.manual_seed(0)
    a, b = NoisyLinear(6, 3), NoisyLinear(6, 3)
    b.load_state_dict(a.state_dict())
    x = torch.randn(8, 6)
    before = a(x)
    reset_noise(a)
    assert not torch.equal(a(x), before)
    reset_noise(a, torch.Generator().manual_seed(1))
    reset_noise(b, torch.Generator().manual_seed(1))
    assert torch.equal(a(x), b(x))
    reset_noise(b, torch.Generator().manual_seed(2))
    assert not torch.equal(a(x), b(x))
    set_noise(a, False)
    assert torch.equal(a(x), F.linear(x, a.weight_mu, a.bias_mu))
    reset_noise(a)
    assert torch.equal(a(x), F.linear(x, a.weight_mu, a.bias_mu))
    set_noise(a, True)
    assert not torch.equal(a(x), F.linear(x, a.weight_mu, a.bias_mu))


# ------------------------------------------------------------------------------------- QModel


def test_qmodel_state_dict_keys_unchanged_without_noise():
    def keys(*prefixes_and_layers):
        return [f"{p}.net.{i}.{w}" for p, layers in prefixes_and_layers for i in layers for w in ("weight", "bias")]

    assert list(QModel(VECTOR, ACTIONS).state_dict()) == keys(("encoder.mlp", [0]), ("head", [0, 2]))
    assert list(QModel(VECTOR, ACTIONS, dueling=True).state_dict()) == keys(
        ("encoder.mlp", [0]), ("advantage", [0, 2]), ("value", [0, 2])
    )
    cnn = [f"encoder.cnn.{n}.{w}" for n in ("conv.0", "conv.2", "conv.4", "fc.0") for w in ("weight", "bias")]
    assert list(QModel(IMAGE, ACTIONS).state_dict()) == cnn + keys(("head", [0]))


@pytest.mark.parametrize("space, noisy_layers", [(VECTOR, 2), (IMAGE, 1)])
def test_noisy_qmodel_uses_noisy_heads_only(space, noisy_layers):
    model = QModel(space, ACTIONS, dueling=True, noisy=True)
    assert not any(isinstance(m, NoisyLinear) for m in model.encoder.modules())
    for head in (model.advantage, model.value):
        layers = [m for m in head.modules() if isinstance(m, (NoisyLinear, torch.nn.Linear))]
        assert len(layers) == noisy_layers and all(isinstance(m, NoisyLinear) for m in layers)


# ------------------------------------------------------------------------ shapes of all models


@pytest.mark.parametrize("space", [VECTOR, IMAGE], ids=["vector", "image"])
@pytest.mark.parametrize("noisy", [False, True], ids=["plain", "noisy"])
@pytest.mark.parametrize("dueling", [False, True], ids=["single", "dueling"])
@pytest.mark.parametrize("name", list(MODELS))
def test_output_shapes(name, dueling, noisy, space):
    build, trailing = MODELS[name]
    model = build(space, ACTIONS, hidden_sizes=(8, 8), dueling=dueling, noisy=noisy)
    assert has_noise(model) == noisy
    for lead in [(2, 3), (3,), ()]:
        out = outputs(model, observations(space, *lead), torch.rand(*lead, K))
        assert out.shape == (*lead, ACTIONS.n, *trailing)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["c51", "qr", "iqn"])
def test_noise_resample_and_toggle_in_models(name):
    model = MODELS[name][0](VECTOR, ACTIONS, dueling=True, noisy=True)
    observation, taus = observations(VECTOR, 4), torch.rand(4, K)
    before = outputs(model, observation, taus)
    reset_noise(model, torch.Generator().manual_seed(0))
    assert not torch.equal(outputs(model, observation, taus), before)
    set_noise(model, False)
    mean_only = outputs(model, observation, taus)
    reset_noise(model)
    assert torch.equal(outputs(model, observation, taus), mean_only)


@pytest.mark.parametrize("name", list(MODELS))
def test_noisy_state_dict_round_trip(name):
    build = MODELS[name][0]
    torch.manual_seed(0)
    source = build(VECTOR, ACTIONS, dueling=True, noisy=True)
    reset_noise(source, torch.Generator().manual_seed(5))
    torch.manual_seed(1)
    copy = build(VECTOR, ACTIONS, dueling=True, noisy=True)
    state = source.state_dict()
    assert any(k.endswith("noise_in") for k in state) and any(k.endswith("noise_out") for k in state)
    observation, taus = observations(VECTOR, 2, 3), torch.rand(2, 3, K)
    assert not torch.equal(outputs(copy, observation, taus), outputs(source, observation, taus))
    copy.load_state_dict(state)
    assert torch.equal(outputs(copy, observation, taus), outputs(source, observation, taus))


# --------------------------------------------------------------------- distributional details


def test_categorical_probabilities_and_dueling_logits():
    model = CategoricalQModel(VECTOR, ACTIONS, dueling=True, n_atoms=11)
    observation = observations(VECTOR, 2, 3)
    logits = model(observation, None, None)
    torch.testing.assert_close(logits.softmax(-1).sum(-1), torch.ones(2, 3, ACTIONS.n))
    # V + A - mean_a(A): the mean over actions of the logits is the value stream, per atom
    value = model.value(model.encoder(observation, 6)).view(2, 3, 11)
    torch.testing.assert_close(logits.mean(dim=-2), value)


def test_quantile_model_dueling_mean_is_value():
    model = QuantileQModel(VECTOR, ACTIONS, dueling=True, n_quantiles=9)
    observation = observations(VECTOR, 5)
    quantiles = model(observation, None, None)
    torch.testing.assert_close(quantiles.mean(dim=-2), model.value(model.encoder(observation, 5)))


def test_iqn_taus():
    torch.manual_seed(0)
    model = ImplicitQuantileModel(VECTOR, ACTIONS)
    observation, taus = observations(VECTOR, 4), torch.rand(4, 8)
    values = model(observation, None, None, taus)
    assert values.shape == (4, ACTIONS.n, 8) and torch.isfinite(values).all()
    assert torch.equal(model(observation, None, None, taus), values)
    assert not torch.allclose(model(observation, None, None, torch.rand(4, 8)), values)
    # each tau is evaluated on its own: permuting the taus permutes the outputs
    perm = torch.randperm(8)
    torch.testing.assert_close(model(observation, None, None, taus[:, perm]), values[..., perm])
    # features once, several tau sets: the same as forward
    features = model.features(observation, None, None)
    assert features.shape == (4, model.feature_size)
    torch.testing.assert_close(model.quantiles(features, taus), values)
    more = torch.rand(4, 3)
    torch.testing.assert_close(model.quantiles(features, more), model(observation, None, None, more))


def test_iqn_time_batch_matches_flat():
    model = ImplicitQuantileModel(VECTOR, ACTIONS, dueling=True)
    observation, taus = observations(VECTOR, 2, 3), torch.rand(2, 3, 4)
    values = model(observation, None, None, taus)
    flat = model(observation.reshape(6, 4), None, None, taus.reshape(6, 4))
    torch.testing.assert_close(values.reshape(6, ACTIONS.n, 4), flat)


def test_fraction_proposal():
    proposal = FractionProposal(feature_size=10, n_fractions=6)
    features = torch.randn(5, 10) * 50  # large features: far from uniform fractions
    taus, tau_hats, entropy = proposal(features)
    assert taus.shape == (5, 7) and tau_hats.shape == (5, 6) and entropy.shape == (5,)
    assert torch.all(taus[:, 0] == 0) and torch.all(taus[:, -1] == 1)
    assert torch.all(taus[:, 1:] >= taus[:, :-1])
    torch.testing.assert_close(tau_hats, (taus[:, 1:] + taus[:, :-1]) / 2)
    probs = torch.softmax(proposal.linear(features), dim=-1)
    torch.testing.assert_close(taus[:, 1:-1], probs.cumsum(-1)[:, :-1])
    torch.testing.assert_close(entropy, -(probs * probs.log()).sum(-1))
    assert torch.all(entropy <= math.log(6) + 1e-6)
    # small initial weights: fractions start near uniform
    uniform_taus, _, uniform_entropy = proposal(torch.randn(5, 10))
    torch.testing.assert_close(uniform_taus, torch.linspace(0, 1, 7).expand(5, 7), atol=0.02, rtol=0)
    assert torch.all(uniform_entropy > math.log(6) - 0.01)
    # gradients reach the proposal's own weights through the fractions
    (tau_hats.sum() + entropy.sum()).backward()
    assert proposal.linear.weight.grad is not None and proposal.linear.weight.grad.abs().sum() > 0
