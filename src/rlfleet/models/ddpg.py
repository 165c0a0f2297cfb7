"""Deterministic actor and actor-critic model for DDPG and TD3."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from rlfleet.config.rules import Activation, EncoderSections, HiddenSizes
from rlfleet.envs.spaces import Box, Space
from rlfleet.models.encoder import Encoder, flat_size, flatten_observation, is_image, observation_leading_dims
from rlfleet.models.mlp import MLP
from rlfleet.models.qpg import QCritic, TwinQCritic
from rlfleet.utils.buffers import restore_leading_dims


def uniform_output_init(mlp: MLP, bound: float) -> None:
    """Weights and bias of ``mlp``'s output layer from ``U(-bound, bound)`` (Lillicrap et al.
    2016 use 3e-3 so that initial actions and Q-values are near zero)."""
    last = mlp.net[-1]
    nn.init.uniform_(last.weight, -bound, bound)
    nn.init.uniform_(last.bias, -bound, bound)


class TanhActor(nn.Module):
    """``observation [..., *obs_shape] -> action [..., *action_shape]`` in [-1, 1]: an MLP with
    a tanh output (vector observations; with ``encoder``, its features feed the output layer).

    Args:
        observation_space, action_space: env spaces (the action space a Box; the env adapter
            presents bounded Boxes as [-1, 1]).
        hidden_sizes: MLP widths.
        activation: MLP activation.
        output_init: when > 0, the output layer starts ``U(-output_init, output_init)``.
        encoder: block sections (``model.encoder``, `rlfleet.models.blocks`) in place of the
            hidden layers (``hidden_sizes`` is then not used).
    """

    def __init__(
        self,
        observation_space: Space,
        action_space: Box,
        hidden_sizes: HiddenSizes = (256, 256),
        activation: Activation = "relu",
        output_init: float = 0.0,
        encoder: EncoderSections | None = None,
    ):
        super().__init__()
        if is_image(observation_space) and encoder is None:
            raise ValueError("TanhActor takes vector observations; give model.encoder or a custom model for images")
        self.observation_space = observation_space
        self.action_shape = tuple(action_space.shape)
        self.encoder = None if encoder is None else Encoder(observation_space, [], activation, blocks=encoder)
        if self.encoder is None:
            self.mlp = MLP(flat_size(observation_space), hidden_sizes, int(np.prod(self.action_shape)), activation)
        else:
            self.mlp = MLP(self.encoder.output_size, [], int(np.prod(self.action_shape)), activation)
        if output_init > 0:
            uniform_output_init(self.mlp, output_init)

    def forward(self, observation: Any) -> torch.Tensor:
        lead_dim, T, B = observation_leading_dims(observation, self.observation_space)
        features = flatten_observation(observation, T * B) if self.encoder is None else self.encoder(observation, T * B)
        action = torch.tanh(self.mlp(features))
        return restore_leading_dims(action.reshape(T * B, *self.action_shape), lead_dim, T, B)


class DeterministicActorCriticModel(nn.Module):
    """``actor`` (`TanhActor`) and ``critic`` (`QCritic`, or `TwinQCritic` for TD3) in one
    module, so one model factory builds both and the agent keeps one target copy of each.

    ``forward(observation, prev_action, prev_reward) -> mu(s) [..., *action_shape]`` is the
    actor; ``q(observation, action)`` is the critic (``[...]``, or a pair for twin critics) and
    ``q1`` the critic the actor climbs (TD3: the first twin).

    Args:
        observation_space, action_space: env spaces.
        hidden_sizes: widths of both networks (Lillicrap et al. 2016 and Fujimoto et al. 2018:
            400-300; the TD3 repository's later revision and rlfleet's default: 256-256).
        activation: activation of both networks.
        critic_action_layer: where the critic takes the action: 0 at the input (Fujimoto et al.
            2018), 1 after the first hidden layer (Lillicrap et al. 2016).
        twin_critic: two independent critics (TD3's clipped double Q-learning).
        output_init: when > 0, both networks' output layers start ``U(-output_init,
            output_init)`` (Lillicrap et al. 2016: 3e-3); 0 keeps PyTorch's default.
        encoder: block sections (``model.encoder``) for the actor and each critic (see
            `TanhActor`, `QCritic`).
    """

    def __init__(
        self,
        observation_space: Space,
        action_space: Box,
        hidden_sizes: HiddenSizes = (256, 256),
        activation: Activation = "relu",
        critic_action_layer: Literal[0, 1] = 0,
        twin_critic: bool = False,
        output_init: float = 0.0,
        encoder: EncoderSections | None = None,
    ):
        super().__init__()
        self.actor = TanhActor(observation_space, action_space, hidden_sizes, activation, output_init, encoder)
        critic_class = TwinQCritic if twin_critic else QCritic
        self.critic = critic_class(
            observation_space,
            action_space,
            hidden_sizes=hidden_sizes,
            activation=activation,
            action_layer=critic_action_layer,
            encoder=encoder,
        )
        self.twin_critic = twin_critic
        if output_init > 0:
            for critic in (self.critic.q1, self.critic.q2) if twin_critic else (self.critic,):
                uniform_output_init(critic.mlp, output_init)

    def forward(self, observation: Any, prev_action: Any = None, prev_reward: Any = None) -> torch.Tensor:
        return self.actor(observation)

    def q(self, observation: Any, action: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return self.critic(observation, action)

    def q1(self, observation: Any, action: torch.Tensor) -> torch.Tensor:
        return self.critic.q1(observation, action) if self.twin_critic else self.critic(observation, action)
