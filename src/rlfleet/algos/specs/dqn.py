"""DQN's declaration and the hyperparameters the value-based family shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from rlfleet.agents.config import DqnAgentConfig
from rlfleet.algos.off_policy_config import OffPolicyConfig
from rlfleet.algos.spec import VALUE_BASED_RUNNERS, AlgoSpec
from rlfleet.config.rules import Count, NonNegative, Positive, Probability, Rate
from rlfleet.errors import ConfigError


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
        target: ``n_step``: the replay's n-step return; ``retrace``: Retrace(lambda) (Munos et
            al. 2016) over sequences (``replay.kind=sequence``; `rlfleet.algos.dqn.retrace`),
            for dqn, r2d2 and rdqn.
        retrace_lambda: Retrace's ``lambda`` in the traces ``c = lambda min(1, pi / mu)``.
        retrace_target_epsilon: epsilon of Retrace's target policy ``pi``, epsilon-greedy on the
            online network (0: greedy, whose traces stop at the behaviour's exploratory actions).
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
    target: Literal["n_step", "retrace"] = "n_step"
    retrace_lambda: Probability = 0.95
    retrace_target_epsilon: Probability = 0.0


def check_dqn_targets(config: Any) -> None:
    """dqn trains on sequences exactly when its target is Retrace, and its feed-forward
    Q-network has no state to burn in."""
    replay, algo = config.replay, config.algo
    if replay.kind == "sequence" and algo.target != "retrace":
        raise ConfigError(
            f"{config.algorithm} trains on replay.kind=sequence only with algo.target=retrace "
            "(n-step targets on transitions: replay.kind uniform or prioritized)"
        )
    if algo.target == "retrace" and replay.kind != "sequence":
        raise ConfigError(
            "algo.target=retrace computes its returns over sequences: set replay.kind=sequence "
            "(with replay.burn_in=0 for dqn's feed-forward Q-network)"
        )
    if replay.kind == "sequence" and replay.burn_in > 0:
        raise ConfigError(
            f"replay.burn_in={replay.burn_in} warms a recurrent state, and {config.algorithm}'s Q-network is "
            "feed-forward: set replay.burn_in=0 (or train r2d2 for a recurrent one)"
        )


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
    replay_kinds=("uniform", "prioritized", "sequence"),
    runner_kinds=VALUE_BASED_RUNNERS,
    check=check_dqn_targets,
)
