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


class ValueEstimates(NamedTuple):
    """The critic's values for a ``[T,B]`` batch (trailing ``K`` with ``K`` value heads)."""

    value: torch.Tensor  # [T,B(,K)] V(s_t) at sampling time
    bootstrap: torch.Tensor  # [B(,K)] V of the observation after the batch
    truncated_value: torch.Tensor  # [T,B(,K)] V(final observation) where truncated, else 0

    def head(self, k: int) -> ValueEstimates:
        """Value head ``k`` of a ``K``-headed critic: ``[T,B]``, ``[B]``, ``[T,B]``."""
        return ValueEstimates(*(x[..., k] for x in self))


class PolicyGradientAlgorithm(Algorithm):
    """Base for on-policy algorithms; subclasses set ``gamma`` and ``gae_lambda``."""

    gamma: float
    gae_lambda: float

    @torch.no_grad()
    def targets(self, batch: SamplerBatch) -> Targets:
        """GAE advantages and lambda-returns; truncated episodes bootstrap from the value of
        their final observation, terminated ones from zero."""
        return self.episodic_targets(batch, self.value_estimates(batch))

    @torch.no_grad()
    def value_estimates(self, batch: SamplerBatch) -> ValueEstimates:
        """The stored values, the bootstrap after the batch and the truncated steps' values."""
        agent, s = self.agent, batch.torch_samples
        value = s.agent.agent_info.value
        truncated = s.env.truncated
        bootstrap = agent.value(*batch.last)
        truncated_value = torch.zeros_like(value)
        if truncated.any():
            truncated_value[truncated] = agent.truncated_values(s)
        return ValueEstimates(value, bootstrap, truncated_value)

    @torch.no_grad()
    def episodic_targets(self, batch: SamplerBatch, values: ValueEstimates) -> Targets:
        """`targets` from one head's `ValueEstimates` (``[T,B]``, ``[B]``, ``[T,B]``) and the
        batch's rewards, episodes cut where terminated or truncated."""
        s = batch.torch_samples
        terminated, truncated = s.env.terminated, s.env.truncated
        next_value = next_values(values.value, values.bootstrap, terminated, truncated, values.truncated_value)
        advantage, return_ = generalized_advantage_estimation(
            s.env.reward, values.value, next_value, terminated | truncated, self.gamma, self.gae_lambda
        )
        return Targets(advantage, return_, values.value)

    def annealed(self, initial: float, env_steps: int) -> float:
        """Linear decay to 0 over the run (``env_steps`` already taken)."""
        return initial * max(1.0 - env_steps / self.n_steps, 0.0)
