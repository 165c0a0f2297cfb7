"""Sum and minimum over leaf priorities, for proportional prioritized replay.

A complete binary tree stored in two flat arrays (root at 1, children of node ``i`` at ``2i``
and ``2i+1``, leaves at ``L + leaf`` where ``L`` is ``capacity`` rounded up to a power of two).
Updates and prefix-sum searches handle a whole batch at once, one tree level per numpy step.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class SumTree:
    """Non-negative priorities of ``capacity`` leaves (all 0 at first).

    Args:
        capacity: number of leaves.
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"SumTree capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._leaf0 = 1 << (capacity - 1).bit_length()  # first leaf node: capacity rounded up to 2^depth
        self._depth = self._leaf0.bit_length() - 1
        self._sum = np.zeros(2 * self._leaf0, np.float64)
        self._min = np.full(2 * self._leaf0, np.inf)  # leaves with priority 0 hold inf

    @property
    def total(self) -> float:
        """Sum of all leaf priorities."""
        return float(self._sum[1])

    @property
    def min(self) -> float:
        """Smallest positive leaf priority (``inf`` when every leaf is 0)."""
        return float(self._min[1])

    def get(self, indices: np.ndarray) -> np.ndarray:
        """Leaf priorities ``[N]`` float64 at leaf ``indices [N]``."""
        return self._sum[self._leaf0 + self._check_indices(indices)]

    def update(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Set leaf ``indices [N]`` to ``priorities [N]`` and refresh their ancestors.

        Where an index repeats, its last priority wins.
        """
        indices = self._check_indices(indices)
        priorities = np.asarray(priorities, np.float64).reshape(-1)
        if priorities.shape != indices.shape:
            raise ValueError(f"{len(indices)} indices but {len(priorities)} priorities")
        if not (np.isfinite(priorities).all() and (priorities >= 0).all()):
            raise ValueError("priorities must be finite and >= 0")
        if len(indices) == 0:
            return
        # np.unique keeps the first occurrence, so search the reversed arrays for the last write.
        leaves, last = np.unique(indices[::-1], return_index=True)
        values = priorities[::-1][last]
        nodes = self._leaf0 + leaves
        self._sum[nodes] = values
        self._min[nodes] = np.where(values > 0, values, np.inf)
        for _ in range(self._depth):
            nodes = np.unique(nodes // 2)
            left, right = 2 * nodes, 2 * nodes + 1
            self._sum[nodes] = self._sum[left] + self._sum[right]
            self._min[nodes] = np.minimum(self._min[left], self._min[right])

    def find(self, prefix_sums: np.ndarray) -> np.ndarray:
        """Leaf indices ``[N]`` int64: for each ``s`` in ``prefix_sums [N]`` (in ``[0, total)``),
        the leaf ``i`` with ``sum(p[:i]) <= s < sum(p[:i+1])``.

        The result always has a positive priority: a search never descends into a subtree of
        sum 0, so ``s`` at or past ``total`` (rounding) lands on the last positive leaf.
        """
        if self.total <= 0:
            raise ValueError("cannot search a SumTree whose priorities are all 0")
        s = np.asarray(prefix_sums, np.float64).reshape(-1)
        nodes = np.ones(len(s), np.int64)
        for _ in range(self._depth):
            left = 2 * nodes
            left_sum = self._sum[left]
            go_right = (s >= left_sum) & (self._sum[left + 1] > 0)
            s = np.where(go_right, s - left_sum, s)
            nodes = left + go_right
        return nodes - self._leaf0

    def _check_indices(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, np.int64).reshape(-1)
        if len(indices) and (indices.min() < 0 or indices.max() >= self.capacity):
            raise IndexError(f"SumTree leaf index out of range [0, {self.capacity})")
        return indices

    def state_dict(self) -> dict[str, Any]:
        return {"sum": self._sum, "min": self._min}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["sum"].shape != self._sum.shape:
            raise ValueError(f"SumTree state has {len(state['sum'])} nodes, expected {len(self._sum)}")
        self._sum, self._min = state["sum"], state["min"]
