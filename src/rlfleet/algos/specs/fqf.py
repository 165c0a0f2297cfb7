"""FQF's declaration and hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass

from rlfleet.agents.config import IqnAgentConfig
from rlfleet.algos.spec import VALUE_BASED_RUNNERS, AlgoSpec
from rlfleet.algos.specs.iqn import IQNConfig
from rlfleet.config.rules import NonNegative, Positive


@dataclass
class FQFConfig(IQNConfig):
    """FQF hyperparameters: IQN's (``n_quantiles`` and ``n_target_quantiles`` are unused: the
    model's fraction network proposes ``n_fractions`` per state), plus:

    Attributes:
        fraction_lr: RMSprop learning rate of the fraction proposal network.
        fraction_entropy_coef: entropy bonus of the proposed fractions.
    """

    fraction_lr: Positive = 2.5e-9
    fraction_entropy_coef: NonNegative = 0.0


SPEC = AlgoSpec(
    name="fqf",
    description="Fully parameterized quantile function (FQF)",
    config=FQFConfig,
    algorithm="rlfleet.algos.dqn.fqf:FQF",
    agent_config=IqnAgentConfig,
    agent="rlfleet.agents.distributional:FqfAgent",
    default_model="rlfleet.models.fqf:FqfModel",
    action_spaces=("discrete",),
    policy="off",
    runner_kinds=VALUE_BASED_RUNNERS,
)
