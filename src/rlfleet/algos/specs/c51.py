"""C51's declaration (DQN's hyperparameters)."""

from __future__ import annotations

from rlfleet.agents.config import CategoricalAgentConfig
from rlfleet.algos.spec import VALUE_BASED_RUNNERS, AlgoSpec
from rlfleet.algos.specs.dqn import DQNConfig

SPEC = AlgoSpec(
    name="c51",
    description="Categorical distributional DQN (C51)",
    config=DQNConfig,
    algorithm="rlfleet.algos.dqn.c51:CategoricalDQN",
    agent_config=CategoricalAgentConfig,
    agent="rlfleet.agents.distributional:CategoricalDqnAgent",
    default_model="rlfleet.models.distributional:CategoricalQModel",
    action_spaces=("discrete",),
    policy="off",
    runner_kinds=VALUE_BASED_RUNNERS,
)
