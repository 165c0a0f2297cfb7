"""Soft actor-critic agents: a stochastic actor, twin critics and a target copy of the critics.

`SacAgent` acts in a Box action space with a tanh-squashed Gaussian, so its actions lie in
``[-1, 1]^d`` (the env adapter rescales bounded Box actions to the env's bounds);
`SacDiscreteAgent` acts with a categorical policy. Models are described in
`rlfleet.models.sac`.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from rlfleet.agents.base import Agent, AgentStep, polyak_update
from rlfleet.agents.config import SacAgentConfig
from rlfleet.distributions import Categorical, DistInfo, DistInfoStd, Gaussian
from rlfleet.envs.spaces import Box, Discrete, EnvSpaces
from rlfleet.errors import ConfigError
from rlfleet.utils.buffers import buffer_to
from rlfleet.utils.namedarraytuple import namedarraytuple

AgentInfo = namedarraytuple("AgentInfo", ["dist_info"])


class _SoftActorCriticAgent(Agent):
    """What both soft actor-critic agents share: the target critic, its soft update, the random
    warm-up, and checkpointing."""

    config_class = SacAgentConfig

    def __init__(self, model_factory, config: SacAgentConfig | None = None, device: str = "cpu"):
        super().__init__(model_factory, config, device)
        self.random_action_steps = self.config.random_action_steps

    def initialize(self, env_spaces: EnvSpaces, seed: int = 0) -> None:
        super().initialize(env_spaces, seed)
        self.target_critic = copy.deepcopy(self.model.critic)
        self.target_critic.requires_grad_(False)

    def acting_randomly(self) -> bool:
        return self._mode == "sample" and self.env_steps < self.random_action_steps

    def update_target(self, tau: float) -> None:
        """``target_critic <- tau * critic + (1 - tau) * target_critic`` (tau = 1: hard copy)."""
        polyak_update(self.target_critic, self.model.critic, tau)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "target_critic": self.target_critic.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.target_critic.load_state_dict(state["target_critic"])


class SacAgent(_SoftActorCriticAgent):
    """Squashed-Gaussian actor ``a = tanh(u)``, ``u ~ N(mean(s), std(s)^2)``, and twin critics.

    Sample mode draws ``a`` from the policy (uniformly from ``[-1, 1]^d`` for the first
    ``random_action_steps`` env steps); eval mode acts with ``tanh(mean(s))``. The algorithm calls
    ``pi`` (reparameterised samples and their log-probabilities), ``q`` and ``target_q``.

    Args:
        model_factory, device: as for `Agent`; the model has ``actor`` and ``critic``
            (`rlfleet.models.sac.SacModel`).
        random_action_steps: see `SacAgentConfig`.
    """

    def check_spaces(self, env_spaces: EnvSpaces) -> None:
        if not isinstance(env_spaces.action, Box) or len(env_spaces.action.shape) != 1:
            raise ConfigError(
                f"this agent needs a 1-d Box action space, got {type(env_spaces.action).__name__}; "
                "for discrete actions use sac_discrete"
            )

    def initialize(self, env_spaces: EnvSpaces, seed: int = 0) -> None:
        super().initialize(env_spaces, seed)
        self.distribution = Gaussian(int(np.prod(env_spaces.action.shape)), squash=True)

    def dist_info(self, observation, prev_action, prev_reward) -> DistInfoStd:
        """The actor's ``(mean, log_std)`` of the pre-squash Gaussian, ``[..., d]`` each."""
        mean, log_std = self.model.actor(*self.to_model_inputs(observation, prev_action, prev_reward))
        return DistInfoStd(mean=mean, log_std=log_std)

    def pi(self, observation, prev_action, prev_reward) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised sample ``a = tanh(mean + std * eps) [..., d]`` (differentiable in the
        actor's parameters) and ``log pi(a|s) [...]``, tanh correction included; the noise comes
        from the agent's generator."""
        dist_info = self.dist_info(observation, prev_action, prev_reward)
        u = self.distribution.sample_pre_squash(dist_info, generator=self.rng)
        return torch.tanh(u), self.distribution.log_likelihood_pre_squash(u, dist_info)

    def q(self, observation, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Q_1(s, a), Q_2(s, a))``, ``[...]`` each."""
        return self.model.critic(*self.to_model_inputs(observation, action))

    def target_q(self, observation, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The target critics' ``(Q'_1(s, a), Q'_2(s, a))``, ``[...]`` each."""
        return self.target_critic(*self.to_model_inputs(observation, action))

    @torch.no_grad()
    def step(self, observation, prev_action, prev_reward) -> AgentStep:
        dist_info = buffer_to(self.dist_info(observation, prev_action, prev_reward), "cpu")
        if self._mode == "eval":
            action = self.distribution.mode(dist_info)
        elif self.acting_randomly():
            action = torch.rand(dist_info.mean.shape, generator=self.rng) * 2 - 1
        else:
            action = self.distribution.sample(dist_info, generator=self.rng)
        return AgentStep(action=action, agent_info=AgentInfo(dist_info=dist_info))


class SacDiscreteAgent(_SoftActorCriticAgent):
    """Categorical actor ``pi(.|s) = softmax(logits(s))`` and twin critics ``Q_i(s, .)``.

    Sample mode draws from ``pi`` (uniformly for the first ``random_action_steps`` env steps); eval
    mode acts greedily, ``argmax_a pi(a|s)``. The algorithm calls ``policy``, ``q`` and
    ``target_q``, which return values for every action.

    Args:
        model_factory, device: as for `Agent`; the model has ``actor`` and ``critic``
            (`rlfleet.models.sac.SacDiscreteModel`).
        random_action_steps: see `SacAgentConfig`.
    """

    def check_spaces(self, env_spaces: EnvSpaces) -> None:
        if not isinstance(env_spaces.action, Discrete):
            raise ConfigError(
                f"this agent needs a Discrete action space, got {type(env_spaces.action).__name__}; "
                "for continuous actions use sac or tac"
            )

    def initialize(self, env_spaces: EnvSpaces, seed: int = 0) -> None:
        super().initialize(env_spaces, seed)
        self.distribution = Categorical(env_spaces.action.n)

    def logits(self, observation, prev_action, prev_reward) -> torch.Tensor:
        """The actor's logits ``[..., A]``."""
        return self.model.actor(*self.to_model_inputs(observation, prev_action, prev_reward))

    def policy(self, observation, prev_action, prev_reward) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pi(.|s), log pi(.|s))``, ``[..., A]`` each."""
        log_pi = F.log_softmax(self.logits(observation, prev_action, prev_reward), dim=-1)
        return log_pi.exp(), log_pi

    def q(self, observation, prev_action, prev_reward) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Q_1(s, .), Q_2(s, .))``, ``[..., A]`` each."""
        return self.model.critic(*self.to_model_inputs(observation, prev_action, prev_reward))

    def target_q(self, observation, prev_action, prev_reward) -> tuple[torch.Tensor, torch.Tensor]:
        """The target critics' ``(Q'_1(s, .), Q'_2(s, .))``, ``[..., A]`` each."""
        return self.target_critic(*self.to_model_inputs(observation, prev_action, prev_reward))

    @torch.no_grad()
    def step(self, observation, prev_action, prev_reward) -> AgentStep:
        dist_info = DistInfo(logits=self.logits(observation, prev_action, prev_reward).cpu())
        if self._mode == "eval":
            action = self.distribution.mode(dist_info)
        elif self.acting_randomly():
            action = torch.randint(self.distribution.n, dist_info.logits.shape[:-1], generator=self.rng)
        else:
            action = self.distribution.sample(dist_info, generator=self.rng)
        return AgentStep(action=action, agent_info=AgentInfo(dist_info=dist_info))
