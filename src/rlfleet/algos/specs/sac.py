"""SAC's declaration and hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass

from rlfleet.agents.config import SacAgentConfig
from rlfleet.algos.off_policy_config import OffPolicyConfig
from rlfleet.algos.spec import OFF_POLICY_RUNNERS, AlgoSpec
from rlfleet.config.rules import Count, NonNegative, NonNegInt, Positive, Rate


@dataclass
class SACConfig(OffPolicyConfig):
    """SAC hyperparameters (replay and schedule fields: `OffPolicyConfig`). The defaults are
    the paper's (batches of 256, one update per env step: ``replay_ratio = batch_size``, Adam at
    3e-4, tau 0.005, target entropy ``-dim(A)``), with the temperature learned from 1 as in
    Stable-Baselines3 and CleanRL, and CleanRL's 5000 env steps before the first update.

    Attributes:
        actor_lr: Adam learning rate of the actor.
        critic_lr: Adam learning rate of the twin critics.
        alpha_lr: Adam learning rate of ``log alpha`` (with ``auto_alpha``).
        alpha: entropy temperature: the fixed value, or the initial one with ``auto_alpha``
            (SB3 and CleanRL start the learned temperature at 1; the paper's fixed value is 0.2).
        auto_alpha: learn the temperature by minimising
            ``J(alpha) = E[-log alpha (log pi(a|s) + target_entropy)]`` (Haarnoja et al. 2018b).
        target_entropy: the entropy the learned temperature steers towards (None: ``-dim(A)``).
        tau: soft target update ``theta' <- tau theta + (1 - tau) theta'`` (1: hard copy) ...
        target_update_interval: ... every this many updates.
        policy_delay: critic updates per actor and temperature update (1: every update).
        reward_scale: rewards are multiplied by this in the critic target (the first SAC paper
            tunes it in place of the temperature; keep 1 with ``auto_alpha``).
        max_grad_norm: global gradient-norm clip of the actor and of the critics (0 disables).
        optimizer_eps: Adam epsilon.
    """

    batch_size: Count = 256
    learning_starts: NonNegInt = 5_000
    replay_ratio: Positive = 256.0
    actor_lr: Positive = 3e-4
    critic_lr: Positive = 3e-4
    alpha_lr: Positive = 3e-4
    alpha: Positive = 1.0
    auto_alpha: bool = True
    target_entropy: float | None = None
    tau: Rate = 0.005
    target_update_interval: Count = 1
    policy_delay: Count = 1
    reward_scale: Positive = 1.0
    max_grad_norm: NonNegative = 0.0
    optimizer_eps: Positive = 1e-8


SPEC = AlgoSpec(
    name="sac",
    description="Soft actor-critic: twin critics, squashed Gaussian, automatic or fixed temperature",
    config=SACConfig,
    algorithm="rlfleet.algos.qpg.sac:SAC",
    agent_config=SacAgentConfig,
    agent="rlfleet.agents.sac:SacAgent",
    default_model="rlfleet.models.sac:SacModel",
    action_spaces=("box",),
    policy="off",
    runner_kinds=OFF_POLICY_RUNNERS,
    replay_defaults={"size": 1_000_000},
)
