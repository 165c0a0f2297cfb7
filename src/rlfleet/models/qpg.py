"""Critics ``Q(s, a)`` for continuous actions (DDPG, TD3, SAC, TAC)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from rlfleet.config.rules import Activation, EncoderSections, HiddenSizes
from rlfleet.envs.spaces import Box, Space
from rlfleet.models.encoder import Encoder, flat_size, flatten_observation, is_image, observation_leading_dims
from rlfleet.models.mlp import MLP, activation_class
from rlfleet.utils.buffers import restore_leading_dims


class QCritic(nn.Module):
    """``(observation [..., *obs_shape], action [..., d]) -> Q(s, a) [...]`` for vector
    observations, or any observation an ``encoder`` reads.

    Args:
        observation_space, action_space: env spaces (the action space a 1-d Box).
        hidden_sizes: MLP widths.
        activation: MLP activation.
        action_layer: where the action enters: 0 concatenates it to the observation (Fujimoto
            et al. 2018), 1 to the first hidden layer's output (Lillicrap et al. 2016).
        encoder: block sections (``model.encoder``, `rlfleet.models.blocks`): the observation
            goes through them, and their features (in place of the flat observation) are joined
            with the action.
    """

    def __init__(
        self,
        observation_space: Space,
        action_space: Box,
        hidden_sizes: HiddenSizes = (256, 256),
        activation: Activation = "relu",
        action_layer: int = 0,
        encoder: EncoderSections | None = None,
    ):
        super().__init__()
        if is_image(observation_space) and encoder is None:
            raise ValueError("QCritic takes vector observations; give model.encoder or a custom model for images")
        if action_layer not in (0, 1) or (action_layer == 1 and not hidden_sizes):
            raise ValueError(f"action_layer must be 0, or 1 with at least one hidden layer (got {action_layer})")
        self.observation_space = observation_space
        self.action_layer = action_layer
        self.encoder = None if encoder is None else Encoder(observation_space, [], activation, blocks=encoder)
        obs_size = flat_size(observation_space) if self.encoder is None else self.encoder.output_size
        action_size = int(np.prod(action_space.shape))
        if action_layer == 0:
            self.first = None
            self.mlp = MLP(obs_size + action_size, hidden_sizes, 1, activation)
        else:
            self.first = nn.Sequential(nn.Linear(obs_size, hidden_sizes[0]), activation_class(activation)())
            self.mlp = MLP(hidden_sizes[0] + action_size, hidden_sizes[1:], 1, activation)

    def forward(self, observation: Any, action: torch.Tensor) -> torch.Tensor:
        lead_dim, T, B = observation_leading_dims(observation, self.observation_space)
        x = flatten_observation(observation, T * B) if self.encoder is None else self.encoder(observation, T * B)
        if self.first is not None:
            x = self.first(x)
        q = self.mlp(torch.cat([x, action.reshape(T * B, -1).float()], dim=-1)).squeeze(-1)
        return restore_leading_dims(q, lead_dim, T, B)


class TwinQCritic(nn.Module):
    """Two independent `QCritic`s (TD3, SAC): ``forward -> (q1 [...], q2 [...])``; arguments as
    for `QCritic`."""

    def __init__(self, observation_space: Space, action_space: Box, **kwargs: Any):
        super().__init__()
        self.q1 = QCritic(observation_space, action_space, **kwargs)
        self.q2 = QCritic(observation_space, action_space, **kwargs)

    def forward(self, observation: Any, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.q1(observation, action), self.q2(observation, action)
