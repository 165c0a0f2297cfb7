"""Noisy networks for exploration (Fortunato et al. 2018), factorised Gaussian noise.

A `NoisyLinear` layer keeps its current noise sample in buffers; `reset_noise` draws a new
sample for every noisy layer of a model, `set_noise` switches the noise off (mean weights
only, for evaluation) or back on, and `has_noise` tells whether a model has noisy layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rlfleet.models.mlp import MLP, activation_class


class NoisyLinear(nn.Module):
    """``[..., in_features] -> [..., out_features]``, a linear layer with learned weight noise.

    ``w = mu_w + sigma_w * outer(f(eps_out), f(eps_in))`` and ``b = mu_b + sigma_b * f(eps_out)``
    with ``eps ~ N(0, I)`` and ``f(x) = sign(x) sqrt(|x|)``. The transformed noise vectors
    ``noise_in [in_features]`` and ``noise_out [out_features]`` are buffers, so they travel with
    the state dict (a checkpoint restores the noise in use) but are not trained; they change only
    when `reset_noise` is called.

    Args:
        in_features, out_features: sizes as for ``nn.Linear``.
        sigma0: initial noise scale; every sigma starts at ``sigma0 / sqrt(in_features)`` and
            every mu is drawn from ``U(-1/sqrt(in_features), 1/sqrt(in_features))``.

    Attributes:
        noise_enabled: when False the layer computes ``F.linear(x, weight_mu, bias_mu)``. A mode
            like ``training``, not part of the state dict.
    """

    def __init__(self, in_features: int, out_features: int, sigma0: float = 0.5):
        super().__init__()
        self.in_features, self.out_features, self.sigma0 = in_features, out_features, sigma0
        self.noise_enabled = True
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features))
        self.weight_sigma = nn.Parameter(torch.empty(out_features, in_features))
        self.bias_mu = nn.Parameter(torch.empty(out_features))
        self.bias_sigma = nn.Parameter(torch.empty(out_features))
        self.register_buffer("noise_in", torch.zeros(in_features))
        self.register_buffer("noise_out", torch.zeros(out_features))
        self.reset_parameters()
        self.reset_noise()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight_mu, -bound, bound)
        nn.init.uniform_(self.bias_mu, -bound, bound)
        nn.init.constant_(self.weight_sigma, self.sigma0 * bound)
        nn.init.constant_(self.bias_sigma, self.sigma0 * bound)

    @torch.no_grad()
    def reset_noise(self, generator: torch.Generator | None = None) -> None:
        """Draw new ``f(eps_in)`` then ``f(eps_out)`` (from ``generator`` when given)."""
        for buffer in (self.noise_in, self.noise_out):
            device = buffer.device if generator is None else generator.device
            eps = torch.randn(buffer.shape, generator=generator, device=device)
            buffer.copy_(eps.sign() * eps.abs().sqrt())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.noise_enabled:
            return F.linear(x, self.weight_mu, self.bias_mu)
        weight = self.weight_mu + self.weight_sigma * torch.outer(self.noise_out, self.noise_in)
        bias = self.bias_mu + self.bias_sigma * self.noise_out
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, sigma0={self.sigma0}"


def has_noise(module: nn.Module) -> bool:
    """Whether ``module`` contains any `NoisyLinear`."""
    return any(isinstance(m, NoisyLinear) for m in module.modules())


def reset_noise(module: nn.Module, generator: torch.Generator | None = None) -> None:
    """Resample the noise of every `NoisyLinear` in ``module`` (in ``module.modules()`` order)."""
    for m in module.modules():
        if isinstance(m, NoisyLinear):
            m.reset_noise(generator)


def set_noise(module: nn.Module, enabled: bool) -> None:
    """Switch the noise of every `NoisyLinear` in ``module`` on or off."""
    for m in module.modules():
        if isinstance(m, NoisyLinear):
            m.noise_enabled = enabled


class NoisyMLP(nn.Module):
    """`MLP` with every linear layer a `NoisyLinear`: ``[N, input_size] -> [N, output_size]``.

    Args:
        input_size, hidden_sizes, output_size, activation: as for `MLP`.
        sigma0: initial noise scale of every layer.
    """

    def __init__(
        self,
        input_size: int,
        hidden_sizes: Sequence[int],
        output_size: int,
        activation: str = "relu",
        sigma0: float = 0.5,
    ):
        super().__init__()
        act = activation_class(activation)
        layers: list[nn.Module] = []
        last = input_size
        for size in hidden_sizes:
            layers += [NoisyLinear(last, size, sigma0), act()]
            last = size
        layers.append(NoisyLinear(last, output_size, sigma0))
        self.net = nn.Sequential(*layers)
        self.output_size = output_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def mlp_head(
    input_size: int, hidden_sizes: Sequence[int], output_size: int, activation: str, noisy: bool
) -> MLP | NoisyMLP:
    """An output head: `NoisyMLP` when ``noisy``, else a plain `MLP` (same ``net.<i>`` layout)."""
    if noisy:
        return NoisyMLP(input_size, hidden_sizes, output_size, activation)
    return MLP(input_size, hidden_sizes, output_size, activation)
