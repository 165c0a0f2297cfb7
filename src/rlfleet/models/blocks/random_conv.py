"""Network randomization (Lee et al. 2020): a randomly re-drawn conv layer on the input image
(``random_conv``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rlfleet.config.rules import Count, Probability
from rlfleet.errors import ConfigError
from rlfleet.models.blocks.base import Block, image_float, image_shape


class RandomConv(Block):
    """``[*lead, C, H, W] -> [*lead, C, H, W]``: in training mode, a ``kernel x kernel`` conv
    ``C -> C`` without bias (padding keeps the size) whose weights are drawn afresh from a Xavier
    normal distribution at every forward call, one draw for the whole batch; with probability
    ``clean_probability`` a call passes the input through instead (Lee et al. train on clean
    observations with probability 0.1 per iteration). In eval mode (``module.eval()``, as
    rlfleet's samplers and evaluation run the model) the block is the identity. No trainable
    parameters and no state; the draws come from torch's global generator. uint8 images are
    scaled to [0, 1] in both modes.

    rlfleet calls the model in train mode once per update batch, so every update sees one new
    random network, as the paper's "re-initialised at every iteration". The paper's feature
    matching loss and Monte Carlo inference are not part of this block.

    Args:
        input_shape: ``(C, H, W)``.
        kernel: conv side (odd).
        clean_probability: chance that a training-mode call leaves the input unchanged.
    """

    def __init__(self, input_shape: Sequence[int], kernel: Count = 3, clean_probability: Probability = 0.1):
        super().__init__(input_shape)
        self.channels = image_shape(input_shape)[0]
        if kernel % 2 == 0:
            raise ConfigError(f"kernel must be odd so that padding keeps the size, got {kernel}")
        self.kernel = kernel
        self.clean_probability = clean_probability
        self.output_shape = self.input_shape

    def forward_batch(self, x: torch.Tensor) -> torch.Tensor:
        x = image_float(x)
        if not self.training or torch.rand(()).item() < self.clean_probability:
            return x
        weight = nn.init.xavier_normal_(x.new_empty(self.channels, self.channels, self.kernel, self.kernel))
        return F.conv2d(x, weight, padding=self.kernel // 2)
