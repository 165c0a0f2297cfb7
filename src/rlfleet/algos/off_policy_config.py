"""What every replay-based algorithm's config shares."""

from __future__ import annotations

from dataclasses import dataclass


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

    gamma: float = 0.99
    batch_size: int = 32
    learning_starts: int = 1_000
    replay_ratio: float = 8.0
    n_step: int = 1
