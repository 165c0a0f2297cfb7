"""Proportional prioritized experience replay (Schaul et al. 2016) over the n-step replay.

Transition ``i`` is sampled with probability ``P(i) = p_i / sum_j p_j`` where
``p_i = (|delta_i| + eps)^alpha`` is set from the algorithm's error ``delta_i``; new transitions
get the largest priority seen so far. The bias is corrected by importance weights
``w_i = (M P(i))^-beta / max_j w_j`` over the M sampleable transitions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from rlfleet.replays.n_step import NStepReplayBuffer, ReplayBatch
from rlfleet.replays.sum_tree import SumTree


def _full_correction(env_steps: int) -> float:
    return 1.0


class PrioritizedReplayBuffer(NStepReplayBuffer):
    """n-step replay sampled in proportion to priorities held in a `SumTree`.

    Leaf ``row * B + b`` holds the priority of the transition starting at ring row ``row`` of
    env ``b``; it is positive exactly while that transition is sampleable (see
    `NStepReplayBuffer.sampleable_rows`) and 0 otherwise.

    Args:
        size, batch_B, n_step, gamma, seed: as for `NStepReplayBuffer`.
        alpha: priority exponent (0 is uniform sampling).
        eps: added to ``|error|`` so that no sampleable transition has priority 0.
        beta: the importance-weight exponent as a function of env steps, for `sample_batch`
            (the composition root anneals it linearly to 1; None: always 1).
        **kwargs: further `NStepReplayBuffer` options (``frame_stack``).
    """

    def __init__(
        self,
        size: int,
        batch_B: int,
        n_step: int = 1,
        gamma: float = 0.99,
        seed: int = 0,
        alpha: float = 0.6,
        eps: float = 1e-6,
        beta: Callable[[int], float] | None = None,
        **kwargs: Any,
    ):
        super().__init__(size, batch_B, n_step, gamma, seed, **kwargs)
        self.alpha, self.eps = alpha, eps
        self.beta = beta or _full_correction
        self.tree = SumTree(self.T * self.B)
        self.max_priority = 1.0

    def append(self, samples: Any, errors: np.ndarray | None = None) -> None:
        """Store a ``[T,B]`` batch; transitions that became sampleable get the max priority (or,
        with ``errors``, ``(|error| + eps)^alpha``), those that stopped being sampleable (about to
        be overwritten) get 0.

        ``errors [T,B]`` (Ape-X: computed by the actor that sampled the batch) holds the error
        of the transition starting ``n_step`` rows before each row of the batch: row ``j`` of
        a batch appended at time step ``t0`` is the error of the transition at ``t0 - n + j``,
        the rows this append makes sampleable. NaN where unknown (max priority)."""
        old_first, old_last = self.sampleable_rows()
        t0 = self.t
        super().append(samples)
        first, last = self.sampleable_rows()
        leaving = self._leaves(np.arange(old_first, min(old_last, first - 1) + 1))
        entering_rows = np.arange(max(old_last + 1, first), last + 1)
        entering = self._leaves(entering_rows)
        new_priorities = np.full(len(entering), self.max_priority)
        if errors is not None and len(entering_rows):
            given = np.asarray(errors, np.float64)[entering_rows - (t0 - self.n_step)].reshape(-1)
            known = ~np.isnan(given)
            new_priorities[known] = (np.abs(given[known]) + self.eps) ** self.alpha
            if known.any():
                self.max_priority = max(self.max_priority, float(new_priorities[known].max()))
        # One update, zeros first: a leaf both left and re-entered (a batch longer than the
        # ring's slack) ends up with the new transition's priority.
        priorities = np.concatenate([np.zeros(len(leaving)), new_priorities])
        self.tree.update(np.concatenate([leaving, entering]), priorities)

    def _leaves(self, t_abs: np.ndarray) -> np.ndarray:
        """Leaves ``[len(t_abs) * B]`` of all envs at absolute time steps ``t_abs``."""
        return ((t_abs % self.T)[:, None] * self.B + np.arange(self.B)).reshape(-1)

    def sample_batch(self, batch_size: int, env_steps: int) -> ReplayBatch:
        """`sample` with the importance-weight exponent at ``env_steps``."""
        return self.sample(batch_size, self.beta(env_steps))

    def diagnostics(self, env_steps: int) -> dict[str, float]:
        return {"beta": self.beta(env_steps)}

    def sample(self, batch_size: int, beta: float) -> ReplayBatch:
        """Stratified draw of ``batch_size`` transitions: one uniform prefix sum in each of N
        equal segments of ``[0, total)``. Returns a `ReplayBatch` with weights for ``beta``."""
        if not self.can_sample():
            raise ValueError("no sampleable transitions in the replay yet")
        total = self.tree.total
        prefix_sums = (np.arange(batch_size) + self.rng.random(batch_size)) * (total / batch_size)
        indices = self.tree.find(prefix_sums)
        first, last = self.sampleable_rows()
        M = (last - first + 1) * self.B
        probability = self.tree.get(indices) / total
        weights = (M * probability) ** -beta / (M * self.tree.min / total) ** -beta
        samples = self.samples_at(indices // self.B, indices % self.B)
        return ReplayBatch(samples, torch.as_tensor(weights, dtype=torch.float32), indices)

    def update_priorities(self, indices: np.ndarray, errors: np.ndarray | torch.Tensor) -> None:
        """Set ``p = (|error| + eps)^alpha`` for the sampled leaves ``indices [N]`` (errors
        ``[N]``, any sign). Leaves that stopped being sampleable since they were drawn keep 0."""
        if isinstance(errors, torch.Tensor):
            errors = errors.detach().double().cpu().numpy()
        indices = np.asarray(indices, np.int64).reshape(-1)
        priorities = (np.abs(np.asarray(errors, np.float64).reshape(-1)) + self.eps) ** self.alpha
        if priorities.shape != indices.shape:
            raise ValueError(f"{len(indices)} indices but {len(priorities)} errors")
        live = self.tree.get(indices) > 0
        self.tree.update(indices[live], priorities[live])
        if live.any():
            self.max_priority = max(self.max_priority, float(priorities[live].max()))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "tree": self.tree.state_dict(), "max_priority": self.max_priority}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.tree.load_state_dict(state["tree"])
        self.max_priority = state["max_priority"]
