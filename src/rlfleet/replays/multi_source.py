"""One replay fed by several independent sample streams (Ape-X's replay shard).

Each source (an actor worker) appends ``[T,B]`` batches to its own ring, a replay of the
``replay:`` section (`NStepReplayBuffer`, `PrioritizedReplayBuffer` or `SequenceReplayBuffer`),
so that n-step windows and sequences never mix two actors' envs. Sampling treats the rings as one replay:

- uniform: each drawn transition comes from source ``k`` with probability proportional to its
  sampleable transitions, then uniformly within it;
- prioritized: source ``k`` is drawn with probability ``total_k / sum_j total_j`` (its priority
  mass) and a transition within it with probability ``p_i / total_k``, so
  ``P(i) = p_i / sum_j total_j`` over all sources, and the importance weights
  ``w_i = (M P(i))^-beta / max_j (M P(j))^-beta`` use the whole shard's ``M`` (sampleable
  transitions) and smallest priority, as in one `PrioritizedReplayBuffer`.

Sequence rings (`SequenceReplayBuffer`, distributed R2D2): a batch of sequences comes from one
source, drawn with probability proportional to its priority mass (uniform rings: its sampleable
windows), and its sequences by that ring's priorities, so that each sequence's marginal
probability is still ``p_i / sum_j total_j`` and the weights are the shard's as above; the
batch's truncation columns (`SequenceBatch`) stay those of one ring.

A source that restarts (a new ``incarnation``: its actor was restarted by Ray, or the run was
resumed) continues its ring after a `NStepReplayBuffer.cut`: its stream's last step is marked
truncated with the observation that followed it, so no n-step window spans the restart (a
sequence spanning it zeroes the recurrent state there).

Indices handed to the learner are ``source * leaves + leaf`` (``leaves = T_ring * B`` of each
ring), so priority updates find their ring.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from rlfleet.replays.n_step import NStepReplayBuffer, ReplayBatch
from rlfleet.replays.prioritized import PrioritizedReplayBuffer
from rlfleet.replays.sequence import SequenceReplayBuffer
from rlfleet.utils.buffers import concat_buffers


class MultiSourceReplay:
    """Per-source rings sampled as one replay.

    Args:
        make_replay: ``make_replay(source) -> replay``: one source's ring (every source's ring
            has the same size and kind).
        seed: seed of the RNG that spreads draws over the sources (checkpointed).
    """

    def __init__(self, make_replay: Callable[[int], NStepReplayBuffer | SequenceReplayBuffer], seed: int = 0):
        self.make_replay = make_replay
        self.rng = np.random.default_rng(seed)
        self.sources: dict[int, NStepReplayBuffer | SequenceReplayBuffer] = {}
        self.incarnations: dict[int, str] = {}
        self.next_observations: dict[int, Any] = {}  # source -> observations after its newest row [B]

    # ----- writing -----
    def add(
        self, source: int, incarnation: str, samples: Any, next_observation: Any, errors: np.ndarray | None = None
    ) -> int:
        """Append source ``source``'s ``[T,B]`` batch (numpy Samples) with the observations that
        follow it (``next_observation [B]``) and, for a prioritized ring, the actor's errors
        (``errors [T,B]``, see `PrioritizedReplayBuffer.append`). Returns the shard's size."""
        replay = self.sources.get(source)
        if replay is None:
            replay = self.sources[source] = self.make_replay(source)
        elif self.incarnations.get(source) != incarnation:
            replay.cut(self.next_observations[source])
        self.incarnations[source] = incarnation
        if isinstance(replay, PrioritizedReplayBuffer):
            replay.append(samples, errors)
        else:
            replay.append(samples)
        self.next_observations[source] = next_observation
        return len(self)

    # ----- sampling -----
    def __len__(self) -> int:
        return sum(len(r) for r in self.sources.values())

    def _live(self) -> list[tuple[int, Any]]:
        return [(k, r) for k, r in sorted(self.sources.items()) if r.can_sample()]

    def can_sample(self) -> bool:
        return bool(self._live())

    @staticmethod
    def _sampleable(replay: NStepReplayBuffer | SequenceReplayBuffer) -> int:
        if isinstance(replay, SequenceReplayBuffer):
            return replay.sampleable_sequences()
        first, last = replay.sampleable_rows()
        return (last - first + 1) * replay.B

    def sample_batch(self, batch_size: int, env_steps: int) -> ReplayBatch:
        """``batch_size`` transitions from all sources; indices (prioritized) encode the source."""
        live = self._live()
        if not live:
            raise ValueError("no sampleable transitions in the replay shard yet")
        if isinstance(live[0][1], SequenceReplayBuffer):
            return self._sample_sequences(live, batch_size, env_steps)
        if isinstance(live[0][1], PrioritizedReplayBuffer):
            return self._sample_prioritized(live, batch_size, env_steps)
        mass = np.array([self._sampleable(r) for _, r in live], np.float64)
        counts = self.rng.multinomial(batch_size, mass / mass.sum())
        parts = [r.sample(int(c)) for (_, r), c in zip(live, counts) if c]
        return ReplayBatch(concat_buffers(parts), None, None)

    def _sample_prioritized(self, live: list, batch_size: int, env_steps: int) -> ReplayBatch:
        totals = np.array([r.tree.total for _, r in live])
        grand_total = totals.sum()
        counts = self.rng.multinomial(batch_size, totals / grand_total)
        parts, priorities, indices = [], [], []
        for (source, replay), count, total in zip(live, counts, totals):
            if not count:
                continue
            prefix_sums = (np.arange(count) + self.rng.random(count)) * (total / count)
            leaves = replay.tree.find(prefix_sums)
            parts.append(replay.samples_at(leaves // replay.B, leaves % replay.B))
            priorities.append(replay.tree.get(leaves))
            indices.append(source * replay.tree.capacity + leaves)
        probability = np.concatenate(priorities) / grand_total
        M = sum(self._sampleable(r) for _, r in live)
        smallest = min(r.tree.min for _, r in live) / grand_total
        beta = live[0][1].beta(env_steps)
        weights = (M * probability) ** -beta / (M * smallest) ** -beta
        return ReplayBatch(
            concat_buffers(parts), torch.as_tensor(weights, dtype=torch.float32), np.concatenate(indices)
        )

    def _sample_sequences(self, live: list, batch_size: int, env_steps: int) -> ReplayBatch:
        """``batch_size`` sequences of one source (see the module docstring)."""
        prioritized = live[0][1].prioritized
        mass = np.array([r.tree.total if prioritized else self._sampleable(r) for _, r in live], np.float64)
        choice = int(self.rng.choice(len(live), p=mass / mass.sum()))
        source, replay = live[choice]
        batch = replay.sample_batch(batch_size, env_steps)
        if not prioritized:
            return batch
        grand_total = mass.sum()
        probability = replay.tree.get(batch.indices) / grand_total
        M = sum(self._sampleable(r) for _, r in live)
        smallest = min(r.tree.min for _, r in live) / grand_total
        beta = replay.beta(env_steps)
        weights = (M * probability) ** -beta / (M * smallest) ** -beta
        indices = source * replay.tree.capacity + batch.indices
        return ReplayBatch(batch.samples, torch.as_tensor(weights, dtype=torch.float32), indices)

    def update_priorities(self, indices: np.ndarray | None, errors: Any) -> None:
        """Route the errors of ``indices [N]`` (from `sample_batch`) to their sources' rings:
        ``errors [N]`` for transitions, ``[L, N]`` per-step errors for sequences."""
        if indices is None:
            return
        if isinstance(errors, torch.Tensor):
            errors = errors.detach().double().cpu().numpy()
        indices, errors = np.asarray(indices, np.int64), np.asarray(errors, np.float64)
        if not isinstance(next(iter(self.sources.values())), SequenceReplayBuffer):
            errors = errors.reshape(-1)
        for source, replay in self.sources.items():
            capacity = replay.tree.capacity
            mine = indices // capacity == source
            if mine.any():
                replay.update_priorities(indices[mine] % capacity, errors[..., mine])

    def diagnostics(self, env_steps: int) -> dict[str, float]:
        live = self._live()
        return live[0][1].diagnostics(env_steps) if live else {}

    # ----- state -----
    def state_dict(self) -> dict[str, Any]:
        return {
            "sources": {k: r.state_dict() for k, r in self.sources.items()},
            "incarnations": dict(self.incarnations),
            "next_observations": dict(self.next_observations),
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sources = {}
        for source, replay_state in state["sources"].items():
            replay = self.sources[int(source)] = self.make_replay(int(source))
            replay.load_state_dict(replay_state)
        self.incarnations = {int(k): v for k, v in state["incarnations"].items()}
        self.next_observations = {int(k): v for k, v in state["next_observations"].items()}
        self.rng.bit_generator.state = state["rng"]
