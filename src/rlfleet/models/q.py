"""Q-value models for value-based agents (DQN family)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from rlfleet.envs.spaces import Discrete, Space
from rlfleet.models.encoder import Encoder, is_image, observation_leading_dims
from rlfleet.models.mlp import MLP
from rlfleet.utils.buffers import restore_leading_dims


class QModel(nn.Module):
    """``(observation, prev_action, prev_reward) -> q [..., n]``.

    Args:
        observation_space, action_space: env spaces (action space must be Discrete).
        hidden_sizes: MLP widths after the encoder (vector obs: the whole MLP; images: after
            the Nature-CNN, default none).
        activation: MLP activation.
        dueling: ``Q = V + A - mean(A)`` (Wang et al. 2016) with separate value and advantage
            streams.
    """

    def __init__(
        self,
        observation_space: Space,
        action_space: Discrete,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "relu",
        dueling: bool = False,
    ):
        super().__init__()
        self.observation_space = observation_space
        # Vector observations: the last hidden layer belongs to each head (one per dueling
        # stream); images: Nature-CNN features feed linear heads.
        image = is_image(observation_space)
        encoder_hidden = [] if image else list(hidden_sizes[:-1])
        head_hidden = [] if image else list(hidden_sizes[-1:])
        self.encoder = Encoder(observation_space, encoder_hidden, activation)
        self.dueling = dueling
        n = action_space.n
        if dueling:
            self.advantage = MLP(self.encoder.output_size, head_hidden, n, activation)
            self.value = MLP(self.encoder.output_size, head_hidden, 1, activation)
        else:
            self.head = MLP(self.encoder.output_size, head_hidden, n, activation)

    def forward(self, observation: Any, prev_action: torch.Tensor, prev_reward: torch.Tensor) -> torch.Tensor:
        lead_dim, T, B = observation_leading_dims(observation, self.observation_space)
        features = self.encoder(observation, T * B)
        if self.dueling:
            advantage = self.advantage(features)
            q = self.value(features) + advantage - advantage.mean(dim=-1, keepdim=True)
        else:
            q = self.head(features)
        return restore_leading_dims(q, lead_dim, T, B)
