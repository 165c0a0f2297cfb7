"""The asynchronous runner (``runner.kind=async``): sampling in its own process, handing
``[T,B]`` batches over through shared-memory slots, while this process optimises. Off-policy
algorithms only.

Processes and data::

    sampler process (spawned, CPU agent copy)      main process (runner.device)
    Sampler.obtain_samples() -> [T,B] batch        MinibatchRl / MinibatchRlEval loop, unchanged
    wait on free <-------------------------------- free (semaphore, L permits): one released
                                                     when the next batch is asked for
    copy the batch into slot n % L ===> L shared-memory slots ===> SamplerBatch views of slot n % L
    HandedBatch -------------------> queue ------> AsyncSampler.obtain_samples()
                                                     -> replay.append(samples), algo.optimize_agent
    pull weights before each batch <=== SharedParameters <=== published when the next batch is asked for

The runner is `MinibatchRl` / `MinibatchRlEval` with an `AsyncSampler` in place of the
`Sampler`, so logging, evaluation, checkpoints and Ctrl-C are theirs. One iteration of the loop
consumes one sampler batch: ``obtain_samples`` returns the next batch the sampler process has
handed over as an ordinary `SamplerBatch` (every field filled: ``samples`` numpy and
``torch_samples`` torch views of one slot's memory, ``last``, ``traj_infos``), and the runner
appends it to the replay and runs the algorithm's updates exactly as with a `Sampler`.
Meanwhile the sampler process keeps sampling.

Decisions:

- One batch contract, no special batch types: the replay, the algorithm and the runner see
  the same `SamplerBatch` as in the minibatch runner. This process owns the replay and all of
  its storage (sum tree included); nothing else writes into it.
- Slots: the sampler process allocates ``L = runner.async_lead_batches`` slots (each a
  ``[T,B]`` Samples buffer shaped like its sampler's ``samples`` plus a ``[B]`` AgentInputs
  buffer for ``last``, in shared memory) and sends them once as shared torch tensors. Batch n
  goes into slot ``n % L`` after the sampler acquires a permit of the ``free`` semaphore (L at
  start); this process releases one when it asks for the batch after the one it holds. So
  while this process reads batch k the sampler has at most ``k + L`` permits and can have
  written at most batches ``.. k + L - 1``, whose slot is never ``k % L``: a slot is never
  written while it is read.
- Replay ratio: held exactly, by construction. Every batch is appended and trained on as in
  the minibatch runner (same updates per batch, same ``learning_starts``), so ReplayRatio in
  progress.csv means what it means there. The sampler may run ahead by L handed batches (plus
  the one it is sampling); when this process is slower the sampler waits for a permit rather
  than let the ratio drop. The sampler never waits for weights.
- Weights: when the next batch is asked for, the model trained on the previous one is
  published into `SharedParameters` (copied from any device; under a lock, with a version
  counter); the sampler pulls the newest version before each batch if the lock is free, else
  next time. Exploration schedules follow the sampler's own env-step count.
- Devices: this process's agent lives on ``runner.device``; the sampler's copy is always on
  the CPU, so the runner works the same with or without a GPU. Slots are CPU memory; the
  algorithm moves what it samples from the replay as with a `Sampler`.
- Builders: the sampler process builds its envs and agent with the build callable handed to
  `AsyncSampler` (the composition root's ``build_experiment``; runners never import it) from
  `sampler_config` (minibatch runner, CPU, no evaluation, no logging); its replay and
  algorithm stay unused.
- Normalisers live in the sampler; their states come back with every batch, for evaluation
  here and for checkpoints.
- Errors and shutdown: an exception in the sampler process comes back with its traceback as
  `AsyncSamplerError`; a sampler that dies is reported with its exit code. `close` (also run
  by a finaliser at exit) stops the process and terminates it if it does not exit in time. The
  sampler ignores Ctrl-C and exits when the main process is gone.
- Resume: checkpoints hold the agent, the algorithm, the replay (whole with
  ``runner.save_replay``) and the normalisers; the sampler's envs restart their episodes on
  resume (new env seeds derived from the resumed step count) and its exploration RNG is not
  continued, so async runs resume from their checkpoint but do not continue exactly as an
  uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import queue
import weakref
from collections.abc import Callable
from typing import Any

from rlfleet.agents.base import Agent
from rlfleet.envs.normalize import ObservationNormalizer, RewardNormalizer
from rlfleet.envs.spaces import EnvSpaces
from rlfleet.errors import ConfigError
from rlfleet.runners.async_worker import (
    HandedBatch,
    SamplerChannels,
    SamplerStart,
    Slot,
    load_normalizer_states,
    sampler_process,
)
from rlfleet.runners.shared_params import SharedParameters
from rlfleet.samplers.sampler import SamplerBatch
from rlfleet.utils.buffers import numpify_buffer

_POLL_S = 0.5  # while waiting for the sampler, check this often that it is alive
_JOIN_S = 5.0  # on close, wait this long for the sampler to exit before terminating it


class AsyncSamplerError(RuntimeError):
    """An exception raised in (or the death of) the asynchronous sampler process."""


def sampler_config(config: Any, seed: int) -> Any:
    """The config the sampler process builds from: the run's, with a minibatch runner, a CPU
    agent, no evaluation and no console or logging."""
    runner = dataclasses.replace(config.runner, kind="minibatch", device="cpu", eval_interval_steps=0)
    logger = dataclasses.replace(config.logger, console=False, tensorboard=False, wandb=False)
    return dataclasses.replace(config, seed=seed, runner=runner, logger=logger)


def _shutdown(process: Any, channels: SamplerChannels) -> None:
    """Ask the sampler process to exit; terminate it if it does not."""
    channels.stop.set()
    if process.pid is not None:
        process.join(timeout=_JOIN_S)
        if process.is_alive():
            process.terminate()
            process.join()
    channels.messages.close()


class AsyncSampler:
    """The main process's handle on the sampler process; takes the place of `Sampler` in the
    runner. The process starts at the first `obtain_samples` (after a resume has loaded its
    state).

    Args:
        config: the run's ``ExperimentConfig`` (``runner.kind=async``).
        env_spaces: the envs' spaces.
        build: ``build(config, run_dir, env_spaces) -> experiment`` that the sampler process
            builds its components with (picklable: a module-level function).
        obs_normalizer, reward_normalizer: this process's copies (the evaluator shares the
            observation normaliser); loaded with the sampler's states after every batch.

    Attributes:
        batch_T, batch_B: the sampler's batch shape.
        lead: L, ``runner.async_lead_batches``: the shared-memory slots.
        weights_version: the weights version the latest batch was sampled with.
    """

    def __init__(
        self,
        config: Any,
        env_spaces: EnvSpaces,
        build: Callable[..., Any],
        obs_normalizer: ObservationNormalizer | None = None,
        reward_normalizer: RewardNormalizer | None = None,
    ):
        if config.runner.async_lead_batches < 1:
            raise ConfigError(f"runner.async_lead_batches must be >= 1, got {config.runner.async_lead_batches}")
        self.config = config
        self.env_spaces = env_spaces
        self.build = build
        self.batch_T, self.batch_B = config.sampler.batch_T, config.sampler.batch_B
        self.lead = config.runner.async_lead_batches
        self.obs_normalizer, self.reward_normalizer = obs_normalizer, reward_normalizer
        self.agent: Agent | None = None
        self.weights_version = 0
        self._normalizers: dict[str, Any] | None = None
        self._process: Any = None
        self._channels: SamplerChannels | None = None
        self._slots: list[SamplerBatch] = []  # one per slot: its views (traj_infos left empty)
        self._finalizer: weakref.finalize | None = None
        self._holding = False  # a batch was handed out and its permit is not released yet

    @property
    def batch_size(self) -> int:
        return self.batch_T * self.batch_B

    def initialize(self, agent: Agent, seed: int) -> None:
        """``agent``: this process's agent, whose model is published to the sampler."""
        self.agent = agent

    # ----- the sampler process -----
    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        channels = SamplerChannels(
            SharedParameters(self.agent.model, ctx), ctx.Queue(), ctx.Semaphore(self.lead), ctx.Event()
        )
        env_steps = self.agent.env_steps  # the runner put the agent in sample mode at its step count
        start = SamplerStart(
            build=self.build,
            config=sampler_config(self.config, seed=self.config.seed + env_steps),
            env_spaces=self.env_spaces,
            n_slots=self.lead,
            env_steps=env_steps,
            normalizers=self._normalizers,
            parent_pid=os.getpid(),
        )
        process = ctx.Process(target=sampler_process, args=(start, channels), name="rlfleet-async-sampler")
        self._process, self._channels = process, channels
        self._finalizer = weakref.finalize(self, _shutdown, process, channels)
        try:
            process.start()
            kind, slots = self._receive()
            if kind != "ready" or len(slots) != self.lead:
                raise AsyncSamplerError(f"the sampler process sent {kind!r} before its {self.lead} slots")
        except BaseException:
            self.close()
            raise
        self._slots = [self._views(slot) for slot in slots]

    @staticmethod
    def _views(slot: Slot) -> SamplerBatch:
        """numpy and torch views of one slot's shared memory (``slot``: its torch tensors)."""
        return SamplerBatch(
            samples=numpify_buffer(slot.samples), torch_samples=slot.samples, last=slot.last, traj_infos=[]
        )

    def _receive(self) -> tuple[str, Any]:
        """The sampler's next message; raises `AsyncSamplerError` (after closing) on its
        error or death."""
        messages, process = self._channels.messages, self._process
        while True:
            try:
                kind, payload = messages.get(timeout=_POLL_S)
            except queue.Empty:
                if process.is_alive():
                    continue
                try:  # it may have reported an error just before exiting
                    kind, payload = messages.get(timeout=_POLL_S)
                except queue.Empty:
                    self.close()
                    raise AsyncSamplerError(f"the sampler process died (exit code {process.exitcode})") from None
            if kind == "error":
                self.close()
                raise AsyncSamplerError(f"the sampler process failed:\n{payload}")
            return kind, payload

    def obtain_samples(self) -> SamplerBatch:
        """The next batch the sampler process has handed over: views of its slot (valid until
        the next call). The previous batch counts as consumed: the weights trained on it are
        published and its slot's permit is released."""
        if self._process is None:
            self._start()
        elif self._holding:
            self._channels.params.publish(self.agent.model)
            self._channels.free.release()
        self._holding = False
        handed: HandedBatch = self._receive()[1]
        self._holding = True
        self.weights_version = handed.weights_version
        self._load_normalizers(handed.normalizers)
        views = self._slots[handed.slot]
        return SamplerBatch(views.samples, views.torch_samples, views.last, handed.traj_infos)

    def _load_normalizers(self, states: dict[str, Any]) -> None:
        self._normalizers = states
        load_normalizer_states(self.obs_normalizer, self.reward_normalizer, states)

    # ----- state -----
    def state_dict(self) -> dict[str, Any]:
        """The normaliser states after the latest batch (the envs are not saved)."""
        return self._normalizers or {"obs_normalizer": None, "reward_normalizer": None}

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        """Restore the normalisers (from an async or a minibatch checkpoint); returns False:
        the sampler's envs restart their episodes."""
        self._load_normalizers({key: state.get(key) for key in ("obs_normalizer", "reward_normalizer")})
        return False

    def close(self) -> None:
        """Stop the sampler process; idempotent."""
        if self._finalizer is not None:
            self._finalizer()
