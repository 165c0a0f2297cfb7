"""FQF's model: an implicit quantile network plus the fraction proposal network."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rlfleet.config.rules import Activation, Count, EncoderSections, HiddenSizes
from rlfleet.envs.spaces import Discrete, Space
from rlfleet.models.distributional import FractionProposal, ImplicitQuantileModel
from rlfleet.models.encoder import observation_leading_dims
from rlfleet.utils.buffers import restore_leading_dims


class FqfModel(nn.Module):
    """``quantile_net`` (an `ImplicitQuantileModel`) and ``fraction_net`` (a
    `FractionProposal` on the quantile net's state features, detached).

    ``forward(observation, prev_action, prev_reward, taus [..., K]) -> [..., A, K]`` evaluates
    the quantile function at given fractions; ``q_values(observation, ...) -> [..., A]`` is
    ``sum_i (tau_{i+1} - tau_i) F^-1(hat tau_i)`` at the proposed fractions.

    Args:
        observation_space, action_space, hidden_sizes, activation, dueling, noisy,
            embedding_dim, encoder: as for `ImplicitQuantileModel`.
        n_fractions: fractions proposed per state (the paper's N = 32).
    """

    def __init__(
        self,
        observation_space: Space,
        action_space: Discrete,
        hidden_sizes: HiddenSizes = (64, 64),
        activation: Activation = "relu",
        dueling: bool = False,
        noisy: bool = False,
        embedding_dim: Count = 64,
        n_fractions: Count = 32,
        encoder: EncoderSections | None = None,
    ):
        super().__init__()
        self.observation_space = observation_space
        self.quantile_net = ImplicitQuantileModel(
            observation_space, action_space, hidden_sizes, activation, dueling, noisy, embedding_dim, encoder
        )
        self.fraction_net = FractionProposal(self.quantile_net.feature_size, n_fractions)

    def forward(
        self, observation: Any, prev_action: torch.Tensor, prev_reward: torch.Tensor, taus: torch.Tensor
    ) -> torch.Tensor:
        return self.quantile_net(observation, prev_action, prev_reward, taus)

    def q_values(self, observation: Any, prev_action: torch.Tensor, prev_reward: torch.Tensor) -> torch.Tensor:
        lead_dim, T, B = observation_leading_dims(observation, self.observation_space)
        features = self.quantile_net.features(observation, prev_action, prev_reward)  # [N, F]
        taus, tau_hats, _ = self.fraction_net(features.detach())
        quantiles = self.quantile_net.quantiles(features, tau_hats.detach())  # [N, A, K]
        q = (quantiles * (taus[:, 1:] - taus[:, :-1]).detach().unsqueeze(1)).sum(dim=-1)
        return restore_leading_dims(q, lead_dim, T, B)
