"""Alternating sampler (rlpyt's): the B envs form two groups stepped by worker processes; while
one group steps, the main process runs the agent's forward pass for the other.

Per time step ``t`` the main process does, for group g = 0 then 1: wait until g's step ``t - 1``
is done, record its results, run the agent on g's ``[B/2]`` observations and start g's step ``t``.
So the forward pass (and bookkeeping) of one group overlaps the env stepping of the other. The
returned `SamplerBatch` is laid out exactly as `Sampler`'s (``[T,B]``, group 0 in env rows
``[0, B/2)``); only the agent is called twice per time step, on half batches.
"""

from __future__ import annotations

import os

from rlfleet.agents.base import Agent
from rlfleet.envs.gym_env import env_fault
from rlfleet.envs.normalize import ObservationNormalizer, RewardNormalizer
from rlfleet.errors import ConfigError
from rlfleet.samplers.parallel import ParallelStepper
from rlfleet.samplers.sampler import Sampler, SamplerBatch
from rlfleet.samplers.steppers import EnvFactory


def alternating_stepper(
    env_factory: EnvFactory, n_envs: int, discount: float = 0.99, workers_per_group: int | None = None
) -> ParallelStepper:
    """A `ParallelStepper` laid out for `AlternatingSampler`: every env slice in a worker
    process, ``workers_per_group`` of them per group of ``n_envs / 2`` envs (default: half the
    cores, at least one; at most one per env).

    Raises:
        ConfigError: ``n_envs`` is not even and at least 2.
    """
    if n_envs < 2 or n_envs % 2:
        raise ConfigError(
            f"sampler.kind=alternating splits the envs into two equal groups: sampler.batch_B must be even "
            f"and at least 2, got {n_envs}"
        )
    per_group = min(n_envs // 2, workers_per_group or max(1, (os.cpu_count() or 1) // 2))
    return ParallelStepper(env_factory, n_envs, discount, n_workers=2 * per_group, main_slice=False)


class AlternatingSampler(Sampler):
    """`Sampler` over two env groups, one stepping while the agent acts for the other.

    Args:
        stepper: from `alternating_stepper` (or any `ParallelStepper` with ``main_slice=False``
            and an even number of workers); the first half of its workers step group 0.
        batch_T: time steps per batch.
        obs_normalizer, reward_normalizer: optional running normalisers (updated per group).
    """

    def __init__(
        self,
        stepper: ParallelStepper,
        batch_T: int,
        obs_normalizer: ObservationNormalizer | None = None,
        reward_normalizer: RewardNormalizer | None = None,
    ):
        worker_slices = stepper.worker_slices
        n_workers = len(worker_slices)
        if n_workers != stepper.n_workers or n_workers % 2:
            raise ValueError(
                "AlternatingSampler needs a ParallelStepper with main_slice=False and an even number of workers "
                f"(got {n_workers} worker processes for {stepper.n_workers} env slices); see alternating_stepper"
            )
        super().__init__(stepper, batch_T, obs_normalizer, reward_normalizer)
        half = n_workers // 2
        self._workers = (range(0, half), range(half, n_workers))
        boundary = worker_slices[half][0]
        self._group_bounds = ((0, boundary), (boundary, self.batch_B))

    def initialize(self, agent: Agent, seed: int) -> None:
        """As `Sampler.initialize`. Agents whose per-env state assumes one call on all B envs
        per step (DDPG's OU noise) are refused at validation, by their algorithm's spec."""
        super().initialize(agent, seed)
        self._groups = tuple(self._env_rows(start, stop) for start, stop in self._group_bounds)

    def obtain_samples(self) -> SamplerBatch:
        """``batch_T`` steps of both groups; each group's forward pass overlaps the other's step."""
        stepper, groups, workers = self.stepper, self._groups, self._workers
        try:
            for g in (0, 1):
                stepper.step_workers_async(workers[g], self._act(groups[g], 0))
            for t in range(self.batch_T):
                for g in (0, 1):
                    stepper.wait_workers(workers[g])
                    self._record(groups[g], t)
                    if t + 1 < self.batch_T:
                        stepper.step_workers_async(workers[g], self._act(groups[g], t + 1))
        except BaseException as err:
            if env_fault(err) is not None:  # an env raised: its worker lives on
                stepper.wait_all()  # the other group's step ends, so the runner can checkpoint the envs
            else:
                stepper.close()  # interrupted with workers in flight: they and the batch are out of step
            raise
        return self._batch()
