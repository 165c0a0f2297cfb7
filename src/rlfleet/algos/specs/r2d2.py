"""R2D2's declaration and hyperparameters (Kapturowski et al. 2019), shared with rdqn."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from rlfleet.agents.config import DqnAgentConfig
from rlfleet.algos.spec import VALUE_BASED_RUNNERS, AlgoSpec
from rlfleet.algos.specs.dqn import DQNConfig
from rlfleet.config.rules import Count, NonNegative, NonNegInt, Positive, Probability
from rlfleet.errors import ConfigError


@dataclass
class R2D2Config(DQNConfig):
    """R2D2 hyperparameters; defaults from the paper (Table 2) where they apply to one learner:
    discount 0.997, 5-step double-Q targets with value rescaling (eps 1e-3), Adam lr 1e-4 with
    eps 1e-3, target update every 2500 updates, gradient clip 40. The sequence layout (length 80,
    overlap 40, burn-in 40) and the priorities (exponent 0.9, importance-sampling exponent 0.6,
    eta 0.9) are the ``replay:`` section's defaults for r2d2 (``replay.kind=sequence``).

    Attributes:
        batch_size: sequences per gradient step (each trains ``replay.sequence_length`` steps).
        replay_ratio: trained steps per env step: updates per sampler batch =
            ``replay_ratio * T * B / (batch_size * replay.sequence_length)``.
        stored_state: start each sequence's unroll from the recurrent state the agent stored
            when it acted (R2D2's stored state); False starts from zeros (the zero-start-state
            strategy, rdqn's default).
    """

    gamma: Probability = 0.997
    batch_size: Count = 64
    learning_starts: NonNegInt = 10_000
    replay_ratio: Positive = 1.0
    n_step: Count = 5
    lr: Positive = 1e-4
    loss: Literal["huber", "mse"] = "mse"
    target_update_interval: Count = 2_500
    max_grad_norm: NonNegative = 40.0
    optimizer_eps: Positive = 1e-3
    value_transform: bool = True
    stored_state: bool = True


def check_recurrent_q(config: Any) -> None:
    """A recurrent Q model (the default model's core, unless model.core=none) and per-env state
    the sampler keeps in step (``replay.kind=sequence`` is the spec's ``replay_kinds``)."""
    name, model = config.algorithm, config.model
    if "_target_" not in model and model.get("core", "lstm") == "none":
        raise ConfigError(
            f"{name} trains a recurrent Q-network: model.core=none leaves it without memory; "
            "use model.core=lstm or model.core=gru (or dqn for a feed-forward Q-network)"
        )
    refuse_alternating_sampler(config)


def refuse_alternating_sampler(config: Any) -> None:
    """A recurrent agent's per-env state needs every env stepped at once."""
    if config.sampler.kind == "alternating":
        raise ConfigError(
            "sampler.kind=alternating calls the agent on half the envs at a time, which a recurrent "
            "agent's per-env state does not follow: use sampler.kind serial or parallel"
        )


R2D2_AGENT = "rlfleet.agents.r2d2:R2d2Agent"
# R2D2's network: an LSTM core fed the observation features, the previous action and reward,
# then dueling heads.
RECURRENT_Q_MODEL = {"core": "lstm", "dueling": True, "core_prev_action_reward": True}
SEQUENCE_REPLAY = {
    "kind": "sequence",
    "sequence_length": 80,
    "sequence_overlap": 40,
    "burn_in": 40,
    "alpha": 0.9,
    "beta_start": 0.6,
    "beta_end": 0.6,
    "priority_eta": 0.9,
}

SPEC = AlgoSpec(
    name="r2d2",
    description="R2D2: recurrent DQN on replayed sequences with stored state and burn-in",
    config=R2D2Config,
    algorithm="rlfleet.algos.dqn.r2d2:R2D2",
    agent_config=DqnAgentConfig,
    agent=R2D2_AGENT,
    default_model="rlfleet.models.q:QModel",
    default_model_kwargs=RECURRENT_Q_MODEL,
    action_spaces=("discrete",),
    policy="off",
    replay_defaults=SEQUENCE_REPLAY,
    replay_kinds=("sequence",),
    runner_kinds=VALUE_BASED_RUNNERS,
    recurrent_agent=R2D2_AGENT,
    check=check_recurrent_q,
)
