"""The inverted residual block of MobileNetV2 (Sandler et al. 2018) and MobileNetV3 (Howard et
al. 2019), ``inverted_residual``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from rlfleet.config.rules import Count, Positive
from rlfleet.errors import ConfigError
from rlfleet.models.blocks.attention import SqueezeExcitation
from rlfleet.models.blocks.base import Block, conv_output_side, image_float, image_shape
from rlfleet.models.blocks.residual import Norm, norm_layer

MobileActivation = Literal["relu6", "hardswish", "relu"]
"""``relu6`` (MobileNetV2), ``hardswish`` or ``relu`` (MobileNetV3)."""
MOBILE_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu6": nn.ReLU6, "hardswish": nn.Hardswish, "relu": nn.ReLU}


def make_divisible(value: float, divisor: int = 8) -> int:
    """``value`` rounded to the nearest multiple of ``divisor`` (at least ``divisor``), rounded up
    a step when that loses more than 10% (the MobileNet channel rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ConvNormAct(nn.Module):
    """``conv -> norm -> act``; the conv has a bias only without a norm."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int,
        groups: int,
        norm: Norm,
        activation: MobileActivation | None,
    ):
        super().__init__()
        bias = norm == "none"
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, (kernel - 1) // 2, groups=groups, bias=bias)
        self.norm = norm_layer(norm, out_channels)
        self.act = MOBILE_ACTIVATIONS[activation]() if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class InvertedResidual(Block):
    """``[*lead, C, H, W] -> [*lead, channels, H', W']``: expand (1x1 conv to the expanded
    width, skipped when that equals ``C``) -> depthwise ``kernel x kernel`` conv with ``stride``
    -> optional squeeze-and-excitation -> linear 1x1 projection, each conv followed by ``norm``
    and all but the projection by ``activation``; plus the input when ``stride == 1`` and
    ``channels == C``. uint8 images are scaled to [0, 1].

    MobileNetV2: ``activation=relu6``, ``se=false``; MobileNetV3: ``hardswish`` or ``relu``,
    ``se`` as its table says. The SE is MobileNetV3's: ``make_divisible(expanded // 4)`` squeeze
    channels and a hardsigmoid gate. With BatchNorm's default eps the outputs equal
    torchvision's ``mobilenetv2.InvertedResidual`` and ``mobilenetv3.InvertedResidual`` for the
    same weights (torchvision's MobileNetV3 network itself uses eps 0.001).

    Args:
        input_shape: ``(C, H, W)``.
        channels: output channels (default: the input's).
        expand_ratio: expanded width ``round(C * expand_ratio)`` (MobileNetV2's t).
        expanded_channels: the expanded width itself (MobileNetV3's "exp size"); overrides
            ``expand_ratio``.
        kernel: depthwise kernel side (odd: 3 or 5 in the papers).
        stride: 1 or 2.
        activation: ``relu6``, ``hardswish`` or ``relu``.
        se: squeeze-and-excitation after the depthwise conv.
        norm: ``batch`` or ``none``.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        channels: Count | None = None,
        expand_ratio: Positive = 6.0,
        expanded_channels: Count | None = None,
        kernel: Count = 3,
        stride: Literal[1, 2] = 1,
        activation: MobileActivation = "relu6",
        se: bool = False,
        norm: Norm = "batch",
    ):
        super().__init__(input_shape)
        c, h, w = image_shape(input_shape)
        if kernel % 2 == 0:
            raise ConfigError(f"kernel must be odd so that padding keeps the size, got {kernel}")
        out = channels or c
        hidden = expanded_channels or int(round(c * expand_ratio))
        expand = hidden != c
        self.expand = ConvNormAct(c, hidden, 1, 1, 1, norm, activation) if expand else nn.Identity()
        self.depthwise = ConvNormAct(hidden, hidden, kernel, stride, hidden, norm, activation)
        h, w = (
            conv_output_side(h, kernel, stride, (kernel - 1) // 2),
            conv_output_side(w, kernel, stride, (kernel - 1) // 2),
        )
        if se:
            self.se = SqueezeExcitation(
                (hidden, h, w), squeeze_channels=make_divisible(hidden // 4), scale_activation="hardsigmoid"
            )
        else:
            self.se = nn.Identity()
        self.project = ConvNormAct(hidden, out, 1, 1, 1, norm, None)
        self.residual = stride == 1 and out == c
        self.output_shape = (out, h, w)

    def forward_batch(self, x: torch.Tensor) -> torch.Tensor:
        x = image_float(x)
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.residual else y
