"""Models for soft actor-critics (SAC, TAC, SAC-discrete): an actor and twin critics in one
module, so that one ``model_factory(env_spaces)`` builds both.

A model for `rlfleet.agents.sac.SacAgent` has attributes ``actor`` (``(observation,
prev_action, prev_reward) -> (mean, log_std)``) and ``critic`` (``(observation, action) ->
(q1, q2)``); one for `SacDiscreteAgent` has ``actor`` (``-> logits``) and ``critic``
(``(observation, prev_action, prev_reward) -> (q1, q2)``, one value per action). Custom models
plugged in by ``_target_`` follow the same shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from rlfleet.config.rules import Activation, EncoderSections, HiddenSizes
from rlfleet.envs.spaces import Box, Discrete, Space
from rlfleet.models.encoder import Encoder, is_image, observation_leading_dims
from rlfleet.models.q import QModel
from rlfleet.models.qpg import TwinQCritic
from rlfleet.utils.buffers import restore_leading_dims


class GaussianActor(nn.Module):
    """``(observation [..., *obs_shape], prev_action, prev_reward) -> (mean [..., d],
    log_std [..., d])`` of the Gaussian that the agent squashes with tanh.

    Both outputs depend on the state; ``log_std`` is clamped to ``[min_log_std, max_log_std]``.

    Args:
        observation_space, action_space: env spaces (the action space a 1-d Box).
        hidden_sizes: MLP widths for vector observations (images: CNN features feed the heads).
        activation: MLP activation.
        min_log_std, max_log_std: clamp of the log standard deviation (CleanRL's and the TAC
            authors' -5 and 2; SB3 uses -20 and 2).
        encoder: block sections (``model.encoder``, `rlfleet.models.blocks`) that replace the
            default encoder (``hidden_sizes`` is then not used).
    """

    def __init__(
        self,
        observation_space: Space,
        action_space: Box,
        hidden_sizes: HiddenSizes = (256, 256),
        activation: Activation = "relu",
        min_log_std: float = -5.0,
        max_log_std: float = 2.0,
        encoder: EncoderSections | None = None,
    ):
        super().__init__()
        self.observation_space = observation_space
        self.min_log_std, self.max_log_std = min_log_std, max_log_std
        dim = int(np.prod(action_space.shape))
        self.encoder = Encoder(
            observation_space, [] if is_image(observation_space) else hidden_sizes, activation, blocks=encoder
        )
        self.mean = nn.Linear(self.encoder.output_size, dim)
        self.log_std = nn.Linear(self.encoder.output_size, dim)

    def forward(
        self, observation: Any, prev_action: torch.Tensor, prev_reward: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lead_dim, T, B = observation_leading_dims(observation, self.observation_space)
        features = self.encoder(observation, T * B)
        mean = self.mean(features)
        log_std = self.log_std(features).clamp(self.min_log_std, self.max_log_std)
        return restore_leading_dims((mean, log_std), lead_dim, T, B)


class SacModel(nn.Module):
    """Squashed-Gaussian actor and twin critics for continuous actions.

    ``actor``: `GaussianActor`, ``(observation, prev_action, prev_reward) -> (mean [..., d],
    log_std [..., d])``; ``critic``: `TwinQCritic`, ``(observation, action [..., d]) ->
    (q1 [...], q2 [...])`` (vector observations).

    Args:
        observation_space, action_space: env spaces (the action space a 1-d Box).
        hidden_sizes: MLP widths of the actor and of each critic (SAC paper: 256, 256).
        activation: MLP activation.
        min_log_std, max_log_std: the actor's log-std clamp.
        encoder: block sections (``model.encoder``) that replace the actor's encoder and feed
            each critic's MLP (`TwinQCritic`).
    """

    def __init__(
        self,
        observation_space: Space,
        action_space: Box,
        hidden_sizes: HiddenSizes = (256, 256),
        activation: Activation = "relu",
        min_log_std: float = -5.0,
        max_log_std: float = 2.0,
        encoder: EncoderSections | None = None,
    ):
        super().__init__()
        self.actor = GaussianActor(
            observation_space, action_space, hidden_sizes, activation, min_log_std, max_log_std, encoder
        )
        self.critic = TwinQCritic(
            observation_space, action_space, hidden_sizes=hidden_sizes, activation=activation, encoder=encoder
        )


class CategoricalActor(nn.Module):
    """``(observation [..., *obs_shape], prev_action, prev_reward) -> logits [..., A]``.

    Args:
        observation_space, action_space: env spaces (the action space Discrete).
        hidden_sizes: MLP widths for vector observations (images: CNN features feed the head).
        activation: MLP activation.
        encoder: block sections (``model.encoder``) that replace the default encoder.
    """

    def __init__(
        self,
        observation_space: Space,
        action_space: Discrete,
        hidden_sizes: HiddenSizes = (256, 256),
        activation: Activation = "relu",
        encoder: EncoderSections | None = None,
    ):
        super().__init__()
        self.observation_space = observation_space
        self.encoder = Encoder(
            observation_space, [] if is_image(observation_space) else hidden_sizes, activation, blocks=encoder
        )
        self.logits = nn.Linear(self.encoder.output_size, action_space.n)

    def forward(self, observation: Any, prev_action: torch.Tensor, prev_reward: torch.Tensor) -> torch.Tensor:
        lead_dim, T, B = observation_leading_dims(observation, self.observation_space)
        logits = self.logits(self.encoder(observation, T * B))
        return restore_leading_dims(logits, lead_dim, T, B)


class TwinQModel(nn.Module):
    """Two independent `QModel`s: ``(observation, prev_action, prev_reward) -> (q1 [..., A],
    q2 [..., A])``, ``Q_i(s, a)`` for every action.

    Args:
        observation_space, action_space: env spaces (the action space Discrete).
        hidden_sizes, activation, encoder: as for `QModel` (images go through the Nature or
            MinAtar CNN unless ``encoder`` is given).
    """

    def __init__(
        self,
        observation_space: Space,
        action_space: Discrete,
        hidden_sizes: HiddenSizes = (256, 256),
        activation: Activation = "relu",
        encoder: EncoderSections | None = None,
    ):
        super().__init__()
        self.q1 = QModel(observation_space, action_space, hidden_sizes, activation, encoder=encoder)
        self.q2 = QModel(observation_space, action_space, hidden_sizes, activation, encoder=encoder)

    def forward(
        self, observation: Any, prev_action: torch.Tensor, prev_reward: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.q1(observation, prev_action, prev_reward), self.q2(observation, prev_action, prev_reward)


class SacDiscreteModel(nn.Module):
    """Categorical actor and twin per-action critics for discrete actions (Christodoulou 2019).

    ``actor``: `CategoricalActor` (``-> logits [..., A]``); ``critic``: `TwinQModel`
    (``-> (q1 [..., A], q2 [..., A])``). Vector and image observations.

    Args:
        observation_space, action_space: env spaces (the action space Discrete).
        hidden_sizes: MLP widths of the actor and of each critic.
        activation: MLP activation.
        encoder: block sections (``model.encoder``) that replace the encoder of the actor and of
            each critic.
    """

    def __init__(
        self,
        observation_space: Space,
        action_space: Discrete,
        hidden_sizes: HiddenSizes = (256, 256),
        activation: Activation = "relu",
        encoder: EncoderSections | None = None,
    ):
        super().__init__()
        self.actor = CategoricalActor(observation_space, action_space, hidden_sizes, activation, encoder)
        self.critic = TwinQModel(observation_space, action_space, hidden_sizes, activation, encoder)
