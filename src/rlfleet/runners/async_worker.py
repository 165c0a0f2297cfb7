"""The sampler process of the asynchronous runner (the design is in `rlfleet.runners.async_rl`).

It builds the envs and a CPU copy of the agent with the build callable it is handed, allocates
``runner.async_lead_batches`` shared-memory slots shaped like its sampler's batch (after the
first one) and sends them to the main process once, then loops: pick up newer weights, sample a ``[T,B]`` batch,
wait for a free slot, copy the batch into slot ``n % L`` and report it (`HandedBatch`).
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
from rlfleet.runners.shared_params import SharedParameters
from rlfleet.utils.buffers import buffer_from_example, map_buffer, numpify_buffer

_POLL_S = 0.2  # while waiting, check this often whether to stop


class Slot(NamedTuple):
    """One shared-memory batch slot.

    Attributes:
        samples: ``[T,B]`` Samples shaped like the sampler's ``samples``.
        last: ``[B]`` AgentInputs, the inputs following the batch (`SamplerBatch.last`).
    """

    samples: Any
    last: Any


class HandedBatch(NamedTuple):
    """What the sampler process reports after copying a batch into a slot.

    Attributes:
        slot: the index of the slot holding the batch (batch n is in slot ``n % L``).
        traj_infos: statistics of the trajectories completed in the batch.
        normalizers: ``{"obs_normalizer": state or None, "reward_normalizer": state or None}``
            after the batch.
        weights_version: the `SharedParameters` version the batch was sampled with.
    """

    slot: int
    traj_infos: list[dict[str, float]]
    normalizers: dict[str, Any]
    weights_version: int


@dataclass
class SamplerStart:
    """Everything the sampler process is started with.

    Attributes:
        build: ``build(config, run_dir, env_spaces) -> experiment`` (the composition root's
            ``build_experiment``, handed in: runners never import it).
        config: the run's config as the sampler builds it (`rlfleet.runners.async_rl.sampler_config`).
        env_spaces: the envs' spaces (saves probing an env).
        n_slots: L, the shared-memory slots (``runner.async_lead_batches``).
        env_steps: env steps sampled before the first batch (schedules continue from here).
        normalizers: normaliser states to start from (`HandedBatch.normalizers`), or None.
        parent_pid: the main process; the sampler exits when it is gone.
    """

    build: Callable[..., Any]
    config: Any
    env_spaces: EnvSpaces
    n_slots: int
    env_steps: int
    normalizers: dict[str, Any] | None
    parent_pid: int


@dataclass
class SamplerChannels:
    """What the two processes share.

    Attributes:
        params: the agent model's weights, published by the main process.
        messages: sampler -> main queue: ``("ready", [Slot of shared torch tensors])`` once,
            then ``("batch", HandedBatch)`` per batch, or ``("error", traceback)``.
        free: slots the sampler may write (L permits at start; the main process releases one
            when it asks for the batch after the one it holds; the sampler acquires one before
            each copy).
        stop: set by the main process to make the sampler exit.
    """

    params: SharedParameters
    messages: Any
    free: Any
    stop: Any


def shared_tensor(array: np.ndarray) -> torch.Tensor:
    """The shared torch tensor that ``array`` views (allocated by ``buffer_from_example(...,
    share_memory=True)``), which pickles as shared memory where a numpy array is copied."""
    owner = array.base
    if not (isinstance(owner, torch.Tensor) and owner.is_shared() and tuple(owner.shape) == array.shape):
        raise ValueError("the slot is not in shared memory")
    return owner


def allocate_slots(samples: Any, last: Any, n_slots: int) -> list[Slot]:
    """``n_slots`` shared-memory slots (numpy views) for batches like ``samples [T,B]`` with
    ``last [B]`` (numpy or torch)."""
    samples_example, last_example = numpify_buffer(samples)[0, 0], numpify_buffer(last)[0]
    T, B = samples.env.reward.shape
    return [
        Slot(
            buffer_from_example(samples_example, (T, B), share_memory=True),
            buffer_from_example(last_example, (B,), share_memory=True),
        )
        for _ in range(n_slots)
    ]


def normalizer_states(sampler: Any) -> dict[str, Any]:
    """The sampler's observation and reward normaliser states (None where it has none)."""
    obs_norm, reward_norm = sampler.obs_normalizer, sampler.reward_normalizer
    return {
        "obs_normalizer": None if obs_norm is None else obs_norm.state_dict(),
        "reward_normalizer": None if reward_norm is None else reward_norm.state_dict(),
    }


def load_normalizer_states(obs_normalizer: Any, reward_normalizer: Any, states: dict[str, Any]) -> None:
    """Load `normalizer_states` into the normalisers that exist and have a saved state."""
    obs_state, reward_state = states.get("obs_normalizer"), states.get("reward_normalizer")
    if obs_normalizer is not None and obs_state is not None:
        obs_normalizer.load_state_dict(obs_state)
    if reward_normalizer is not None and reward_state is not None:
        reward_normalizer.load_state_dict(reward_state)


def _wait(semaphore: Any, start: SamplerStart, channels: SamplerChannels) -> bool:
    """Acquire ``semaphore``; False (not acquired) once asked to stop or orphaned."""
    while not semaphore.acquire(timeout=_POLL_S):
        if channels.stop.is_set() or os.getppid() != start.parent_pid:
            return False
    return True


def _serve(experiment: Any, start: SamplerStart, channels: SamplerChannels) -> None:
    sampler, agent = experiment.sampler, experiment.agent
    load_normalizer_states(sampler.obs_normalizer, sampler.reward_normalizer, start.normalizers or {})
    slots: list[Slot] | None = None
    n, env_steps, version = 0, start.env_steps, 0
    while not channels.stop.is_set() and os.getppid() == start.parent_pid:
        version = channels.params.pull(agent.model, version)
        agent.sample_mode(env_steps)
        batch = sampler.obtain_samples()
        env_steps += sampler.batch_size
        if slots is None:  # shaped after the first batch, sent once
            slots = allocate_slots(batch.samples, batch.last, start.n_slots)
            channels.messages.put(("ready", [map_buffer(shared_tensor, slot) for slot in slots]))
        if not _wait(channels.free, start, channels):
            return
        slot = slots[n % start.n_slots]
        slot.samples[:] = batch.samples
        slot.last[:] = numpify_buffer(batch.last)
        handed = HandedBatch(n % start.n_slots, batch.traj_infos, normalizer_states(sampler), version)
        channels.messages.put(("batch", handed))
        n += 1


def sampler_process(start: SamplerStart, channels: SamplerChannels) -> None:
    """Entry point of the sampler process: serve until stopped; an exception is reported
    through ``channels.messages`` (flushed before the process exits)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle (it stops us)
    experiment = None
    try:
        experiment = start.build(start.config, None, start.env_spaces)
        _serve(experiment, start, channels)
        channels.messages.cancel_join_thread()  # once stopped, unread batch reports are of no use
    except Exception:  # noqa: BLE001 - reported to the main process
        channels.messages.put(("error", traceback.format_exc()))
    finally:
        if experiment is not None:
            experiment.close()
