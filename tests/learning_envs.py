"""Two small tasks for the fast learning tests (tests/test_learning_small.py), loaded by import
path (``learning_envs:TwoGoalCorridor``, ``learning_envs:PointReach``; the tests put this
directory on ``sys.path``). Each needs a policy that depends on the state, so a constant or
random policy scores far below the optimum, and each is learned in a few thousand steps.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class TwoGoalCorridor(gym.Env):
    """Cells ``0 .. length-1``; the agent starts in the middle cell, and each episode one end is
    the goal (drawn uniformly at reset, shown in the observation). Action 0 steps left, 1 steps
    right; every step costs -1; reaching the goal ends the episode, reaching the other end ends it
    with an extra ``wrong_end_penalty``. Truncated after ``max_steps``.

    Observation ``[length + 2]``: one-hot position, then one-hot goal side (left, right).
    Optimal return ``-(length // 2)``; a constant action averages
    ``-(length // 2) - wrong_end_penalty / 2``.
    """

    metadata = {"render_modes": []}

    def __init__(
        self, length: int = 11, wrong_end_penalty: float = 20.0, max_steps: int = 30, render_mode: str | None = None
    ):
        self.length, self.wrong_end_penalty, self.max_steps = length, wrong_end_penalty, max_steps
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0.0, 1.0, (length + 2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.position, self.goal_right, self.t = length // 2, True, 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.length + 2, dtype=np.float32)
        obs[self.position] = 1.0
        obs[self.length + int(self.goal_right)] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.position, self.t = self.length // 2, 0
        self.goal_right = bool(self.np_random.integers(2))
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        self.position += 1 if int(action) == 1 else -1
        at_left, at_right = self.position == 0, self.position == self.length - 1
        terminated = at_left or at_right
        reward = -1.0
        if terminated and at_right != self.goal_right:
            reward -= self.wrong_end_penalty
        truncated = not terminated and self.t >= self.max_steps
        return self._obs(), reward, terminated, truncated, {}


class PointReach(gym.Env):
    """A point on ``[-1, 1]`` starts at a uniform position and must reach 0: the action
    ``a`` in ``[-1, 1]`` moves it by ``speed * a`` (clipped to the interval), the reward is
    ``-|x|`` after the move, and episodes last ``max_steps`` steps (truncated, never terminal).

    Observation ``[1]``: the position. Holding still averages ``-max_steps / 2`` (-7.5 by
    default); moving straight to 0 at full speed averages about -0.6 (defaults, Monte Carlo).
    """

    metadata = {"render_modes": []}

    def __init__(self, speed: float = 0.2, max_steps: int = 15, render_mode: str | None = None):
        self.speed, self.max_steps = speed, max_steps
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.x, self.t = 0.0, 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.x, self.t = float(self.np_random.uniform(-1.0, 1.0)), 0
        return np.array([self.x], dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        move = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], -1.0, 1.0))
        self.x = float(np.clip(self.x + self.speed * move, -1.0, 1.0))
        truncated = self.t >= self.max_steps
        return np.array([self.x], dtype=np.float32), -abs(self.x), False, truncated, {}
