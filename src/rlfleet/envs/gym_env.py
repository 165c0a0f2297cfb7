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
    become namedarraytuples, and Box actions are rescaled.

    Action rescaling: every float Box dimension with finite bounds ``[low, high]`` is presented to
    agents as ``[-1, 1]`` (the whole action space as a float32 Box), and an agent's action ``a``
    reaches the env as ``low + (clip(a, -1, 1) + 1) / 2 * (high - low)``. Dimensions with an
    infinite bound (and integer Boxes) keep their bounds and are only clipped to them. A Box with
    no finite dimension is presented unchanged.

    Args:
        env: a Gymnasium env.
    """

    def __init__(self, env: gym.Env):
        self.env = env
        self.observation_space = _float32_space(from_gym(env.observation_space))
        env_action_space = from_gym(env.action_space)
        if isinstance(env_action_space, Composite):
            raise ValueError("Dict/Tuple action spaces are not supported")
        self.action_space = env_action_space
        self._box_action = isinstance(env_action_space, Box)
        if self._box_action:
            self._init_action_rescaling(env_action_space)
        self._discrete_start = env_action_space.start if isinstance(env_action_space, Discrete) else 0
        self._multi_start = env_action_space.start if isinstance(env_action_space, MultiDiscrete) else None

    def _init_action_rescaling(self, space: Box) -> None:
        """Set the agent's action space and the affine map ``env_action = offset + scale * a``."""
        low, high = space.low.astype(np.float64), space.high.astype(np.float64)
        self._env_low, self._env_high, self._env_dtype = low, high, space.dtype
        rescaled = np.isfinite(low) & np.isfinite(high) & np.issubdtype(space.dtype, np.floating)
        # Dimensions kept as they are map [-1, 1] onto itself: scale 1, offset 0.
        low_1, high_1 = np.where(rescaled, low, -1.0), np.where(rescaled, high, 1.0)
        self._action_scale, self._action_offset = (high_1 - low_1) / 2, (high_1 + low_1) / 2
        if rescaled.any():
            self.action_space = Box(
                np.where(rescaled, -1.0, low).astype(np.float32),
                np.where(rescaled, 1.0, high).astype(np.float32),
                np.dtype(np.float32),
            )

    def env_action(self, action: np.ndarray) -> np.ndarray:
        """An agent's Box action mapped into the env's bounds. Clipping after the (increasing)
        affine map equals clipping the rescaled dimensions to ``[-1, 1]`` before it."""
        env_action = self._action_offset + self._action_scale * np.asarray(action, dtype=np.float64)
        return np.clip(env_action, self._env_low, self._env_high).astype(self._env_dtype)

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
            action = self.env_action(action)
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
