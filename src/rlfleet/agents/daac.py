"""DAAC's agents: they act like the policy-gradient agents (``agent_info`` carries ``dist_info``
and the value network's ``value``), and train the policy and the value network apart."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from rlfleet.agents.base import AgentStep
from rlfleet.agents.pg import CategoricalPgAgent, GaussianPgAgent, _PgAgent
from rlfleet.distributions import DistInfo, DistInfoStd


class PolicyOutputs(NamedTuple):
    """The policy network's training forward on ``[T,B]`` inputs."""

    dist_info: DistInfo | DistInfoStd  # [T,B,...]
    advantage: torch.Tensor  # [T,B] advantage head A(s_t, a_t)
    features: torch.Tensor  # [T,B,F] the features f(s_t) both heads read (IDAAC's adversarial target)


class _DaacAgent(_PgAgent):
    """The model is a DAAC model (`rlfleet.models.daac`; a custom one offers the same):
    ``forward`` acts, ``policy`` and ``value`` are the two networks' training forwards,
    ``value_net`` holds the value network, ``policy_parameters()`` the rest, and
    ``feature_size`` is the width of the policy features."""

    def __call__(self, observation, prev_action, prev_reward, action) -> PolicyOutputs:
        """Policy network training forward: the distribution, ``A(s, a)`` of the given actions,
        and the features."""
        inputs = self.to_model_inputs(observation, prev_action, prev_reward, action)
        *pi, advantage, features = self.model.policy(*inputs)
        return PolicyOutputs(self._dist_info(*pi), advantage, features)

    def value_estimate(self, observation, prev_action, prev_reward) -> torch.Tensor:
        """Value network training forward: ``V(s)`` with the caller's leading dims."""
        return self.model.value(*self.to_model_inputs(observation, prev_action, prev_reward))

    @torch.no_grad()
    def step(self, observation, prev_action, prev_reward) -> AgentStep:
        *pi, value = self.model(*self.to_model_inputs(observation, prev_action, prev_reward))
        return self._act(self._dist_info(*pi), value)

    @torch.no_grad()
    def value(self, observation, prev_action, prev_reward) -> torch.Tensor:
        return self.value_estimate(observation, prev_action, prev_reward).cpu()

    @property
    def feature_size(self) -> int:
        """``F``, the width of the policy features."""
        return self.model.feature_size

    def policy_parameters(self) -> list[nn.Parameter]:
        return self.model.policy_parameters()

    def value_parameters(self) -> list[nn.Parameter]:
        return list(self.model.value_net.parameters())


class CategoricalDaacAgent(_DaacAgent, CategoricalPgAgent):
    """Discrete actions; the model returns logits (`rlfleet.models.daac.CategoricalDaacModel`)."""


class GaussianDaacAgent(_DaacAgent, GaussianPgAgent):
    """Box actions; the model returns mean and log-std (`rlfleet.models.daac.GaussianDaacModel`)."""
