"""Plain convolution stacks: `ConvStack` (``conv``) and the Nature-CNN (``nature_cnn``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rlfleet.config.rules import Activation, Count, HiddenSizes, NonNegInt
from rlfleet.errors import ConfigError
from rlfleet.models.blocks.base import Block, ShapeError, conv_output_side, image_float, image_shape
from rlfleet.models.cnn import NatureCNN
from rlfleet.models.mlp import activation_class


def per_layer(values: Sequence[int], layers: int, name: str) -> list[int]:
    """``values`` for each of ``layers`` conv layers (one value serves all); ConfigError when
    the count is neither 1 nor ``layers``."""
    values = [int(v) for v in values]
    if len(values) == 1:
        return values * layers
    if len(values) != layers:
        raise ConfigError(
            f"{name} has {len(values)} entries for {layers} conv layers; give one per layer or a single one"
        )
    return values


def conv_stack_shape(
    input_shape: Sequence[int],
    channels: Sequence[int],
    kernels: Sequence[int],
    strides: Sequence[int],
    paddings: Sequence[int],
) -> tuple[int, int, int]:
    """The ``(C, H, W)`` a conv stack leaves; ShapeError naming the smallest image it takes when
    the input is smaller."""
    _, h, w = image_shape(input_shape)
    smallest = 1
    for k, s, p in reversed(list(zip(kernels, strides, paddings))):
        smallest = max(1, (smallest - 1) * s + k - 2 * p)
    if min(h, w) < smallest:
        raise ShapeError(f"an image of at least {smallest}x{smallest} for its conv stack (kernels {list(kernels)})")
    for k, s, p in zip(kernels, strides, paddings):
        h, w = conv_output_side(h, k, s, p), conv_output_side(w, k, s, p)
    return int(channels[-1]), h, w


class ConvStack(Block):
    """``[*lead, C, H, W] -> [*lead, channels[-1], H', W']``: conv layers, each followed by
    ``activation``. uint8 images are scaled to [0, 1].

    Args:
        input_shape: ``(C, H, W)``.
        channels: output channels of each conv layer.
        kernels, strides, paddings: per layer; a single value applies to every layer. The
            defaults are the Nature-CNN's stack (Mnih et al. 2015) without its linear layer.
        activation: one of ``tanh``, ``relu``, ``elu``, ``silu``.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        channels: HiddenSizes = (32, 64, 64),
        kernels: HiddenSizes = (8, 4, 3),
        strides: HiddenSizes = (4, 2, 1),
        paddings: Sequence[NonNegInt] = (0,),
        activation: Activation = "relu",
    ):
        super().__init__(input_shape)
        c = image_shape(input_shape)[0]
        if not channels:
            raise ConfigError("channels must list at least one conv layer")
        kernels = per_layer(kernels, len(channels), "kernels")
        strides = per_layer(strides, len(channels), "strides")
        paddings = per_layer(paddings, len(channels), "paddings")
        self.output_shape = conv_stack_shape(input_shape, channels, kernels, strides, paddings)
        act = activation_class(activation)
        layers: list[nn.Module] = []
        for out, k, s, p in zip(channels, kernels, strides, paddings):
            layers += [nn.Conv2d(c, out, k, s, p), act()]
            c = out
        self.net = nn.Sequential(*layers)

    def forward_batch(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(image_float(x))


class NatureCnnBlock(Block):
    """``[*lead, C, H, W] -> [*lead, feature_size]``: `rlfleet.models.cnn.NatureCNN` (Mnih et al.
    2015: convs 32/64/64, kernels 8/4/3, strides 4/2/1, ReLU, then a ReLU linear layer).

    Args:
        input_shape: ``(C, H, W)``, at least 36x36 with the default stack.
        feature_size: width of the final linear layer.
        channels, kernels, strides: the conv stack (one entry per layer).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        feature_size: Count = 512,
        channels: HiddenSizes = (32, 64, 64),
        kernels: HiddenSizes = (8, 4, 3),
        strides: HiddenSizes = (4, 2, 1),
    ):
        super().__init__(input_shape)
        if not (len(channels) == len(kernels) == len(strides) >= 1):
            raise ConfigError(
                f"channels, kernels and strides need one entry per conv layer, got {len(channels)}, "
                f"{len(kernels)} and {len(strides)}"
            )
        conv_stack_shape(input_shape, channels, kernels, strides, [0] * len(channels))
        self.net = NatureCNN(self.input_shape, feature_size, channels, kernels, strides)
        self.output_shape = (feature_size,)

    def forward_batch(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
