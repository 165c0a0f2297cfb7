"""DQN's declaration and the hyperparameters the value-based family shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rlfleet.agents.config import DqnAgentConfig
from rlfleet.algos.off_policy_config import OffPolicyConfig
from rlfleet.algos.spec import VALUE_BASED_RUNNERS, AlgoSpec
from rlfleet.config.rules import Count, NonNegative, Positive, Rate


@dataclass
class DQNConfig(OffPolicyConfig):
    """DQN hyperparameters, shared by every value-based algorithm (replay and schedule fields:
    `OffPolicyConfig`).

    Attributes:
        lr: Adam learning rate.
        double: double DQN target (van Hasselt et al. 2016).
        loss: ``huber`` or ``mse`` (scalar-valued DQNs).
        huber_delta: Huber threshold.
        target_update_interval: updates between hard target copies (used when target_tau = 1).
        target_tau: soft (Polyak) target update rate applied every update when < 1.
        max_grad_norm: global gradient-norm clip (0 disables).
        optimizer_eps: Adam epsilon.
        value_transform: transformed Bellman operator (Pohlen et al. 2018):
            ``y = h(R + gamma^n h^-1(Q_target))`` with ``h(x) = sign(x)(sqrt(|x|+1)-1) + eps x``.
        value_transform_eps: the ``eps`` of ``h``.
    """

    lr: Positive = 1e-4
    double: bool = True
    loss: Literal["huber", "mse"] = "huber"
    huber_delta: Positive = 1.0
    target_update_interval: Count = 1_000
    target_tau: Rate = 1.0
    max_grad_norm: NonNegative = 10.0
    optimizer_eps: Positive = 1e-8
    value_transform: bool = False
    value_transform_eps: NonNegative = 1e-3


SPEC = AlgoSpec(
    name="dqn",
    description="Deep Q-network: double, dueling, n-step, noisy, uniform or prioritized replay",
    config=DQNConfig,
    algorithm="rlfleet.algos.dqn.dqn:DQN",
    agent_config=DqnAgentConfig,
    agent="rlfleet.agents.dqn:DqnAgent",
    default_model="rlfleet.models.q:QModel",
    action_spaces=("discrete",),
    policy="off",
    runner_kinds=VALUE_BASED_RUNNERS,
)
