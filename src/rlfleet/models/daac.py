"""DAAC's models (Raileanu and Fergus 2021): a policy network and a value network that share no
parameters, and IDAAC's order discriminator.

The policy network is ``Encoder -> MLP -> features f(s) [N,F]``, read by the policy head and by
the advantage head ``A(s, a) = w . [f(s); a] + b`` (the action one-hot for Discrete actions, the
raw vector for Box). The value network is its own ``Encoder -> MLP -> V(s)``.

Every model call takes ``(observation, prev_action, prev_reward)`` with leading dims ``[T,B]``,
``[B]`` or none and returns outputs with the same leading dims (feed-forward: ``prev_action`` and
``prev_reward`` are not used; they keep the signature of `rlfleet.models.pg`):

- ``forward(...) -> (*policy outputs, value)``: acting, the contract of the PG models;
- ``policy(..., action) -> (*policy outputs, advantage, features)``: the policy network's
  training forward;
- ``value(...) -> value``: the value network's training forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from rlfleet.config.rules import Activation, EncoderSections, HiddenSizes
from rlfleet.envs.spaces import Box, Discrete, Space
from rlfleet.models.encoder import Encoder, is_image, observation_leading_dims, orthogonal_init
from rlfleet.models.mlp import MLP
from rlfleet.utils.buffers import restore_leading_dims


class ValueNetwork(nn.Module):
    """``observation [N, *obs_shape] -> V(s) [N]``: its own encoder, MLP and linear head."""

    def __init__(
        self,
        observation_space: Space,
        hidden_sizes: Sequence[int],
        activation: str,
        head_sizes: Sequence[int],
        encoder: EncoderSections | None,
    ):
        super().__init__()
        self.encoder = Encoder(observation_space, hidden_sizes, activation, blocks=encoder)
        orthogonal_init(self.encoder)
        self.mlp = MLP(self.encoder.output_size, head_sizes, activation=activation)
        orthogonal_init(self.mlp)
        self.head = nn.Linear(self.mlp.output_size, 1)
        orthogonal_init(self.head, 1.0)

    def forward(self, observation: Any, batch: int) -> torch.Tensor:
        return self.head(self.mlp(self.encoder(observation, batch))).squeeze(-1)


class _DaacBase(nn.Module):
    """The policy network's encoder, MLP and advantage head, and the value network; subclasses add
    the policy head (``_policy_outputs``) and the action's input to the advantage head
    (``_action_input``)."""

    def __init__(
        self,
        observation_space: Space,
        action_space: Space,
        action_size: int,
        hidden_sizes: Sequence[int],
        activation: str,
        head_sizes: Sequence[int],
        encoder: EncoderSections | None,
    ):
        super().__init__()
        self.observation_space, self.action_space = observation_space, action_space
        encoder_hidden = [] if is_image(observation_space) else hidden_sizes
        self.pi_encoder = Encoder(observation_space, encoder_hidden, activation, blocks=encoder)
        orthogonal_init(self.pi_encoder)
        self.pi_mlp = MLP(self.pi_encoder.output_size, head_sizes, activation=activation)
        orthogonal_init(self.pi_mlp)
        self.feature_size = self.pi_mlp.output_size
        self.advantage_head = nn.Linear(self.feature_size + action_size, 1)
        orthogonal_init(self.advantage_head, 1.0)
        self.value_net = ValueNetwork(observation_space, encoder_hidden, activation, head_sizes, encoder)

    def policy_parameters(self) -> list[nn.Parameter]:
        """Every parameter outside the value network."""
        value = {id(p) for p in self.value_net.parameters()}
        return [p for p in self.parameters() if id(p) not in value]

    def _policy_outputs(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def _action_input(self, action: torch.Tensor, batch: int) -> torch.Tensor:
        raise NotImplementedError

    def _features(self, observation: Any) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """``(features [N,F], (lead_dim, T, B))`` with ``N = T*B``."""
        dims = observation_leading_dims(observation, self.observation_space)
        return self.pi_mlp(self.pi_encoder(observation, dims[1] * dims[2])), dims

    def forward(self, observation: Any, prev_action: torch.Tensor, prev_reward: torch.Tensor) -> tuple:
        features, dims = self._features(observation)
        value = self.value_net(observation, dims[1] * dims[2])
        return restore_leading_dims((*self._policy_outputs(features), value), *dims)

    def policy(
        self, observation: Any, prev_action: torch.Tensor, prev_reward: torch.Tensor, action: torch.Tensor
    ) -> tuple:
        features, dims = self._features(observation)
        action_input = self._action_input(action, features.shape[0])
        advantage = self.advantage_head(torch.cat([features, action_input], -1)).squeeze(-1)
        return restore_leading_dims((*self._policy_outputs(features), advantage, features), *dims)

    def value(self, observation: Any, prev_action: torch.Tensor, prev_reward: torch.Tensor) -> torch.Tensor:
        lead_dim, T, B = observation_leading_dims(observation, self.observation_space)
        return restore_leading_dims(self.value_net(observation, T * B), lead_dim, T, B)


class CategoricalDaacModel(_DaacBase):
    """Discrete actions: ``forward -> (logits [...,n], value [...])``, ``policy(..., action [...])
    -> (logits [...,n], advantage [...], features [...,F])``, ``value -> [...]``.

    Args:
        observation_space, action_space: env spaces (action space must be Discrete).
        hidden_sizes: MLP widths of each network's encoder for vector observations (images use
            a Nature-CNN).
        activation: MLP activation.
        head_sizes: MLP widths after each encoder (the policy features are their output).
        encoder: block sections (``model.encoder``, `rlfleet.models.blocks`) that replace the
            default encoder of both networks, e.g. ``{kind: impala_cnn, channels: [16, 32, 32]}``
            (``hidden_sizes`` is then not used).
    """

    def __init__(
        self,
        observation_space: Space,
        action_space: Discrete,
        hidden_sizes: HiddenSizes = (64, 64),
        activation: Activation = "tanh",
        head_sizes: HiddenSizes = (),
        encoder: EncoderSections | None = None,
    ):
        super().__init__(observation_space, action_space, action_space.n, hidden_sizes, activation, head_sizes, encoder)
        self.pi_head = nn.Linear(self.feature_size, action_space.n)
        orthogonal_init(self.pi_head, 0.01)

    def _policy_outputs(self, features: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.pi_head(features),)

    def _action_input(self, action: torch.Tensor, batch: int) -> torch.Tensor:
        return F.one_hot(action.reshape(batch).long(), self.action_space.n).float()


class GaussianDaacModel(_DaacBase):
    """Box actions: ``forward -> (mean [...,d], log_std [...,d], value [...])``,
    ``policy(..., action [...,d]) -> (mean, log_std, advantage [...], features [...,F])``,
    ``value -> [...]``.

    Args:
        observation_space, action_space: env spaces (action space must be a 1-d Box).
        hidden_sizes, activation, head_sizes, encoder: as for the categorical model.
        state_dependent_std: log-std from the policy features (else one free parameter per dim).
        init_log_std: initial log-std.
    """

    def __init__(
        self,
        observation_space: Space,
        action_space: Box,
        hidden_sizes: HiddenSizes = (64, 64),
        activation: Activation = "tanh",
        head_sizes: HiddenSizes = (),
        encoder: EncoderSections | None = None,
        state_dependent_std: bool = False,
        init_log_std: float = 0.0,
    ):
        dim = int(np.prod(action_space.shape))
        super().__init__(observation_space, action_space, dim, hidden_sizes, activation, head_sizes, encoder)
        self.mean_head = nn.Linear(self.feature_size, dim)
        orthogonal_init(self.mean_head, 0.01)
        if state_dependent_std:
            self.log_std_head: nn.Linear | None = nn.Linear(self.feature_size, dim)
            nn.init.zeros_(self.log_std_head.weight)
            nn.init.constant_(self.log_std_head.bias, init_log_std)
            self.log_std = None
        else:
            self.log_std_head = None
            self.log_std = nn.Parameter(torch.full((dim,), float(init_log_std)))

    def _policy_outputs(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.mean_head(features)
        log_std = self.log_std_head(features) if self.log_std_head is not None else self.log_std.expand_as(mean)
        return mean, log_std

    def _action_input(self, action: torch.Tensor, batch: int) -> torch.Tensor:
        return action.reshape(batch, -1).float()


class OrderDiscriminator(nn.Module):
    """IDAAC's discriminator: ``(f_i [N,F], f_j [N,F]) -> logit [N]`` of "observation ``i`` came
    before observation ``j`` in their episode", an MLP on ``[f_i; f_j]`` (ReLU; no hidden layer:
    logistic regression).

    Its weights are drawn from a generator seeded with ``seed``, not the global RNG: the
    data-parallel runner broadcasts only the agent's model, so every replica must build the
    same discriminator on its own.
    """

    def __init__(self, feature_size: int, hidden_sizes: Sequence[int], seed: int = 0):
        super().__init__()
        self.mlp = MLP(2 * feature_size, hidden_sizes, output_size=1, activation="relu")
        generator = torch.Generator().manual_seed(seed)
        layers = [m for m in self.mlp.modules() if isinstance(m, nn.Linear)]
        for layer in layers:
            nn.init.orthogonal_(layer.weight, np.sqrt(2) if layer is not layers[-1] else 1.0, generator=generator)
            nn.init.zeros_(layer.bias)

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([first, second], -1)).squeeze(-1)
