"""User envs with faults, for tests/test_faults.py: importable as ``faulty_envs:StepFails`` etc.
(the tests put this directory on ``sys.path`` / ``PYTHONPATH``).

Every env is a trivial episodic task: a 4-float observation, two actions, reward 1 per step and
episodes terminated after ``episode_length`` steps. Counters are per env instance, so every env
of a run fails at the same step of its own.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class _Counting(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, episode_length: int = 20, render_mode: str | None = None):
        self.episode_length = episode_length
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.steps = 0  # over all episodes
        self.resets = 0
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.full(4, self.t / self.episode_length, np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.resets += 1
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.steps += 1
        self.t += 1
        return self._obs(), self.reward(), self.t >= self.episode_length, False, {}

    def reward(self) -> float:
        return 1.0


class StepFails(_Counting):
    """``step`` raises ``ValueError('boom')`` at the env's ``fail_at``-th step."""

    def __init__(self, fail_at: int = 100, **kwargs):
        super().__init__(**kwargs)
        self.fail_at = fail_at

    def step(self, action):
        if self.steps + 1 >= self.fail_at:
            raise ValueError("boom")
        return super().step(action)


class ResetFails(_Counting):
    """``reset`` raises ``RuntimeError('reset broke')`` at the env's ``fail_at``-th reset (the
    first is the sampler's initial reset; the others follow episode ends)."""

    def __init__(self, fail_at: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.fail_at = fail_at

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if self.resets + 1 >= self.fail_at:
            raise RuntimeError("reset broke")
        return super().reset(seed=seed, options=options)


class NanReward(_Counting):
    """Reward NaN from the env's ``nan_at``-th step on (so the next update's loss is NaN)."""

    def __init__(self, nan_at: int = 100, **kwargs):
        super().__init__(**kwargs)
        self.nan_at = nan_at

    def reward(self) -> float:
        return float("nan") if self.steps >= self.nan_at else 1.0


class LargeState(_Counting):
    """An env whose pickled state (1 MB) is larger than a pipe's buffer: restoring it in a worker
    process must not deadlock."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.payload = np.zeros(1 << 20, np.uint8)
