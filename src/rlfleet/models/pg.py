"""Actor-critic models for policy-gradient agents (A2C, PPO).

Every model takes ``(observation, prev_action, prev_reward)`` with leading dims ``[T,B]``,
``[B]`` or none, and returns outputs with the same leading dims. Feed-forward models ignore
``prev_action`` and ``prev_reward``; the arguments are there so recurrent and custom models
share one signature. With ``core=lstm`` or ``gru`` a model is recurrent: it also takes the state
before the first step and ``episode_start``, and returns the state after the last step
(see `rlfleet.models.core`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from rlfleet.config.rules import Activation, CoreKind, Count, EncoderSections, HiddenSizes
from rlfleet.envs.spaces import Box, Discrete, Space
from rlfleet.models.core import action_reward_size, make_core, previous_action_reward
from rlfleet.models.encoder import Encoder, is_image, observation_leading_dims, orthogonal_init
from rlfleet.models.mlp import MLP
from rlfleet.utils.buffers import restore_leading_dims

CriticCore = Literal["own", "shared", "none"]


class _ActorCriticBase(nn.Module):
    """Encoder -> Core -> Heads for the actor and the critic.

    Feed-forward (``core="none"``): ``forward(observation, prev_action, prev_reward)``.
    Recurrent: ``forward(observation, prev_action, prev_reward, rnn_state [B,S],
    episode_start [T,B] | None, final_state=True)`` returns the same outputs plus the state
    after the last step ``[B,S]`` (None when not ``final_state`` and an episode starts inside
    the batch: training needs no final state and skips its cost); ``rnn_state_size`` is ``S``
    (0 when feed-forward).
    """

    def __init__(
        self,
        observation_space: Space,
        action_space: Space,
        hidden_sizes: Sequence[int],
        activation: str,
        shared: bool | None,
        core: CoreKind,
        core_size: int,
        critic_core: CriticCore,
        head_sizes: Sequence[int],
        core_prev_action_reward: bool,
        encoder: EncoderSections | None,
        core_options: Mapping[str, Any] | None,
    ):
        super().__init__()
        self.observation_space, self.action_space = observation_space, action_space
        shared = is_image(observation_space) if shared is None else shared
        self.shared = shared
        encoder_hidden = [] if is_image(observation_space) else hidden_sizes
        self.pi_encoder = Encoder(observation_space, encoder_hidden, activation, blocks=encoder)
        self.v_encoder = None if shared else Encoder(observation_space, encoder_hidden, activation, blocks=encoder)
        orthogonal_init(self)
        self.core_prev_action_reward = core_prev_action_reward and core != "none"
        core_input = self.pi_encoder.output_size + (
            action_reward_size(action_space) if self.core_prev_action_reward else 0
        )
        self.pi_core = make_core(core, core_input, core_size, core_options)
        self.v_core = make_core(core, core_input, core_size, core_options) if critic_core == "own" else None
        self.critic_core = critic_core if self.pi_core is not None else "none"
        self.rnn_state_size = sum(c.state_size for c in (self.pi_core, self.v_core) if c is not None)
        pi_size = self.pi_encoder.output_size if self.pi_core is None else core_size
        v_size = core_size if self.critic_core != "none" else self.pi_encoder.output_size
        self.pi_mlp = MLP(pi_size, head_sizes, activation=activation)
        self.v_mlp = MLP(v_size, head_sizes, activation=activation)
        orthogonal_init(self.pi_mlp)
        orthogonal_init(self.v_mlp)
        self.head_input_size = self.pi_mlp.output_size
        self.v_head_input_size = self.v_mlp.output_size

    def _features(
        self,
        observation: Any,
        prev_action: torch.Tensor,
        prev_reward: torch.Tensor,
        rnn_state: torch.Tensor | None,
        episode_start: torch.Tensor | None,
        final_state: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int], torch.Tensor | None]:
        """``(actor features [N,.], critic features [N,.], (lead_dim, T, B), next state [B,S])``
        with ``N = T*B``; the state is None for a feed-forward model (and may be None without
        ``final_state``, see `RecurrentCore`)."""
        lead_dim, T, B = observation_leading_dims(observation, self.observation_space)
        pi_features = self.pi_encoder(observation, T * B)
        v_features = pi_features if self.v_encoder is None else self.v_encoder(observation, T * B)
        next_state = None
        if self.pi_core is not None:
            state = rnn_state.reshape(B, self.rnn_state_size)
            starts = episode_start.reshape(T, B) if episode_start is not None else None
            extra = (
                [previous_action_reward(prev_action, prev_reward, self.action_space)]
                if self.core_prev_action_reward
                else []
            )
            pi_state, v_state = state.split(
                [self.pi_core.state_size, self.rnn_state_size - self.pi_core.state_size], -1
            )
            pi_out, pi_next = self.pi_core(
                torch.cat([pi_features, *extra], -1).view(T, B, -1), pi_state, starts, final_state
            )
            states = [pi_next]
            if self.v_core is not None:
                v_out, v_next = self.v_core(
                    torch.cat([v_features, *extra], -1).view(T, B, -1), v_state, starts, final_state
                )
                v_features = v_out.reshape(T * B, -1)
                states.append(v_next)
            elif self.critic_core == "shared":
                v_features = pi_out.reshape(T * B, -1)
            pi_features = pi_out.reshape(T * B, -1)
            next_state = None if states[0] is None else torch.cat(states, -1) if len(states) > 1 else states[0]
            if lead_dim == 0 and next_state is not None:
                next_state = next_state.squeeze(0)
        return self.pi_mlp(pi_features), self.v_mlp(v_features), (lead_dim, T, B), next_state

    def _value_head(self, value_heads: int) -> nn.Linear:
        """The critic's linear head: ``value_heads`` outputs (one per reward stream)."""
        self.value_heads = value_heads
        return nn.Linear(self.v_head_input_size, value_heads)

    def _value(self, v_features: torch.Tensor) -> torch.Tensor:
        """``[N]`` for one value head, ``[N, K]`` for ``K``."""
        value = self.v_head(v_features)
        return value.squeeze(-1) if self.value_heads == 1 else value

    def _outputs(self, outputs: tuple, dims: tuple[int, int, int], next_state: torch.Tensor | None) -> tuple:
        restored = restore_leading_dims(outputs, *dims)
        return restored if self.pi_core is None else (*restored, next_state)


