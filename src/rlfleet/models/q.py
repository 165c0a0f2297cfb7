"""Q-value models for value-based agents (DQN family).

`ActionValueModel` is the trunk every discrete-action value model shares: an encoder chosen
from the observation space followed by per-action output heads (one head, or a value and an
advantage head when dueling; noisy or plain). `QModel` reads one Q-value per action from it;
the distributional models in `rlfleet.models.distributional` read several.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from rlfleet.config.rules import Activation, HiddenSizes
from rlfleet.envs.spaces import Discrete, Space
from rlfleet.models.encoder import Encoder, is_image, observation_leading_dims
from rlfleet.models.noisy import mlp_head
from rlfleet.utils.buffers import restore_leading_dims


class ActionValueModel(nn.Module):
    """Encoder plus heads with ``M = outputs_per_action`` outputs for each of ``A`` actions.

    For vector observations ``hidden_sizes[:-1]`` form the encoder and the last hidden layer
    belongs to each head; for images the Nature-CNN features feed linear heads. Attributes
    ``encoder``, then ``head`` (or ``advantage`` and ``value`` when dueling) hold the layers.

    Args:
        observation_space, action_space: env spaces (action space must be Discrete).
        hidden_sizes: MLP widths for vector observations (images use a Nature-CNN).
        activation: MLP activation.
        dueling: ``V + A - mean_a(A)`` (Wang et al. 2016) from separate value and advantage
            heads, applied to each of the ``M`` outputs.
        noisy: every head layer is a `NoisyLinear` (Fortunato et al. 2018); resample and
            toggle with `rlfleet.models.noisy.reset_noise` / `set_noise`.
        outputs_per_action: ``M``.
    """

    def __init__(
        self,
        observation_space: Space,
        action_space: Discrete,
        hidden_sizes: Sequence[int],
        activation: str,
        dueling: bool,
        noisy: bool,
        outputs_per_action: int,
    ):
        super().__init__()
        self.observation_space = observation_space
        image = is_image(observation_space)
        encoder_hidden = [] if image else list(hidden_sizes[:-1])
        head_hidden = [] if image else list(hidden_sizes[-1:])
        self.encoder = Encoder(observation_space, encoder_hidden, activation)
        self.dueling, self.noisy = dueling, noisy
        self.n_actions, self.outputs_per_action = action_space.n, outputs_per_action
        size, n, m = self.encoder.output_size, action_space.n, outputs_per_action
        if dueling:
            self.advantage = mlp_head(size, head_hidden, n * m, activation, noisy)
            self.value = mlp_head(size, head_hidden, m, activation, noisy)
        else:
            self.head = mlp_head(size, head_hidden, n * m, activation, noisy)

    def heads(self, features: torch.Tensor) -> torch.Tensor:
        """``features [..., encoder.output_size] -> [..., A, M]``."""
        shape = (self.n_actions, self.outputs_per_action)
        if self.dueling:
            advantage = self.advantage(features).unflatten(-1, shape)
            value = self.value(features).unflatten(-1, (1, self.outputs_per_action))
            return value + advantage - advantage.mean(dim=-2, keepdim=True)
        return self.head(features).unflatten(-1, shape)

    def per_action_outputs(self, observation: Any) -> torch.Tensor:
        """``observation [..., *obs_shape] -> [..., A, M]`` (leading dims ``[T,B]``, ``[B]`` or none)."""
        lead_dim, T, B = observation_leading_dims(observation, self.observation_space)
        out = self.heads(self.encoder(observation, T * B))
        return restore_leading_dims(out, lead_dim, T, B)


class QModel(ActionValueModel):
    """``(observation, prev_action, prev_reward) -> q [..., n]``.

    Args:
        observation_space, action_space: env spaces (action space must be Discrete).
        hidden_sizes: MLP widths after the encoder (vector obs: the whole MLP, the last layer
            one per head; images: Nature-CNN features feed linear heads).
        activation: MLP activation.
        dueling: ``Q = V + A - mean(A)`` (Wang et al. 2016) with separate value and advantage
            streams.
        noisy: NoisyLinear head layers (noisy nets); with False the model and its state dict
            keys are those of a plain MLP head.
    """

    def __init__(
        self,
        observation_space: Space,
        action_space: Discrete,
        hidden_sizes: HiddenSizes = (64, 64),
        activation: Activation = "relu",
        dueling: bool = False,
        noisy: bool = False,
    ):
        super().__init__(observation_space, action_space, hidden_sizes, activation, dueling, noisy, 1)

    def forward(self, observation: Any, prev_action: torch.Tensor, prev_reward: torch.Tensor) -> torch.Tensor:
        return self.per_action_outputs(observation).squeeze(-1)
