"""A group of envs stepped together, writing into ``[B, ...]`` step buffers.

The serial sampler steps one group holding every env; each parallel worker steps a group over
its slice of shared-memory buffers. Envs that finish are reset at once (their final
observation kept in ``final_observation`` when truncated, for bootstrapping).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np

from rlfleet.checkpoint import is_refused_global, pickle_globals, restricted_loads
from rlfleet.envs.gym_env import GymEnv
from rlfleet.errors import CheckpointError
from rlfleet.samplers.traj_info import TrajInfo
from rlfleet.utils.buffers import buffer_from_example
from rlfleet.utils.namedarraytuple import namedarraytuple

StepBuffers = namedarraytuple("StepBuffers", ["observation", "reward", "terminated", "truncated", "final_observation"])


def step_buffers_from_env(env: GymEnv, n_envs: int, share_memory: bool = False) -> StepBuffers:
    """``[n_envs, ...]`` buffers shaped after ``env``'s spaces."""
    obs = env.observation_space.null_value()
    example = StepBuffers(obs, np.float32(0), np.bool_(False), np.bool_(False), obs)
    return buffer_from_example(example, (n_envs,), share_memory=share_memory)


class EnvGroup:
    """Steps ``envs`` with a batch of actions and records completed trajectories.

    Args:
        envs: the envs, one per row of ``buffers``.
        buffers: StepBuffers with leading dim ``len(envs)``; ``observation`` always holds the
            observation the agent acts on next.
        discount: for TrajInfo's DiscountedReturn.
    """

    def __init__(self, envs: Sequence[GymEnv], buffers: StepBuffers, discount: float = 0.99):
        self.envs = list(envs)
        self.buffers = buffers
        self.discount = discount
        self.traj_infos = [TrajInfo(discount) for _ in self.envs]
        self.completed: list[dict[str, float]] = []

    def reset(self, seeds: Sequence[int | None]) -> None:
        for i, (env, seed) in enumerate(zip(self.envs, seeds)):
            self.buffers.observation[i] = env.reset(seed=seed)
            self.traj_infos[i] = TrajInfo(self.discount)

    def step(self, actions: np.ndarray) -> None:
        buf = self.buffers
        for i, env in enumerate(self.envs):
            obs, reward, terminated, truncated, info = env.step(actions[i])
            traj = self.traj_infos[i]
            traj.step(reward, info)
            if terminated or truncated:
                if truncated:
                    buf.final_observation[i] = obs
                self.completed.append(traj.completed())
                self.traj_infos[i] = TrajInfo(self.discount)
                obs = env.reset()
            buf.observation[i] = obs
            buf.reward[i] = reward
            buf.terminated[i] = terminated
            buf.truncated[i] = truncated

    def pop_completed(self) -> list[dict[str, float]]:
        completed, self.completed = self.completed, []
        return completed

    def _pickled_envs(self) -> bytes | None:
        """The envs pickled, or None where they cannot be, or only with globals that loading
        never admits (``rlfleet.checkpoint.is_refused_global``)."""
        try:
            envs = pickle.dumps([env.env for env in self.envs])
        except Exception:  # noqa: BLE001 - some envs (emulators, simulators) cannot be pickled
            return None
        try:
            refused = any(is_refused_global(*g) for g in pickle_globals(envs))
        except ValueError:
            return None
        return None if refused else envs

    def state_dict(self) -> dict[str, Any]:
        """Envs (pickled, when they allow it) and running trajectory statistics."""
        return {"envs": self._pickled_envs(), "traj_infos": pickle.dumps(self.traj_infos)}

    def allowed_globals(self) -> set[tuple[str, str]]:
        """What unpickling this group's saved state may reference: the globals of these envs'
        own pickle and of the running trajectories' (``rlfleet.checkpoint.restricted_loads``)."""
        envs = self._pickled_envs()
        allowed = pickle_globals(pickle.dumps(self.traj_infos))
        return allowed if envs is None else allowed | pickle_globals(envs)

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        """Restore envs and running trajectories. Envs that could not be pickled are reset
        instead (their episodes restart); returns whether the envs were restored exactly.

        The pickles are read by ``restricted_loads``, admitting only the globals these freshly
        built envs' own pickle references: CheckpointError for a payload needing anything else."""
        if state["envs"] is None:
            self.reset([None] * len(self.envs))
            return False
        allowed = self.allowed_globals()
        envs = restricted_loads(state["envs"], allowed, "envs")
        traj_infos = restricted_loads(state["traj_infos"], allowed, "trajectories")
        if not isinstance(envs, list) or len(envs) != len(self.envs):
            raise CheckpointError(f"the saved envs are not a list of {len(self.envs)} envs")
        for env, raw in zip(self.envs, envs):
            env.env = raw
        self.traj_infos = traj_infos
        return True
