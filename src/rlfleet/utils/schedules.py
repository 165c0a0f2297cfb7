"""Schedules of a scalar over a step counter."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LinearSchedule:
    """``start`` at step 0, linearly to ``end`` at ``steps``, then constant."""

    start: float
    end: float
    steps: int

    def __call__(self, step: int) -> float:
        if self.steps <= 0:
            return self.end
        frac = min(max(step / self.steps, 0.0), 1.0)
        return self.start + frac * (self.end - self.start)
