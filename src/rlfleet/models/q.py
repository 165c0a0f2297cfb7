"""Q-value models for value-based agents (DQN family).

`ActionValueModel` is the trunk every discrete-action value model shares: an encoder chosen
from the observation space, optionally a recurrent core (``core=lstm|gru``: Encoder -> Core ->
Heads, `rlfleet.models.core`), then per-action output heads (one head, or a value and an
advantage head when dueling; noisy or plain). `QModel` reads one Q-value per action from it;
the distributional models in `rlfleet.models.distributional` read several (feed-forward only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from rlfleet.config.rules import Activation, CoreKind, Count, EncoderSections, HiddenSizes
from rlfleet.envs.spaces import Discrete, Space
from rlfleet.models.core import action_reward_size, make_core, previous_action_reward
from rlfleet.models.encoder import Encoder, is_image, observation_leading_dims
from rlfleet.models.noisy import mlp_head
from rlfleet.utils.buffers import restore_leading_dims


class ActionValueModel(nn.Module):
    """Encoder plus heads with ``M = outputs_per_action`` outputs for each of ``A`` actions.

    For vector observations ``hidden_sizes[:-1]`` form the encoder and the last hidden layer
    belongs to each head; for images the Nature-CNN features feed linear heads. Attributes
    ``encoder``, then ``core`` (when recurrent), then ``head`` (or ``advantage`` and ``value``
    when dueling) hold the layers; with ``core="none"`` there is no core
    and the model is exactly the feed-forward one (same parameters, same order).

    Args:
        observation_space, action_space: env spaces (action space must be Discrete).
        hidden_sizes: MLP widths for vector observations (images use a Nature-CNN).
        activation: MLP activation.
        dueling: ``V + A - mean_a(A)`` (Wang et al. 2016) from separate value and advantage
            heads, applied to each of the ``M`` outputs.
        noisy: every head layer is a `NoisyLinear` (Fortunato et al. 2018); resample and
            toggle with `rlfleet.models.noisy.reset_noise` / `set_noise`.
        outputs_per_action: ``M``.
        core: ``lstm`` or ``gru``: a recurrent core between the encoder and the heads
            (``none``: feed-forward).
        core_size: the core's hidden width (the heads' input).
        core_prev_action_reward: feed the previous action (one-hot) and reward to the core too.
        encoder: block sections (``model.encoder``, `rlfleet.models.blocks`) that replace the
            default encoder; the heads are then linear on its features, as for images
            (``hidden_sizes`` is not used).
        core_options: keyword options of the ``dnc`` and ``gtrxl`` cores.

    Attributes:
        rnn_state_size: ``S``, the width of the flat per-env state (0 when feed-forward).
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
        core: CoreKind = "none",
        core_size: int = 64,
        core_prev_action_reward: bool = False,
        encoder: EncoderSections | None = None,
        core_options: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        self.observation_space = observation_space
        plain_heads = is_image(observation_space) or encoder is not None
        encoder_hidden = [] if plain_heads else list(hidden_sizes[:-1])
        head_hidden = [] if plain_heads else list(hidden_sizes[-1:])
        self.encoder = Encoder(observation_space, encoder_hidden, activation, blocks=encoder)
        self.action_space = action_space
        self.core_prev_action_reward = core_prev_action_reward and core != "none"
        core_input = self.encoder.output_size + (
            action_reward_size(action_space) if self.core_prev_action_reward else 0
        )
        self.core = make_core(core, core_input, core_size, core_options)
        self.rnn_state_size = 0 if self.core is None else self.core.state_size
        self.dueling, self.noisy = dueling, noisy
        self.n_actions, self.outputs_per_action = action_space.n, outputs_per_action
        size = self.encoder.output_size if self.core is None else core_size
        n, m = action_space.n, outputs_per_action
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

    def recurrent_outputs(
        self,
        observation: Any,
        prev_action: torch.Tensor,
        prev_reward: torch.Tensor,
        rnn_state: torch.Tensor,
        episode_start: torch.Tensor | None,
        final_state: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encoder -> core -> heads: ``observation [T,B,...]`` (or ``[B,...]``, or one),
        ``rnn_state [B,S]`` (the state before the first step), ``episode_start [T,B]`` bool or
        None -> ``(outputs [..., A, M], state after the last step [B,S])`` (the state may be
        None when ``final_state`` is False: the core's faster path, see `RecurrentCore`)."""
        lead_dim, T, B = observation_leading_dims(observation, self.observation_space)
        features = self.encoder(observation, T * B)
        if self.core_prev_action_reward:
            extra = previous_action_reward(prev_action, prev_reward, self.action_space)
            features = torch.cat([features, extra], -1)
        starts = episode_start.reshape(T, B) if episode_start is not None else None
        state = rnn_state.reshape(B, self.rnn_state_size)
        out, next_state = self.core(features.view(T, B, -1), state, starts, final_state)
        if lead_dim == 0 and next_state is not None:
            next_state = next_state.squeeze(0)
        return restore_leading_dims(self.heads(out.reshape(T * B, -1)), lead_dim, T, B), next_state


class QModel(ActionValueModel):
    """``(observation, prev_action, prev_reward) -> q [..., n]``; with a core,
    ``(observation, prev_action, prev_reward, rnn_state [B,S], episode_start [T,B] | None,
    final_state=True) -> (q [..., n], next state [B,S])`` (R2D2's recurrent Q-network; the
    state may be None without ``final_state``).

    Args:
        observation_space, action_space: env spaces (action space must be Discrete).
        hidden_sizes: MLP widths after the encoder (vector obs: the whole MLP, the last layer
            one per head; images: Nature-CNN features feed linear heads).
        activation: MLP activation.
        dueling: ``Q = V + A - mean(A)`` (Wang et al. 2016) with separate value and advantage
            streams.
        noisy: NoisyLinear head layers (noisy nets); with False the model and its state dict
            keys are those of a plain MLP head.
        core: ``lstm`` or ``gru`` puts a recurrent core after the encoder (``none``:
            feed-forward, with exactly the parameters the model had before cores existed).
        core_size: the core's hidden width.
        core_prev_action_reward: feed the previous action (one-hot) and reward to the core too
            (as R2D2 does).
        encoder, core_options: as for `ActionValueModel`.
    """

    def __init__(
        self,
        observation_space: Space,
        action_space: Discrete,
        hidden_sizes: HiddenSizes = (64, 64),
        activation: Activation = "relu",
        dueling: bool = False,
        noisy: bool = False,
        core: CoreKind = "none",
        core_size: Count = 64,
        core_prev_action_reward: bool = False,
        encoder: EncoderSections | None = None,
        core_options: Mapping[str, Any] | None = None,
    ):
        super().__init__(
            observation_space,
            action_space,
            hidden_sizes,
            activation,
            dueling,
            noisy,
            1,
            core=core,
            core_size=core_size,
            core_prev_action_reward=core_prev_action_reward,
            encoder=encoder,
            core_options=core_options,
        )

    def forward(
        self,
        observation: Any,
        prev_action: torch.Tensor,
        prev_reward: torch.Tensor,
        rnn_state: torch.Tensor | None = None,
        episode_start: torch.Tensor | None = None,
        final_state: bool = True,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        if self.core is None:
            return self.per_action_outputs(observation).squeeze(-1)
        out, next_state = self.recurrent_outputs(
            observation, prev_action, prev_reward, rnn_state, episode_start, final_state
        )
        return out.squeeze(-1), next_state
