"""Multi-layer perceptron."""

from __future__ import annotations

from collections.abc import Sequence
from typing import get_args

import torch
from torch import nn

from rlfleet.config.rules import Activation

# Keyed by the names of the config schema's `Activation` (checked at config validation).
ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU}
assert tuple(ACTIVATIONS) == get_args(Activation), "rlfleet.config.rules.Activation lists other names"


def activation_class(name: str) -> type[nn.Module]:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class MLP(nn.Module):
    """``[N, input_size] -> [N, output_size]`` (or ``[N, hidden_sizes[-1]]`` without output).

    Args:
        input_size: features in.
        hidden_sizes: width of each hidden layer, each followed by ``activation``.
        output_size: a final linear layer without activation, if given.
        activation: one of ``tanh``, ``relu``, ``elu``, ``silu``.
    """

    def __init__(
        self, input_size: int, hidden_sizes: Sequence[int], output_size: int | None = None, activation: str = "tanh"
    ):
        super().__init__()
        act = activation_class(activation)
        layers: list[nn.Module] = []
        last = input_size
        for size in hidden_sizes:
            layers += [nn.Linear(last, size), act()]
            last = size
        if output_size is not None:
            layers.append(nn.Linear(last, output_size))
            last = output_size
        self.net = nn.Sequential(*layers)
        self.output_size = last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