class CategoricalActorCriticModel(_ActorCriticBase):
    """``observation -> (logits [...,n], value [...])`` (``value [..., K]`` with ``K`` value heads).

    Args:
        observation_space, action_space: env spaces (action space must be Discrete).
        hidden_sizes: MLP widths of the encoder for vector observations (images use a
            Nature-CNN).
        activation: MLP activation.
        shared: one encoder for policy and value (default: shared for images only).
        core: ``lstm`` or ``gru`` puts a recurrent core after the encoder (``none``:
            feed-forward; the model then has no core parameters and the same numbers as before
            cores existed).
        core_size: the core's hidden width.
        critic_core: ``own`` (the critic has its own core), ``shared`` (the critic reads the
            actor's core) or ``none`` (a feed-forward critic on the encoder features).
        head_sizes: MLP widths after the core (or the encoder), one MLP per head.
        core_prev_action_reward: feed the previous action (one-hot) and reward to the core too.
        encoder: block sections (``model.encoder``, `rlfleet.models.blocks`) that replace the
            default encoder, e.g. ``{kind: impala_cnn, channels: [16, 32, 32]}``
            (``hidden_sizes`` is then not used).
        core_options: keyword options of the ``dnc`` and ``gtrxl`` cores
            (`rlfleet.models.core.make_core`).
        value_heads: outputs of the critic's head, one value per reward stream: 1 gives
            ``value [...]``, ``K > 1`` gives ``value [..., K]`` (PPO with ``algo.rnd`` sets 2:
            extrinsic and intrinsic, through its spec's ``model_kwargs``).
    """

    def __init__(
        self,
        observation_space: Space,
        action_space: Discrete,
        hidden_sizes: HiddenSizes = (64, 64),
        activation: Activation = "tanh",
        shared: bool | None = None,
        core: CoreKind = "none",
        core_size: Count = 64,
        critic_core: CriticCore = "own",
        head_sizes: HiddenSizes = (),
        core_prev_action_reward: bool = False,
        encoder: EncoderSections | None = None,
        core_options: Mapping[str, Any] | None = None,
        value_heads: Count = 1,
    ):
        super().__init__(
            observation_space,
            action_space,
            hidden_sizes,
            activation,
            shared,
            core,
            core_size,
            critic_core,
            head_sizes,
            core_prev_action_reward,
            encoder,
            core_options,
        )
        self.pi_head = nn.Linear(self.head_input_size, action_space.n)
        self.v_head = self._value_head(value_heads)
        orthogonal_init(self.pi_head, 0.01)
        orthogonal_init(self.v_head, 1.0)

    def forward(
        self,
        observation: Any,
        prev_action: torch.Tensor,
        prev_reward: torch.Tensor,
        rnn_state: torch.Tensor | None = None,
        episode_start: torch.Tensor | None = None,
        final_state: bool = True,
    ) -> tuple[torch.Tensor, ...]:
        pi_features, v_features, dims, next_state = self._features(
            observation, prev_action, prev_reward, rnn_state, episode_start, final_state
        )
        logits = self.pi_head(pi_features)
        value = self._value(v_features)
        return self._outputs((logits, value), dims, next_state)


