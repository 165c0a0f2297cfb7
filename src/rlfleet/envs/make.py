"""Build envs from an id: Gymnasium's registry (classic control, Box2D, MuJoCo ``HalfCheetah-v5``,
Atari ``ALE/...``, MinAtar ``MinAtar/...``; the partially observable ``CartPoleNoVel-v1``,
``popgym-...`` and ``MiniGrid-...`` of `rlfleet.envs.pomdp`;
``DeepSea-v0`` of `rlfleet.envs.deepsea`), DeepMind Control ``dmc:<domain>-<task>`` (see
`rlfleet.envs.dmc`), Procgen ``procgen:<game>`` (see `rlfleet.envs.procgen`) or a user class/factory given by
import path (``pkg.module:Name``)."""

from __future__ import annotations

import dataclasses
import difflib
import functools

import gymnasium as gym
import numpy as np

from rlfleet.config.schema import EnvConfig
from rlfleet.envs.deepsea import is_exploration_env, register_exploration_envs
from rlfleet.envs.dmc import dmc_task, is_dmc, make_dmc_env
from rlfleet.envs.gym_env import GymEnv
from rlfleet.envs.pomdp import missing_package_message, register_pomdp_envs, wrap_pomdp_env
from rlfleet.envs.procgen import gym3_env_class, held_out_split_kwargs, is_procgen, make_procgen_env, procgen_game
from rlfleet.errors import ConfigError
from rlfleet.utils.imports import import_object, looks_like_import_path


def register_extra_envs(env_id: str | None = None) -> None:
    """Register Atari (ale-py), MinAtar, POPGym and MiniGrid ids with Gymnasium when those
    packages exist, the NoVel ids (`rlfleet.envs.pomdp`) and ``DeepSea-v0``
    (`rlfleet.envs.deepsea`).

    With ``env_id``, only the package that id needs is imported (MinAtar pulls in seaborn and
    scipy, about a second, which worker processes should not pay for Atari or classic envs).
    """
    if env_id is None or env_id.startswith("ALE/"):
        _register_ale()
    if env_id is None or env_id.startswith("MinAtar/"):
        _register_minatar()
    register_pomdp_envs(env_id)
    if env_id is None or is_exploration_env(env_id):
        register_exploration_envs()


@functools.cache
def _register_ale() -> None:
    try:
        import ale_py

        gym.register_envs(ale_py)
    except ImportError:
        pass


@functools.cache
def _register_minatar() -> None:
    try:
        from minatar.gym import register_envs

        register_envs()
    except ImportError:
        pass


def check_env_id(env_id: str) -> None:
    """Raise ConfigError (with the closest registered id) for an unknown env id."""
    if is_dmc(env_id):
        dmc_task(env_id)
        return
    if is_procgen(env_id):
        procgen_game(env_id)
        gym3_env_class(env_id)
        return
    if looks_like_import_path(env_id):
        import_object(env_id, what="env")
        return
    register_extra_envs(env_id)
    if env_id in gym.registry:
        return
    missing = missing_package_message(env_id)
    if missing:
        raise ConfigError(missing)
    register_extra_envs()
    hint = ""
    if env_id.startswith("ALE/"):
        try:
            import ale_py  # noqa: F401
        except ImportError:
            hint = " (Atari needs the extra: pip install 'rlfleet[atari]')"
    close = difflib.get_close_matches(env_id, list(gym.registry), n=1, cutoff=0.5)
    suggestion = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown env id {env_id!r}{suggestion}{hint}")


def is_atari(env_id: str) -> bool:
    return env_id.startswith("ALE/")


class _MinAtarChannelsFirst(gym.ObservationWrapper):
    """MinAtar's bool ``[10,10,C]`` frames -> float32 ``[C,10,10]``."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        h, w, c = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0.0, 1.0, (c, h, w), np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.transpose(observation, (2, 0, 1)), dtype=np.float32)


class _ClipRewardKeepRaw(gym.RewardWrapper):
    """Clip rewards to their sign; the raw reward travels in ``info["unclipped_reward"]`` so that
    trajectory statistics report game scores."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = {**info, "unclipped_reward": reward}
        return obs, float(np.sign(reward)), terminated, truncated, info


def _make_atari(config: EnvConfig, training: bool, render_mode: str | None) -> gym.Env:
    opts = config.atari
    env = gym.make(
        config.id,
        frameskip=1,
        repeat_action_probability=opts.repeat_action_probability,
        full_action_space=False,
        render_mode=render_mode,
        max_episode_steps=config.max_episode_steps or 108_000,
        **config.kwargs,
    )
    env = gym.wrappers.AtariPreprocessing(
        env,
        noop_max=opts.noop_max,
        frame_skip=opts.frame_skip,
        screen_size=opts.screen_size,
        terminal_on_life_loss=opts.terminal_on_life_loss and training,
        grayscale_obs=True,
        scale_obs=False,
    )
    if opts.clip_reward and training:
        env = _ClipRewardKeepRaw(env)
    return gym.wrappers.FrameStackObservation(env, opts.frame_stack)


