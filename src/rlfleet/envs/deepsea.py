"""DeepSea (Osband et al. 2019, bsuite's ``deep_sea``): a hard exploration chain on an N x N grid.

The agent starts in the top-left cell; every step it descends one row and moves one column left
or right, so an episode lasts exactly N steps (then it is *terminated*). Which of the two actions
means "right" is drawn per cell from ``mapping_seed`` (bsuite's randomised action mapping), so no
fixed action sequence is good everywhere. Moving right costs ``0.01 / N``; moving right from the
right-most column pays 1. Only the all-right path reaches that column (at the last row), so the
optimal return is ``1 - N * 0.01 / N = 0.99``, found by a random policy once in ``2^N``
episodes, while every other policy earns at most 0: dithering exploration never finds it.

Registered lazily as ``DeepSea-v0`` (preset suite ``exploration``), with ``env.kwargs`` the
constructor's arguments, e.g. ``env.kwargs.size=20``. The episode's last ``info`` holds
``found_treasure`` (1.0 or 0.0), which progress.csv reports as ``found_treasureAverage`` over
the last 100 training episodes.
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import numpy as np

from rlfleet.errors import ConfigError

DEEPSEA_ID = "DeepSea-v0"
EXPLORATION_IDS = (DEEPSEA_ID,)


def is_exploration_env(env_id: str) -> bool:
    """Whether ``env_id`` is one of this module's envs (preset suite ``exploration``)."""
    return env_id in EXPLORATION_IDS


class DeepSea(gym.Env):
    """DeepSea of side ``size``: observation the one-hot ``[N, N]`` float32 position (all zeros
    after the last step), actions ``Discrete(2)``.

    Args:
        size: N, the grid side and the episode length (>= 2).
        deterministic: bsuite's deterministic version; False: "right" fails (the column stays) with
            probability 1/N and the two bottom corners add N(0, 1) noise to the reward.
        randomize_actions: draw which action is "right" per cell (bsuite's DeepSea); False:
            action 1 is "right" everywhere (a debugging aid).
        mapping_seed: seed of that per-cell mapping (the same seed, the same MDP).
        unscaled_move_cost: the cost of moving right, times N.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        size: int = 10,
        deterministic: bool = True,
        randomize_actions: bool = True,
        mapping_seed: int = 0,
        unscaled_move_cost: float = 0.01,
    ):
        if size < 2:
            raise ConfigError(f"config key 'env.kwargs.size' must be >= 2, got {size!r}")
        self.size, self.deterministic, self.move_cost = size, deterministic, unscaled_move_cost / size
        if randomize_actions:
            self.action_right = np.random.default_rng(mapping_seed).integers(0, 2, (size, size))
        else:
            self.action_right = np.ones((size, size), np.int64)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (size, size), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.row = self.column = 0
        self.found_treasure = False

    def _observation(self) -> np.ndarray:
        obs = np.zeros((self.size, self.size), np.float32)
        if self.row < self.size:
            obs[self.row, self.column] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.row = self.column = 0
        self.found_treasure = False
        return self._observation(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        n = self.size
        right = int(action) == self.action_right[self.row, self.column]
        reward = 0.0
        if right and self.column == n - 1:
            reward += 1.0
            self.found_treasure = True
        if not self.deterministic and self.row == n - 1 and self.column in (0, n - 1):
            reward += float(self.np_random.standard_normal())
        if right:
            if self.deterministic or self.np_random.random() > 1 / n:
                self.column = min(self.column + 1, n - 1)
            reward -= self.move_cost
        else:
            self.column = max(self.column - 1, 0)
        self.row += 1
        terminated = self.row == n
        info = {"found_treasure": float(self.found_treasure)} if terminated else {}
        return self._observation(), reward, terminated, False, info


@functools.cache
def register_exploration_envs() -> None:
    """Register ``DeepSea-v0`` with Gymnasium (a registry entry; nothing imported)."""
    if DEEPSEA_ID not in gym.registry:
        gym.register(id=DEEPSEA_ID, entry_point="rlfleet.envs.deepsea:DeepSea")
