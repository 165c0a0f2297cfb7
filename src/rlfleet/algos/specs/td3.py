"""TD3's declaration and hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlfleet.agents.config import DdpgAgentConfig
from rlfleet.algos.spec import OFF_POLICY_RUNNERS, AlgoSpec
from rlfleet.algos.specs.ddpg import DDPGConfig, check_ou_noise_sampler
from rlfleet.config.rules import Count, NonNegative
from rlfleet.errors import ConfigError


@dataclass
class TD3Config(DDPGConfig):
    """TD3 hyperparameters (the rest: `DDPGConfig`, whose defaults are TD3's).

    Attributes:
        policy_delay: critic updates per actor and target update (the paper's d).
        target_noise: standard deviation of the smoothing noise added to the target action.
        target_noise_clip: the noise is clipped to ``[-target_noise_clip, target_noise_clip]``.
    """

    policy_delay: Count = 2
    target_noise: NonNegative = 0.2
    target_noise_clip: NonNegative = 0.5


def check_td3(config: Any) -> None:
    check_ou_noise_sampler(config)
    if config.model.get("twin_critic", True) is not True:
        raise ConfigError("td3 needs twin critics (model.twin_critic=true)")


SPEC = AlgoSpec(
    name="td3",
    description="Twin delayed DDPG (TD3), continuous actions",
    config=TD3Config,
    algorithm="rlfleet.algos.qpg.td3:TD3",
    agent_config=DdpgAgentConfig,
    agent="rlfleet.agents.ddpg:DdpgAgent",
    default_model="rlfleet.models.ddpg:DeterministicActorCriticModel",
    action_spaces=("box",),
    policy="off",
    runner_kinds=OFF_POLICY_RUNNERS,
    default_model_kwargs={"twin_critic": True},
    replay_defaults={"size": 1_000_000},
    check=check_td3,
)
