"""Per-trajectory statistics gathered while sampling."""

from __future__ import annotations

import numbers

import numpy as np


class TrajInfo:
    """Return, Length, DiscountedReturn, and the last value of every numeric env info key.

    ``step`` is called once per env step with the raw (unnormalised, unclipped by rlfleet)
    reward; ``completed()`` returns the finished record as a plain dict.
    """

    def __init__(self, discount: float = 0.99):
        self.discount = discount
        self.Return = 0.0
        self.Length = 0
        self.DiscountedReturn = 0.0
        self._cur_discount = 1.0
        self.env_info: dict[str, float] = {}

    def step(self, reward: float, info: dict) -> None:
        reward = info.get("unclipped_reward", reward)
        self.Return += reward
        self.DiscountedReturn += self._cur_discount * reward
        self._cur_discount *= self.discount
        self.Length += 1
        for key, value in info.items():
            if key != "unclipped_reward" and isinstance(value, numbers.Number) and not isinstance(value, bool):
                self.env_info[key] = float(value)

    def completed(self) -> dict[str, float]:
        return {
            "Return": self.Return,
            "Length": self.Length,
            "DiscountedReturn": self.DiscountedReturn,
            **self.env_info,
        }


class TrajInfoBatch:
    """`TrajInfo`'s Return, Length and DiscountedReturn for B envs at once, kept in ``[B]`` numpy
    arrays so that a step costs a few vector operations (no Python work per env).

    Args:
        n_envs: B.
        discount: for DiscountedReturn.
    """

    def __init__(self, n_envs: int, discount: float = 0.99):
        self.discount = discount
        self.Return = np.zeros(n_envs)
        self.Length = np.zeros(n_envs, np.int64)
        self.DiscountedReturn = np.zeros(n_envs)
        self._cur_discount = np.ones(n_envs)

    def step(self, reward: np.ndarray) -> None:
        """Add one step of every env; ``reward`` ``[B]`` is the raw (unclipped) reward."""
        self.Return += reward
        self.DiscountedReturn += self._cur_discount * reward
        self._cur_discount *= self.discount
        self.Length += 1

    def complete(self, envs: np.ndarray) -> list[dict[str, float]]:
        """The records of ``envs`` (indices, in that order), whose episodes just ended; their
        statistics restart."""
        records = [
            {"Return": float(r), "Length": int(n), "DiscountedReturn": float(d)}
            for r, n, d in zip(self.Return[envs], self.Length[envs], self.DiscountedReturn[envs])
        ]
        self.restart(envs)
        return records

    def restart(self, envs: np.ndarray | slice = slice(None)) -> None:
        """Start new episodes' statistics for ``envs`` (default: all)."""
        self.Return[envs] = 0.0
        self.Length[envs] = 0
        self.DiscountedReturn[envs] = 0.0
        self._cur_discount[envs] = 1.0
