"""Algorithm base class: the loss and update, never the training loop."""

from __future__ import annotations

from typing import Any

from rlfleet.agents.base import Agent
from rlfleet.algos.optimizer import FlatOptimizer
from rlfleet.samplers.sampler import SamplerBatch


class Algorithm:
    """Turns sampled batches into parameter updates.

    The runner calls ``initialize`` once, then ``optimize_agent(env_steps, batch)`` after every
    sampler batch; the returned dict of floats (diagnostics averaged over the update) becomes
    columns of progress.csv. ``updates`` counts gradient steps (for UpdatesPerSecond and
    ReplayRatio).
    """

    def __init__(self) -> None:
        self.agent: Agent | None = None
        self.optimizer: FlatOptimizer | None = None
        self.updates = 0
        self.samples_trained = 0
        self.n_steps = 1
        self.batch_size_sampler = 1

    def initialize(self, agent: Agent, n_steps: int, batch_T: int, batch_B: int, replay: Any = None) -> None:
        """``n_steps``: the run's total env steps (for schedules); ``batch_T``, ``batch_B``: the
        sampler's batch shape; ``replay``: the replay of an off-policy algorithm (its spec's
        ``policy="off"``), built by the composition root, else None."""
        self.agent = agent
        self.n_steps = n_steps
        self.batch_size_sampler = batch_T * batch_B

    def optimize_agent(self, env_steps: int, batch: SamplerBatch) -> dict[str, float]:
        raise NotImplementedError

    def optimizers(self) -> list[FlatOptimizer]:
        """Every optimizer the update steps (the data-parallel runner averages their gradients)."""
        return [self.optimizer]

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "updates": self.updates,
            "samples_trained": self.samples_trained,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates, self.samples_trained = state["updates"], state["samples_trained"]
