"""Munchausen IQN's declaration and hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from rlfleet.agents.config import IqnAgentConfig
from rlfleet.algos.spec import VALUE_BASED_RUNNERS, AlgoSpec
from rlfleet.algos.specs.iqn import IQNConfig
from rlfleet.config.rules import NonNegative, Positive, Range


@dataclass
class MunchausenIQNConfig(IQNConfig):
    """M-IQN hyperparameters: IQN's, plus ``entropy_tau``, ``munchausen_alpha`` and
    ``log_policy_clip`` as in `MunchausenDQNConfig`."""

    entropy_tau: Positive = 0.03
    munchausen_alpha: NonNegative = 0.9
    log_policy_clip: Annotated[float, Range(le=0)] = -1.0


SPEC = AlgoSpec(
    name="miqn",
    description="Munchausen IQN (M-IQN)",
    config=MunchausenIQNConfig,
    algorithm="rlfleet.algos.dqn.munchausen:MunchausenIQN",
    agent_config=IqnAgentConfig,
    agent="rlfleet.agents.distributional:IqnAgent",
    default_model="rlfleet.models.distributional:ImplicitQuantileModel",
    action_spaces=("discrete",),
    policy="off",
    runner_kinds=VALUE_BASED_RUNNERS,
)
