"""Ape-X's fixed exploration rates (Horgan et al. 2018)."""

from __future__ import annotations

import numpy as np


def apex_epsilons(n: int, epsilon: float = 0.4, alpha: float = 7.0) -> np.ndarray:
    """``[n]`` epsilons ``epsilon^(1 + alpha * i / (n - 1))`` for ``i = 0 .. n-1`` (one env slot
    each, from ``epsilon`` down to ``epsilon^(1 + alpha)``); ``[epsilon]`` for ``n = 1``."""
    if n < 1:
        raise ValueError(f"need at least one env slot, got {n}")
    if n == 1:
        return np.array([epsilon], np.float64)
    return epsilon ** (1.0 + alpha * np.arange(n) / (n - 1))
