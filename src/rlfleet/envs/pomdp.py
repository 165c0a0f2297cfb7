"""Partially observable envs: velocity-masked classic control, POPGym and MiniGrid.

* ``<Name>NoVel-v<N>`` (``CartPoleNoVel-v1``, ``PendulumNoVel-v1``, ``LunarLanderNoVel-v3``,
  ``MountainCarContinuousNoVel-v0``, ...): the base env with its velocity entries set to zero,
  as rl-baselines3-zoo defines them (``MaskVelocityWrapper`` and ``import_envs.py``: the same
  ids, masked indices, observation space and time limit as the base env). Registered by
  `register_no_vel_envs`, which imports nothing.
* POPGym (extra ``popgym``): its own ids, ``popgym-RepeatPreviousEasy-v0``,
  ``popgym-PositionOnlyCartPoleEasy-v0``, ... Non-Box observations (Discrete, MultiDiscrete,
  Tuple) become one flat float32 Box, one-hot for each discrete part (`FlatFloatObservation`).
* MiniGrid (extra ``minigrid``): ``MiniGrid-MemoryS7-v0``, ``MiniGrid-MemoryS13Random-v0``,
  ... The observation is the agent's egocentric partial view only, channels first:
  ``[3, 7, 7]`` uint8 (`MiniGridImage`; the mission string and the direction are dropped).

POPGym and MiniGrid envs end episodes themselves (their own step budgets) but register no
``max_episode_steps``; `wrap_pomdp_env` adds a ``TimeLimit`` at that same budget so that
rlfleet knows the limit (and no episode can run on).
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import load_env_creator

#: Base env id -> the observation indices that hold velocities (rl-baselines3-zoo's table).
VELOCITY_INDICES: dict[str, tuple[int, ...]] = {
    "CartPole-v1": (1, 3),  # cart velocity, pole angular velocity
    "MountainCar-v0": (1,),  # velocity
    "MountainCarContinuous-v0": (1,),  # velocity
    "Pendulum-v1": (2,),  # angular velocity
    "LunarLander-v3": (2, 3, 5),  # linear velocities x, y and the angular velocity
    "LunarLanderContinuous-v3": (2, 3, 5),
}


def no_vel_id(base_id: str) -> str:
    """``CartPole-v1`` -> ``CartPoleNoVel-v1``."""
    name, version = base_id.rsplit("-v", 1)
    return f"{name}NoVel-v{version}"


#: ``<Name>NoVel-v<N>`` -> its base env id.
NO_VEL_IDS: dict[str, str] = {no_vel_id(base): base for base in VELOCITY_INDICES}

POPGYM_PREFIX = "popgym-"
MINIGRID_PREFIX = "MiniGrid-"
#: id prefix -> (module to import, rlfleet extra, the package's name for messages)
PACKAGES: dict[str, tuple[str, str, str]] = {
    POPGYM_PREFIX: ("popgym", "popgym", "POPGym"),
    MINIGRID_PREFIX: ("minigrid", "minigrid", "MiniGrid"),
}


def is_memory_env(env_id: str) -> bool:
    """Whether ``env_id`` is one of this module's partially observable envs (preset suite
    ``memory``)."""
    return env_id in NO_VEL_IDS or env_id.startswith(tuple(PACKAGES))


class MaskVelocity(gym.ObservationWrapper):
    """Zero the observation entries at ``indices`` (the observation space is kept, as
    rl-baselines3-zoo keeps it: 0 lies within every masked entry's bounds)."""

    def __init__(self, env: gym.Env, indices: tuple[int, ...]):
        super().__init__(env)
        self.indices = np.asarray(indices, dtype=np.int64)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        observation = np.array(observation, copy=True)
        observation[self.indices] = 0
        return observation


def make_no_vel_env(base_id: str, render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    """The entry point of the NoVel ids: the base env built from its spec (no wrappers of its
    own: ``gym.make`` of the NoVel id adds the base's time limit, order enforcing and the env
    checker around the mask) wrapped in `MaskVelocity`."""
    spec = gym.spec(base_id)
    env = load_env_creator(spec.entry_point)(**{**spec.kwargs, **kwargs}, render_mode=render_mode)
    return MaskVelocity(env, VELOCITY_INDICES[base_id])


@functools.cache
def register_no_vel_envs() -> None:
    """Register the NoVel ids with Gymnasium (cheap: registry entries only, nothing imported;
    the base envs' packages, Box2D for LunarLander, load when an env is built)."""
    for env_id, base_id in NO_VEL_IDS.items():
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point="rlfleet.envs.pomdp:make_no_vel_env",
                max_episode_steps=gym.spec(base_id).max_episode_steps,
                kwargs={"base_id": base_id},
            )


@functools.cache
def _register_package(module: str) -> None:
    """Import ``module``, whose import registers its envs with Gymnasium (nothing if missing)."""
    try:
        importlib.import_module(module)
    except ImportError:
        pass


def register_pomdp_envs(env_id: str | None = None) -> None:
    """Register the ids this module provides; with ``env_id``, only those of its family (and
    nothing when it is none of them), so that other envs do not import POPGym or MiniGrid."""
    if env_id is None or env_id in NO_VEL_IDS:
        register_no_vel_envs()
    for prefix, (module, _, _) in PACKAGES.items():
        if env_id is None or env_id.startswith(prefix):
            _register_package(module)


def missing_package_message(env_id: str) -> str | None:
    """The one-line error for an id of POPGym or MiniGrid when that package is not installed
    (None otherwise)."""
    for prefix, (module, extra, name) in PACKAGES.items():
        if env_id.startswith(prefix):
            try:
                importlib.import_module(module)
            except ImportError:
                return f"env {env_id!r} needs {name}, which this install lacks: pip install 'rlfleet[{extra}]'"
    return None


class FlatFloatObservation(gym.ObservationWrapper):
    """Any Gymnasium observation space -> one flat float32 Box (``gym.spaces.flatten``:
    Discrete and MultiDiscrete parts one-hot, Box parts raveled, Tuple/Dict parts concatenated
    in order), for the MLP encoder."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        flat = gym.spaces.flatten_space(env.observation_space)
        self.observation_space = gym.spaces.Box(flat.low.astype(np.float32), flat.high.astype(np.float32))

    def observation(self, observation: Any) -> np.ndarray:
        return np.asarray(gym.spaces.flatten(self.env.observation_space, observation), dtype=np.float32)


class MiniGridImage(gym.ObservationWrapper):
    """MiniGrid's ``{"image": [7, 7, 3], "direction", "mission"}`` -> the image alone,
    channels first: ``[3, 7, 7]`` uint8 (object, colour and state indices per cell of the
    agent's egocentric view, which already turns with the agent)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        image = env.observation_space["image"]
        h, w, c = image.shape
        self.observation_space = gym.spaces.Box(0, 255, (c, h, w), np.uint8)

    def observation(self, observation: dict) -> np.ndarray:
        return np.ascontiguousarray(np.transpose(observation["image"], (2, 0, 1)), dtype=np.uint8)


def _has_time_limit(env: gym.Env) -> bool:
    while env is not None:
        if isinstance(env, gym.wrappers.TimeLimit):
            return True
        env = getattr(env, "env", None)
    return False


def wrap_pomdp_env(env_id: str, env: gym.Env, fallback_limit: int) -> gym.Env:
    """rlfleet's wrappers for a POPGym or MiniGrid env built by ``gym.make`` (others are
    returned unchanged): the observation as above, and, unless the env already has a
    ``TimeLimit``, one at the env's own step budget (POPGym's ``max_episode_length``,
    MiniGrid's ``max_steps``; ``fallback_limit`` for the POPGym games that have none, which
    end within a deck of cards)."""
    if env_id.startswith(POPGYM_PREFIX):
        if not isinstance(env.observation_space, gym.spaces.Box):
            env = FlatFloatObservation(env)
        budget = getattr(env.unwrapped, "max_episode_length", None)
    elif env_id.startswith(MINIGRID_PREFIX):
        env = MiniGridImage(env)
        budget = getattr(env.unwrapped, "max_steps", None)
    else:
        return env
    if not _has_time_limit(env):
        env = gym.wrappers.TimeLimit(env, int(budget or fallback_limit))
    return env
