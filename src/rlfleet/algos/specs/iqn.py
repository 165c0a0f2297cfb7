"""IQN's declaration and hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass

from rlfleet.agents.config import IqnAgentConfig
from rlfleet.algos.spec import VALUE_BASED_RUNNERS, AlgoSpec
from rlfleet.algos.specs.dqn import DQNConfig
from rlfleet.config.rules import Count, NonNegative


@dataclass
class IQNConfig(DQNConfig):
    """IQN hyperparameters.

    Attributes:
        kappa: Huber threshold of the quantile loss.
        n_quantiles: fractions sampled for the current state (the paper's N = 64).
        n_target_quantiles: fractions sampled for the target (N' = 64).
    """

    kappa: NonNegative = 1.0
    n_quantiles: Count = 64
    n_target_quantiles: Count = 64


SPEC = AlgoSpec(
    name="iqn",
    description="Implicit quantile networks (IQN)",
    config=IQNConfig,
    algorithm="rlfleet.algos.dqn.iqn:IQN",
    agent_config=IqnAgentConfig,
    agent="rlfleet.agents.distributional:IqnAgent",
    default_model="rlfleet.models.distributional:ImplicitQuantileModel",
    action_spaces=("discrete",),
    policy="off",
    runner_kinds=VALUE_BASED_RUNNERS,
)
