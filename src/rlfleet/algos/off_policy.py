"""What every replay-based algorithm shares: the update schedule, importance weights and
priority updates over the replay it is handed (uniform or prioritized, n-step, frame-once)."""

from __future__ import annotations

from collections import defaultdict

import torch

from rlfleet.algos.base import Algorithm
from rlfleet.algos.off_policy_config import OffPolicyConfig
from rlfleet.replays.n_step import NStepReplayBuffer, ReplaySamples
from rlfleet.samplers.sampler import SamplerBatch


def update_target_network(agent, updates: int, tau: float, interval: int) -> None:
    """After update number ``updates``: Polyak-average the agent's target network with rate
    ``tau`` when ``tau < 1``, else copy it every ``interval`` updates."""
    if tau < 1.0:
        agent.update_target(tau)
    elif updates % interval == 0:
        agent.update_target()


class OffPolicyAlgorithm(Algorithm):
    """Runs ``updates_per_batch`` updates of ``gradient_step(samples, weights)`` followed by
    ``after_update()`` after every sampler batch, drawing from the replay it is handed (the
    runner appends each batch to the replay before calling `optimize_agent`).

    Subclasses implement ``build_optimizers(agent)`` and ``gradient_step``, which returns the
    per-sample errors PER stores (``[N]``) and diagnostics (0-dim tensors, averaged into
    progress.csv); ``extra_stats()`` adds values logged after every batch.
    """

    config: OffPolicyConfig

    def __init__(self, config: OffPolicyConfig):
        super().__init__()
        self.config = config
        self.replay: NStepReplayBuffer | None = None

    def initialize(self, agent, n_steps: int, batch_T: int, batch_B: int, replay: NStepReplayBuffer | None = None):
        """``replay``: the replay built from the ``replay:`` section (`rlfleet.build`)."""
        super().initialize(agent, n_steps, batch_T, batch_B)
        c = self.config
        self.build_optimizers(agent)
        self.replay = replay
        self.updates_per_batch = max(1, round(c.replay_ratio * batch_T * batch_B / self.samples_per_update))

    @property
    def samples_per_update(self) -> int:
        """Env steps one gradient step trains on (``batch_size`` transitions; an algorithm
        training on sequences counts their trained steps), for the replay ratio."""
        return self.config.batch_size

    def build_optimizers(self, agent) -> None:
        raise NotImplementedError

    def gradient_step(self, samples: ReplaySamples, weights: torch.Tensor | None) -> tuple[torch.Tensor, dict]:
        """One update from a batch; ``weights [N]`` are PER importance weights (None: uniform).
        Returns ``(priority [N], diagnostics of 0-dim tensors)``."""
        raise NotImplementedError

    def after_update(self) -> None:
        """Called after every gradient step (``self.updates`` already counts it)."""

    def extra_stats(self) -> dict[str, float]:
        return {}

    @staticmethod
    def weighted_mean(loss: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        """``mean(w * loss)`` with PER weights, else ``mean(loss)``."""
        return (loss * weights).mean() if weights is not None else loss.mean()

    def optimize_agent(self, env_steps: int, batch: SamplerBatch) -> dict[str, float]:
        c = self.config
        stats: dict[str, list[torch.Tensor]] = defaultdict(list)
        if env_steps < c.learning_starts or not self.replay.can_sample():
            return self.extra_stats()
        for _ in range(self.updates_per_batch):
            sampled = self.replay.sample_batch(c.batch_size, env_steps)
            priority, diagnostics = self.gradient_step(sampled.samples, sampled.weights)
            priority = priority.abs()
            self.replay.update_priorities(sampled.indices, priority)
            self.updates += 1
            self.samples_trained += self.samples_per_update
            self.after_update()
            for key, value in diagnostics.items():
                stats[key].append(value)
            stats["priority"].append(priority.mean())
        out = {k: torch.stack(v).mean().item() for k, v in stats.items()}
        return {**out, **self.replay.diagnostics(env_steps), **self.extra_stats()}
