"""Distributional Q models: C51, QR-DQN, IQN and FQF's fraction proposal network.

Every Q model takes ``(observation, prev_action, prev_reward)`` with leading dims ``[T,B]``,
``[B]`` or none and returns a distribution over returns for each action with the same leading
dims. They share `ActionValueModel`'s encoder/head split, so ``dueling`` and ``noisy`` mean the
same as for `QModel`. Supports, quantile fractions and losses belong to the algorithms.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import torch
from torch import nn

from rlfleet.config.rules import Activation, Count, EncoderSections, HiddenSizes, Range
from rlfleet.envs.spaces import Discrete, Space
from rlfleet.models.encoder import observation_leading_dims
from rlfleet.models.q import ActionValueModel
from rlfleet.utils.buffers import restore_leading_dims


class CategoricalQModel(ActionValueModel):
    """C51 (Bellemare et al. 2017): ``observation -> logits [..., A, n_atoms]``.

    ``softmax(logits, dim=-1)`` are the probabilities of the fixed support atoms. With
    ``dueling`` the logits of each atom are ``V + A - mean_a(A)`` before that softmax (Rainbow).

    Args:
        observation_space, action_space, hidden_sizes, activation, dueling, noisy, encoder:
            as for `QModel`.
        n_atoms: atoms of the categorical return distribution.
    """

    def __init__(
        self,
        observation_space: Space,
        action_space: Discrete,
        hidden_sizes: HiddenSizes = (64, 64),
        activation: Activation = "relu",
        dueling: bool = False,
        noisy: bool = False,
        n_atoms: Annotated[int, Range(ge=2)] = 51,
        encoder: EncoderSections | None = None,
    ):
        super().__init__(
            observation_space, action_space, hidden_sizes, activation, dueling, noisy, n_atoms, encoder=encoder
        )
        self.n_atoms = n_atoms

    def forward(self, observation: Any, prev_action: torch.Tensor, prev_reward: torch.Tensor) -> torch.Tensor:
        return self.per_action_outputs(observation)


class QuantileQModel(ActionValueModel):
    """QR-DQN (Dabney et al. 2018): ``observation -> quantile values [..., A, n_quantiles]``.

    Output ``i`` estimates the return quantile at ``tau_hat_i = (2i + 1) / (2 n_quantiles)``.

    Args:
        observation_space, action_space, hidden_sizes, activation, dueling, noisy, encoder:
            as for `QModel`.
        n_quantiles: number of quantiles.
    """

    def __init__(
        self,
        observation_space: Space,
        action_space: Discrete,
        hidden_sizes: HiddenSizes = (64, 64),
        activation: Activation = "relu",
        dueling: bool = False,
        noisy: bool = False,
        n_quantiles: Count = 200,
        encoder: EncoderSections | None = None,
    ):
        super().__init__(
            observation_space, action_space, hidden_sizes, activation, dueling, noisy, n_quantiles, encoder=encoder
        )
        self.n_quantiles = n_quantiles

    def forward(self, observation: Any, prev_action: torch.Tensor, prev_reward: torch.Tensor) -> torch.Tensor:
        return self.per_action_outputs(observation)


class ImplicitQuantileModel(ActionValueModel):
    """IQN (Dabney et al. 2018): ``(observation, ..., taus [..., K]) -> quantile values [..., A, K]``.

    State features ``psi(x) [N, F]`` from the encoder are multiplied elementwise by the
    embedding ``phi(tau) = ReLU(Linear(cos(pi * i * tau) for i = 0 .. embedding_dim - 1)) [F]``
    and the heads map the product to one value per action. The split into `features` and
    `quantiles` lets FQF encode an observation once and evaluate several sets of fractions.

    Args:
        observation_space, action_space, hidden_sizes, activation, dueling, noisy, encoder:
            as for `QModel` (the cosine embedding layer itself is never noisy).
        embedding_dim: number of cosines ``n`` in the fraction embedding.
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
        encoder: EncoderSections | None = None,
    ):
        super().__init__(observation_space, action_space, hidden_sizes, activation, dueling, noisy, 1, encoder=encoder)
        self.embedding_dim = embedding_dim
        self.feature_size = self.encoder.output_size
        self.tau_embedding = nn.Sequential(nn.Linear(embedding_dim, self.feature_size), nn.ReLU())

    def features(self, observation: Any, prev_action: torch.Tensor, prev_reward: torch.Tensor) -> torch.Tensor:
        """``observation [..., *obs_shape] -> features [N, feature_size]`` with ``N = T * B``."""
        _, T, B = observation_leading_dims(observation, self.observation_space)
        return self.encoder(observation, T * B)

    def quantiles(self, features: torch.Tensor, taus: torch.Tensor) -> torch.Tensor:
        """``features [N, F]``, ``taus [N, K]`` in [0, 1] -> quantile values ``[N, A, K]``."""
        frequencies = math.pi * torch.arange(self.embedding_dim, device=taus.device, dtype=taus.dtype)
        embedding = self.tau_embedding(torch.cos(taus.unsqueeze(-1) * frequencies))  # [N, K, F]
        values = self.heads(features.unsqueeze(1) * embedding)  # [N, K, A, 1]
        return values.squeeze(-1).transpose(1, 2)

    def forward(
        self, observation: Any, prev_action: torch.Tensor, prev_reward: torch.Tensor, taus: torch.Tensor
    ) -> torch.Tensor:
        lead_dim, T, B = observation_leading_dims(observation, self.observation_space)
        values = self.quantiles(self.encoder(observation, T * B), taus.reshape(T * B, -1))
        return restore_leading_dims(values, lead_dim, T, B)


class FractionProposal(nn.Module):
    """FQF's fraction proposal network (Yang et al. 2019): ``features [N, F] -> fractions``.

    Returns ``(taus [N, K+1], tau_hats [N, K], entropy [N])``: ``taus`` run from exactly 0 to
    exactly 1 as the cumulative sum of ``softmax(Linear(features))``; ``tau_hats`` are the
    midpoints ``(taus[:, i] + taus[:, i+1]) / 2``; ``entropy`` is that softmax's entropy (FQF's
    optional regulariser). The caller detaches the features: this network is trained by its own
    loss and optimizer. Weights start near zero (Xavier, gain 0.01), so the first proposals are
    close to uniform fractions.

    Args:
        feature_size: ``F``, the width of the quantile network's state features.
        n_fractions: ``K``.
    """

    def __init__(self, feature_size: int, n_fractions: int = 32):
        super().__init__()
        self.n_fractions = n_fractions
        self.linear = nn.Linear(feature_size, n_fractions)
        nn.init.xavier_uniform_(self.linear.weight, gain=0.01)
        nn.init.zeros_(self.linear.bias)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        log_probs = torch.log_softmax(self.linear(features), dim=-1)
        probs = log_probs.exp()
        inner = torch.cumsum(probs[:, :-1], dim=-1).clamp(max=1.0)  # rounding must not pass 1
        taus = torch.cat([torch.zeros_like(probs[:, :1]), inner, torch.ones_like(probs[:, :1])], dim=-1)
        tau_hats = (taus[:, :-1] + taus[:, 1:]) / 2
        entropy = -(probs * log_probs).sum(dim=-1)
        return taus, tau_hats, entropy
