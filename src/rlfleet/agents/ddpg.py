"""Deterministic-policy agent (DDPG, TD3): ``mu(s)`` plus exploration noise, and target copies
of the actor and the critic."""

from __future__ import annotations

import copy

import numpy as np
import torch

from rlfleet.agents.base import Agent, AgentStep, ModelFactory, polyak_update
from rlfleet.agents.config import DdpgAgentConfig
from rlfleet.distributions.noise import GaussianNoise, OrnsteinUhlenbeckNoise
from rlfleet.envs.spaces import Box, EnvSpaces
from rlfleet.errors import ConfigError
from rlfleet.utils.namedarraytuple import namedarraytuple

AgentInfo = namedarraytuple("AgentInfo", ["mu"])


class DdpgAgent(Agent):
    """Acts with ``a = clip(mu(s) + noise, -1, 1)`` while sampling and ``mu(s)`` in evaluation;
    holds ``target_model`` (actor and critic) for bootstrapping.

    The model is a `DeterministicActorCriticModel` (or any module with ``actor`` and ``critic``
    submodules, ``forward`` acting as the actor, ``q`` and ``q1``). The noise comes from the
    agent's sampling generator. The OU process of an env restarts when the sampler reports the
    end of its episode (``reset_envs``).

    Args:
        model_factory, config, device: as for `Agent`; ``config`` is a `DdpgAgentConfig`.
    """

    config_class = DdpgAgentConfig

    def __init__(self, model_factory: ModelFactory, config: DdpgAgentConfig | None = None, device: str = "cpu"):
        super().__init__(model_factory, config, device)
        c = self.config
        self.noise: GaussianNoise | OrnsteinUhlenbeckNoise | None = None
        if c.exploration_noise == "ou":
            self.noise = OrnsteinUhlenbeckNoise(c.ou_theta, c.ou_sigma, c.ou_dt)
        elif c.exploration_noise == "gaussian":
            self.noise = GaussianNoise(c.noise_std)
        self.random_action_steps = c.random_action_steps
        self._sampled_steps = 0  # env steps so far, counted per step within a sampler batch

    def check_spaces(self, env_spaces: EnvSpaces) -> None:
        space = env_spaces.action
        if not isinstance(space, Box):
            raise ConfigError(f"this agent needs a Box action space, got {type(space).__name__}")
        if not (np.all(space.low == -1.0) and np.all(space.high == 1.0)):
            raise ConfigError(
                f"this agent acts in [-1, 1]; the action space has bounds [{space.low.min()}, {space.high.max()}] "
                "(the env adapter rescales bounded Box actions to [-1, 1]; unbounded ones are not supported)"
            )

    def initialize(self, env_spaces: EnvSpaces, seed: int = 0) -> None:
        super().initialize(env_spaces, seed)
        self.target_model = copy.deepcopy(self.model)
        self.target_model.requires_grad_(False)

    def __call__(self, observation, prev_action, prev_reward) -> torch.Tensor:
        """``mu(s) [..., *action_shape]`` with the caller's leading dims."""
        return self.model(*self.to_model_inputs(observation, prev_action, prev_reward))

    def q(self, observation, action: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The critic ``Q(s, a) [...]`` (a pair for twin critics)."""
        observation, action = self.to_model_inputs(observation, action)
        return self.model.q(observation, action)

    def q1(self, observation, action: torch.Tensor) -> torch.Tensor:
        """The critic the actor climbs, ``Q_1(s, a) [...]`` (the only one without twins)."""
        observation, action = self.to_model_inputs(observation, action)
        return self.model.q1(observation, action)

    def target_pi(self, observation) -> torch.Tensor:
        """The target actor ``mu'(s)``."""
        return self.target_model(*self.to_model_inputs(observation), None, None)

    def target_q(self, observation, action: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The target critic ``Q'(s, a)``."""
        observation, action = self.to_model_inputs(observation, action)
        return self.target_model.q(observation, action)

    @torch.no_grad()
    def step(self, observation, prev_action, prev_reward) -> AgentStep:
        mu = self(observation, prev_action, prev_reward).cpu()
        if self._mode == "eval":
            action = mu
        elif self._sampled_steps < self.random_action_steps:
            action = torch.rand(mu.shape, generator=self.rng) * 2 - 1
        elif self.noise is None:
            action = mu
        else:
            action = (mu + self.noise.sample(tuple(mu.shape), generator=self.rng)).clamp(-1.0, 1.0)
        if self._mode != "eval":
            self._sampled_steps += len(mu)
        return AgentStep(action=action, agent_info=AgentInfo(mu=mu))

    def reset_envs(self, done: torch.Tensor) -> None:
        if self.noise is not None and self._mode == "sample":
            self.noise.reset(done)

    def sample_mode(self, env_steps: int) -> None:
        super().sample_mode(env_steps)
        self._sampled_steps = env_steps

    def update_target(self, tau: float) -> None:
        """``target <- tau * online + (1 - tau) * target`` for actor and critic."""
        polyak_update(self.target_model, self.model, tau)

    def state_dict(self) -> dict:
        noise = self.noise.state_dict() if self.noise is not None else {}
        return {**super().state_dict(), "target_model": self.target_model.state_dict(), "noise": noise}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.target_model.load_state_dict(state["target_model"])
        if self.noise is not None:
            self.noise.load_state_dict(state["noise"])
