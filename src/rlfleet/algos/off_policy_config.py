"""What every replay-based algorithm's config shares."""

from __future__ import annotations

from dataclasses import dataclass

from rlfleet.config.rules import Count, NonNegInt, Positive, Probability


@dataclass
class OffPolicyConfig:
    """The update schedule shared by every off-policy algorithm (the replay itself is the
    ``replay:`` section, `rlfleet.config.schema.ReplayConfig`).

    Attributes:
        gamma: discount.
        batch_size: transitions per gradient step.
        learning_starts: env steps collected before the first update.
        replay_ratio: transitions trained on per transition sampled (rlpyt's ratio):
            updates per sampler batch = replay_ratio * T * B / batch_size.
        n_step: return horizon (the replay computes the n-step returns).
    """

    gamma: Probability = 0.99
    batch_size: Count = 32
    learning_starts: NonNegInt = 1_000
    replay_ratio: Positive = 8.0
    n_step: Count = 1
