"""A fully connected block (``mlp``) on the flattened input."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from rlfleet.config.rules import Activation, HiddenSizes
from rlfleet.models.blocks.base import Block
from rlfleet.models.mlp import MLP


class MlpBlock(Block):
    """``[*lead, *input_shape] -> [*lead, hidden_sizes[-1]]``: the input flattened (so it may
    follow an image block) and converted to float, then linear layers each followed by
    ``activation``. With ``spectral_norm: true`` in its section this is the spectrally normalised
    penultimate layer of Gogianu et al. (2021) when the block ends the encoder.

    Args:
        input_shape: any per-sample shape; its ``prod`` is the first layer's width.
        hidden_sizes: width of each layer (``[]``: the flattened input itself).
        activation: one of ``tanh``, ``relu``, ``elu``, ``silu``.
    """

    def __init__(self, input_shape: Sequence[int], hidden_sizes: HiddenSizes = (256,), activation: Activation = "relu"):
        super().__init__(input_shape)
        self.net = MLP(math.prod(self.input_shape), hidden_sizes, activation=activation)
        self.output_shape = (self.net.output_size,)

    def forward_batch(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(x.shape[0], -1).float())
