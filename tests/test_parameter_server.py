"""ParameterServer: pushed worker gradients update the parameters exactly as local FlatOptimizer
steps on the same losses, staleness is counted, checkpoints resume identically, and it runs as a
Ray actor."""

from __future__ import annotations

import functools
import io
import math
import shutil
import tempfile

import pytest
import torch
from torch import nn

from rlfleet.algos.optimizer import FlatOptimizer
from rlfleet.distributed.parameter_server import ParameterServer
from rlfleet.errors import NonFiniteError

MAX_GRAD_NORM = 1.0


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))


def _loss(net: nn.Module, step: int) -> torch.Tensor:
    """A 0-dim loss on batch ``step``, large enough that clipping at 1.0 engages."""
    g = torch.Generator().manual_seed(step)
    x, y = torch.randn(16, 3, generator=g), torch.randn(16, 2, generator=g)
    return (net(x) - y).pow(2).mean() * 50


class _Worker:
    """A worker's copy of the model: pulls the server's weights, returns the gradient of a loss on them."""

    def __init__(self):
        self.net = _net()
        self.optimizer = FlatOptimizer(self.net.parameters())  # only its flat gradient is used
        self.version = -1

    def pull(self, server: ParameterServer) -> None:
        self.version, state = server.weights()
        self.net.load_state_dict(state)

    def gradient(self, step: int) -> torch.Tensor:
        """``[n_parameters]``"""
        return self.optimizer.flat_gradient(_loss(self.net, step))


def _server(kind: str = "adam") -> ParameterServer:
    return ParameterServer(_net, kind, lr=1e-2, eps=1e-5, max_grad_norm=MAX_GRAD_NORM)


@pytest.mark.parametrize("kind", ["adam", "rmsprop"])
def test_pushed_gradients_match_local_steps(kind):
    server, workers = _server(kind), [_Worker(), _Worker()]
    local = _net()
    local_optimizer = FlatOptimizer(local.parameters(), kind, lr=1e-2, eps=1e-5, max_grad_norm=MAX_GRAD_NORM)
    for step in range(5):
        worker = workers[step % 2]  # the workers take turns, each on fresh weights
        worker.pull(server)
        assert server.push(worker.gradient(step), worker.version) == step + 1
        norm = local_optimizer.step(_loss(local, step))
        assert norm.item() > MAX_GRAD_NORM  # the clip was exercised
        assert torch.equal(server.optimizer.flat, local_optimizer.flat)
    for p, q in zip(server.model.parameters(), local.parameters()):
        assert torch.equal(p, q)
    assert server.stats() == {"pushes": 5, "mean_staleness": 0.0}


def test_flat_gradient_leaves_the_parameters_and_the_step_count():
    worker = _Worker()
    before = worker.optimizer.flat.clone()
    gradient = worker.gradient(0)
    assert gradient.shape == before.shape and gradient.abs().sum() > 0
    assert torch.equal(worker.optimizer.flat, before) and worker.optimizer.steps == 0
    worker.gradient(1)
    assert not torch.equal(gradient, worker.gradient(1))  # a copy, not the optimizer's buffer


def test_staleness_accounting():
    server, a, b = _server(), _Worker(), _Worker()
    assert math.isnan(server.stats()["mean_staleness"]) and server.stats()["pushes"] == 0
    a.pull(server)
    b.pull(server)
    assert server.push(a.gradient(0), a.version) == 1  # staleness 0
    assert server.push(b.gradient(1), b.version) == 2  # computed at version 0, applied at 1
    a.pull(server)
    assert server.push(b.gradient(2), b.version) == 3  # b still at version 0: staleness 2
    assert server.push(a.gradient(3), a.version) == 4  # a at version 2, applied at 3: staleness 1
    assert server.stats() == {"pushes": 4, "mean_staleness": 1.0}
    with pytest.raises(ValueError, match="worker version 5"):
        server.push(a.gradient(4), 5)
    assert server.version == 4


def test_bad_gradients_raise_without_advancing_the_version():
    server = _server()
    with pytest.raises(ValueError, match="gradient of shape"):
        server.push(torch.zeros(server.n_parameters + 1), 0)
    gradient = torch.full((server.n_parameters,), float("nan"))
    with pytest.raises(NonFiniteError) as info:
        server.push(gradient, 0)
    assert info.value.in_parameters and server.version == 0 and server.stats()["pushes"] == 0


def test_state_dict_roundtrip_continues_identically():
    server, worker = _server("adam"), _Worker()
    for step in range(3):
        worker.pull(server)
        server.push(worker.gradient(step), worker.version)
    buffer = io.BytesIO()
    torch.save(server.state_dict(), buffer)  # as a checkpoint holds it
    buffer.seek(0)
    resumed = _server("adam")
    resumed.load_state_dict(torch.load(buffer))
    assert resumed.version == 3 and torch.equal(resumed.optimizer.flat, server.optimizer.flat)
    for step in range(3, 6):
        worker.pull(server)
        gradient = worker.gradient(step)
        assert server.push(gradient, worker.version) == resumed.push(gradient, worker.version) == step + 1
    assert torch.equal(resumed.optimizer.flat, server.optimizer.flat)
    assert torch.equal(resumed.optimizer.exp_avg, server.optimizer.exp_avg)


def test_state_dict_and_weights_are_copies():
    server, worker = _server(), _Worker()
    state, (_, weights) = server.state_dict(), server.weights()
    worker.pull(server)
    server.push(worker.gradient(0), worker.version)
    assert state["version"] == 0 and not torch.equal(state["model"]["0.weight"], server.model[0].weight)
    assert torch.equal(weights["0.weight"], state["model"]["0.weight"])
    assert not torch.equal(state["optimizer"]["exp_avg_sq"], server.optimizer.exp_avg_sq)


def test_runs_as_a_ray_actor(monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    factory = functools.partial(nn.Linear, 3, 2)  # importable by reference in the actor's process
    temp_dir = tempfile.mkdtemp(prefix="r", dir="/tmp")  # short: Ray's unix sockets live under it
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, _temp_dir=temp_dir)
    try:
        remote = ray.remote(ParameterServer).remote(factory, "rmsprop", lr=1e-2, max_grad_norm=MAX_GRAD_NORM)
        version, weights = ray.get(remote.weights.remote())
        assert version == 0 and set(weights) == {"weight", "bias"}
        local = ParameterServer(factory, "rmsprop", lr=1e-2, max_grad_norm=MAX_GRAD_NORM)
        local.model.load_state_dict(weights)
        gradient = torch.linspace(-2.0, 2.0, local.n_parameters)
        assert ray.get(remote.push.remote(gradient, 0)) == local.push(gradient, 0) == 1
        version, weights = ray.get(remote.weights.remote())
        assert version == 1
        for name, value in local.weights()[1].items():
            assert torch.equal(weights[name], value)
        assert ray.get(remote.stats.remote()) == {"pushes": 1, "mean_staleness": 0.0}
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
