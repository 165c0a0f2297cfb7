"""DDPG's declaration and hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlfleet.agents.config import DdpgAgentConfig
from rlfleet.algos.off_policy_config import OffPolicyConfig
from rlfleet.algos.spec import OFF_POLICY_RUNNERS, AlgoSpec
from rlfleet.config.rules import Count, NonNegative, NonNegInt, Positive, Rate
from rlfleet.errors import ConfigError


@dataclass
class DDPGConfig(OffPolicyConfig):
    """DDPG hyperparameters (replay and schedule fields: `OffPolicyConfig`).

    The defaults are Fujimoto et al. 2018's re-tuned DDPG (Adam 1e-3 for both networks,
    ``tau=5e-3``, with the agent's Gaussian noise 0.1 and the model's action at the critic's
    input), one update per env step on batches of 256 as in the TD3 repository's later
    revision (the paper: batches of 100).

    Lillicrap et al. 2016 instead use ``actor_lr=1e-4``, ``critic_lr=1e-3``, ``tau=1e-3``,
    ``critic_weight_decay=1e-2``, ``batch_size=64`` (``replay_ratio=64``), with
    ``agent.exploration_noise=ou`` and ``model.critic_action_layer=1``,
    ``model.hidden_sizes=[400,300]``, ``model.output_init=0.003`` (no batch normalisation here).

    Attributes:
        actor_lr: Adam learning rate of the actor.
        critic_lr: Adam learning rate of the critic.
        tau: soft target update, ``theta' <- tau theta + (1 - tau) theta'``, every update.
        critic_weight_decay: L2 penalty ``c/2 ||theta_Q||^2`` on every critic parameter, added
            to the critic loss (Lillicrap et al. 2016: 1e-2; the gradient of Adam's
            ``weight_decay``).
        max_grad_norm: global gradient-norm clip of each network (0 disables).
        optimizer_eps: Adam epsilon.
    """

    batch_size: Count = 256
    learning_starts: NonNegInt = 10_000
    replay_ratio: Positive = 256.0
    actor_lr: Positive = 1e-3
    critic_lr: Positive = 1e-3
    tau: Rate = 5e-3
    critic_weight_decay: NonNegative = 0.0
    max_grad_norm: NonNegative = 0.0
    optimizer_eps: Positive = 1e-8


def check_ou_noise_sampler(config: Any) -> None:
    """The alternating sampler calls the agent on half of the envs at a time; OU noise keeps one
    process per env for calls on all of them."""
    if config.sampler.kind == "alternating" and config.agent.exploration_noise == "ou":
        raise ConfigError(
            "sampler.kind=alternating runs the agent on half of the envs at a time, but "
            "agent.exploration_noise=ou keeps one noise process per env for calls on all of them; "
            "use agent.exploration_noise=gaussian or sampler.kind=parallel"
        )


SPEC = AlgoSpec(
    name="ddpg",
    description="Deep deterministic policy gradient (Lillicrap or Fujimoto form), continuous actions",
    config=DDPGConfig,
    algorithm="rlfleet.algos.qpg.ddpg:DDPG",
    agent_config=DdpgAgentConfig,
    agent="rlfleet.agents.ddpg:DdpgAgent",
    default_model="rlfleet.models.ddpg:DeterministicActorCriticModel",
    action_spaces=("box",),
    policy="off",
    runner_kinds=OFF_POLICY_RUNNERS,
    replay_defaults={"size": 1_000_000},
    check=check_ou_noise_sampler,
)
