"""IMPALA's declaration and hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from rlfleet.agents.config import PgAgentConfig
from rlfleet.algos.spec import AlgoSpec
from rlfleet.algos.specs.a2c import PG_AGENTS, PG_MODELS
from rlfleet.config.rules import NonNegative, Positive, Probability, Range


@dataclass
class IMPALAConfig:
    """IMPALA learner hyperparameters (Espeholt et al. 2018; defaults: the paper's Atari settings,
    as TorchBeast and Cleanba use them: RMSprop 6e-4 annealed to 0, decay 0.99, no momentum,
    baseline cost 0.5, entropy cost 0.01, gradient-norm clip 40, rho_bar = c_bar = 1).

    Attributes:
        lr: learning rate.
        anneal_lr: decay the learning rate linearly to 0 over the run.
        gamma: discount.
        value_coef: weight of the value loss ``0.5 E[(v_s - V(x_s))^2]`` (the paper's baseline cost).
        entropy_coef: weight of the entropy bonus.
        max_grad_norm: global gradient-norm clip (0 disables).
        rho_clip: ``rho_bar``, the truncation of the importance ratios in V-trace's temporal
            differences (which policy's value V-trace estimates: mu's as it tends to 0, pi's for
            ``rho_bar`` -> infinity).
        c_clip: ``c_bar``, the truncation of the trace coefficients (how far each correction reaches).
        pg_rho_clip: ``rho_bar_pg``, the truncation of the ratio weighting the policy-gradient advantage.
        optimizer: ``rmsprop`` or ``adam``.
        optimizer_eps: epsilon of the optimizer, added to the root of the second moment (torch's
            convention, as TorchBeast's and Cleanba's 0.01).
        rmsprop_alpha: RMSprop smoothing constant (the paper's decay).
    """

    lr: Positive = 6e-4
    anneal_lr: bool = True
    gamma: Probability = 0.99
    value_coef: NonNegative = 0.5
    entropy_coef: NonNegative = 0.01
    max_grad_norm: NonNegative = 40.0
    rho_clip: Positive = 1.0
    c_clip: Positive = 1.0
    pg_rho_clip: Positive = 1.0
    optimizer: Literal["rmsprop", "adam"] = "rmsprop"
    optimizer_eps: Positive = 0.01
    rmsprop_alpha: Annotated[float, Range(ge=0, lt=1)] = 0.99


SPEC = AlgoSpec(
    name="impala",
    description="IMPALA's learner: actor-critic with V-trace off-policy correction, discrete or continuous actions",
    config=IMPALAConfig,
    algorithm="rlfleet.algos.pg.impala:IMPALA",
    agent_config=PgAgentConfig,
    agent=PG_AGENTS,
    default_model=PG_MODELS,
    action_spaces=("discrete", "box"),
    policy="on",
    runner_kinds=("minibatch", "ray"),
)
