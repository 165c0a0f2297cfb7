"""PPG agents: the policy-gradient agents plus the auxiliary-phase forward pass."""

from __future__ import annotations

import torch

from rlfleet.agents.pg import CategoricalPgAgent, GaussianPgAgent, _PgAgent
from rlfleet.distributions import DistInfo, DistInfoStd


def _aux_forward(agent: _PgAgent, observation, prev_action, prev_reward) -> tuple:
    inputs = agent.to_model_inputs(observation, prev_action, prev_reward)
    *pi, value, aux_value = agent.model.aux_forward(*inputs)
    return agent._dist_info(*pi), value, aux_value


class PhasicCategoricalAgent(CategoricalPgAgent):
    """Discrete actions; the model (`rlfleet.models.ppg.PhasicCategoricalModel`) returns
    ``(logits, value)``, and ``(logits, value, aux_value)`` from ``aux_forward``."""

    def aux_forward(self, observation, prev_action, prev_reward) -> tuple[DistInfo, torch.Tensor, torch.Tensor]:
        """Auxiliary-phase forward: ``(dist_info [T,B,...], value [T,B], aux_value [T,B])``."""
        return _aux_forward(self, observation, prev_action, prev_reward)


class PhasicGaussianAgent(GaussianPgAgent):
    """Continuous (Box) actions; the model (`rlfleet.models.ppg.PhasicGaussianModel`) returns
    ``(mean, log_std, value)``, and ``(mean, log_std, value, aux_value)`` from ``aux_forward``."""

    def aux_forward(self, observation, prev_action, prev_reward) -> tuple[DistInfoStd, torch.Tensor, torch.Tensor]:
        """Auxiliary-phase forward: ``(dist_info [T,B,...], value [T,B], aux_value [T,B])``."""
        return _aux_forward(self, observation, prev_action, prev_reward)
