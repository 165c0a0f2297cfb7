"""Agents for distributional value models: they act on the mean of the return distribution."""

from __future__ import annotations

import torch

from rlfleet.agents.config import CategoricalAgentConfig, IqnAgentConfig
from rlfleet.agents.dqn import DqnAgent
from rlfleet.models.encoder import observation_leading_dims


class CategoricalDqnAgent(DqnAgent):
    """C51 / Rainbow: the model outputs logits ``[..., A, K]`` over the fixed support
    ``z = linspace(v_min, v_max, K)``; ``Q(s, a) = sum_k softmax(logits)_k z_k``.

    Args:
        model_factory, config, device: as for `DqnAgent`; ``config`` is a
            `CategoricalAgentConfig` (``v_min``, ``v_max``: the support's edges; K is the
            model's number of atoms).
    """

    config_class = CategoricalAgentConfig

    def __init__(self, model_factory, config: CategoricalAgentConfig | None = None, device: str = "cpu"):
        super().__init__(model_factory, config, device)
        self.v_min, self.v_max = self.config.v_min, self.config.v_max
        self._support: torch.Tensor | None = None

    def support(self, n_atoms: int) -> torch.Tensor:
        """The atoms ``z [K]`` on the model's device."""
        if self._support is None or len(self._support) != n_atoms:
            self._support = torch.linspace(self.v_min, self.v_max, n_atoms, device=self.device)
        return self._support

    def q_values(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits.softmax(dim=-1) * self.support(logits.shape[-1])).sum(dim=-1)


class QuantileDqnAgent(DqnAgent):
    """QR-DQN: the model outputs quantile values ``[..., A, K]`` at fixed fractions;
    ``Q(s, a)`` is their mean."""

    def q_values(self, quantiles: torch.Tensor) -> torch.Tensor:
        return quantiles.mean(dim=-1)


class IqnAgent(DqnAgent):
    """IQN (and M-IQN): the model maps ``(observation, ..., taus [..., K])`` to quantile values
    ``[..., A, K]``. Acting averages ``policy_quantiles`` quantiles at uniformly drawn fractions.

    Args:
        model_factory, config, device: as for `DqnAgent`; ``config`` is an `IqnAgentConfig`
            (``policy_quantiles``: fractions sampled per acting step, the paper's K = 32).
    """

    config_class = IqnAgentConfig

    def __init__(self, model_factory, config: IqnAgentConfig | None = None, device: str = "cpu"):
        super().__init__(model_factory, config, device)
        self.policy_quantiles = self.config.policy_quantiles

    def __call__(self, observation, prev_action, prev_reward, taus: torch.Tensor | None = None) -> torch.Tensor:
        """Quantile values ``[..., A, K]``; without ``taus``, ``policy_quantiles`` random ones."""
        inputs = self.to_model_inputs(observation, prev_action, prev_reward)
        if taus is None:
            taus = self.sample_taus(self.leading_shape(inputs[0]), self.policy_quantiles)
        return self.model(*inputs, taus)

    def target(self, observation, prev_action, prev_reward, taus: torch.Tensor | None = None) -> torch.Tensor:
        inputs = self.to_model_inputs(observation, prev_action, prev_reward)
        if taus is None:
            taus = self.sample_taus(self.leading_shape(inputs[0]), self.policy_quantiles)
        return self.target_model(*inputs, taus)

    def leading_shape(self, observation) -> tuple[int, ...]:
        """The observation's leading dims: ``(T, B)``, ``(B,)`` or ``()``."""
        lead_dim, T, B = observation_leading_dims(observation, self.env_spaces.observation)
        return ((), (B,), (T, B))[lead_dim]

    def sample_taus(self, leading_shape: tuple[int, ...], k: int) -> torch.Tensor:
        """Uniform fractions ``[*leading_shape, k]`` from the agent's RNG."""
        return torch.rand(*leading_shape, k, generator=self.rng).to(self.device)

    def q_values(self, quantiles: torch.Tensor) -> torch.Tensor:
        return quantiles.mean(dim=-1)


class FqfAgent(IqnAgent):
    """FQF: the model (``models.fqf.FqfModel``) proposes fractions ``tau_0..tau_K`` per state;
    ``Q(s, a) = sum_i (tau_{i+1} - tau_i) F^-1(hat tau_i)`` with ``hat tau_i`` the midpoints.
    """

    def __call__(self, observation, prev_action, prev_reward, taus: torch.Tensor | None = None) -> torch.Tensor:
        """Quantile values at ``taus [..., K]``; without taus, the Q-values ``[..., A]`` at the
        proposed fractions (used for acting)."""
        inputs = self.to_model_inputs(observation, prev_action, prev_reward)
        if taus is None:
            return self.model.q_values(*inputs)
        return self.model(*inputs, taus)

    def target(self, observation, prev_action, prev_reward, taus: torch.Tensor | None = None) -> torch.Tensor:
        inputs = self.to_model_inputs(observation, prev_action, prev_reward)
        if taus is None:
            return self.target_model.q_values(*inputs)
        return self.target_model(*inputs, taus)

    def q_values(self, q: torch.Tensor) -> torch.Tensor:
        return q
