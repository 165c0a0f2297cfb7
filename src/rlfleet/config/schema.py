"""The experiment config: one typed dataclass per component."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args

from rlfleet.config.rules import Check, Count, Device, NonNegative, NonNegInt, Positive, Probability


@dataclass
class AtariOptions:
    """Standard Atari preprocessing (Machado et al. 2018 / SB3's AtariWrapper).

    Attributes:
        frame_skip: frames per agent step (max-pooled over the last two).
        screen_size: square output size of the grayscale frame.
        frame_stack: frames stacked on the channel axis; observations are ``[C,H,W]`` uint8.
        noop_max: up to this many no-op actions after reset.
        terminal_on_life_loss: end training episodes on life loss (evaluation never does).
        clip_reward: clip training rewards to their sign (evaluation reports raw rewards).
        repeat_action_probability: sticky actions (v5 default 0.25).
    """

    frame_skip: Count = 4
    screen_size: Count = 84
    frame_stack: Count = 4
    noop_max: NonNegInt = 30
    terminal_on_life_loss: bool = False
    clip_reward: bool = True
    repeat_action_probability: Probability = 0.25


@dataclass
class EnvConfig:
    """Which env to build and how.

    Attributes:
        id: a Gymnasium id (``CartPole-v1``, ``HalfCheetah-v5``, ``ALE/Pong-v5``,
            ``MinAtar/Breakout-v1``), a DeepMind Control id ``dmc:<domain>-<task>``
            (``dmc:cheetah-run``), a Procgen id ``procgen:<game>`` (``procgen:coinrun``) or an
            import path ``pkg.module:EnvClass`` of a ``gym.Env`` class or factory.
        kwargs: keyword arguments passed to ``gym.make``, to ``dm_control.suite.load``, to
            Procgen (``distribution_mode``, ``num_levels``, ``start_level``, ...; see
            `rlfleet.envs.procgen`) or to the imported class.
        test_kwargs: held-out evaluation: when non-empty, each evaluation also runs
            ``runner.eval_episodes`` episodes (from the same seeds) in envs built with ``kwargs``
            updated by these, logged beside the ``Eval*`` columns as ``EvalTest*``
            (``EvalTestReturnAverage``, ``EvalTestReturnStd``, ...) and ``GeneralizationGap``
            (``EvalReturnAverage - EvalTestReturnAverage``). None (the default): for ``procgen:``
            ids trained on ``num_levels > 0`` levels, Procgen's test split ``{num_levels: 0}``
            (the full level distribution, the same distribution mode; Cobbe et al. 2020); no
            held-out evaluation otherwise. ``{}``: none.
        max_episode_steps: time limit override (``None`` keeps the registered one; an env given
            by import path with no time limit of its own, no ``TimeLimit`` wrapper nor
            ``spec.max_episode_steps``, is truncated at 1000 steps, with a note when the run
            starts).
        normalize_obs: running mean/std observation normalisation (statistics checkpointed).
        normalize_reward: scale rewards by the running std of the discounted return.
        clip_obs: clip normalised observations to ``[-clip_obs, clip_obs]``.
        clip_reward: clip normalised rewards to ``[-clip_reward, clip_reward]``.
        atari: preprocessing for ``ALE/...`` ids.
    """

    id: str = "CartPole-v1"
    kwargs: dict[str, Any] = field(default_factory=dict)
    test_kwargs: dict[str, Any] | None = None
    max_episode_steps: Count | None = None
    normalize_obs: bool = False
    normalize_reward: bool = False
    clip_obs: Positive = 10.0
    clip_reward: Positive = 10.0
    atari: AtariOptions = field(default_factory=AtariOptions)


SamplerKind = Literal["serial", "parallel", "alternating", "envpool"]
RunnerKind = Literal["minibatch", "data_parallel", "async", "ray"]
SAMPLER_KINDS: tuple[str, ...] = get_args(SamplerKind)
RUNNER_KINDS: tuple[str, ...] = get_args(RunnerKind)


@dataclass
class SamplerConfig:
    """How samples are collected.

    Attributes:
        kind: one of `SAMPLER_KINDS`: ``serial`` (envs in this process); ``parallel`` (worker
            processes stepping into shared memory; one batched forward pass in this process);
            ``alternating`` (two env groups of B/2 in worker processes: the forward pass of
            one group runs while the other steps; B even; not with ``agent.exploration_noise=ou``);
            ``envpool`` (envpool's C++ envs for the ids it supports: classic control, Box2D,
            MuJoCo v5, ``ALE/<Game>-v5``; resumed runs restart their episodes).
        batch_T: time steps per batch.
        batch_B: envs (the batch width B).
        n_workers: ``parallel``: env slices stepped at once, this process's own slice included
            (default: one per core, at most B); ``alternating``: worker processes per group
            (default: half the cores, at least 1, at most B/2); ``envpool``: its C++ threads
            (default: envpool's).
    """

    kind: SamplerKind = "serial"
    batch_T: Count = 128
    batch_B: Count = 8
    n_workers: Count | None = None


@dataclass
class RunnerConfig:
    """The training loop.

    Attributes:
        kind: one of `RUNNER_KINDS`: ``minibatch`` (sample, then optimise, in this process);
            ``data_parallel`` (``n_replicas`` processes, each sampling its own envs, gradients
            averaged over them at every step; on-policy algorithms; see
            ``runners/data_parallel.py``); ``async`` (sampling in its own process, handing
            batches over through shared-memory slots while this process optimises; off-policy
            algorithms; see ``runners/async_rl.py``); ``ray`` (actor workers, replay shards and
            this process as the learner, on Ray: one machine or a cluster; see
            ``rlfleet/distributed``).
        n_steps: env-step budget.
        log_interval_steps: env steps between progress rows.
        eval_interval_steps: env steps between deterministic evaluations (0: none).
        eval_episodes: episodes per evaluation.
        eval_envs: envs stepped together during evaluation.
        eval_max_steps: steps after which an evaluation episode is cut (counted as truncated,
            ``EvalCapped`` in its progress row, a console note); None: the env's own time limit
            when it has one, else 10_000. A given number applies besides the env's limit.
        checkpoint_interval_steps: env steps between checkpoints (0: at the end only).
        keep_checkpoints: checkpoints kept on disk.
        save_replay: include the replay buffer in checkpoints (exact off-policy resume).
        torch_threads: torch intra-op threads (1 is fastest for small MLPs).
        device: torch device of the agent and the update (``data_parallel`` on CUDA: replica
            r uses ``cuda:<index + r>``).
        n_replicas: ``data_parallel``: replicas (processes). ``sampler.*`` and
            ``algo.minibatch_size`` are per replica: an iteration takes
            ``n_replicas * batch_T * batch_B`` env steps, each gradient averages ``n_replicas``
            minibatches, and ``n_steps`` and the intervals count all replicas' env steps.
        dist_backend: ``data_parallel``: torch.distributed backend, ``gloo`` or ``nccl``
            (None: nccl on a CUDA device, gloo otherwise).
        async_lead_batches: ``async``: sampler batches the sampler process may hand over ahead
            of the optimiser (>= 1; also the number of shared-memory slots); it waits when that
            many are handed over but not yet trained on, so the replay ratio is held exactly.
        ray_address: ``ray``: ``local`` starts Ray in this process (its temp files under the
            run directory's parent, dashboard off); ``auto`` joins the cluster this machine is a
            node of (``ray start``); ``HOST:PORT`` joins that head node.
        n_actors: ``ray``: actor workers, each sampling ``sampler.batch_B`` envs with a CPU copy
            of the agent (``n_steps`` and the intervals count all actors' env steps).
        n_replay_shards: ``ray``: replay shards (Ray actors); actor ``i`` writes to shard
            ``i % n_replay_shards``, the learner samples the shards in turn.
        actor_cpus: ``ray``: CPUs Ray reserves for each actor worker (its placement).
        replay_shard_cpus: ``ray``: CPUs Ray reserves for each replay shard.
        weight_sync_interval: ``ray``: learner updates between weight publications (object-store
            refs); each actor loads the newest before its next batch.
        actor_lead_batches: ``ray``: batches each actor may sample ahead of the learner (calls
            queued per actor); an actor waits when that many are not yet trained on, so the
            replay ratio is held (``ReplayRatio`` in progress.csv).
        actor_max_restarts: ``ray``: times Ray restarts a dead actor worker (the run goes on;
            its unfinished episodes are cut, their last transitions bootstrapped).
        actor_epsilon: ``ray``, value-based: Ape-X's base epsilon; env slot ``i`` of the
            ``N = n_actors * batch_B`` explores with ``actor_epsilon^(1 + alpha * i / (N - 1))``
            for the whole run (in place of ``agent.eps_*``'s schedule).
        actor_epsilon_alpha: ``ray``, value-based: that schedule's alpha.
        inference: ``ray``, ``impala``: ``actor`` (each actor worker acts with its own copy of the
            agent) or ``central`` (SEED-style: workers hold no model and send every step's
            observations to one inference server, which batches them; see
            ``rlfleet/distributed/inference.py``).
        inference_wait_ms: ``central``: the longest a request waits for the other workers'
            before the server runs the batch it has.
    """

    kind: RunnerKind = "minibatch"
    n_steps: Count = 100_000
    log_interval_steps: Count = 10_000
    eval_interval_steps: NonNegInt = 10_000
    eval_episodes: Count = 10
    eval_envs: Count = 5
    eval_max_steps: Count | None = None
    checkpoint_interval_steps: NonNegInt = 0
    keep_checkpoints: Count = 3
    save_replay: bool = False
    torch_threads: Count = 1
    device: Device = "cpu"
    n_replicas: Count = 2
    dist_backend: Literal["gloo", "nccl"] | None = None
    async_lead_batches: Count = 2
    ray_address: str = "local"
    n_actors: Count = 2
    n_replay_shards: Count = 1
    actor_cpus: Positive = 1.0
    replay_shard_cpus: NonNegative = 0.5
    weight_sync_interval: Count = 50
    actor_lead_batches: Count = 2
    actor_max_restarts: NonNegInt = 10
    actor_epsilon: Probability = 0.4
    actor_epsilon_alpha: NonNegative = 7.0
    inference: Literal["actor", "central"] = "actor"
    inference_wait_ms: Positive = 5.0


ReplayKind = Literal["uniform", "prioritized", "sequence"]
REPLAY_KINDS: tuple[str, ...] = get_args(ReplayKind)


@dataclass
class ReplayConfig:
    """The replay buffer of off-policy algorithms (built by the composition root and handed to
    the algorithm; see `rlfleet.replays`).

    Which kinds read which fields: every kind reads ``size`` and ``frame_stack``;
    ``prioritized`` and ``sequence`` read ``alpha``, ``beta_start``, ``beta_end``,
    ``beta_steps`` and ``eps``; only ``sequence`` reads ``sequence_length``,
    ``sequence_overlap``, ``burn_in`` and ``priority_eta``.

    Attributes:
        kind: one of `REPLAY_KINDS`: ``uniform`` or ``prioritized`` (transitions; proportional
            prioritized replay, Schaul et al. 2016), or ``sequence`` (fixed-length sequences
            with their stored recurrent start state, for recurrent value-based algorithms such
            as r2d2; `rlfleet.replays.sequence`).
        size: transitions the replay holds.
        alpha: ``prioritized``, ``sequence``: priority exponent (``sequence`` with 0: uniform
            sampling of sequences, no importance weights).
        beta_start: importance-weight exponent at the start, annealed linearly to ``beta_end`` ...
        beta_end: ... (1: full correction at the end; R2D2 keeps 0.6 throughout) ...
        beta_steps: ... over this many env steps (0: over the whole run).
        eps: added to errors before the exponent.
        frame_stack: store stacked image observations one frame at a time and rebuild the
            stacks when sampling (set to the env's frame stack, e.g. 4 on Atari; 0: store
            observations whole).
        sequence_length: ``sequence``: ``L``, the trained steps of a sequence (R2D2: 80).
        sequence_overlap: ``sequence``: steps shared by adjacent sequences of an env; a new
            sequence starts every ``sequence_length - sequence_overlap`` steps (R2D2: 40).
        burn_in: ``sequence``: steps before the trained ones that only warm the recurrent state
            up (unrolled without gradient; R2D2: 40).
        priority_eta: ``sequence``: a sequence's priority is
            ``eta * max_t |delta_t| + (1 - eta) * mean_t |delta_t|`` over its trained steps
            (R2D2: 0.9).
    """

    kind: ReplayKind = "uniform"
    size: Count = 100_000
    alpha: NonNegative = 0.6
    beta_start: Probability = 0.4
    beta_end: Probability = 1.0
    beta_steps: NonNegInt = 0
    eps: Positive = 1e-6
    frame_stack: NonNegInt = 0
    sequence_length: Count = 80
    sequence_overlap: NonNegInt = 40
    burn_in: NonNegInt = 40
    priority_eta: Probability = 0.9

    checks: ClassVar[tuple[Check, ...]] = (
        Check(
            ("sequence_overlap", "sequence_length"),
            lambda c: c.sequence_overlap < c.sequence_length,
            "sequence_overlap < sequence_length",
        ),
    )


@dataclass
class LoggerConfig:
    """Where diagnostics go besides progress.csv.

    Attributes:
        tensorboard: TensorBoard event files in ``run_dir/tb``.
        wandb: Weights & Biases logging.
        wandb_mode: ``offline`` (no network) or ``online``.
        wandb_project: W&B project name.
        console: live progress bar / log lines on stderr.
    """

    tensorboard: bool = True
    wandb: bool = False
    wandb_mode: Literal["offline", "online"] = "offline"
    wandb_project: str = "rlfleet"
    console: bool = True


@dataclass
class ExperimentConfig:
    """Everything a run needs; saved as ``config.yaml`` in the run directory.

    ``algo`` and ``agent`` hold the chosen algorithm's and agent's dataclasses; ``replay`` the
    replay of an off-policy algorithm (None for on-policy ones); ``model`` holds keyword
    arguments of the default model, or ``_target_`` (an import path) plus the kwargs of a
    custom model.

    Attributes:
        algorithm: the algorithm's name (see ``rlfleet list``).
        seed: random seed of the run (envs, networks, replay sampling; the evaluation seeds are
            drawn from it).
    """

    algorithm: str
    seed: NonNegInt = 0
    env: EnvConfig = field(default_factory=EnvConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    algo: Any = None
    agent: Any = None
    replay: ReplayConfig | None = None
    model: dict[str, Any] = field(default_factory=dict)

    @property
    def recurrent(self) -> bool:
        """The model has a recurrent core (``model.core`` lstm or gru)."""
        return self.model.get("core", "none") != "none"
