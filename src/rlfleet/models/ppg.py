"""Actor-critic models for PPG (`rlfleet.algos.pg.ppg`): the models of `rlfleet.models.pg` with an
auxiliary value head on the policy features and a choice of how the value network is arranged.

``forward`` is the actor-critic model's (``(logits, value)`` or ``(mean, log_std, value)``),
used by the policy phase and for acting; ``aux_forward`` adds the auxiliary value for the
auxiliary phase. Inputs carry leading dims ``[T,B]``, ``[B]`` or none and outputs the same.
PPG models are feed-forward (PPG has no recurrent form).

``value_network``:

- ``separate`` (the paper's default): the policy network (encoder, policy head, auxiliary
  value head) and the value network (its own encoder and value head) share nothing, so the
  value loss never shapes the policy's features; the auxiliary phase distils the value into
  the policy network through the auxiliary head.
- ``detached`` (CleanRL's ``ppg_procgen.py``): one encoder; the value head reads its features
  detached, so only the auxiliary head's loss trains the encoder toward the value.
- ``joint``: one encoder trained by the value loss too (PPO's shared network, plus the
  auxiliary head).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from rlfleet.config.rules import Activation, EncoderSections, HiddenSizes
from rlfleet.envs.spaces import Box, Discrete, Space
from rlfleet.models.encoder import orthogonal_init
from rlfleet.models.pg import CategoricalActorCriticModel, GaussianActorCriticModel

ValueNetwork = Literal["separate", "detached", "joint"]


class DetachedInput(nn.Module):
    """``module(x.detach())``: no gradient flows back into ``x``."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.detach())


def _add_auxiliary_value(model: CategoricalActorCriticModel | GaussianActorCriticModel, value_network: str) -> None:
    """The auxiliary value head ``[N, F_pi] -> [N, 1]`` on the policy features; with
    ``detached``, the value MLP reads the shared features detached."""
    model.value_network = value_network
    if value_network == "detached":
        model.v_mlp = DetachedInput(model.v_mlp)
    model.aux_v_head = nn.Linear(model.head_input_size, 1)
    orthogonal_init(model.aux_v_head, 1.0)


class PhasicCategoricalModel(CategoricalActorCriticModel):
    """``observation -> (logits [...,n], value [...])``; ``aux_forward`` also returns the
    auxiliary value ``[...]``.

    Args:
        observation_space, action_space: env spaces (action space must be Discrete).
        hidden_sizes: MLP widths of the encoder for vector observations (images use a Nature-CNN).
        activation: MLP activation.
        value_network: ``separate``, ``detached`` or ``joint`` (module docstring).
        head_sizes: MLP widths after the encoder, one MLP per head.
        encoder: block sections that replace the default encoder (`rlfleet.models.blocks`),
            e.g. ``{kind: impala_cnn, channels: [16, 32, 32]}``.
    """

    def __init__(
        self,
        observation_space: Space,
        action_space: Discrete,
        hidden_sizes: HiddenSizes = (64, 64),
        activation: Activation = "tanh",
        value_network: ValueNetwork = "separate",
        head_sizes: HiddenSizes = (),
        encoder: EncoderSections | None = None,
    ):
        super().__init__(
            observation_space,
            action_space,
            hidden_sizes=hidden_sizes,
            activation=activation,
            shared=value_network != "separate",
            head_sizes=head_sizes,
            encoder=encoder,
        )
        _add_auxiliary_value(self, value_network)

    def aux_forward(
        self, observation: Any, prev_action: torch.Tensor, prev_reward: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(logits [...,n], value [...], aux_value [...])``."""
        pi_features, v_features, dims, _ = self._features(observation, prev_action, prev_reward, None, None, True)
        logits = self.pi_head(pi_features)
        value = self.v_head(v_features).squeeze(-1)
        aux_value = self.aux_v_head(pi_features).squeeze(-1)
        return self._outputs((logits, value, aux_value), dims, None)


class PhasicGaussianModel(GaussianActorCriticModel):
    """``observation -> (mean [...,d], log_std [...,d], value [...])``; ``aux_forward`` also
    returns the auxiliary value ``[...]``.

    Args:
        observation_space, action_space: env spaces (action space must be a 1-d Box).
        hidden_sizes, activation, value_network, head_sizes, encoder: as for the categorical model.
        state_dependent_std: log-std from the network (else one free parameter per dim).
        init_log_std: initial log-std.
    """

    def __init__(
        self,
        observation_space: Space,
        action_space: Box,
        hidden_sizes: HiddenSizes = (64, 64),
        activation: Activation = "tanh",
        value_network: ValueNetwork = "separate",
        state_dependent_std: bool = False,
        init_log_std: float = 0.0,
        head_sizes: HiddenSizes = (),
        encoder: EncoderSections | None = None,
    ):
        super().__init__(
            observation_space,
            action_space,
            hidden_sizes=hidden_sizes,
            activation=activation,
            shared=value_network != "separate",
            state_dependent_std=state_dependent_std,
            init_log_std=init_log_std,
            head_sizes=head_sizes,
            encoder=encoder,
        )
        _add_auxiliary_value(self, value_network)

    def aux_forward(
        self, observation: Any, prev_action: torch.Tensor, prev_reward: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(mean [...,d], log_std [...,d], value [...], aux_value [...])``."""
        pi_features, v_features, dims, _ = self._features(observation, prev_action, prev_reward, None, None, True)
        mean = self.mean_head(pi_features)
        log_std = self.log_std_head(pi_features) if self.log_std_head is not None else self.log_std.expand_as(mean)
        value = self.v_head(v_features).squeeze(-1)
        aux_value = self.aux_v_head(pi_features).squeeze(-1)
        return self._outputs((mean, log_std, value, aux_value), dims, None)
