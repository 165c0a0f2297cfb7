"""The asynchronous runner (``runner.kind=async``): sampling in its own process, writing into a
shared-memory replay, while this process optimises. Off-policy algorithms only.

Processes and data::

    sampler process (spawned, CPU agent copy)      optimiser process (runner.device)
    Sampler.obtain_samples() -> [T,B] batch        MinibatchRl / MinibatchRlEval loop, unchanged
    wait for a free slot <------------------------ free (semaphore): released after each batch's updates
    replay.store(t, batch) ===> replay ring in shared memory <=== replay.sample() in the updates
    WrittenBatch ---------------> queue ---------> AsyncSampler.obtain_samples()
                                                     -> algo.optimize_agent(env_steps, StoredBatch)
    pull weights before each batch <=== SharedParameters <=== published after each batch's updates

The runner is `MinibatchRl` / `MinibatchRlEval` with an `AsyncSampler` in place of the
`Sampler`, so logging, evaluation, checkpoints and Ctrl-C are theirs. One iteration of the loop
consumes one sampler batch: ``obtain_samples`` hands over the next batch the sampler process has
stored, and ``algo.optimize_agent`` records it in the replay and runs the algorithm's
``replay_ratio * T * B / batch_size`` updates. Meanwhile the sampler process keeps sampling.

Decisions:

- Replay ratio: held exactly, by construction. The optimiser trains on every batch exactly as
  the minibatch runner does (same updates per batch, same ``learning_starts``), so it never
  gets ahead of ``replay_ratio * env_steps / batch_size`` updates and ReplayRatio in
  progress.csv means what it means there (samples trained on per env step). The sampler may
  run ahead by ``runner.async_lead_batches`` stored batches; when the optimiser is slower it
  waits for a free slot rather than let the ratio drop. The sampler never waits for weights.
- Shared-memory replay: the sampler process allocates the replay's ring (``[T_ring, B]``
  fields and the observation store, frame stacks included) in shared memory and sends it to
  the optimiser once; the optimiser's replay `attach`es it. The sampler writes the rows with
  `NStepReplayBuffer.store`; the optimiser's replay only records them (`StoredBatch`: time step
  counter, final observations of truncated episodes, and for PER the new transitions at max
  priority, the sum tree staying in the optimiser's process). Since the sampler may store up to
  ``async_lead_batches - 1`` batches beyond what the optimiser has recorded while it samples
  from the replay, the oldest ``(async_lead_batches - 1) * T`` time steps of the ring are kept
  out of sampling (`NStepReplayBuffer.reserved_rows`): nothing is read while it is written.
- Weights: after every consumed batch the optimiser publishes the model's ``state_dict`` into
  `SharedParameters` (copied from any device; under a lock, with a version counter); the
  sampler pulls the newest version before each batch if the lock is free, else next time.
  Exploration schedules follow the sampler's own env-step count.
- Devices: the optimiser's agent lives on ``runner.device``; the sampler's copy is always on
  the CPU, so the runner works the same with or without a GPU.
- Builders: the sampler process builds its envs, agent and replay writer with
  `rlfleet.experiment.build_experiment` from the run's config (minibatch runner, CPU, no
  evaluation), so the async path constructs nothing by hand; the algorithm built there is
  only used for its replay (the writer), its optimiser state stays idle.
- Normalisers live in the sampler; their states come back with every batch, for evaluation
  here and for checkpoints.
- Errors and shutdown: an exception in the sampler process comes back with its traceback as
  `AsyncSamplerError`; a sampler that dies is reported with its exit code. `close` (also run
  by a finaliser at exit) stops the process and terminates it if it does not exit in time. The
  sampler ignores Ctrl-C and exits when the optimiser process is gone.
- Resume: checkpoints hold the agent, the algorithm (the replay with ``runner.save_replay``)
  and the normalisers; the sampler's envs restart their episodes on resume (new env seeds
  derived from the resumed step count) and its exploration RNG is not continued, so async runs
  resume from their checkpoint but do not continue exactly as an uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import queue
import weakref
from typing import Any

from rlfleet.agents.base import Agent
from rlfleet.algos.base import Algorithm
from rlfleet.algos.off_policy import OffPolicyAlgorithm
from rlfleet.envs.normalize import ObservationNormalizer, RewardNormalizer
from rlfleet.envs.spaces import EnvSpaces
from rlfleet.errors import ConfigError
from rlfleet.replays.n_step import NStepReplayBuffer, StoredBatch
from rlfleet.runners.async_worker import SamplerChannels, SamplerStart, WrittenBatch, map_storage, sampler_process
from rlfleet.runners.shared_params import SharedParameters
from rlfleet.samplers.sampler import SamplerBatch

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
    """The optimiser's handle on the sampler process; takes the place of `Sampler` in the
    runner. The process starts at the first `obtain_samples` (after a resume has loaded its
    state).

    Args:
        config: the run's ``ExperimentConfig`` (``runner.kind=async``).
        env_spaces: the envs' spaces.
        obs_normalizer, reward_normalizer: this process's copies (the evaluator shares the
            observation normaliser); loaded with the sampler's states after every batch.

    Attributes:
        batch_T, batch_B: the sampler's batch shape.
        lead: ``runner.async_lead_batches``.
        weights_version: the weights version the latest batch was sampled with.
    """

    def __init__(
        self,
        config: Any,
        env_spaces: EnvSpaces,
        obs_normalizer: ObservationNormalizer | None = None,
        reward_normalizer: RewardNormalizer | None = None,
    ):
        if config.runner.async_lead_batches < 1:
            raise ConfigError(f"runner.async_lead_batches must be >= 1, got {config.runner.async_lead_batches}")
        self.config = config
        self.env_spaces = env_spaces
        self.batch_T, self.batch_B = config.sampler.batch_T, config.sampler.batch_B
        self.lead = config.runner.async_lead_batches
        self.obs_normalizer, self.reward_normalizer = obs_normalizer, reward_normalizer
        self.agent: Agent | None = None
        self.replay: NStepReplayBuffer | None = None
        self.weights_version = 0
        self._normalizers: dict[str, Any] | None = None
        self._process: Any = None
        self._channels: SamplerChannels | None = None
        self._finalizer: weakref.finalize | None = None
        self._consuming = False  # a batch was handed out and its slot is not released yet

    @property
    def batch_size(self) -> int:
        return self.batch_T * self.batch_B

    def initialize(self, agent: Agent, seed: int) -> None:
        """``agent``: the optimiser's agent, whose model is published to the sampler."""
        self.agent = agent

    def connect(self, algo: Algorithm) -> None:
        """The algorithm whose replay the sampler process writes into."""
        if not isinstance(algo, OffPolicyAlgorithm):
            raise ConfigError(
                f"runner.kind=async needs an off-policy algorithm (a replay to write into); "
                f"{self.config.algorithm} is on-policy: use runner.kind=minibatch"
            )
        self.replay = algo.replay

    # ----- the sampler process -----
    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        channels = SamplerChannels(SharedParameters(self.agent.model, ctx), ctx.Queue(), ctx.Semaphore(0), ctx.Event())
        env_steps = self.agent.env_steps  # the runner put the agent in sample mode at its step count
        start = SamplerStart(
            config=sampler_config(self.config, seed=self.config.seed + env_steps),
            env_spaces=self.env_spaces,
            t=self.replay.t,
            env_steps=env_steps,
            normalizers=self._normalizers,
            parent_pid=os.getpid(),
        )
        process = ctx.Process(target=sampler_process, args=(start, channels), name="rlfleet-async-sampler")
        self._process, self._channels = process, channels
        self._finalizer = weakref.finalize(self, _shutdown, process, channels)
        try:
            process.start()
            _, storage = self._receive()
            self.replay.attach(map_storage(lambda tensor: tensor.numpy(), storage), (self.lead - 1) * self.batch_T)
        except BaseException:
            self.close()
            raise
        for _ in range(self.lead):
            channels.free.release()

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
        """The next batch the sampler process has stored, as a `StoredBatch` for
        ``algo.optimize_agent``. The previous batch counts as consumed: the weights trained on
        it are published and its slot is freed."""
        if self._process is None:
            self._start()
        elif self._consuming:
            self._channels.params.publish(self.agent.model)
            self._channels.free.release()
        self._consuming = False
        written: WrittenBatch = self._receive()[1]
        if written.t != self.replay.t:
            self.close()
            raise AsyncSamplerError(f"the sampler stored time step {written.t}, the replay expected {self.replay.t}")
        self._consuming = True
        self.weights_version = written.weights_version
        self._load_normalizers(written.normalizers)
        samples = StoredBatch(self.batch_T, written.final_observations)
        return SamplerBatch(samples=samples, torch_samples=None, last=None, traj_infos=written.traj_infos)

    def _load_normalizers(self, states: dict[str, Any]) -> None:
        self._normalizers = states
        for name in ("obs_normalizer", "reward_normalizer"):
            normalizer, state = getattr(self, name), states[name]
            if normalizer is not None and state is not None:
                normalizer.load_state_dict(state)

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
