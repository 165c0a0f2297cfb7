"""Reactor's declaration and hyperparameters (Gruslys et al. 2018)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlfleet.agents.config import ReactorAgentConfig
from rlfleet.algos.off_policy_config import OffPolicyConfig
from rlfleet.algos.spec import OFF_POLICY_RUNNERS, AlgoSpec
from rlfleet.algos.specs.r2d2 import refuse_alternating_sampler
from rlfleet.config.rules import Count, NonNegative, Positive, Probability, Rate
from rlfleet.errors import ConfigError


@dataclass
class ReactorConfig(OffPolicyConfig):
    """Reactor: an actor-critic on replayed sequences (``replay.kind=sequence``).

    Attributes:
        batch_size: sequences per gradient step (each trains ``replay.sequence_length`` steps).
        replay_ratio: trained steps per env step (as R2D2 counts them).
        n_step: steps after the trained ones that each window carries (the traces reach into
            them; the last one only bootstraps).
        lr, optimizer_eps, max_grad_norm: Adam and the global gradient-norm clip (0: none).
        retrace_lambda: ``lambda`` of the critic's traces ``c = lambda min(1, pi / mu)``.
        loo_beta_max: the truncation of beta-LOO's ``beta = min(loo_beta_max, 1 / mu(a | x))``.
        entropy_coef: weight of the policy's entropy bonus.
        actor_coef: weight of the actor's loss beside the critic's cross-entropy.
        target_update_interval: updates between hard copies of the target network (target_tau 1).
        target_tau: soft target update rate applied every update when < 1.
    """

    gamma: Probability = 0.99
    batch_size: Count = 16
    learning_starts: Count = 1_000
    replay_ratio: Positive = 4.0
    n_step: Count = 4
    lr: Positive = 5e-4
    optimizer_eps: Positive = 1e-8
    max_grad_norm: NonNegative = 10.0
    retrace_lambda: Probability = 1.0
    loo_beta_max: Positive = 1.0
    entropy_coef: NonNegative = 0.01
    actor_coef: NonNegative = 1.0
    target_update_interval: Count = 100
    target_tau: Rate = 1.0


def check_reactor(config: Any) -> None:
    """Burn-in warms a recurrent state: a feed-forward Reactor has none; a recurrent one needs
    every env stepped at once."""
    if not config.recurrent and config.replay.burn_in > 0:
        raise ConfigError(
            f"replay.burn_in={config.replay.burn_in} warms a recurrent state and reactor's network is feed-forward: "
            "set replay.burn_in=0, or model.core=lstm for the recurrent Reactor"
        )
    if config.recurrent:
        refuse_alternating_sampler(config)


SPEC = AlgoSpec(
    name="reactor",
    description="Reactor: distributional Retrace critic, beta-LOO policy gradient, prioritized sequence replay",
    config=ReactorConfig,
    algorithm="rlfleet.algos.reactor.reactor:Reactor",
    agent_config=ReactorAgentConfig,
    agent="rlfleet.agents.reactor:ReactorAgent",
    recurrent_agent="rlfleet.agents.reactor:RecurrentReactorAgent",
    default_model="rlfleet.models.reactor:ReactorModel",
    action_spaces=("discrete",),
    policy="off",
    replay_defaults={
        "kind": "sequence",
        "sequence_length": 16,
        "sequence_overlap": 8,
        "burn_in": 0,
        "alpha": 0.6,
        "beta_start": 0.4,
        "beta_end": 1.0,
        "priority_eta": 0.9,
    },
    replay_kinds=("sequence",),
    runner_kinds=OFF_POLICY_RUNNERS,
    check=check_reactor,
)
