"""An actor worker: a sampler with its envs and a CPU copy of the agent, as a Ray actor.

The learner (`rlfleet.distributed.learner`) keeps ``runner.actor_lead_batches`` calls of
`ActorWorker.sample` queued on each worker. One call: load the newest weights if the learner
published newer ones, sample one ``[T,B]`` batch, and report the batch's trajectories and
timings to the learner. Ape-X: the worker also computes the initial priorities of the
transitions the batch completes (a prioritized replay) and sends batch and priorities straight
to its replay shard, so the batch never passes through the learner. IMPALA: the batch (with the
behaviour policy's ``dist_info``) comes with the report. A3C: the worker takes the newest weights
from the parameter server, computes A2C's loss on its batch and pushes the loss's gradient to the
server, which applies it; the report carries the loss terms.

Initial priorities (Ape-X): the worker keeps its own small n-step ring of the latest batches
(the replay component, uniform) and scores each transition whose n-step window the new batch
completes with the algorithm's error under its copy of the online and target networks
(`DQN.priorities`): row ``j`` of batch ``[t0, t0 + T)`` scores the transition at
``t0 - n + j`` (NaN before the worker's first step), which is what
`PrioritizedReplayBuffer.append` expects.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from rlfleet.distributed.inference import RemoteAgent
from rlfleet.envs.spaces import EnvSpaces
from rlfleet.samplers.sampler import SamplerBatch
from rlfleet.utils.buffers import map_buffer, numpify_buffer, torchify_buffer


class Published(NamedTuple):
    """Weights the learner published: ``version`` (its update count) and ``ref``, a list holding
    the object-store ref of `Agent.weights` (a list, so Ray hands the ref over unresolved and
    the worker fetches it only when the version is new)."""

    version: int
    ref: list


class ActorReport(NamedTuple):
    """What one `ActorWorker.sample` call returns to the learner.

    Attributes:
        actor: the worker's index.
        env_steps: env steps sampled (``T * B``).
        traj_infos: statistics of the trajectories completed in the batch.
        weights_version: the learner update count of the weights the batch was sampled with.
        sample_seconds: wall time of sampling (env steps and forward passes).
        call_seconds: wall time of the whole call.
        incarnation: the worker process's random id (a new one after a restart).
        samples: IMPALA: the ``[T,B]`` Samples (numpy); Ape-X: None (they went to the shard).
        last: IMPALA: the ``[B]`` AgentInputs following the batch; Ape-X: None.
        opt_info: A3C: the loss terms of the pushed gradient (the server's version after the
            push is ``weights_version``); otherwise None.
    """

    actor: int
    env_steps: int
    traj_infos: list[dict[str, float]]
    weights_version: int
    sample_seconds: float
    call_seconds: float
    incarnation: str
    samples: Any = None
    last: Any = None
    opt_info: dict[str, float] | None = None

    def batch(self) -> SamplerBatch | None:
        """The reported batch as the sampler would hand it to the algorithm (IMPALA), else None."""
        if self.samples is None:
            return None
        samples = map_buffer(np.array, self.samples)  # writable copies of the object store's read-only views
        return SamplerBatch(
            samples, torchify_buffer(samples), torchify_buffer(map_buffer(np.array, self.last)), self.traj_infos
        )


@dataclass
class ActorStart:
    """What an actor worker is built from.

    Attributes:
        build: ``build(config, run_dir, env_spaces) -> experiment`` (the composition root's
            ``build_experiment``, handed in).
        config: the worker's config: the run's with a minibatch runner on the CPU, no
            evaluation or logging, its own seed and a uniform ring just large enough to score
            two batches' transitions (`rlfleet.distributed.learner.actor_config`).
        env_spaces: the envs' spaces.
        index: the worker's index ``i`` (its replay source id).
        epsilons: ``[B]`` fixed epsilons of its env slots (Ape-X), or None (IMPALA).
        shard: the Ray name of its replay shard (Ape-X; looked up by name, so that a restarted
            worker rebuilds from plain arguments), or None (IMPALA: batches go to the learner).
        prioritized: whether the shard's rings are prioritized (then the worker scores).
        server: A3C: the Ray name of the parameter server the worker pulls weights from and
            pushes its gradients to; None otherwise.
        inference: central inference (IMPALA): the Ray name of the inference server that acts
            for the worker, which then builds only its sampler (``build_sampler``) and no model.
        build_sampler: with ``inference``, the composition root's ``build_sampler``.
    """

    build: Callable[..., Any]
    config: Any
    env_spaces: EnvSpaces
    index: int
    epsilons: np.ndarray | None
    shard: str | None
    prioritized: bool
    server: str | None = None
    inference: str | None = None
    build_sampler: Callable[..., Any] | None = None


class ActorWorker:
    """See the module docstring. Wrapped by ``ray.remote`` in the learner (with Ray's restarts:
    a restarted worker rebuilds itself from the same `ActorStart`, under a new incarnation)."""

    def __init__(self, start: ActorStart):
        import ray

        self.start = start
        self.shard = None if start.shard is None else ray.get_actor(start.shard)
        self.server = None if start.server is None else ray.get_actor(start.server)
        self.experiment: Any = None
        if start.inference is not None:  # SEED-style: envs here, the model on the inference server
            self.agent = RemoteAgent(ray.get_actor(start.inference), start.env_spaces)
            self.sampler = start.build_sampler(start.config, start.env_spaces, None, None)
            self.sampler.initialize(self.agent, seed=start.config.seed)
            self.algo, self.ring = None, None
        else:
            self.experiment = start.build(start.config, None, start.env_spaces)
            self.agent, self.sampler = self.experiment.agent, self.experiment.sampler
            self.algo, self.ring = self.experiment.algo, self.experiment.replay
        if start.epsilons is not None:
            self.agent.set_fixed_epsilon(torch.tensor(start.epsilons, dtype=torch.float32))
        self.incarnation = secrets.token_hex(4)
        self.version = -1
        self.env_steps = 0
        self._pending_add: Any = None

    def sample(self, published: Published | None) -> ActorReport:
        import ray

        call_start = time.perf_counter()
        if self.server is not None:  # A3C: the newest weights, straight from the server
            self.version, model = ray.get(self.server.weights.remote())
            self.agent.load_weights({"model": model})
        elif self.start.inference is None and published is not None and published.version > self.version:
            self.agent.load_weights(ray.get(published.ref[0]))
            self.version = published.version
        self.agent.sample_mode(self.env_steps)
        batch = self.sampler.obtain_samples()
        sample_seconds = time.perf_counter() - call_start
        if self.start.inference is not None:
            self.version = self.agent.version  # the server's weights at this batch's last step
        self.env_steps += self.sampler.batch_size
        report = dict(
            actor=self.start.index,
            env_steps=self.sampler.batch_size,
            traj_infos=batch.traj_infos,
            weights_version=self.version,
            sample_seconds=sample_seconds,
            incarnation=self.incarnation,
        )
        if self.server is not None:  # A3C: the gradient goes to the parameter server
            self.agent.train_mode(self.env_steps)
            loss, terms = self.algo.loss(self.env_steps, batch)
            gradient = self.algo.optimizer.flat_gradient(loss)
            self.version = ray.get(self.server.push.remote(gradient, self.version))
            opt_info = {"loss": loss.item(), **{key: value.item() for key, value in terms.items()}}
            report["weights_version"] = self.version
            return ActorReport(**report, call_seconds=time.perf_counter() - call_start, opt_info=opt_info)
        if self.shard is None:  # IMPALA: the batch goes to the learner
            last = numpify_buffer(batch.last)
            return ActorReport(
                **report, call_seconds=time.perf_counter() - call_start, samples=batch.samples, last=last
            )
        errors = self._score(batch.samples) if self.start.prioritized else None
        if self._pending_add is not None:  # one batch in flight to the shard at a time
            ray.get(self._pending_add)
        self._pending_add = self.shard.add.remote(
            self.start.index, self.incarnation, batch.samples, numpify_buffer(batch.last.observation), errors
        )
        return ActorReport(**report, call_seconds=time.perf_counter() - call_start)

    def _score(self, samples: Any) -> np.ndarray:
        """``[T,B]`` errors of the transitions at ``t0 - n + j`` (see the module docstring)."""
        ring, T = self.ring, samples.env.reward.shape[0]
        t0 = ring.t
        ring.append(samples)
        rows = np.arange(t0 - ring.n_step, t0 - ring.n_step + T)
        oldest, newest = ring.sampleable_rows()
        scored = (rows >= oldest) & (rows <= newest)
        errors = np.full((T, ring.B), np.nan)
        if scored.any():
            t = np.repeat(rows[scored] % ring.T, ring.B)
            b = np.tile(np.arange(ring.B), int(scored.sum()))
            self.agent.train_mode(self.env_steps)
            errors[scored] = self.algo.priorities(ring.samples_at(t, b)).double().numpy().reshape(-1, ring.B)
        return errors

    def model_parameters(self) -> int:
        """Parameters of every torch module this worker holds (its agent's and algorithm's)."""
        modules = [v for obj in (self, self.agent, self.algo) if obj is not None for v in vars(obj).values()]
        return sum(p.numel() for m in modules if isinstance(m, torch.nn.Module) for p in m.parameters())

    def node_id(self) -> str:
        """The Ray node this worker runs on."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def pid(self) -> int:
        import os

        return os.getpid()

    def close(self) -> None:
        if self._pending_add is not None:
            import ray

            ray.get(self._pending_add)
        if self.experiment is not None:
            self.experiment.close()
        else:
            self.sampler.close()
