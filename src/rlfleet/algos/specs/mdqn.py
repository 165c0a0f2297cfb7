"""Munchausen DQN's declaration and hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from rlfleet.agents.config import DqnAgentConfig
from rlfleet.algos.spec import VALUE_BASED_RUNNERS, AlgoSpec
from rlfleet.algos.specs.dqn import DQNConfig
from rlfleet.config.rules import NonNegative, Positive, Range


@dataclass
class MunchausenDQNConfig(DQNConfig):
    """M-DQN hyperparameters (``double`` is unused: the soft target replaces the max).

    Attributes:
        entropy_tau: temperature of the softmax policy ``pi = softmax(Q_target / tau)``.
        munchausen_alpha: scale of the log-policy bonus.
        log_policy_clip: lower clip of ``tau log pi(a|s)`` (its upper bound is 0).
    """

    entropy_tau: Positive = 0.03
    munchausen_alpha: NonNegative = 0.9
    log_policy_clip: Annotated[float, Range(le=0)] = -1.0


SPEC = AlgoSpec(
    name="mdqn",
    description="Munchausen DQN (M-DQN)",
    config=MunchausenDQNConfig,
    algorithm="rlfleet.algos.dqn.munchausen:MunchausenDQN",
    agent_config=DqnAgentConfig,
    agent="rlfleet.agents.dqn:DqnAgent",
    default_model="rlfleet.models.q:QModel",
    action_spaces=("discrete",),
    policy="off",
    runner_kinds=VALUE_BASED_RUNNERS,
)
