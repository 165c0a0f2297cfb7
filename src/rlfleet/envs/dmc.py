"""DeepMind Control Suite envs, named ``dmc:<domain>-<task>`` (``dmc:cheetah-run``, ``dmc:walker-walk``).

A task is loaded with ``dm_control.suite.load`` and adapted to Gymnasium by shimmy's
``DmControlCompatibilityV0`` (both from the extra ``rlfleet[dmc]``). Conventions:

- observations: DMC's dict of arrays flattened into one float32 vector, the entries in sorted key
  order, each raveled (a scalar entry takes one slot); ``cheetah-run`` gives
  ``position (8) + velocity (9)`` = 17 floats.
- actions: DMC's bounds, ``[-1, 1]`` for every suite task (``GymEnv`` presents any finite Box as
  ``[-1, 1]`` anyway).
- episodes: DMC's own time limit (1000 steps for the suite's tasks) ends an episode as *truncated*
  (DMC's discount stays 1); an episode that DMC ends with discount 0 is *terminated*.
- ``EnvConfig.kwargs`` go to ``suite.load`` (``task_kwargs``, ``environment_kwargs``,
  ``visualize_reward``); ``EnvConfig.max_episode_steps`` can only shorten DMC's limit.

dm_control is imported only when a ``dmc:`` id is checked or built.
"""

from __future__ import annotations

import difflib
from typing import Any

import gymnasium as gym
import numpy as np

from rlfleet.errors import ConfigError

DMC_PREFIX = "dmc:"
INSTALL_HINT = "DeepMind Control needs the extra: pip install 'rlfleet[dmc]'"


def is_dmc(env_id: str) -> bool:
    """Whether ``env_id`` names a DeepMind Control task (``dmc:<domain>-<task>``)."""
    return env_id.startswith(DMC_PREFIX)


def _suite() -> Any:
    """``dm_control.suite``, or a ConfigError with the install command."""
    try:
        from dm_control import suite
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return suite


def dmc_task(env_id: str) -> tuple[str, str]:
    """``(domain, task)`` of a ``dmc:`` id; ConfigError naming the closest valid id when unknown."""
    tasks = {f"{DMC_PREFIX}{domain}-{task}": (domain, task) for domain, task in _suite().ALL_TASKS}
    if env_id in tasks:
        return tasks[env_id]
    close = difflib.get_close_matches(env_id, list(tasks), n=1, cutoff=0.5)
    suggestion = f"did you mean {close[0]!r}?" if close else "ids look like 'dmc:<domain>-<task>' (dmc:cheetah-run)"
    raise ConfigError(f"unknown DeepMind Control env id {env_id!r}; {suggestion}")


class FlattenDictObservation(gym.ObservationWrapper):
    """Dict of Box observations -> one float32 vector (entries in sorted key order, each raveled)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        spaces = env.observation_space.spaces
        self.keys = tuple(sorted(spaces))
        low = np.concatenate([np.ravel(spaces[k].low) for k in self.keys]).astype(np.float32)
        high = np.concatenate([np.ravel(spaces[k].high) for k in self.keys]).astype(np.float32)
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)

    def observation(self, observation: dict[str, Any]) -> np.ndarray:
        return np.concatenate([np.ravel(observation[k]) for k in self.keys]).astype(np.float32)


def make_dmc_env(env_id: str, kwargs: dict[str, Any], render_mode: str | None = None) -> gym.Env:
    """The Gymnasium env of a ``dmc:<domain>-<task>`` id (see the module docstring)."""
    domain, task = dmc_task(env_id)
    try:
        from shimmy.dm_control_compatibility import DmControlCompatibilityV0
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    try:
        dm_env = _suite().load(domain, task, **kwargs)
    except TypeError as err:
        raise ConfigError(f"env {env_id!r} rejected env.kwargs {sorted(kwargs)}: {err}") from None
    return FlattenDictObservation(DmControlCompatibilityV0(dm_env, render_mode=render_mode))
