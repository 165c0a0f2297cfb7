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

from rlfleet.envs.gym_env import GymEnv
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

    def state_dict(self) -> dict[str, Any]:
        """Envs (pickled, when they allow it) and running trajectory statistics."""
        try:
            envs = pickle.dumps([env.env for env in self.envs])
        except Exception:  # noqa: BLE001 - some envs (emulators, simulators) cannot be pickled
            envs = None
        return {"envs": envs, "traj_infos": pickle.dumps(self.traj_infos)}

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        """Restore envs and running trajectories. Envs that could not be pickled are reset
        instead (their episodes restart); returns whether the envs were restored exactly."""
        if state["envs"] is None:
            self.reset([None] * len(self.envs))
            return False
        for env, raw in zip(self.envs, pickle.loads(state["envs"])):
            env.env = raw
        self.traj_infos = pickle.loads(state["traj_infos"])
        return True