DEFAULT_MAX_EPISODE_STEPS = 1000
"""The time limit of envs given by import path that have none of their own (`EnvConfig`)."""


def _has_time_limit_wrapper(env: gym.Env) -> bool:
    while env is not None:
        if isinstance(env, gym.wrappers.TimeLimit):
            return True
        env = getattr(env, "env", None)
    return False


def own_time_limit(env: gym.Env) -> int | None:
    """The env's own time limit: its outermost ``TimeLimit`` wrapper's, else its spec's
    ``max_episode_steps``; None when it has neither."""
    inner = env
    while inner is not None:
        if isinstance(inner, gym.wrappers.TimeLimit):
            return inner._max_episode_steps
        inner = getattr(inner, "env", None)
    spec = getattr(env.unwrapped, "spec", None) or getattr(env, "spec", None)
    return getattr(spec, "max_episode_steps", None) or None


def time_limit_note(config: EnvConfig) -> str | None:
    """The one-line note for a run whose env is given by import path, has no time limit of its
    own and gets `DEFAULT_MAX_EPISODE_STEPS` (None otherwise: a registered id, a limit of its
    own or ``env.max_episode_steps`` given). Builds one env."""
    if config.max_episode_steps or not looks_like_import_path(config.id):
        return None
    env = import_object(config.id, what="env")(**config.kwargs)
    try:
        if own_time_limit(env):
            return None
    finally:
        env.close()
    return (
        f"note: {config.id} has no time limit; episodes are truncated at {DEFAULT_MAX_EPISODE_STEPS} steps "
        "(env.max_episode_steps)"
    )


def make_gym_env(config: EnvConfig, training: bool = True, render_mode: str | None = None) -> gym.Env:
    """The raw Gymnasium env (with rlfleet's standard wrappers for Atari/MinAtar/DMC)."""
    if is_dmc(config.id):
        env = make_dmc_env(config.id, config.kwargs, render_mode)
        return gym.wrappers.TimeLimit(env, config.max_episode_steps) if config.max_episode_steps else env
    if is_procgen(config.id):
        env = make_procgen_env(config.id, config.kwargs, render_mode)
        return gym.wrappers.TimeLimit(env, config.max_episode_steps) if config.max_episode_steps else env
    if looks_like_import_path(config.id):
        factory = import_object(config.id, what="env")
        kwargs = dict(config.kwargs)
        if render_mode is not None:
            kwargs["render_mode"] = render_mode
        env = factory(**kwargs)
        if not isinstance(env, gym.Env):
            raise ConfigError(f"env {config.id!r} returned {type(env).__name__}, expected a gymnasium.Env")
        limit = config.max_episode_steps or own_time_limit(env) or DEFAULT_MAX_EPISODE_STEPS
        if config.max_episode_steps or not _has_time_limit_wrapper(env):
            env = gym.wrappers.TimeLimit(env, limit)
        return env
    check_env_id(config.id)
    if is_atari(config.id):
        return _make_atari(config, training, render_mode)
    kwargs = dict(config.kwargs)
    if config.max_episode_steps:
        kwargs["max_episode_steps"] = config.max_episode_steps
    if render_mode is not None:  # not passed otherwise: POPGym's constructors take no render_mode
        kwargs["render_mode"] = render_mode
    try:
        env = gym.make(config.id, **kwargs)
    except TypeError as err:
        if not config.kwargs:
            raise
        raise ConfigError(f"env {config.id!r} rejected env.kwargs {sorted(config.kwargs)}: {err}") from None
    if config.id.startswith("MinAtar/"):
        env = _MinAtarChannelsFirst(env)
    return wrap_pomdp_env(config.id, env, DEFAULT_MAX_EPISODE_STEPS)


def held_out_config(config: EnvConfig) -> EnvConfig | None:
    """The env config of the held-out evaluation (``EnvConfig.test_kwargs``): ``kwargs`` updated by
    ``test_kwargs``; with ``test_kwargs`` None, Procgen's test split for ``procgen:`` ids
    (`rlfleet.envs.procgen.held_out_split_kwargs`) and none for other ids. None: no held-out evaluation."""
    test_kwargs = config.test_kwargs
    if test_kwargs is None:
        test_kwargs = held_out_split_kwargs(config.kwargs) if is_procgen(config.id) else {}
    if not test_kwargs:
        return None
    return dataclasses.replace(config, kwargs={**config.kwargs, **test_kwargs}, test_kwargs={})


def make_env(config: EnvConfig, training: bool = True, render_mode: str | None = None) -> GymEnv:
    """Build one rlfleet env. Picklable (module-level), so worker processes can call it."""
    return GymEnv(make_gym_env(config, training=training, render_mode=render_mode))
