"""Running observation and reward normalisation (statistics are part of the checkpoint)."""

from __future__ import annotations

import numpy as np


class RunningMeanStd:
    """Mean and variance of a stream of ``[N, *shape]`` batches (Chan et al. parallel update)."""

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4):
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = epsilon

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch, np.float64)
        batch_mean, batch_var, n = batch.mean(axis=0), batch.var(axis=0), batch.shape[0]
        delta = batch_mean - self.mean
        total = self.count + n
        self.mean = self.mean + delta * n / total
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        self.var = m2 / total
        self.count = total

    def state_dict(self) -> dict:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.var, self.count = np.array(state["mean"]), np.array(state["var"]), state["count"]


class ObservationNormalizer:
    """``clip((obs - mean) / sqrt(var + eps), -clip, clip)`` as float32; ``[B, *shape]`` in."""

    def __init__(self, shape: tuple[int, ...], clip: float = 10.0, epsilon: float = 1e-8):
        self.stats = RunningMeanStd(shape)
        self.clip = clip
        self.epsilon = epsilon

    def __call__(self, obs: np.ndarray, update: bool) -> np.ndarray:
        if update:
            self.stats.update(obs)
        normed = (obs - self.stats.mean) / np.sqrt(self.stats.var + self.epsilon)
        return np.clip(normed, -self.clip, self.clip).astype(np.float32)

    def state_dict(self) -> dict:
        return self.stats.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.stats.load_state_dict(state)


class RewardNormalizer:
    """Divide rewards by the running std of each env's discounted return (as SB3's VecNormalize).

    Args:
        n_envs: B, the number of envs whose returns are tracked.
        gamma: discount of the tracked return.
    """

    def __init__(self, n_envs: int, gamma: float, clip: float = 10.0, epsilon: float = 1e-8):
        self.stats = RunningMeanStd(())
        self.returns = np.zeros(n_envs, np.float64)
        self.gamma = gamma
        self.clip = clip
        self.epsilon = epsilon

    def __call__(self, reward: np.ndarray, done: np.ndarray, envs: slice = slice(None)) -> np.ndarray:
        """Normalise ``reward [n]`` of the envs ``envs`` (all B by default), whose episodes end
        where ``done [n]``; the running statistics see every env's returns."""
        returns = self.returns[envs] * self.gamma + reward
        self.stats.update(returns)
        returns[done] = 0.0
        self.returns[envs] = returns
        return np.clip(reward / np.sqrt(self.stats.var + self.epsilon), -self.clip, self.clip).astype(np.float32)

    def state_dict(self) -> dict:
        return {**self.stats.state_dict(), "returns": self.returns.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.stats.load_state_dict(state)
        self.returns = np.array(state["returns"])
