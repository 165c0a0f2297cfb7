"""What every replay-based algorithm shares: the replay (uniform or prioritized, n-step,
frame-once), the update schedule, importance weights and priority updates."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch

from rlfleet.algos.base import Algorithm
from rlfleet.replays.n_step import NStepReplayBuffer, ReplaySamples
from rlfleet.replays.prioritized import PrioritizedReplayBuffer
from rlfleet.samplers.sampler import SamplerBatch
from rlfleet.utils.schedules import LinearSchedule


@dataclass
class OffPolicyConfig:
    """Replay and update schedule, shared by every off-policy algorithm.

    Attributes:
        gamma: discount.
        batch_size: transitions per gradient step.
        replay_size: transitions the replay holds.
        learning_starts: env steps collected before the first update.
        replay_ratio: transitions trained on per transition sampled (rlpyt's ratio):
            updates per sampler batch = replay_ratio * T * B / batch_size.
        n_step: return horizon.
        prioritized: prioritized replay (Schaul et al. 2016, proportional).
        priority_alpha: priority exponent.
        priority_beta_start: importance-weight exponent at the start, annealed linearly to 1 ...
        priority_beta_steps: ... over this many env steps (0: over the whole run).
        priority_eps: added to errors before the exponent.
        replay_frame_stack: store stacked image observations one frame at a time and rebuild
            the stacks when sampling (set to the env's frame stack, e.g. 4 on Atari; 0: store
            observations whole).
    """

    gamma: float = 0.99
    batch_size: int = 32
    replay_size: int = 100_000
    learning_starts: int = 1_000
    replay_ratio: float = 8.0
    n_step: int = 1
    prioritized: bool = False
    priority_alpha: float = 0.6
    priority_beta_start: float = 0.4
    priority_beta_steps: int = 0
    priority_eps: float = 1e-6
    replay_frame_stack: int = 0


class OffPolicyAlgorithm(Algorithm):
    """Stores every sampler batch in the replay, then runs ``updates_per_batch`` updates of
    ``gradient_step(samples, weights)`` followed by ``after_update()``.

    Subclasses implement ``build_optimizers(agent)`` and ``gradient_step``, which returns the
    per-sample errors PER stores (``[N]``) and diagnostics (0-dim tensors, averaged into
    progress.csv); ``extra_stats()`` adds values logged after every batch.
    """

    config: OffPolicyConfig

    def __init__(self, config: OffPolicyConfig):
        super().__init__()
        self.config = config
        self.replay: NStepReplayBuffer | None = None
        self.save_replay = True

    def initialize(self, agent, n_steps: int, batch_T: int, batch_B: int) -> None:
        super().initialize(agent, n_steps, batch_T, batch_B)
        c = self.config
        self.build_optimizers(agent)
        seed = int(torch.randint(2**31, (1,), generator=agent.generator))
        replay_args = dict(n_step=c.n_step, gamma=c.gamma, seed=seed, frame_stack=c.replay_frame_stack)
        if c.prioritized:
            self.replay = PrioritizedReplayBuffer(
                c.replay_size, batch_B, alpha=c.priority_alpha, eps=c.priority_eps, **replay_args
            )
            self.beta = LinearSchedule(c.priority_beta_start, 1.0, c.priority_beta_steps or n_steps)
        else:
            self.replay = NStepReplayBuffer(c.replay_size, batch_B, **replay_args)
        self.updates_per_batch = max(1, round(c.replay_ratio * batch_T * batch_B / c.batch_size))

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
        self.replay.append(batch.samples)
        stats: dict[str, list[torch.Tensor]] = defaultdict(list)
        if env_steps < c.learning_starts or not self.replay.can_sample():
            return self.extra_stats()
        for _ in range(self.updates_per_batch):
            if c.prioritized:
                sampled = self.replay.sample(c.batch_size, beta=self.beta(env_steps))
                samples, weights = sampled.samples, sampled.weights
            else:
                samples, weights = self.replay.sample(c.batch_size), None
            priority, diagnostics = self.gradient_step(samples, weights)
            priority = priority.abs()
            if c.prioritized:
                self.replay.update_priorities(sampled.indices, priority)
            self.updates += 1
            self.samples_trained += c.batch_size
            self.after_update()
            for key, value in diagnostics.items():
                stats[key].append(value)
            stats["priority"].append(priority.mean())
        out = {k: torch.stack(v).mean().item() for k, v in stats.items()}
        if c.prioritized:
            out["beta"] = self.beta(env_steps)
        return {**out, **self.extra_stats()}

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["replay"] = self.replay.state_dict() if self.save_replay else None
        state["replay_rng"] = self.replay.rng.bit_generator.state
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if state.get("replay") is not None:
            self.replay.load_state_dict(state["replay"])
        else:
            self.replay.rng.bit_generator.state = state["replay_rng"]
