"""A small memory task for the recurrent learning tests, loaded by import path
(``memory_envs:CueRecall``; the tests put this directory on ``sys.path``)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class CueRecall(gym.Env):
    """A cue (left or right) is shown at the first step only, then ``delay`` blank steps, then a
    query step at which the action must name the cue: +1 if it does, -1 if not; every other step
    gives 0 and its action does not matter. The episode ends after the query.

    Observation ``[3]``: (cue is left, cue is right, this is the query step); all zero on blank
    steps. A policy without memory cannot do better than chance at the query (mean return 0); one
    that remembers the cue gets 1 every episode.
    """

    metadata = {"render_modes": []}

    def __init__(self, delay: int = 4, render_mode: str | None = None):
        self.delay, self.render_mode = delay, render_mode
        self.observation_space = gym.spaces.Box(0.0, 1.0, (3,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.cue, self.t = 0, 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros(3, np.float32)
        if self.t == 0:
            obs[self.cue] = 1.0
        elif self.t == self.delay + 1:
            obs[2] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.cue, self.t = int(self.np_random.integers(2)), 0
        return self._obs(), {}

    def step(self, action):
        query = self.t == self.delay + 1
        reward = (1.0 if int(action) == self.cue else -1.0) if query else 0.0
        self.t += 1
        return self._obs(), reward, query, False, {}
