"""Observation encoders: chosen from the observation space (Nature-CNN for images, MLP else), or
composed from the ``model.encoder`` block sections (`rlfleet.models.blocks`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from rlfleet.config.rules import EncoderSections
from rlfleet.envs.spaces import Box, Composite, Space
from rlfleet.errors import ConfigError
from rlfleet.models.blocks import build_blocks
from rlfleet.models.cnn import NatureCNN
from rlfleet.models.mlp import MLP
from rlfleet.utils.namedarraytuple import is_namedtuple


def flat_size(space: Space) -> int:
    if isinstance(space, Composite):
        return sum(flat_size(s) for s in space.spaces)
    return int(np.prod(space.shape)) if space.shape else 1


def is_image(space: Space) -> bool:
    return isinstance(space, Box) and len(space.shape) == 3


def flatten_observation(observation: Any, batch: int) -> torch.Tensor:
    """``[N, *shape]`` leaves (possibly nested) -> ``[N, features]`` float."""
    if is_namedtuple(observation):
        return torch.cat([flatten_observation(o, batch) for o in observation], dim=-1)
    return observation.reshape(batch, -1).float()


NATURE_MIN_SIDE = 36


class Encoder(nn.Module):
    """``observation [N, *obs_shape] -> features [N, output_size]``.

    Images (3-dim Box) go through a CNN followed by ``hidden_sizes`` (usually none): the
    Nature-CNN when both sides are at least ``NATURE_MIN_SIDE`` pixels (the smallest its conv
    stack accepts), else MinAtar's network (Young & Tian 2019: one 3x3 conv with 16 channels,
    128 features). Anything else is flattened (Dict/Tuple fields concatenated) into an MLP.

    With ``blocks`` (the ``model.encoder`` sections) the encoder is that block stack instead,
    built on the observation shape (a Box space), its output flattened; ``hidden_sizes`` is then
    not used.
    """

    def __init__(
        self,
        observation_space: Space,
        hidden_sizes: Sequence[int],
        activation: str = "tanh",
        cnn_feature_size: int = 512,
        blocks: EncoderSections | None = None,
    ):
        super().__init__()
        self.image = is_image(observation_space)
        self.blocks = None
        if blocks is not None:
            if not isinstance(observation_space, Box):
                raise ConfigError(
                    f"model.encoder needs a Box observation space, got {observation_space}; "
                    "Dict and Tuple observations use the default encoder (leave model.encoder unset)"
                )
            self.blocks = build_blocks(tuple(observation_space.shape), blocks)
            self.output_size = self.blocks.output_size
            return
        if self.image:
            shape = observation_space.shape
            if min(shape[1:]) >= NATURE_MIN_SIDE:
                self.cnn = NatureCNN(shape, feature_size=cnn_feature_size)
            else:
                self.cnn = NatureCNN(shape, feature_size=128, channels=(16,), kernels=(3,), strides=(1,))
            self.mlp = MLP(self.cnn.output_size, hidden_sizes, activation="relu")
        else:
            self.mlp = MLP(flat_size(observation_space), hidden_sizes, activation=activation)
        self.output_size = self.mlp.output_size

    def forward(self, observation: Any, batch: int) -> torch.Tensor:
        if self.blocks is not None:
            return self.blocks(observation.reshape(batch, *self.blocks.input_shape)).reshape(batch, -1)
        if self.image:
            return self.mlp(self.cnn(observation.reshape(batch, *observation.shape[-3:])))
        return self.mlp(flatten_observation(observation, batch))


def observation_leading_dims(observation: Any, space: Space) -> tuple[int, int, int]:
    """(lead_dim, T, B) of an observation batch given its space."""
    leaf, leaf_space = observation, space
    while is_namedtuple(leaf):
        leaf, leaf_space = tuple.__getitem__(leaf, 0), leaf_space.spaces[0]
    lead_dim = leaf.dim() - len(leaf_space.shape)
    if lead_dim == 2:
        return 2, leaf.shape[0], leaf.shape[1]
    if lead_dim == 1:
        return 1, 1, leaf.shape[0]
    return 0, 1, 1


def orthogonal_init(module: nn.Module, gain: float = float(np.sqrt(2))) -> None:
    """Orthogonal weights, zero biases for every Linear/Conv layer (CleanRL/SB3 practice); a
    spectrally normalised layer gets its unnormalised weight initialised."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            parametrized = nn.utils.parametrize.is_parametrized(m, "weight")
            nn.init.orthogonal_(m.parametrizations.weight.original if parametrized else m.weight, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