class GaussianActorCriticModel(_ActorCriticBase):
    """``observation -> (mean [...,d], log_std [...,d], value [...])`` (``value [..., K]`` with
    ``K`` value heads).

    Args:
        observation_space, action_space: env spaces (action space must be a 1-d Box).
        hidden_sizes, activation, shared, core, core_size, critic_core, head_sizes,
        core_prev_action_reward, encoder, core_options, value_heads: as for the categorical
            model.
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
        core: CoreKind = "none",
        core_size: Count = 64,
        critic_core: CriticCore = "own",
        head_sizes: HiddenSizes = (),
        core_prev_action_reward: bool = False,
        encoder: EncoderSections | None = None,
        core_options: Mapping[str, Any] | None = None,
        value_heads: Count = 1,
    ):
        super().__init__(
            observation_space,
            action_space,
            hidden_sizes,
            activation,
            shared,
            core,
            core_size,
            critic_core,
            head_sizes,
            core_prev_action_reward,
            encoder,
            core_options,
        )
        dim = int(np.prod(action_space.shape))
        self.mean_head = nn.Linear(self.head_input_size, dim)
        self.v_head = self._value_head(value_heads)
        orthogonal_init(self.mean_head, 0.01)
        orthogonal_init(self.v_head, 1.0)
        if state_dependent_std:
            self.log_std_head: nn.Module | None = MLP(self.head_input_size, [], dim)
            nn.init.zeros_(self.log_std_head.net[0].weight)
            nn.init.constant_(self.log_std_head.net[0].bias, init_log_std)
            self.log_std = None
        else:
            self.log_std_head = None
            self.log_std = nn.Parameter(torch.full((dim,), float(init_log_std)))

    def forward(
        self,
        observation: Any,
        prev_action: torch.Tensor,
        prev_reward: torch.Tensor,
        rnn_state: torch.Tensor | None = None,
        episode_start: torch.Tensor | None = None,
        final_state: bool = True,
    ) -> tuple[torch.Tensor, ...]:
        pi_features, v_features, dims, next_state = self._features(
            observation, prev_action, prev_reward, rnn_state, episode_start, final_state
        )
        mean = self.mean_head(pi_features)
        log_std = self.log_std_head(pi_features) if self.log_std_head is not None else self.log_std.expand_as(mean)
        value = self._value(v_features)
        return self._outputs((mean, log_std, value), dims, next_state)
