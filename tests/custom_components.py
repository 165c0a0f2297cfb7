"""A user-defined env and model, as a user would write them, for tests/test_custom_env_model.py.

Importable as ``custom_components`` (the tests put this directory on ``sys.path`` /
``PYTHONPATH``), so rlfleet can load them by import path: ``custom_components:CorridorEnv``
and ``custom_components:TinyModel``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlfleet.models.encoder import flatten_observation, observation_leading_dims
from rlfleet.utils.buffers import restore_leading_dims


class CorridorEnv(gym.Env):
    """A 1-D corridor of ``length`` cells. The agent starts in cell 0 and must walk to cell
    ``length - 1`` (terminal). Action 1 moves right, action 0 moves left (a wall stops it at
    cell 0). Every step costs -1, so the return of an episode is minus its length: the
    optimal return is ``-(length - 1)``. Episodes are truncated after ``max_steps`` steps
    (default ``4 * length``). The observation is a one-hot vector of the position, so its size
    is ``length``.
    """

    metadata = {"render_modes": []}

    def __init__(self, length: int = 10, max_steps: int | None = None, render_mode: str | None = None):
        if length < 2:
            raise ValueError("length must be at least 2")
        self.length = length
        self.max_steps = max_steps or 4 * length
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0.0, 1.0, (length,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.position = 0
        self.t = 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.length, dtype=np.float32)
        obs[self.position] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.position = 0
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        self.position = min(self.position + 1, self.length - 1) if int(action) == 1 else max(self.position - 1, 0)
        terminated = self.position == self.length - 1
        truncated = not terminated and self.t >= self.max_steps
        return self._obs(), -1.0, terminated, truncated, {}


class TinyModel(nn.Module):
    """A custom actor-critic with the default model's signature:
    ``(observation, prev_action, prev_reward) -> (logits, value)``, leading dims ``[T,B]``,
    ``[B]`` or none.

    Args:
        observation_space, action_space: env spaces (rlfleet's; the action space is Discrete).
        width: hidden units of the single hidden layer.
    """

    def __init__(self, observation_space: Any, action_space: Any, width: int = 32):
        super().__init__()
        self.observation_space = observation_space
        in_size = int(np.prod(observation_space.shape))
        self.body = nn.Linear(in_size, width)
        self.pi = nn.Linear(width, action_space.n)
        self.v = nn.Linear(width, 1)

    def forward(self, observation: torch.Tensor, prev_action: torch.Tensor, prev_reward: torch.Tensor):
        lead_dim, T, B = observation_leading_dims(observation, self.observation_space)
        features = torch.tanh(self.body(flatten_observation(observation, T * B)))
        logits = self.pi(features)
        value = self.v(features).squeeze(-1)
        return restore_leading_dims((logits, value), lead_dim, T, B)
