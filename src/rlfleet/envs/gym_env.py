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


ENV_FAULT = "_rlfleet_env_fault"  # attribute of an exception raised by an env: (env name, method, repr)


def env_name(env: gym.Env) -> str:
    """``env``'s registered id, else its class as ``module:Class``."""
    spec = getattr(env, "spec", None)
    if spec is not None and getattr(spec, "id", None):
        return spec.id
    cls = type(env.unwrapped)
    return f"{cls.__module__}:{cls.__qualname__}"


def _mark(err: Exception, name: str, method: str) -> None:
    if not hasattr(err, ENV_FAULT):  # the innermost env names it (an env may wrap another)
        text = repr(err)
        mark_env_fault(err, (name, method, text if len(text) <= 200 else text[:197] + "..."))


def mark_env_fault(err: BaseException, fault: tuple[str, str, str] | None) -> None:
    """Mark ``err`` as raised by an env (``fault``: env name, method, repr), for `env_fault`;
    parallel workers pass the mark of a worker's exception on to the error raised for it."""
    if fault is not None:
        try:
            setattr(err, ENV_FAULT, fault)
        except (AttributeError, TypeError):  # an exception type without attributes: left unmarked
            pass


def env_fault(err: BaseException | None) -> tuple[str, str, str] | None:
    """``(env name, method, repr of err)`` if ``err`` was raised by an env's ``step`` or ``reset``."""
    return getattr(err, ENV_FAULT, None)


class GymEnv:
    """Wraps one ``gym.Env``: float64 observations become float32, Dict/Tuple observations
    become namedarraytuples, and Box actions are rescaled.

    Action rescaling: every float Box dimension with finite bounds ``[low, high]`` is presented to
    agents as ``[-1, 1]`` (the whole action space as a float32 Box), and an agent's action ``a``
    reaches the env as ``low + (clip(a, -1, 1) + 1) / 2 * (high - low)``. Dimensions with an
    infinite bound (and integer Boxes) keep their bounds and are only clipped to them. A Box with
    no finite dimension is presented unchanged.

    An exception raised by the env's ``step`` or ``reset`` propagates unchanged, marked with
    ``(name, method, repr of the exception)`` as ``ENV_FAULT``, so that the runner can report
    it as an `EnvError` naming the env (`env_fault`); other exceptions are rlfleet's own.

    Args:
        env: a Gymnasium env.
        name: for error messages (default: the env's registered id, else ``module:Class``).
    """

    def __init__(self, env: gym.Env, name: str | None = None):
        self.env = env
        self.name = name or env_name(env)
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
        try:
            obs, _ = self.env.reset(seed=seed)
        except Exception as err:
            _mark(err, self.name, "reset")
            raise
        if seed is not None:
            self.env.action_space.seed(seed)
        return self._convert_obs(obs)

    def to_env_action(self, action: Any) -> Any:
        """An agent's action as the Gymnasium env takes it: Box actions through `env_action`,
        MultiDiscrete ones plus the space's ``start``, Discrete ones as ``int`` plus ``start``."""
        if self._box_action:
            return self.env_action(action)
        if isinstance(self.action_space, MultiDiscrete):
            action = np.asarray(action)
            return action + self._multi_start if self._multi_start is not None else action
        return int(action) + self._discrete_start

    def step(self, action: np.ndarray) -> EnvStep:
        action = self.to_env_action(action)
        try:
            obs, reward, terminated, truncated, info = self.env.step(action)
        except Exception as err:
            _mark(err, self.name, "step")
            raise
        return EnvStep(self._convert_obs(obs), float(reward), bool(terminated), bool(truncated), info)

    def render(self) -> np.ndarray | None:
        return self.env.render()

    def close(self) -> None:
        self.env.close()
