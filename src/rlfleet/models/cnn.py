"""Nature-CNN (Mnih et al. 2015) image encoder."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class NatureCNN(nn.Module):
    """``[N, C, H, W] -> [N, feature_size]``. uint8 images are scaled to [0, 1] inside.

    Args:
        observation_shape: ``(C, H, W)``.
        feature_size: width of the final fully connected layer.
        channels, kernels, strides: the conv stack (Nature defaults 32/64/64, 8/4/3, 4/2/1).
    """

    def __init__(
        self,
        observation_shape: Sequence[int],
        feature_size: int = 512,
        channels: Sequence[int] = (32, 64, 64),
        kernels: Sequence[int] = (8, 4, 3),
        strides: Sequence[int] = (4, 2, 1),
    ):
        super().__init__()
        c, h, w = observation_shape
        layers: list[nn.Module] = []
        for out, k, s in zip(channels, kernels, strides):
            layers += [nn.Conv2d(c, out, k, s), nn.ReLU()]
            c = out
        self.conv = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            conv_out = self.conv(torch.zeros(1, *observation_shape)).shape[-1]
        self.fc = nn.Sequential(nn.Linear(conv_out, feature_size), nn.ReLU())
        self.output_size = feature_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float().mul_(1.0 / 255)
        else:
            x = x.float()
        return self.fc(self.conv(x))
