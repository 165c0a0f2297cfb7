"""Steppers: how a sampler's B envs are stepped. The sampler itself (agent, buffers,
normalisation) is the same for every stepper."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from rlfleet.envs.gym_env import GymEnv
from rlfleet.envs.spaces import EnvSpaces
from rlfleet.samplers.env_group import EnvGroup, StepBuffers, step_buffers_from_env

EnvFactory = Callable[[], GymEnv]


class Stepper(Protocol):
    """Steps B envs. ``buffers`` ([B, ...] StepBuffers) hold the latest results."""

    buffers: StepBuffers
    env_spaces: EnvSpaces
    n_envs: int

    def reset(self, seeds: Sequence[int | None]) -> None: ...

    def step(self, actions: np.ndarray) -> None: ...

    def pop_completed(self) -> list[dict[str, float]]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> bool: ...

    def close(self) -> None: ...


class SerialStepper:
    """All B envs in this process, stepped one after another.

    Args:
        env_factory: picklable ``f() -> GymEnv``.
        n_envs: B.
        discount: for trajectory statistics.
    """

    def __init__(self, env_factory: EnvFactory, n_envs: int, discount: float = 0.99):
        envs = [env_factory() for _ in range(n_envs)]
        self.env_spaces = envs[0].spaces
        self.n_envs = n_envs
        self.buffers = step_buffers_from_env(envs[0], n_envs)
        self.group = EnvGroup(envs, self.buffers, discount)

    @property
    def envs(self) -> list[GymEnv]:
        return self.group.envs

    def reset(self, seeds: Sequence[int | None]) -> None:
        self.group.reset(seeds)

    def step(self, actions: np.ndarray) -> None:
        self.group.step(actions)

    def pop_completed(self) -> list[dict[str, float]]:
        return self.group.pop_completed()

    def state_dict(self) -> dict[str, Any]:
        return self.group.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        return self.group.load_state_dict(state)

    def close(self) -> None:
        for env in self.group.envs:
            env.close()
