"""FlatOptimizer: the same updates as torch.optim, on parameters packed into one buffer."""

import copy

import pytest
import torch
from torch import nn

from rlfleet.algos.optimizer import FlatOptimizer
from rlfleet.errors import CheckpointError


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))


def _loss(net: nn.Module, step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(step)
    x, y = torch.randn(16, 3, generator=g), torch.randn(16, 2, generator=g)
    return (net(x) - y).pow(2).mean() * 50  # large enough that clipping at 1.0 engages


@pytest.mark.parametrize("kind", ["adam", "rmsprop"])
@pytest.mark.parametrize("max_grad_norm", [0.0, 1.0])
def test_matches_torch_optim(kind, max_grad_norm):
    ours, reference = _net(), _net()
    flat = FlatOptimizer(ours.parameters(), kind, lr=1e-2, eps=1e-5, max_grad_norm=max_grad_norm)
    if kind == "adam":
        torch_opt = torch.optim.Adam(reference.parameters(), lr=1e-2, eps=1e-5)
    else:
        torch_opt = torch.optim.RMSprop(reference.parameters(), lr=1e-2, alpha=0.99, eps=1e-5)
    for step in range(20):
        norm = flat.step(_loss(ours, step))
        torch_opt.zero_grad()
        _loss(reference, step).backward()
        reference_norm = nn.utils.clip_grad_norm_(reference.parameters(), max_grad_norm or float("inf"))
        torch_opt.step()
        assert norm.item() == pytest.approx(reference_norm.item(), rel=1e-5)
    for p, q in zip(ours.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    if max_grad_norm:
        assert reference_norm.item() > max_grad_norm  # the clip was exercised


def test_parameters_are_views_and_survive_load_state_dict():
    net = _net()
    opt = FlatOptimizer(net.parameters(), "adam", lr=1e-2)
    other = _net()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    net.load_state_dict(other.state_dict())  # copies into the views
    assert torch.equal(opt.flat, torch.cat([p.reshape(-1) for p in other.parameters()]))
    before = opt.flat.clone()
    net.zero_grad(set_to_none=True)  # must not detach the gradients from the flat buffer
    opt.step(_loss(net, 0))
    assert not torch.equal(opt.flat, before)


def test_state_dict_roundtrip_gives_identical_steps():
    a = _net()
    opt_a = FlatOptimizer(a.parameters(), "adam", lr=1e-2)
    for step in range(3):
        opt_a.step(_loss(a, step))
    b = copy.deepcopy(a)
    opt_b = FlatOptimizer(b.parameters(), "adam", lr=1e-2)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    for step in range(3, 6):
        opt_a.step(_loss(a, step))
        opt_b.step(_loss(b, step))
    assert torch.equal(opt_a.flat, opt_b.flat)


def test_incompatible_state_is_a_checkpoint_error():
    opt = FlatOptimizer(_net().parameters(), "adam")
    bigger = FlatOptimizer(nn.Linear(10, 10).parameters(), "adam")
    with pytest.raises(CheckpointError, match="different model"):
        opt.load_state_dict(bigger.state_dict())
    with pytest.raises(CheckpointError, match="not adam state"):
        opt.load_state_dict(FlatOptimizer(_net().parameters(), "rmsprop").state_dict())
    with pytest.raises(CheckpointError, match="older format"):
        opt.load_state_dict({"state": {}, "param_groups": []})  # a torch.optim state dict
