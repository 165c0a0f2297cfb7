"""Adapter from a Gymnasium (>= 1.0) env to rlfleet's numpy-side env interface."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

from rlfleet.envs.spaces import Box, Composite, Discrete, EnvSpaces, MultiDiscrete, from_gym


class EnvStep(NamedTuple):
    """One env transition. ``terminated`` and ``truncated`` are kept apart: a terminal state is
    not bootstrapped, a time-limit cut is."""

    observation: Any
    reward: float
    terminated: bool
    truncated: bool
    info: dict


def _float32_space(space: Any) -> Any:
    """float64 Boxes (also inside Dict/Tuple observations) become float32."""
    if isinstance(space, Composite):
        return dataclasses.replace(space, spaces=tuple(_float32_space(s) for s in space.spaces))
    if isinstance(space, Box) and space.dtype == np.float64:
        return Box(space.low.astype(np.float32), space.high.astype(np.float32), np.dtype(np.float32))
    return space


class GymEnv:
    """Wraps one ``gym.Env``: float64 observations become float32, Dict/Tuple observations
    become namedarraytuples, Box actions are clipped to the bounds.

    Args:
        env: a Gymnasium env.
    """

    def __init__(self, env: gym.Env):
        self.env = env
        self.observation_space = _float32_space(from_gym(env.observation_space))
        self.action_space = from_gym(env.action_space)
        if isinstance(self.action_space, Composite):
            raise ValueError("Dict/Tuple action spaces are not supported")
        self._box_action = isinstance(self.action_space, Box)
        self._discrete_start = self.action_space.start if isinstance(self.action_space, Discrete) else 0
        self._multi_start = self.action_space.start if isinstance(self.action_space, MultiDiscrete) else None

    @property
    def spaces(self) -> EnvSpaces:
        return EnvSpaces(observation=self.observation_space, action=self.action_space)

    def _convert_obs(self, obs: Any) -> Any:
        if isinstance(self.observation_space, Composite):
            return self.observation_space.convert(obs)
        return np.asarray(obs, dtype=self.observation_space.dtype)

    def reset(self, seed: int | None = None) -> Any:
        obs, _ = self.env.reset(seed=seed)
        if seed is not None:
            self.env.action_space.seed(seed)
        return self._convert_obs(obs)

    def step(self, action: np.ndarray) -> EnvStep:
        if self._box_action:
            action = np.clip(action, self.action_space.low, self.action_space.high)
        elif isinstance(self.action_space, MultiDiscrete):
            action = np.asarray(action)
            if self._multi_start is not None:
                action = action + self._multi_start
        else:
            action = int(action) + self._discrete_start
        obs, reward, terminated, truncated, info = self.env.step(action)
        return EnvStep(self._convert_obs(obs), float(reward), bool(terminated), bool(truncated), info)

    def render(self) -> np.ndarray | None:
        return self.env.render()

    def close(self) -> None:
        self.env.close()
