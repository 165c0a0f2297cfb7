"""Pre-activation residual blocks (He et al. 2016, "Identity mappings in deep residual networks")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from rlfleet.config.rules import Activation, Count
from rlfleet.models.blocks.base import Block, conv_output_side, image_float, image_shape
from rlfleet.models.mlp import activation_class

Norm = Literal["batch", "none"]
"""``batch``: BatchNorm2d (running statistics in eval mode); ``none``: no normalisation."""


def norm_layer(norm: Norm, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if norm == "batch" else nn.Identity()


class PreActUnit(nn.Module):
    """``[N, C_in, H, W] -> [N, C_out, H', W']``: ``conv2(act(norm2(conv1(h)))) + shortcut`` with
    ``h = act(norm1(x))``, 3x3 convs (padding 1; ``conv1`` has the stride). The shortcut is ``x``
    itself, or a 1x1 projection of ``h`` (with the stride) when the channels or the side change.
    With ``norm="none"`` and ReLU this is the IMPALA residual block (Espeholt et al. 2018)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: Norm, activation: str):
        super().__init__()
        act = activation_class(activation)
        self.norm1, self.act1 = norm_layer(norm, in_channels), act()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1)
        self.norm2, self.act2 = norm_layer(norm, out_channels), act()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        project = stride != 1 or in_channels != out_channels
        self.projection = nn.Conv2d(in_channels, out_channels, 1, stride) if project else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act1(self.norm1(x))
        shortcut = x if self.projection is None else self.projection(h)
        return shortcut + self.conv2(self.act2(self.norm2(self.conv1(h))))


class PreActResNet(Block):
    """``[*lead, C, H, W] -> [*lead, channels, H', W']``: ``blocks`` pre-activation residual units
    (`PreActUnit`; the first has the stride and the channel change), then the final
    norm-activation the pre-activation network applies after its last unit. uint8 images are
    scaled to [0, 1].

    Args:
        input_shape: ``(C, H, W)``.
        blocks: residual units.
        channels: output channels (default: the input's).
        stride: 1, or 2 to halve the sides (``H' = ceil(H / 2)``).
        norm: ``batch`` (as the paper) or ``none`` (the default: batch statistics drift with an
            RL agent's data).
        activation: one of ``tanh``, ``relu``, ``elu``, ``silu``.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        blocks: Count = 2,
        channels: Count | None = None,
        stride: Literal[1, 2] = 1,
        norm: Norm = "none",
        activation: Activation = "relu",
    ):
        super().__init__(input_shape)
        c, h, w = image_shape(input_shape)
        out = channels or c
        units = [
            PreActUnit(c if i == 0 else out, out, stride if i == 0 else 1, norm, activation) for i in range(blocks)
        ]
        self.units = nn.Sequential(*units)
        self.final = nn.Sequential(norm_layer(norm, out), activation_class(activation)())
        self.output_shape = (out, conv_output_side(h, 3, stride, 1), conv_output_side(w, 3, stride, 1))

    def forward_batch(self, x: torch.Tensor) -> torch.Tensor:
        return self.final(self.units(image_float(x)))
