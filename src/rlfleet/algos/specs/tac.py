"""TAC's declaration and hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass

from rlfleet.agents.config import SacAgentConfig
from rlfleet.algos.spec import OFF_POLICY_RUNNERS, AlgoSpec
from rlfleet.algos.specs.sac import SACConfig
from rlfleet.config.rules import Positive


@dataclass
class TACConfig(SACConfig):
    """TAC hyperparameters (the rest: `SACConfig`).

    Attributes:
        entropic_index: the papers' q > 0 (1: SAC; the papers find values in [1, 2] best on
            MuJoCo, larger q exploring less).
    """

    entropic_index: Positive = 1.5


SPEC = AlgoSpec(
    name="tac",
    description="Tsallis actor-critic: SAC with the Tsallis entropy of entropic index q",
    config=TACConfig,
    algorithm="rlfleet.algos.qpg.tac:TAC",
    agent_config=SacAgentConfig,
    agent="rlfleet.agents.sac:SacAgent",
    default_model="rlfleet.models.sac:SacModel",
    action_spaces=("box",),
    policy="off",
    runner_kinds=OFF_POLICY_RUNNERS,
    replay_defaults={"size": 1_000_000},
)
