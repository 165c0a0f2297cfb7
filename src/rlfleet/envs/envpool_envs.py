"""Which env ids envpool runs for rlfleet, and with which envpool options.

A supported id is a Gymnasium id whose envpool counterpart behaves like rlfleet's own env for it
(`rlfleet.envs.make.make_env`): classic control, Box2D and MuJoCo v5 ids under the same name,
Atari ``ALE/<Game>-v5`` as envpool's ``<Game>-v5`` with rlfleet's Atari preprocessing expressed in
envpool's options. envpool 1.2.5 has ``LunarLander-v3`` itself, so no id needs another version.

Atari: every `AtariOptions` field maps onto an envpool option (no-op reset, frame skip with
max-pooling, ``screen_size`` grayscale frames resized with INTER_AREA, stacked frames that start
as copies of the reset frame, sticky actions, no FIRE on reset, the minimal action set, the
108k-frame cap counted in agent steps). Rewards reach the stepper unclipped (envpool's
``reward_clip`` is off) so that the stepper clips the training rewards and keeps the game score
for statistics, as `make_env` does. One difference: ``terminal_on_life_loss`` becomes envpool's
``episodic_life``, which ends the training episode on a life loss but resets the game only at
game over (Gymnasium's preprocessing resets it at every life loss).
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from rlfleet.envs.make import EnvConfig, is_atari, register_extra_envs
from rlfleet.errors import ConfigError

CLASSIC_CONTROL_IDS = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0", "MountainCarContinuous-v0", "Pendulum-v1")
BOX2D_IDS = ("LunarLander-v3", "LunarLanderContinuous-v3", "BipedalWalker-v3", "BipedalWalkerHardcore-v3")
MUJOCO_IDS = tuple(
    f"{name}-v5"
    for name in (
        "Ant",
        "HalfCheetah",
        "Hopper",
        "Humanoid",
        "HumanoidStandup",
        "InvertedDoublePendulum",
        "InvertedPendulum",
        "Pusher",
        "Reacher",
        "Swimmer",
        "Walker2d",
    )
)
ATARI_FRAME_CAP = 108_000  # frames per episode, as make_env's Atari envs


@dataclass(frozen=True)
class EnvpoolTask:
    """An envpool env standing in for an rlfleet env id.

    Attributes:
        task_id: envpool's id (``Pong-v5`` for ``ALE/Pong-v5``).
        kwargs: options for ``envpool.make`` / ``envpool.make_spec``.
        clip_reward: train on ``sign(reward)`` and keep the raw reward for statistics.
    """

    task_id: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    clip_reward: bool = False


def _import_envpool() -> Any:
    try:
        import envpool
    except ImportError:
        raise ConfigError("sampler.kind=envpool needs the envpool package: pip install envpool") from None
    return envpool


@functools.cache
def supported_ids() -> tuple[str, ...]:
    """Every env id that ``sampler.kind=envpool`` runs."""
    envpool_ids = set(_import_envpool().list_all_envs())
    register_extra_envs("ALE/")
    atari = sorted(i for i in gym.registry if is_atari(i) and i.endswith("-v5") and i[len("ALE/") :] in envpool_ids)
    own = [i for i in CLASSIC_CONTROL_IDS + BOX2D_IDS + MUJOCO_IDS if i in envpool_ids]
    return tuple(own + atari)


def envpool_task(config: EnvConfig, training: bool = True) -> EnvpoolTask:
    """The envpool env and options matching ``make_env(config, training)``.

    Raises:
        ConfigError: envpool is missing or does not run ``config.id`` (the closest supported id
            is named).
    """
    supported = supported_ids()
    if config.id not in supported:
        close = difflib.get_close_matches(config.id, supported, n=1, cutoff=0.0)
        raise ConfigError(
            f"sampler.kind=envpool does not support env {config.id!r}; the closest supported id is {close[0]!r} "
            "(classic control, Box2D, MuJoCo v5 and ALE/<Game>-v5 ids; other envs need another sampler.kind)"
        )
    if not is_atari(config.id):
        max_steps = config.max_episode_steps or gym.spec(config.id).max_episode_steps
        return EnvpoolTask(config.id, {**config.kwargs, "max_episode_steps": max_steps})
    opts = config.atari
    kwargs = {
        "stack_num": opts.frame_stack,
        "frame_skip": opts.frame_skip,
        "noop_max": opts.noop_max,
        "img_height": opts.screen_size,
        "img_width": opts.screen_size,
        "gray_scale": True,
        "use_inter_area_resize": True,
        "episodic_life": opts.terminal_on_life_loss and training,
        "reward_clip": False,
        "repeat_action_probability": opts.repeat_action_probability,
        "use_fire_reset": False,
        "full_action_space": False,
        "max_episode_steps": (config.max_episode_steps or ATARI_FRAME_CAP) // opts.frame_skip,
        **config.kwargs,
    }
    return EnvpoolTask(config.id[len("ALE/") :], kwargs, clip_reward=opts.clip_reward and training)


def make_envpool(task: EnvpoolTask, seeds: list[int], n_threads: int | None = None) -> Any:
    """A synchronous gymnasium-API envpool of ``len(seeds)`` envs, env ``b`` seeded with
    ``seeds[b]``; ``n_threads`` C++ threads (default: envpool's)."""
    envpool = _import_envpool()
    with _envpool_options(task):
        pool = envpool.make(
            task.task_id,
            env_type="gymnasium",
            num_envs=len(seeds),
            batch_size=len(seeds),
            num_threads=n_threads or 0,
            env_seed=list(seeds),
            **task.kwargs,
        )
        _ = pool.observation_space, pool.action_space  # built (and cached) here, warnings silenced
    return pool


def envpool_spaces(task: EnvpoolTask) -> tuple[gym.Space, gym.Space]:
    """envpool's (observation, action) Gymnasium spaces of one env of ``task``."""
    envpool = _import_envpool()
    with _envpool_options(task):
        spec = envpool.make_spec(task.task_id, **task.kwargs)
        return spec.gymnasium_observation_space, spec.gymnasium_action_space


@contextlib.contextmanager
def _envpool_options(task: EnvpoolTask) -> Iterator[None]:
    """Turn envpool's rejection of an option into a ConfigError; silence the float32 casts of
    Gymnasium's Box that envpool's float64 space bounds cause."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*precision lowered by casting to float32")
        try:
            yield
        except TypeError as err:
            options = sorted(task.kwargs)
            raise ConfigError(f"envpool rejected the options of {task.task_id!r} ({options}): {err}") from None
