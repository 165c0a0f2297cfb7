"""SAC-discrete's declaration and hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass

from rlfleet.agents.config import SacAgentConfig
from rlfleet.algos.spec import OFF_POLICY_RUNNERS, AlgoSpec
from rlfleet.algos.specs.sac import SACConfig
from rlfleet.config.rules import Probability


@dataclass
class SACDiscreteConfig(SACConfig):
    """SAC-discrete hyperparameters (the rest: `SACConfig`).

    Attributes:
        target_entropy_scale: with ``target_entropy`` unset, the temperature steers the
            entropy towards ``target_entropy_scale * log|A|``, this fraction of the uniform
            policy's entropy. Christodoulou uses 0.98, which holds the policy close to uniform;
            CleanRL's Atari script uses 0.89; the CartPole preset uses less (see it).
    """

    target_entropy_scale: Probability = 0.89


SPEC = AlgoSpec(
    name="sac_discrete",
    description="Soft actor-critic for discrete actions (exact expectations over actions)",
    config=SACDiscreteConfig,
    algorithm="rlfleet.algos.qpg.sac_discrete:SACDiscrete",
    agent_config=SacAgentConfig,
    agent="rlfleet.agents.sac:SacDiscreteAgent",
    default_model="rlfleet.models.sac:SacDiscreteModel",
    action_spaces=("discrete",),
    policy="off",
    runner_kinds=OFF_POLICY_RUNNERS,
    replay_defaults={"size": 1_000_000},
)
