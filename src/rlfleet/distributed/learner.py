"""Training on Ray (``runner.kind=ray``): actor workers, replay shards, and this process as the
learner. Two ways, chosen by the algorithm's declared policy:

- off-policy (value-based): Ape-X (Horgan et al. 2018). Workers explore with fixed epsilons,
  score the transitions they complete and send them to replay shards; the learner samples the
  shards and sends priorities back.
- on-policy (``impala``): IMPALA (Espeholt et al. 2018). Workers send their ``[T,B]`` batches,
  sampled with weights that may lag the learner's, to the learner, which trains on each as it
  arrives; V-trace corrects for the lag (the behaviour policy's ``dist_info`` travels with the
  batch).

Roles and data (Ape-X; IMPALA has no shards, its batches come with the reports)::

    actor workers (Ray actors, CPU agent copies)   replay shards (Ray actors)      learner (this process)
    sample [T,B] with fixed epsilons eps_i         MultiSourceReplay: a ring       RayLearner: MinibatchRlEval's
    score the transitions they complete -------->  per actor, prioritized   <----> loop, logging, evaluation,
    (initial priorities)                           by the learner's errors         checkpoints, Ctrl-C
    report trajectories, timings ------------------------------------------------> cum_steps, ReturnAverage
    load weights when newer  <=== object-store ref (Agent.weights) <=============== every weight_sync_interval updates

- One iteration of the learner: wait for at least one actor report (then take every finished
  one), queue the next call on each of those workers, and run the algorithm's
  ``optimize_agent`` once per reported batch (Ape-X: ``updates_per_batch`` updates, drawn from
  the shards through `RemoteReplay`, one sample request in flight per shard; IMPALA: one update
  on the batch). Each worker has at most ``runner.actor_lead_batches`` calls queued, so the
  replay ratio is held (as in the async runner), a behaviour policy lags the learner by at most
  that many batches plus ``weight_sync_interval`` updates, and workers never wait for weights.
- Exploration (Ape-X): the ``N = n_actors * batch_B`` env slots explore with Ape-X's fixed
  epsilons (`apex_epsilons`); evaluation is the learner's, greedy (``agent.eps_eval``).
- Faults: Ray restarts a dead worker up to ``runner.actor_max_restarts`` times; its queued calls
  fail, the learner counts the death (``ActorRestarts``) and queues new calls; a restarted Ape-X
  worker continues its ring in the shard after a cut (`MultiSourceReplay`).
- Checkpoints: the learner (agent, optimizer, counters), and the shards' rings with
  ``runner.save_replay``; a resumed run starts new workers (its envs restart their episodes).
- Placement: workers and shards are Ray actors with ``runner.actor_cpus`` and
  ``runner.replay_shard_cpus``, placed by Ray over the cluster's nodes; the learner is the
  process ``rlfleet train`` runs in, on ``runner.device``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import secrets
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlfleet.algos.registry import get_algorithm
from rlfleet.distributed.actor_worker import ActorReport, ActorStart, ActorWorker, Published
from rlfleet.distributed.cluster import RayConnection, connect
from rlfleet.distributed.exploration import apex_epsilons
from rlfleet.distributed.inference import InferenceServer
from rlfleet.distributed.parameter_server import ParameterServer
from rlfleet.envs.spaces import EnvSpaces
from rlfleet.errors import RunFailure
from rlfleet.replays.multi_source import MultiSourceReplay
from rlfleet.replays.n_step import ReplayBatch
from rlfleet.runners.minibatch_rl import MinibatchRlEval

_SHARD_STRIDE = 1 << 40  # learner-side index = shard * stride + the shard's own index


def _mean_of(infos: list[dict[str, float]]) -> dict[str, float]:
    """Key-wise means of diagnostics dicts."""
    merged: dict[str, list[float]] = defaultdict(list)
    for info in infos:
        for key, value in info.items():
            merged[key].append(value)
    return {key: float(np.mean(values)) for key, values in merged.items()}


def _copy_of(module: Any) -> Any:
    return copy.deepcopy(module)


def start_parameter_server(name: str, agent: Any, algo: Any, num_cpus: float) -> Any:
    """A3C's `ParameterServer` as a named Ray actor holding a copy of the learner's model and
    its optimizer (the algorithm's options and state) at the learner's update count."""
    import ray

    c = algo.config
    server = (
        ray.remote(ParameterServer)
        .options(num_cpus=num_cpus, name=name)
        .remote(
            functools.partial(_copy_of, copy.deepcopy(agent.model).cpu()),
            kind=c.optimizer,
            lr=c.lr,
            eps=c.optimizer_eps,
            max_grad_norm=c.max_grad_norm,
            rmsprop_alpha=c.rmsprop_alpha,
        )
    )
    state = {"model": agent.model.state_dict(), "optimizer": algo.optimizer.state_dict(), "version": algo.updates}
    ray.get(server.load_state_dict.remote(state))
    return server


class ActorsLost(RunFailure):
    """Every actor worker is gone (Ray's restarts exhausted)."""


def actor_config(config: Any, index: int) -> Any:
    """Actor worker ``index``'s config: the run's on a minibatch runner on the CPU, no
    evaluation, logging or checkpoints, its own seed, and (Ape-X) a uniform ring of two
    batches plus the n-step horizon and frame history (enough to score each batch's transitions);
    R2D2's workers score nothing (the shard gives new sequences the largest priority), their
    algorithm only needs a sequence ring of one window."""
    s, replay = config.sampler, config.replay
    runner = dataclasses.replace(
        config.runner, kind="minibatch", device="cpu", eval_interval_steps=0, checkpoint_interval_steps=0
    )
    logger = dataclasses.replace(config.logger, console=False, tensorboard=False, wandb=False)
    if replay is not None and replay.kind == "sequence":  # R2D2: the shard prioritises, no scoring
        window = replay.burn_in + replay.sequence_length + config.algo.n_step
        replay = dataclasses.replace(replay, size=(window + replay.frame_stack + 1) * s.batch_B)
    elif replay is not None:  # Ape-X: the ring that scores each batch's transitions
        ring_steps = 2 * s.batch_T + config.algo.n_step + replay.frame_stack + 2
        replay = dataclasses.replace(replay, kind="uniform", size=ring_steps * s.batch_B)
    seed = config.seed + 1000 * (index + 1)
    return dataclasses.replace(config, seed=seed, runner=runner, logger=logger, replay=replay)


def shard_replay(make_ring: Callable[[int], Any], seed: int) -> MultiSourceReplay:
    """A replay shard's contents (built inside the shard's Ray actor)."""
    return MultiSourceReplay(make_ring, seed=seed)


class ReplayShard:
    """A replay shard as a Ray actor: a `MultiSourceReplay` whose calls arrive through Ray."""

    def __init__(self, make_ring: Callable[[int], Any], seed: int):
        self.replay = shard_replay(make_ring, seed)

    def add(self, source: int, incarnation: str, samples: Any, next_observation: Any, errors: Any) -> int:
        return self.replay.add(source, incarnation, samples, next_observation, errors)

    def sample(self, batch_size: int, env_steps: int) -> ReplayBatch | None:
        """A batch, or None while the shard holds nothing sampleable."""
        return self.replay.sample_batch(batch_size, env_steps) if self.replay.can_sample() else None

    def update_priorities(self, indices: np.ndarray, errors: np.ndarray) -> None:
        self.replay.update_priorities(indices, errors)

    def size(self) -> int:
        return len(self.replay)

    def diagnostics(self, env_steps: int) -> dict[str, float]:
        return self.replay.diagnostics(env_steps)

    def state_dict(self) -> dict[str, Any]:
        return self.replay.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.replay.load_state_dict(state)

    def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()


class RemoteReplay:
    """The algorithm's replay in the learner: the shards behind the replay interface
    (``sample_batch``, ``update_priorities``, ``can_sample``, ``diagnostics``).

    Shards are sampled in turn, one request in flight per shard (the next batch is on its way
    while the learner trains on this one). Indices carry their shard (`_SHARD_STRIDE`).

    Args:
        seed: seeds ``rng``.
        sequence_length: the shards' sequence length ``L`` (R2D2's sequence rings), or None
            (transition rings); declared as every replay declares it.

    Attributes:
        rng: seeds the shards (checkpointed like a local replay's sampling RNG).
        shards: the shards' Ray handles (set by `ActorPool.start`).
    """

    def __init__(self, seed: int, sequence_length: int | None = None):
        self.rng = np.random.default_rng(seed)
        self.sequence_length = sequence_length
        self.shards: list[Any] = []
        self._pending: dict[int, Any] = {}
        self._turn = 0
        self._ready = False
        self._diagnostics: dict[str, float] = {}
        self.pending_state: dict[str, Any] | None = None  # shard states to load once they exist

    def attach(self, shards: list[Any]) -> None:
        import ray

        self.shards = shards
        if self.pending_state is not None:
            ray.get([s.load_state_dict.remote(st) for s, st in zip(shards, self.pending_state["shards"])])
            self.pending_state = None

    def can_sample(self) -> bool:
        import ray

        if not self._ready and self.shards:
            self._ready = all(n > 0 for n in ray.get([s.size.remote() for s in self.shards]))
        return self._ready

    def sample_batch(self, batch_size: int, env_steps: int) -> ReplayBatch:
        import ray

        for _ in range(len(self.shards)):
            k = self._turn
            self._turn = (self._turn + 1) % len(self.shards)
            ref = self._pending.pop(k, None) or self.shards[k].sample.remote(batch_size, env_steps)
            self._pending[k] = self.shards[k].sample.remote(batch_size, env_steps)
            batch = ray.get(ref)
            if batch is not None:
                indices = None if batch.indices is None else batch.indices + k * _SHARD_STRIDE
                return ReplayBatch(batch.samples, batch.weights, indices)
        raise ValueError("no replay shard holds sampleable transitions yet")

    def update_priorities(self, indices: np.ndarray | None, errors: Any) -> None:
        """Send the errors of ``indices [N]`` to their shards: ``[N]`` (transitions) or the
        per-step ``[L, N]`` (sequences)."""
        if indices is None:
            return
        errors = errors.detach().double().cpu().numpy() if isinstance(errors, torch.Tensor) else np.asarray(errors)
        shard_of = indices // _SHARD_STRIDE
        for k in np.unique(shard_of):
            mine = shard_of == k
            self.shards[int(k)].update_priorities.remote(indices[mine] % _SHARD_STRIDE, errors[..., mine])

    def diagnostics(self, env_steps: int) -> dict[str, float]:
        return self._diagnostics

    def refresh(self, env_steps: int) -> dict[str, float]:
        """Shard sizes and the first shard's diagnostics (one round trip; at log rows)."""
        import ray

        sizes = ray.get([s.size.remote() for s in self.shards])
        self._diagnostics = ray.get(self.shards[0].diagnostics.remote(env_steps)) if self.shards else {}
        return {"ReplaySize": float(sum(sizes))}

    def state_dict(self) -> dict[str, Any]:
        import ray

        return {"shards": ray.get([s.state_dict.remote() for s in self.shards])}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pending_state = state


class ActorPool:
    """The learner's handle on its actor workers and replay shards; it takes the sampler's
    place in the runner (``batch_size``, ``initialize``, ``state_dict``, ``close``). Ray and the
    actors start at the runner's first iteration (`start`), after a resume has loaded state.

    Args:
        config: the run's config (``runner.kind=ray``).
        env_spaces: the envs' spaces.
        build: the composition root's ``build_experiment`` (workers build themselves with it).
        replay: the algorithm's `RemoteReplay` (Ape-X), or None (IMPALA: no shards).
        make_ring: ``make_ring(source) -> replay``: one actor's ring in a shard (the run's
            ``replay:`` section, sized ``replay.size / n_actors``), or None.
        make_agent, make_sampler: the composition root's ``build_agent(config, env_spaces)`` and
            ``build_sampler(config, env_spaces, obs_norm, reward_norm)``, for central inference:
            the server builds its agent and each worker only its sampler.
    """

    def __init__(
        self,
        config: Any,
        env_spaces: EnvSpaces,
        build: Callable[..., Any],
        replay: RemoteReplay | None,
        make_ring: Callable[[int], Any] | None,
        make_agent: Callable[..., Any] | None = None,
        make_sampler: Callable[..., Any] | None = None,
    ):
        r, s = config.runner, config.sampler
        self.config, self.env_spaces, self.build = config, env_spaces, build
        self.replay, self.make_ring = replay, make_ring
        self.n_actors, self.n_shards, self.lead = r.n_actors, r.n_replay_shards, r.actor_lead_batches
        self.actor_batch = s.batch_T * s.batch_B
        self.last_steps = self.actor_batch * self.n_actors
        self.mode = get_algorithm(config.algorithm).distributed_mode
        self.make_agent, self.make_sampler = make_agent, make_sampler
        self.inference: Any = None  # the central inference server (a Ray actor)
        self.workers: list[Any] = []
        self.shards: list[Any] = []
        self.server: Any = None  # A3C's parameter server (a Ray actor)
        self._calls: dict[Any, int] = {}  # pending call ref -> actor index
        self._published: Published | None = None
        self._ray: RayConnection | None = None
        self.restarts = 0  # actor deaths seen (Ray restarts the worker)
        self._down: set[int] = set()  # actors whose calls failed and that have not reported since
        self.incarnations: dict[int, str] = {}  # actor -> the incarnation of its latest report
        self._since_log: dict[str, Any] = self._fresh_counters()

    @staticmethod
    def _fresh_counters() -> dict[str, Any]:
        return {"steps": defaultdict(int), "sample_s": defaultdict(float), "lag": [], "start": time.perf_counter()}

    # ----- the sampler's place in the runner -----
    @property
    def batch_size(self) -> int:
        """Env steps of the latest iteration's reports (all actors' batches at first)."""
        return self.last_steps

    def initialize(self, agent: Any, seed: int) -> None:
        self.seed = seed

    @property
    def started(self) -> bool:
        return bool(self.workers)

    def start(self, run_root: Path | None, agent: Any, algo: Any) -> None:
        """Connect to Ray, start the shards (Ape-X) or the parameter server (A3C, from the
        learner's model, optimizer state and update count) and the workers, publish the
        learner's weights and queue ``actor_lead_batches`` calls on every worker."""
        import ray

        r = self.config.runner
        cpus = self.n_actors * r.actor_cpus + self.n_shards * r.replay_shard_cpus
        self._ray = connect(r.ray_address, run_root, cpus)
        B, apex = self.config.sampler.batch_B, self.replay is not None
        names: list[str | None] = [None] * self.n_shards
        if apex:
            run_token = secrets.token_hex(4)
            names = [f"rlfleet-replay-shard-{run_token}-{k}" for k in range(self.n_shards)]
            shard_class = ray.remote(ReplayShard)
            self.shards = [
                shard_class.options(num_cpus=r.replay_shard_cpus, name=name).remote(self.make_ring, self.seed + 7 * k)
                for k, name in enumerate(names)
            ]
            self.replay.attach(self.shards)
        server = None
        if self.mode == "a3c":
            server = f"rlfleet-parameter-server-{secrets.token_hex(4)}"
            self.server = start_parameter_server(server, agent, algo, r.replay_shard_cpus)
        inference = None
        if r.inference == "central":
            inference = f"rlfleet-inference-{secrets.token_hex(4)}"
            make_agent = functools.partial(self.make_agent, self.config, self.env_spaces)
            self.inference = (
                ray.remote(InferenceServer)
                .options(name=inference, num_cpus=r.replay_shard_cpus)
                .remote(make_agent, self.n_actors, r.inference_wait_ms / 1000)
            )
        epsilons = apex_epsilons(self.n_actors * B, r.actor_epsilon, r.actor_epsilon_alpha) if apex else None
        worker_class = ray.remote(ActorWorker).options(
            num_cpus=r.actor_cpus, max_restarts=r.actor_max_restarts, max_task_retries=0
        )
        prioritized = apex and self.config.replay.kind == "prioritized"  # (R2D2's shards prioritise)
        self.workers = [
            worker_class.remote(
                ActorStart(
                    self.build,
                    actor_config(self.config, i),
                    self.env_spaces,
                    i,
                    None if epsilons is None else epsilons[i * B : (i + 1) * B],
                    names[i % self.n_shards],
                    prioritized,
                    server,
                    inference,
                    self.make_sampler if inference is not None else None,
                )
            )
            for i in range(self.n_actors)
        ]
        self.publish(agent.weights(), algo.updates)
        for i in range(self.n_actors):
            for _ in range(self.lead):
                self._queue(i)

    def _queue(self, actor: int) -> None:
        self._calls[self.workers[actor].sample.remote(self._published)] = actor

    def publish(self, weights: dict[str, Any], version: int) -> None:
        """Put the learner's weights in the object store; workers load them at their next call."""
        import ray

        self._published = Published(version, [ray.put(weights)])
        if self.inference is not None:  # the server acts for the workers: it takes the weights
            self.inference.load_weights.remote(version, self._published.ref[0])

    def collect(self, learner_version: int) -> list[ActorReport]:
        """Wait for one finished call, take every other finished one, and queue a new call on
        each of their workers. A failed call (its worker died) is counted and replaced; when no
        worker can be reached any more, `ActorsLost`."""
        import ray
        from ray.exceptions import RayActorError

        reports: list[ActorReport] = []
        failures = 0
        while not reports:
            ray.wait(list(self._calls), num_returns=1)
            ready, _ = ray.wait(list(self._calls), num_returns=len(self._calls), timeout=0)
            for ref in ready:
                actor = self._calls.pop(ref)
                try:
                    report = ray.get(ref)
                except RayActorError:
                    failures += 1
                    if failures > self.n_actors * self.lead * (self.config.runner.actor_max_restarts + 1):
                        raise ActorsLost("every actor worker died and Ray could not restart them") from None
                    if actor not in self._down:  # its other queued calls fail with it
                        self._down.add(actor)
                        self.restarts += 1
                    self._queue(actor)
                    continue
                self._down.discard(actor)
                self.incarnations[actor] = report.incarnation
                reports.append(report)
                self._queue(actor)
        counters = self._since_log
        for report in reports:
            counters["steps"][report.actor] += report.env_steps
            counters["sample_s"][report.actor] += report.sample_seconds
            if self.mode != "a3c":  # an A3C worker's version is the server's after its own push
                counters["lag"].append(learner_version - report.weights_version)
        self.last_steps = sum(r.env_steps for r in reports)
        return reports

    def stats(self) -> dict[str, float]:
        """Per-role throughput since the previous call (progress.csv columns)."""
        counters, self._since_log = self._since_log, self._fresh_counters()
        wall = max(time.perf_counter() - counters["start"], 1e-9)
        out: dict[str, float] = {"ActorRestarts": float(self.restarts)}
        for actor in range(self.n_actors):
            out[f"Actor{actor}StepsPerSecond"] = counters["steps"][actor] / wall
        if counters["lag"]:
            out["WeightLag"] = float(np.mean(counters["lag"]))
        if self.inference is not None:
            import ray

            out.update(ray.get(self.inference.stats.remote()))
        if self.server is not None:
            import ray

            out["GradientStaleness"] = float(ray.get(self.server.stats.remote())["mean_staleness"])
        return out

    def pull_server_state(self, agent: Any, algo: Any) -> None:
        """A3C: copy the parameter server's model, optimizer state and update count into the
        learner's agent and algorithm (before an evaluation or a checkpoint)."""
        import ray

        state = ray.get(self.server.state_dict.remote())
        agent.model.load_state_dict(state["model"])
        algo.optimizer.load_state_dict(state["optimizer"])
        algo.updates = state["version"]

    # ----- state -----
    def state_dict(self) -> dict[str, Any]:
        """Nothing of the workers is saved: a resumed run starts new ones (new episodes)."""
        return {"obs_normalizer": None, "reward_normalizer": None}

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        return False

    def actor_parameters(self) -> list[int]:
        """Model parameters each actor worker holds (0 for every worker under central inference)."""
        import ray

        return ray.get([w.model_parameters.remote() for w in self.workers])

    def node_ids(self) -> dict[str, list[str]]:
        """The Ray nodes the workers and shards run on (for tests and the console)."""
        import ray

        return {
            "actors": ray.get([w.node_id.remote() for w in self.workers]),
            "shards": ray.get([s.node_id.remote() for s in self.shards]),
        }

    def close(self) -> None:
        """Stop the workers and shards (and Ray, when this pool started it); idempotent."""
        if self._ray is None:
            return
        import ray

        servers = [actor for actor in (self.server, self.inference) if actor is not None]
        for actor in [*self.workers, *self.shards, *servers]:
            ray.kill(actor)
        self.workers, self.shards, self.server, self.inference, self._calls = [], [], None, None, {}
        self._ray.close()
        self._ray = None


class RayLearner(MinibatchRlEval):
    """`MinibatchRlEval` whose iterations gather the actor workers' batches (see the module
    docstring); logging, evaluation, checkpoints and Ctrl-C are the base class's. Each progress
    row adds per-role throughput: ``Actor<i>StepsPerSecond``, ``WeightLag`` (learner updates
    between the weights a batch was sampled with and the learner's at its arrival),
    ``ReplaySize`` (all shards), ``ActorRestarts``; ``UpdatesPerSecond`` is the learner's.

    Args:
        pool: the `ActorPool` (also passed as the runner's sampler).
        weight_sync_interval: learner updates between weight publications.
        evaluator: as for `MinibatchRlEval`; None: no evaluation.
    """

    def __init__(self, *args: Any, pool: ActorPool, weight_sync_interval: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.pool = pool
        self.weight_sync_interval = weight_sync_interval
        self._published_at = 0

    def evaluation_due(self) -> bool:
        return self.evaluator is not None and self.eval_interval_steps > 0 and super().evaluation_due()

    def sample_and_optimize(self) -> tuple[list[dict[str, float]], dict[str, float]]:
        if not self.pool.started:
            root = self.run_dir.parent if self.run_dir is not None else None
            self.pool.start(root, self.agent, self.algo)
            self._published_at = self.algo.updates
        reports = self.pool.collect(self.algo.updates)
        self.cum_steps += self.pool.batch_size
        self.agent.train_mode(self.cum_steps)
        if self.pool.mode == "a3c":  # the workers' gradients were applied by the parameter server
            infos = [report.opt_info for report in reports]
            self.algo.updates = max(self.algo.updates, *(report.weights_version for report in reports))
            self.algo.samples_trained += self.pool.batch_size
            return [t for report in reports for t in report.traj_infos], _mean_of(infos)
        infos = [self.algo.optimize_agent(self.cum_steps, report.batch()) for report in reports]
        if self.algo.updates - self._published_at >= self.weight_sync_interval:
            self.pool.publish(self.agent.weights(), self.algo.updates)
            self._published_at = self.algo.updates
        return [t for report in reports for t in report.traj_infos], _mean_of(infos)

    def evaluate(self) -> dict[str, float]:
        if self.pool.mode == "a3c" and self.pool.started:
            self.pool.pull_server_state(self.agent, self.algo)
        return super().evaluate()

    def state_dict(self) -> dict[str, Any]:
        if self.pool.mode == "a3c" and self.pool.started:
            self.pool.pull_server_state(self.agent, self.algo)
        return super().state_dict()

    def log_row(self) -> dict[str, float]:
        if self.pool.started:
            shards = self.replay.refresh(self.cum_steps) if self.replay is not None else {}
            for key, value in {**self.pool.stats(), **shards}.items():
                self.opt_infos[key] = [value]
        return super().log_row()
