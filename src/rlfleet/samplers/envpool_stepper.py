"""envpool as a `Stepper`: B envs of one envpool pool, stepped by its C++ threads in one call.

Semantics are `EnvGroup`'s, so `Sampler` and every algorithm see the same batches as with
rlfleet's own envs: ``terminated`` and ``truncated`` apart, the observation an episode was
truncated at kept in ``final_observation``, finished envs reset at once (their ``observation``
row is the new episode's first observation), Return / Length / DiscountedReturn per completed
trajectory (of the raw reward, while Atari training rewards are sign-clipped).

envpool resets a finished env on the step *after* its episode ended (Gymnasium's NEXT_STEP
autoreset: that step ignores the action and returns the first observation with reward 0). The
stepper resets the finished envs itself, right after the step that ended them
(``pool.reset(env_ids)``), so no such reset step ever reaches a batch.

Spaces and Box action rescaling come from rlfleet's own env for the id (`make_env`): agents see
exactly the spaces they would with the serial sampler (Box actions in ``[-1, 1]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from rlfleet.envs.envpool_envs import EnvpoolTask, envpool_spaces, envpool_task, make_envpool
from rlfleet.envs.make import EnvConfig, make_env
from rlfleet.envs.spaces import Box
from rlfleet.errors import ConfigError
from rlfleet.samplers.env_group import StepBuffers, step_buffers_from_env
from rlfleet.samplers.traj_info import TrajInfoBatch


def _check_same_spaces(env_id: str, reference: gym.Env, observation: gym.Space, action: gym.Space) -> None:
    """ConfigError unless envpool's spaces match those of rlfleet's env (shapes, actions exactly)."""
    ref_obs, ref_act = reference.observation_space, reference.action_space
    problem = None
    if ref_obs.shape != observation.shape:
        problem = f"observation shape {observation.shape} (Gymnasium: {ref_obs.shape})"
    elif isinstance(ref_act, gym.spaces.Discrete):
        if not isinstance(action, gym.spaces.Discrete) or (action.n, action.start) != (ref_act.n, ref_act.start):
            problem = f"action space {action} (Gymnasium: {ref_act})"
    elif not (
        isinstance(ref_act, gym.spaces.Box)
        and isinstance(action, gym.spaces.Box)
        and action.shape == ref_act.shape
        and np.allclose(action.low, ref_act.low)
        and np.allclose(action.high, ref_act.high)
    ):
        problem = f"action space {action} (Gymnasium: {ref_act})"
    if problem is not None:
        raise ConfigError(f"envpool's {env_id!r} differs from Gymnasium's: {problem}")


class EnvpoolStepper:
    """Steps B envs of one envpool pool (synchronous: every call steps all of them).

    Args:
        config: the env; its id must be one of `rlfleet.envs.envpool_envs.supported_ids`.
        n_envs: B.
        discount: for trajectory statistics.
        n_threads: envpool's C++ threads (default: envpool's choice).

    Attributes:
        buffers: ``[B, ...]`` StepBuffers holding the latest results.
        env_spaces: the spaces of rlfleet's own env for ``config``.
        n_envs: B.
    """

    def __init__(self, config: EnvConfig, n_envs: int, discount: float = 0.99, n_threads: int | None = None):
        self._task: EnvpoolTask = envpool_task(config, training=True)
        observation_space, action_space = envpool_spaces(self._task)
        reference = make_env(config, training=True)
        try:
            _check_same_spaces(config.id, reference.env, observation_space, action_space)
        finally:
            reference.close()
        self.env_spaces = reference.spaces
        self.n_envs = n_envs
        self.buffers: StepBuffers = step_buffers_from_env(reference, n_envs)
        self._box_action = isinstance(self.env_spaces.action, Box)
        self._env_action = reference.env_action  # Box: agent's [-1, 1] -> env bounds, on [B, ...] too
        self._action_dtype = action_space.dtype
        self._n_threads = n_threads
        self._raw_reward = np.zeros(n_envs, np.float32)
        self._trajs = TrajInfoBatch(n_envs, discount)
        self._completed: list[dict[str, float]] = []
        self._pool: Any = None

    def reset(self, seeds: Sequence[int | None]) -> None:
        """Reset every env. Any int seed starts a new pool (envpool seeds envs only when it builds
        them), env ``b`` seeded with ``seeds[b]`` (fresh entropy where None); all None resets
        the current pool's envs without reseeding."""
        if self._pool is None or any(s is not None for s in seeds):
            fresh = np.random.SeedSequence().generate_state(self.n_envs)
            env_seeds = [int(s if s is not None else f) % 2**31 for s, f in zip(seeds, fresh)]
            self.close()
            self._pool = make_envpool(self._task, env_seeds, self._n_threads)
        observation, info = self._pool.reset()
        self.buffers.observation[info["env_id"]] = observation
        self._trajs.restart()

    def step(self, actions: np.ndarray) -> None:
        """Step every env with ``actions`` ``[B, ...]`` (agent's action space); results land in
        ``buffers``, finished envs are reset."""
        env_actions = self._env_action(actions) if self._box_action else actions
        observation, reward, terminated, truncated, info = self._pool.step(env_actions.astype(self._action_dtype))
        buf, env_ids = self.buffers, info["env_id"]
        buf.observation[env_ids] = observation
        buf.terminated[env_ids] = terminated
        buf.truncated[env_ids] = truncated
        self._raw_reward[env_ids] = reward
        if self._task.clip_reward:
            np.sign(self._raw_reward, out=buf.reward)
        else:
            buf.reward[:] = self._raw_reward
        self._trajs.step(self._raw_reward)
        done = buf.terminated | buf.truncated
        if done.any():
            truncated_envs = np.flatnonzero(buf.truncated)
            buf.final_observation[truncated_envs] = buf.observation[truncated_envs]
            ended = np.flatnonzero(done)
            self._completed += self._trajs.complete(ended)
            observation, info = self._pool.reset(ended.astype(np.int32))
            buf.observation[info["env_id"]] = observation

    def pop_completed(self) -> list[dict[str, float]]:
        """Trajectories completed since the last call (by time, then env)."""
        completed, self._completed = self._completed, []
        return completed

    def state_dict(self) -> dict[str, Any]:
        """Nothing: envpool's envs cannot be saved (a resumed run restarts their episodes)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        """Reset every env (episodes restart); returns False: the envs were not restored."""
        self.reset([None] * self.n_envs)
        return False

    def close(self) -> None:
        """Close the pool; idempotent."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
