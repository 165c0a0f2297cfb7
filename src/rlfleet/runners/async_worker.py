"""The sampler process of the asynchronous runner (the design is in `rlfleet.runners.async_rl`).

It builds the envs, a CPU copy of the agent and a writer view of the replay from the run's
config, then loops: pick up newer weights, sample a ``[T,B]`` batch, wait for a free slot,
store the batch straight into the replay's shared-memory ring, and send its bookkeeping
(`WrittenBatch`) to the optimiser.
"""

from __future__ import annotations

import os
import signal
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from rlfleet.envs.spaces import EnvSpaces
from rlfleet.replays.n_step import truncation_finals
from rlfleet.runners.shared_params import SharedParameters
from rlfleet.utils.buffers import map_buffer

_POLL_S = 0.2  # while waiting, check this often whether to stop


class WrittenBatch(NamedTuple):
    """What the sampler process reports after storing a batch.

    Attributes:
        t: the replay time step the batch was stored at (it fills ``t .. t+T-1``).
        final_observations: ``{(t, b): observation}`` of the episodes truncated in the batch.
        traj_infos: statistics of the trajectories completed in the batch.
        normalizers: ``{"obs_normalizer": state or None, "reward_normalizer": state or None}``
            after the batch.
        weights_version: the `SharedParameters` version the batch was sampled with.
    """

    t: int
    final_observations: dict[tuple[int, int], Any]
    traj_infos: list[dict[str, float]]
    normalizers: dict[str, Any]
    weights_version: int


@dataclass
class SamplerStart:
    """Everything the sampler process is started with.

    Attributes:
        config: the run's config as the sampler builds it (``ExperimentConfig``: minibatch
            runner, CPU agent, no evaluation, no console).
        env_spaces: the envs' spaces (saves probing an env).
        t: the replay time step of the first batch.
        env_steps: env steps sampled before the first batch (schedules continue from here).
        normalizers: normaliser states to start from (``WrittenBatch.normalizers``), or None.
        parent_pid: the optimiser process; the sampler exits when it is gone.
    """

    config: Any
    env_spaces: EnvSpaces
    t: int
    env_steps: int
    normalizers: dict[str, Any] | None
    parent_pid: int


@dataclass
class SamplerChannels:
    """What the two processes share.

    Attributes:
        params: the agent model's weights, published by the optimiser.
        messages: sampler -> optimiser queue: ``("ready", storage)`` once (the replay's arrays
            as shared torch tensors), then ``("batch", WrittenBatch)`` per batch, or
            ``("error", traceback)``.
        free: batches the sampler may still store before the optimiser consumes one (released
            by the optimiser; acquired by the sampler before each store).
        stop: set by the optimiser to make the sampler exit.
    """

    params: SharedParameters
    messages: Any
    free: Any
    stop: Any


def map_storage(fn: Callable[[Any], Any], storage: Any) -> Any:
    """Apply ``fn`` to every array of a replay's `storage()` (dicts and namedarraytuples of
    arrays, ``None`` kept)."""
    if isinstance(storage, dict):
        return {key: map_storage(fn, value) for key, value in storage.items()}
    return map_buffer(fn, storage)


def shared_tensor(array: np.ndarray) -> torch.Tensor:
    """The shared torch tensor that ``array`` views (allocated by ``buffer_from_example(...,
    share_memory=True)``), which pickles as shared memory where a numpy array is copied."""
    owner = array.base
    if not (isinstance(owner, torch.Tensor) and owner.is_shared() and tuple(owner.shape) == array.shape):
        raise ValueError("the replay storage is not in shared memory")
    return owner


def normalizer_states(sampler: Any) -> dict[str, Any]:
    """The sampler's observation and reward normaliser states (None where it has none)."""
    obs_norm, reward_norm = sampler.obs_normalizer, sampler.reward_normalizer
    return {
        "obs_normalizer": None if obs_norm is None else obs_norm.state_dict(),
        "reward_normalizer": None if reward_norm is None else reward_norm.state_dict(),
    }


def _wait(semaphore: Any, start: SamplerStart, channels: SamplerChannels) -> bool:
    """Acquire ``semaphore``; False (not acquired) once asked to stop or orphaned."""
    while not semaphore.acquire(timeout=_POLL_S):
        if channels.stop.is_set() or os.getppid() != start.parent_pid:
            return False
    return True


def _serve(experiment: Any, start: SamplerStart, channels: SamplerChannels) -> None:
    sampler, agent, writer = experiment.sampler, experiment.agent, experiment.algo.replay
    states = start.normalizers or {}
    for name in ("obs_normalizer", "reward_normalizer"):
        normalizer = getattr(sampler, name)
        if normalizer is not None and states.get(name) is not None:
            normalizer.load_state_dict(states[name])
    writer.allocate(sampler.samples, share_memory=True)
    channels.messages.put(("ready", map_storage(shared_tensor, writer.storage())))
    t, env_steps, version = start.t, start.env_steps, 0
    while not channels.stop.is_set() and os.getppid() == start.parent_pid:
        version = channels.params.pull(agent.model, version)
        agent.sample_mode(env_steps)
        batch = sampler.obtain_samples()
        env_steps += sampler.batch_size
        if not _wait(channels.free, start, channels):
            return
        writer.store(t, batch.samples)
        written = WrittenBatch(
            t, truncation_finals(batch.samples), batch.traj_infos, normalizer_states(sampler), version
        )
        channels.messages.put(("batch", written))
        t += sampler.batch_T


def sampler_process(start: SamplerStart, channels: SamplerChannels) -> None:
    """Entry point of the sampler process: serve until stopped; an exception is reported
    through ``channels.messages`` (flushed before the process exits)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the optimiser's to handle (it stops us)
    # Imported here: rlfleet.experiment imports the runners, this module among them.
    from rlfleet.experiment import build_experiment

    experiment = None
    try:
        experiment = build_experiment(start.config, None, start.env_spaces)
        _serve(experiment, start, channels)
        channels.messages.cancel_join_thread()  # once stopped, unread batch reports are of no use
    except Exception:  # noqa: BLE001 - reported to the optimiser process
        channels.messages.put(("error", traceback.format_exc()))
    finally:
        if experiment is not None:
            experiment.close()
