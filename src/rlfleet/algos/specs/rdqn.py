"""Recurrent DQN's declaration: R2D2's algorithm with the zero-start-state strategy and no
burn-in (each sequence unrolled from zeros, as DRQN-style recurrent replay does)."""

from __future__ import annotations

from dataclasses import dataclass

from rlfleet.agents.config import DqnAgentConfig
from rlfleet.algos.spec import OFF_POLICY_RUNNERS, AlgoSpec
from rlfleet.algos.specs.r2d2 import R2D2_AGENT, RECURRENT_Q_MODEL, SEQUENCE_REPLAY, R2D2Config, check_recurrent_q


@dataclass
class RDQNConfig(R2D2Config):
    """R2D2's hyperparameters with ``stored_state`` off: sequences start from zero state (and,
    by the ``replay:`` defaults for rdqn, with no burn-in)."""

    stored_state: bool = False


SPEC = AlgoSpec(
    name="rdqn",
    description="Recurrent DQN: R2D2's sequences from zero start state, no burn-in",
    config=RDQNConfig,
    algorithm="rlfleet.algos.dqn.r2d2:R2D2",
    agent_config=DqnAgentConfig,
    agent=R2D2_AGENT,
    default_model="rlfleet.models.q:QModel",
    default_model_kwargs=RECURRENT_Q_MODEL,
    action_spaces=("discrete",),
    policy="off",
    replay_defaults={**SEQUENCE_REPLAY, "burn_in": 0},
    replay_kinds=("sequence",),
    runner_kinds=OFF_POLICY_RUNNERS,
    recurrent_agent=R2D2_AGENT,
    check=check_recurrent_q,
)
