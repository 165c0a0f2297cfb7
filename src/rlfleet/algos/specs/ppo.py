"""PPO's declaration and hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlfleet.agents.config import PgAgentConfig
from rlfleet.algos.spec import ON_POLICY_RUNNERS, AlgoSpec
from rlfleet.algos.specs.a2c import PG_AGENTS, PG_MODELS, RECURRENT_PG_AGENT
from rlfleet.config.rules import Count, NonNegative, NonNegInt, Positive, Probability
from rlfleet.errors import ConfigError


@dataclass
class PPOConfig:
    """PPO hyperparameters (defaults follow Stable-Baselines3).

    Attributes:
        lr: learning rate (Adam).
        anneal_lr: decay the learning rate linearly to 0 over the run.
        gamma: discount.
        gae_lambda: GAE lambda.
        epochs: passes over each batch.
        minibatch_size: transitions per gradient step (the ``[T,B]`` batch is flattened; with a
            recurrent model, ``minibatch_size / sequence_length`` whole sequences).
        sequence_length: recurrent models: the length ``L`` of the training sequences each env
            column of a batch is cut into, each unrolled from the state stored at its start
            (0: the whole ``batch_T``; must divide ``sampler.batch_T``).
        clip_range: epsilon of the clipped ratio ``clip(r, 1 - eps, 1 + eps)``.
        anneal_clip: decay ``clip_range`` linearly to 0 over the run.
        clip_value: clip the value update to ``clip_value_range`` around the old value
            (0 disables; PPO2-style).
        value_coef: weight of the value loss.
        entropy_coef: weight of the entropy bonus.
        normalize_advantage: standardise advantages per minibatch.
        max_grad_norm: global gradient-norm clip (0 disables).
        target_kl: stop the epochs early once approx-KL exceeds it (0 disables).
        optimizer_eps: Adam epsilon.
    """

    lr: Positive = 3e-4
    anneal_lr: bool = False
    gamma: Probability = 0.99
    gae_lambda: Probability = 0.95
    epochs: Count = 10
    minibatch_size: Count = 64
    sequence_length: NonNegInt = 0
    clip_range: Positive = 0.2
    anneal_clip: bool = False
    clip_value: NonNegative = 0.0
    value_coef: NonNegative = 0.5
    entropy_coef: NonNegative = 0.0
    normalize_advantage: bool = True
    max_grad_norm: NonNegative = 0.5
    target_kl: NonNegative = 0.0
    optimizer_eps: Positive = 1e-5


def check_ppo(config: Any) -> None:
    """Replicas would stop their epochs at different points on their own KL; sequences must
    tile the batch."""
    L, T = config.algo.sequence_length, config.sampler.batch_T
    if L and T % L:
        raise ConfigError(
            f"algo.sequence_length={L} must divide sampler.batch_T={T} (each env column is cut into "
            f"sequences of that length); e.g. algo.sequence_length={next(d for d in range(L, 0, -1) if T % d == 0)}"
        )
    if config.runner.kind == "data_parallel" and config.algo.target_kl > 0:
        raise ConfigError(
            "algo.target_kl stops PPO's epochs on each replica's own KL, so replicas would disagree "
            "on the number of gradient steps: set algo.target_kl=0 with runner.kind=data_parallel"
        )


SPEC = AlgoSpec(
    name="ppo",
    description="Proximal policy optimisation (clipped), discrete or continuous actions",
    config=PPOConfig,
    algorithm="rlfleet.algos.pg.ppo:PPO",
    agent_config=PgAgentConfig,
    agent=PG_AGENTS,
    default_model=PG_MODELS,
    action_spaces=("discrete", "box"),
    policy="on",
    runner_kinds=ON_POLICY_RUNNERS,
    recurrent_agent=RECURRENT_PG_AGENT,
    check=check_ppo,
)
