"""A2C's declaration and hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from rlfleet.agents.config import PgAgentConfig
from rlfleet.algos.spec import ON_POLICY_RUNNERS, AlgoSpec
from rlfleet.config.rules import NonNegative, Positive, Probability, Range


@dataclass
class A2CConfig:
    """A2C hyperparameters (defaults follow Stable-Baselines3).

    Attributes:
        lr: learning rate.
        anneal_lr: decay the learning rate linearly to 0 over the run.
        gamma: discount.
        gae_lambda: 1.0 gives plain n-step returns; < 1 uses GAE.
        value_coef: weight of the value loss.
        entropy_coef: weight of the entropy bonus.
        max_grad_norm: global gradient-norm clip (0 disables).
        normalize_advantage: standardise advantages per batch.
        optimizer: ``rmsprop`` or ``adam``.
        optimizer_eps: epsilon of the optimizer.
        rmsprop_alpha: RMSprop smoothing constant.
    """

    lr: Positive = 7e-4
    anneal_lr: bool = False
    gamma: Probability = 0.99
    gae_lambda: Probability = 1.0
    value_coef: NonNegative = 0.5
    entropy_coef: NonNegative = 0.0
    max_grad_norm: NonNegative = 0.5
    normalize_advantage: bool = False
    optimizer: Literal["rmsprop", "adam"] = "rmsprop"
    optimizer_eps: Positive = 1e-5
    rmsprop_alpha: Annotated[float, Range(ge=0, lt=1)] = 0.99


# The policy-gradient family's agents and default models, by action-space kind (PPO shares them).
PG_AGENTS = {"discrete": "rlfleet.agents.pg:CategoricalPgAgent", "box": "rlfleet.agents.pg:GaussianPgAgent"}
RECURRENT_PG_AGENT = "rlfleet.agents.recurrent:RecurrentPgAgent"
PG_MODELS = {
    "discrete": "rlfleet.models.pg:CategoricalActorCriticModel",
    "box": "rlfleet.models.pg:GaussianActorCriticModel",
}

SPEC = AlgoSpec(
    name="a2c",
    description="Advantage actor-critic (synchronous), discrete or continuous actions",
    config=A2CConfig,
    algorithm="rlfleet.algos.pg.a2c:A2C",
    agent_config=PgAgentConfig,
    agent=PG_AGENTS,
    default_model=PG_MODELS,
    action_spaces=("discrete", "box"),
    policy="on",
    runner_kinds=ON_POLICY_RUNNERS,
    recurrent_agent=RECURRENT_PG_AGENT,
)
