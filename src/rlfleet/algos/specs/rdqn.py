"""Recurrent DQN's declaration: R2D2's algorithm with the zero-start-state strategy and no
burn-in (each sequence unrolled from zeros, as DRQN-style recurrent replay does)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from rlfleet.algos.specs.r2d2 import SPEC as R2D2_SPEC
from rlfleet.algos.specs.r2d2 import R2D2Config


@dataclass
class RDQNConfig(R2D2Config):
    """R2D2's hyperparameters with ``stored_state`` off: sequences start from zero state (and,
    by the ``replay:`` defaults for rdqn, with no burn-in)."""

    stored_state: bool = False


SPEC = dataclasses.replace(
    R2D2_SPEC,
    name="rdqn",
    description="Recurrent DQN: R2D2's sequences from zero start state, no burn-in",
    config=RDQNConfig,
    replay_defaults={**R2D2_SPEC.replay_defaults, "burn_in": 0},
)
