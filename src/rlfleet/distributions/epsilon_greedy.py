"""Epsilon-greedy action selection over Q-values."""

from __future__ import annotations

import torch

from rlfleet.utils.rng import rand, randint


class EpsilonGreedy:
    """With probability ``epsilon`` a uniform random action, else ``argmax_a Q(s, a)``.

    ``epsilon`` is a float or a tensor broadcastable to the leading dims of ``q`` (one epsilon
    per env, as in Ape-X).
    """

    def __init__(self, n: int, epsilon: float | torch.Tensor = 1.0):
        self.n = n
        self.epsilon = epsilon

    def sample(self, q: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        greedy = q.argmax(dim=-1)
        shape = greedy.shape
        random_action = randint(self.n, shape, generator, q.device)
        explore = rand(shape, generator, q.device) < self.epsilon
        return torch.where(explore, random_action, greedy)

    def probability(self, q: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``mu(action | s)``: ``(1 - epsilon) [action = argmax_a Q(s, a)] + epsilon / n`` for
        ``q [..., n]`` and ``action [...]`` (the ties `sample` breaks to the first maximum)."""
        greedy = (q.argmax(dim=-1) == action).to(q.dtype)
        return (1.0 - self.epsilon) * greedy + self.epsilon / self.n
