"""Tiny envs for tests/test_cli_config.py (importable as ``eval_envs``: the tests folder is on
``sys.path`` / ``PYTHONPATH``).

``RandomStartEnv``: one-step episodes whose return is the start value drawn at reset, so the
evaluation's returns depend on its reset seeds only; its constructor takes no ``render_mode``
(it cannot render). ``BlankRenderEnv`` takes ``render_mode`` but renders nothing.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class RandomStartEnv(gym.Env):
    """Observation: a start value ``u ~ U(0, 1)`` drawn at reset; any action ends the episode
    with reward ``u``."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.value = 0.0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.value = float(self.np_random.uniform())
        return np.array([self.value], dtype=np.float32), {}

    def step(self, action):
        return np.array([self.value], dtype=np.float32), self.value, True, False, {}


class BlankRenderEnv(RandomStartEnv):
    """Accepts ``render_mode`` but ``render()`` returns None."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, render_mode: str | None = None):
        super().__init__()
        self.render_mode = render_mode

    def render(self):
        return None
