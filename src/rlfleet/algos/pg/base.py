"""What A2C and PPO share: value targets and advantages from a ``[T,B]`` batch."""

from __future__ import annotations

from typing import NamedTuple

import torch

from rlfleet.algos.base import Algorithm
from rlfleet.algos.pg.returns import generalized_advantage_estimation, next_values
from rlfleet.samplers.sampler import SamplerBatch


class Targets(NamedTuple):
    advantage: torch.Tensor  # [T,B]
    return_: torch.Tensor  # [T,B] value target
    old_value: torch.Tensor  # [T,B] V(s_t) at sampling time


class PolicyGradientAlgorithm(Algorithm):
    """Base for on-policy algorithms; subclasses set ``gamma`` and ``gae_lambda``."""

    gamma: float
    gae_lambda: float

    @torch.no_grad()
    def targets(self, batch: SamplerBatch) -> Targets:
        """GAE advantages and lambda-returns; truncated episodes bootstrap from the value of
        their final observation, terminated ones from zero."""
        agent, s = self.agent, batch.torch_samples
        value = s.agent.agent_info.value
        terminated, truncated = s.env.terminated, s.env.truncated
        bootstrap = agent.value(*batch.last)
        truncated_value = torch.zeros_like(value)
        if truncated.any():
            truncated_value[truncated] = agent.truncated_values(s)
        next_value = next_values(value, bootstrap, terminated, truncated, truncated_value)
        advantage, return_ = generalized_advantage_estimation(
            s.env.reward, value, next_value, terminated | truncated, self.gamma, self.gae_lambda
        )
        return Targets(advantage, return_, value)

    def annealed(self, initial: float, env_steps: int) -> float:
        """Linear decay to 0 over the run (``env_steps`` already taken)."""
        return initial * max(1.0 - env_steps / self.n_steps, 0.0)
