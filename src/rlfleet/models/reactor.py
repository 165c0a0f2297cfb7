"""Reactor's network (Gruslys et al. 2018): one trunk with a policy head and a categorical
action-value head."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import torch

from rlfleet.config.rules import Activation, CoreKind, EncoderSections, HiddenSizes, Range
from rlfleet.envs.spaces import Discrete, Space
from rlfleet.models.q import ActionValueModel


class ReactorModel(ActionValueModel):
    """``observation -> outputs [..., A, K + 1]``: for each action, ``K`` logits of the
    categorical distribution of its return over a fixed support (the critic), then one policy
    logit (the actor: ``pi = softmax_a(outputs[..., :, K])``).

    Both heads share the encoder (and the recurrent core with ``core=lstm|gru``). With
    ``dueling``, ``V + A - mean_a(A)`` applies to every output; on the policy logits it adds
    the same ``V`` to every action, which the softmax ignores.

    Args:
        observation_space, action_space, hidden_sizes, activation, dueling, noisy, encoder,
            core, core_size, core_prev_action_reward, core_options: as for `ActionValueModel`.
        n_atoms: ``K``, atoms of the critic's return distribution.
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
        core: CoreKind = "none",
        core_size: int = 64,
        core_prev_action_reward: bool = False,
        core_options: Mapping[str, Any] | None = None,
    ):
        super().__init__(
            observation_space,
            action_space,
            hidden_sizes,
            activation,
            dueling,
            noisy,
            n_atoms + 1,
            core=core,
            core_size=core_size,
            core_prev_action_reward=core_prev_action_reward,
            encoder=encoder,
            core_options=core_options,
        )
        self.n_atoms = n_atoms

    def forward(
        self,
        observation: Any,
        prev_action: torch.Tensor,
        prev_reward: torch.Tensor,
        rnn_state: torch.Tensor | None = None,
        episode_start: torch.Tensor | None = None,
        final_state: bool = True,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """Feed-forward: the outputs; with a core: ``(outputs, state after the last step)``."""
        if self.core is None:
            return self.per_action_outputs(observation)
        return self.recurrent_outputs(observation, prev_action, prev_reward, rnn_state, episode_start, final_state)
