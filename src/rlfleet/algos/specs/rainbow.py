"""Rainbow's declaration and defaults."""

from __future__ import annotations

from dataclasses import dataclass

from rlfleet.agents.config import RainbowAgentConfig
from rlfleet.algos.spec import VALUE_BASED_RUNNERS, AlgoSpec
from rlfleet.algos.specs.dqn import DQNConfig
from rlfleet.config.rules import Count, Positive


@dataclass
class RainbowConfig(DQNConfig):
    """Rainbow's defaults (Hessel et al. 2018) on top of DQN's: double targets, 3-step returns,
    prioritized replay (alpha 0.5, beta 0.4 -> 1: ``replay_defaults``). The dueling noisy model and the support are
    the model's and the agent's defaults for ``rainbow``."""

    double: bool = True
    n_step: Count = 3
    optimizer_eps: Positive = 1.5e-4


SPEC = AlgoSpec(
    name="rainbow",
    description="Rainbow: C51 + double + dueling + n-step + prioritized replay + noisy nets",
    config=RainbowConfig,
    algorithm="rlfleet.algos.dqn.c51:CategoricalDQN",
    agent_config=RainbowAgentConfig,
    agent="rlfleet.agents.distributional:CategoricalDqnAgent",
    default_model="rlfleet.models.distributional:CategoricalQModel",
    action_spaces=("discrete",),
    policy="off",
    runner_kinds=VALUE_BASED_RUNNERS,
    default_model_kwargs={"dueling": True, "noisy": True},
    replay_defaults={"kind": "prioritized", "alpha": 0.5},
)
