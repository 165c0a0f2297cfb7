"""The IMPALA CNN (Espeholt et al. 2018), as Cobbe et al. (2020) use it for Procgen."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rlfleet.config.rules import Count, HiddenSizes
from rlfleet.errors import ConfigError
from rlfleet.models.blocks.base import Block, conv_output_side, image_float, image_shape
from rlfleet.models.blocks.residual import PreActUnit


class ImpalaStage(nn.Module):
    """``[N, C_in, H, W] -> [N, C_out, ceil(H/2), ceil(W/2)]``: a 3x3 conv (padding 1), a 3x3 max
    pool with stride 2 and padding 1, then two residual blocks ``x + conv(relu(conv(relu(x))))``."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.res1 = PreActUnit(out_channels, out_channels, 1, "none", "relu")
        self.res2 = PreActUnit(out_channels, out_channels, 1, "none", "relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res2(self.res1(self.pool(self.conv(x))))


class ImpalaCnn(Block):
    """``[*lead, C, H, W] -> [*lead, feature_size]``: one `ImpalaStage` per entry of ``channels``,
    then ReLU, flatten, a linear layer and ReLU. uint8 images are scaled to [0, 1]. With
    ``feature_size: null`` the block ends at the ReLU of the last stage and keeps the feature map,
    ``[*lead, channels[-1], H', W']``, so that spatial blocks (``se``, ``cbam``, ``attention``) and
    an ``mlp`` head can follow.

    At 3x64x64 with the defaults: 622,144 parameters and about 61.2 MFLOP per forward.

    Args:
        input_shape: ``(C, H, W)``.
        channels: output channels of each stage (each stage halves the sides).
        feature_size: width of the final linear layer (None: no linear layer).
    """

    def __init__(
        self, input_shape: Sequence[int], channels: HiddenSizes = (16, 32, 32), feature_size: Count | None = 256
    ):
        super().__init__(input_shape)
        c, h, w = image_shape(input_shape)
        if not channels:
            raise ConfigError("channels must list at least one stage")
        stages = []
        for out in channels:
            stages.append(ImpalaStage(c, out))
            c, h, w = out, conv_output_side(h, 3, 2, 1), conv_output_side(w, 3, 2, 1)
        self.stages = nn.Sequential(*stages)
        self.fc = None if feature_size is None else nn.Linear(c * h * w, feature_size)
        self.output_shape = (c, h, w) if feature_size is None else (feature_size,)

    def forward_batch(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stages(image_float(x)))
        return x if self.fc is None else torch.relu(self.fc(x.flatten(1)))
