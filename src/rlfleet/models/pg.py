"""Actor-critic models for policy-gradient agents (A2C, PPO).

Every model takes ``(observation, prev_action, prev_reward)`` with leading dims ``[T,B]``,
``[B]`` or none, and returns outputs with the same leading dims. Feed-forward models ignore
``prev_action`` and ``prev_reward``; the arguments are there so recurrent and custom models
share one signature.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from rlfleet.config.rules import Activation, HiddenSizes
from rlfleet.envs.spaces import Box, Discrete, Space
from rlfleet.models.encoder import Encoder, is_image, observation_leading_dims, orthogonal_init
from rlfleet.models.mlp import MLP
from rlfleet.utils.buffers import restore_leading_dims


class _ActorCriticBase(nn.Module):
    def __init__(self, observation_space: Space, hidden_sizes: Sequence[int], activation: str, shared: bool | None):
        super().__init__()
        self.observation_space = observation_space
        shared = is_image(observation_space) if shared is None else shared
        self.shared = shared
        self.pi_encoder = Encoder(observation_space, [] if is_image(observation_space) else hidden_sizes, activation)
        self.v_encoder = (
            None
            if shared
            else Encoder(observation_space, [] if is_image(observation_space) else hidden_sizes, activation)
        )
        orthogonal_init(self)

    def _features(self, observation: Any) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int]]:
        lead_dim, T, B = observation_leading_dims(observation, self.observation_space)
        pi_features = self.pi_encoder(observation, T * B)
        v_features = pi_features if self.v_encoder is None else self.v_encoder(observation, T * B)
        return pi_features, v_features, (lead_dim, T, B)


class CategoricalActorCriticModel(_ActorCriticBase):
    """``observation -> (logits [...,n], value [...])``.

    Args:
        observation_space, action_space: env spaces (action space must be Discrete).
        hidden_sizes: MLP widths for vector observations (images use a Nature-CNN).
        activation: MLP activation.
        shared: one encoder for policy and value (default: shared for images only).
    """

    def __init__(
        self,
        observation_space: Space,
        action_space: Discrete,
        hidden_sizes: HiddenSizes = (64, 64),
        activation: Activation = "tanh",
        shared: bool | None = None,
    ):
        super().__init__(observation_space, hidden_sizes, activation, shared)
        self.pi_head = nn.Linear(self.pi_encoder.output_size, action_space.n)
        self.v_head = nn.Linear(self.pi_encoder.output_size, 1)
        orthogonal_init(self.pi_head, 0.01)
        orthogonal_init(self.v_head, 1.0)

    def forward(
        self, observation: Any, prev_action: torch.Tensor, prev_reward: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pi_features, v_features, (lead_dim, T, B) = self._features(observation)
        logits = self.pi_head(pi_features)
        value = self.v_head(v_features).squeeze(-1)
        return restore_leading_dims((logits, value), lead_dim, T, B)


class GaussianActorCriticModel(_ActorCriticBase):
    """``observation -> (mean [...,d], log_std [...,d], value [...])``.

    Args:
        observation_space, action_space: env spaces (action space must be a 1-d Box).
        hidden_sizes, activation, shared: as for the categorical model.
        state_dependent_std: log-std from the network (else one free parameter per dim).
        init_log_std: initial log-std.
    """

    def __init__(
        self,
        observation_space: Space,
        action_space: Box,
        hidden_sizes: HiddenSizes = (64, 64),
        activation: Activation = "tanh",
        shared: bool | None = None,
        state_dependent_std: bool = False,
        init_log_std: float = 0.0,
    ):
        super().__init__(observation_space, hidden_sizes, activation, shared)
        dim = int(np.prod(action_space.shape))
        self.mean_head = nn.Linear(self.pi_encoder.output_size, dim)
        self.v_head = nn.Linear(self.pi_encoder.output_size, 1)
        orthogonal_init(self.mean_head, 0.01)
        orthogonal_init(self.v_head, 1.0)
        if state_dependent_std:
            self.log_std_head: nn.Module | None = MLP(self.pi_encoder.output_size, [], dim)
            nn.init.zeros_(self.log_std_head.net[0].weight)
            nn.init.constant_(self.log_std_head.net[0].bias, init_log_std)
            self.log_std = None
        else:
            self.log_std_head = None
            self.log_std = nn.Parameter(torch.full((dim,), float(init_log_std)))

    def forward(
        self, observation: Any, prev_action: torch.Tensor, prev_reward: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        pi_features, v_features, (lead_dim, T, B) = self._features(observation)
        mean = self.mean_head(pi_features)
        log_std = self.log_std_head(pi_features) if self.log_std_head is not None else self.log_std.expand_as(mean)
        value = self.v_head(v_features).squeeze(-1)
        return restore_leading_dims((mean, log_std, value), lead_dim, T, B)
