"""Per-trajectory statistics gathered while sampling."""

from __future__ import annotations

import numbers


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
