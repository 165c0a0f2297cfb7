"""Policy-gradient agents: a policy distribution and a value estimate from one model."""

from __future__ import annotations

import numpy as np
import torch

from rlfleet.agents.base import Agent, AgentStep
from rlfleet.distributions import Categorical, DistInfo, DistInfoStd, Gaussian
from rlfleet.envs.spaces import Box, Discrete, EnvSpaces
from rlfleet.errors import ConfigError
from rlfleet.utils.buffers import map_buffer
from rlfleet.utils.namedarraytuple import namedarraytuple

AgentInfo = namedarraytuple("AgentInfo", ["dist_info", "value"])


def _detached_cpu(x: torch.Tensor) -> torch.Tensor:
    return x.detach().cpu()


class _PgAgent(Agent):
    distribution: Categorical | Gaussian

    def _dist_info(self, *outputs: torch.Tensor):
        raise NotImplementedError

    def __call__(self, observation, prev_action, prev_reward) -> tuple:
        """Training forward: ``(dist_info [T,B,...], value [T,B])``."""
        inputs = self.to_model_inputs(observation, prev_action, prev_reward)
        *pi, value = self.model(*inputs)
        return self._dist_info(*pi), value

    @torch.no_grad()
    def step(self, observation, prev_action, prev_reward) -> AgentStep:
        return self._act(*self(observation, prev_action, prev_reward))

    def _act(self, dist_info, value: torch.Tensor) -> AgentStep:
        """The action (the mode in eval mode, a sample otherwise) and ``agent_info``."""
        if self._mode == "eval":
            action = self.distribution.mode(dist_info)
        else:
            action = self.distribution.sample(dist_info, generator=self.rng)
        agent_info = AgentInfo(dist_info=dist_info, value=value)
        # detach: views of parameters (e.g. a state-independent log-std expanded to the batch)
        # keep requires_grad even under no_grad
        return AgentStep(action=action.cpu(), agent_info=map_buffer(_detached_cpu, agent_info))

    @torch.no_grad()
    def value(self, observation, prev_action, prev_reward) -> torch.Tensor:
        """State value ``V(s)`` with the caller's leading dims (used to bootstrap)."""
        return self(observation, prev_action, prev_reward)[1].cpu()

    @torch.no_grad()
    def truncated_values(self, samples) -> torch.Tensor:
        """``V`` of the final observations of the truncated steps of ``samples [T,B]`` (in
        ``truncated.nonzero()`` order): the bootstrap of an episode cut by a time limit."""
        env, truncated = samples.env, samples.env.truncated
        return self.value(env.final_observation[truncated], samples.agent.action[truncated], env.reward[truncated])


class CategoricalPgAgent(_PgAgent):
    """Discrete actions; the model returns ``(logits, value)``."""

    def check_spaces(self, env_spaces: EnvSpaces) -> None:
        if not isinstance(env_spaces.action, Discrete):
            raise ConfigError(f"this agent needs a Discrete action space, got {type(env_spaces.action).__name__}")

    def initialize(self, env_spaces: EnvSpaces, seed: int = 0) -> None:
        super().initialize(env_spaces, seed)
        self.distribution = Categorical(env_spaces.action.n)

    def _dist_info(self, logits: torch.Tensor) -> DistInfo:
        return DistInfo(logits=logits)


class GaussianPgAgent(_PgAgent):
    """Continuous (Box) actions; the model returns ``(mean, log_std, value)``."""

    def check_spaces(self, env_spaces: EnvSpaces) -> None:
        if not isinstance(env_spaces.action, Box):
            raise ConfigError(f"this agent needs a Box action space, got {type(env_spaces.action).__name__}")

    def initialize(self, env_spaces: EnvSpaces, seed: int = 0) -> None:
        super().initialize(env_spaces, seed)
        self.distribution = Gaussian(int(np.prod(env_spaces.action.shape)))

    def _dist_info(self, mean: torch.Tensor, log_std: torch.Tensor) -> DistInfoStd:
        return DistInfoStd(mean=mean, log_std=log_std)
