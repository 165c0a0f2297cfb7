"""The composition root: one validated config in, the components of a run out.

``build_experiment(config)`` constructs the envs (through the sampler), normalisers, agent,
replay, algorithm, evaluator and runner, reading only the config and the algorithm's declared
`AlgoSpec`. Nothing is written to disk: ``Experiment.open_run_dir`` attaches the progress
logger and the checkpointer once the run directory exists, so building everything first is the
dry run that catches a bad config before any file is written. Runners receive components, or
this module's ``build_experiment`` as a callable (the async sampler process and the
data-parallel replicas build their own); they never import it.
"""

from __future__ import annotations

import dataclasses
import functools
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlfleet.agents.base import Agent
from rlfleet.algos.base import Algorithm
from rlfleet.algos.registry import get_algorithm
from rlfleet.algos.spec import AlgoSpec
from rlfleet.checkpoint import Checkpointer
from rlfleet.config.loader import to_dict
from rlfleet.config.schema import ExperimentConfig
from rlfleet.config.validate import check_kwargs
from rlfleet.envs.make import held_out_config, make_env
from rlfleet.envs.normalize import ObservationNormalizer, RewardNormalizer
from rlfleet.envs.spaces import Box, EnvSpaces
from rlfleet.errors import ConfigError
from rlfleet.logging.console import ConsoleProgress
from rlfleet.logging.progress import ProgressLogger
from rlfleet.replays.n_step import NStepReplayBuffer
from rlfleet.replays.prioritized import PrioritizedReplayBuffer
from rlfleet.replays.sequence import SequenceReplayBuffer
from rlfleet.runners.async_rl import AsyncSampler
from rlfleet.runners.minibatch_rl import MinibatchRl, MinibatchRlEval
from rlfleet.samplers.evaluation import Evaluator, evaluation_seed
from rlfleet.samplers.sampler import Sampler
from rlfleet.samplers.steppers import SerialStepper
from rlfleet.utils.imports import import_object
from rlfleet.utils.schedules import LinearSchedule


@dataclass
class Experiment:
    """The built components of one run.

    Attributes:
        replay: the off-policy algorithm's replay (None for on-policy algorithms).
        evaluator: the deterministic evaluation (None with ``runner.eval_interval_steps=0``).
        run_dir: where the logger and checkpointer write (None until `open_run_dir`).
    """

    config: ExperimentConfig
    spec: AlgoSpec
    agent: Agent
    algo: Algorithm
    replay: NStepReplayBuffer | None
    sampler: Sampler | AsyncSampler
    evaluator: Evaluator | None
    runner: MinibatchRl
    run_dir: Path | None = None

    def open_run_dir(self, run_dir: Path) -> None:
        """Write progress and checkpoints into ``run_dir`` (which must exist)."""
        lg = self.config.logger
        self.run_dir = run_dir
        self.runner.logger = ProgressLogger(
            run_dir,
            tensorboard=lg.tensorboard,
            wandb=lg.wandb,
            wandb_mode=lg.wandb_mode,
            wandb_project=lg.wandb_project,
            config=to_dict(self.config),
        )
        self.runner.checkpointer = Checkpointer(run_dir / "checkpoints", keep=self.config.runner.keep_checkpoints)

    def close(self) -> None:
        self.sampler.close()
        if self.evaluator is not None:
            self.evaluator.close()
        if self.runner.logger is not None:
            self.runner.logger.close()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def probe_spaces(config: ExperimentConfig) -> EnvSpaces:
    """The spaces of the config's env (one env built and closed)."""
    env = make_env(config.env)
    try:
        return env.spaces
    finally:
        env.close()


def model_factory(config: ExperimentConfig, spec: AlgoSpec, env_spaces: EnvSpaces):
    """``f(env_spaces) -> nn.Module``: the algorithm's default model (with the kwargs its spec
    fixes) or ``model._target_``, with the ``model.*`` keyword arguments and those the
    algorithm's options require (``spec.model_kwargs``)."""
    kwargs = dict(config.model)
    target = kwargs.pop("_target_", None)
    if target:
        cls = import_object(str(target), what="model")
    else:
        cls = spec.default_model_class(env_spaces.action_kind)
        kwargs = {**spec.default_model_kwargs, **kwargs}
    required = dict(spec.model_kwargs(config)) if spec.model_kwargs is not None else {}
    for key, value in required.items():
        if key in config.model and config.model[key] != value:
            raise ConfigError(
                f"model.{key}={config.model[key]!r} contradicts what {spec.name}'s options require "
                f"({key}={value!r}): remove model.{key}"
            )
    if required:
        check_kwargs(cls, required, "model", skip=("observation_space", "action_space"))
    kwargs.update(required)

    def build(spaces: EnvSpaces):
        return cls(observation_space=spaces.observation, action_space=spaces.action, **kwargs)

    return build


def build_replay(config: ExperimentConfig, seed: int, recurrent: bool) -> NStepReplayBuffer | SequenceReplayBuffer:
    """The replay of the ``replay:`` section, with the algorithm's n-step horizon and discount
    (``recurrent``: the agent's declaration; a sequence replay then keeps its states)."""
    r, algo, batch_B = config.replay, config.algo, config.sampler.batch_B
    common: dict[str, Any] = dict(n_step=algo.n_step, gamma=algo.gamma, seed=seed, frame_stack=r.frame_stack)
    beta = LinearSchedule(r.beta_start, r.beta_end, r.beta_steps or config.runner.n_steps)
    if r.kind == "sequence":
        return SequenceReplayBuffer(
            r.size,
            batch_B,
            sequence_length=r.sequence_length,
            overlap=r.sequence_overlap,
            burn_in=r.burn_in,
            alpha=r.alpha,
            eps=r.eps,
            beta=beta,
            eta=r.priority_eta,
            recurrent=recurrent,
            **common,
        )
    if r.kind == "prioritized":
        return PrioritizedReplayBuffer(r.size, batch_B, alpha=r.alpha, eps=r.eps, beta=beta, **common)
    return NStepReplayBuffer(r.size, batch_B, **common)


def source_ring(
    config: ExperimentConfig, seed: int, recurrent: bool, source: int
) -> NStepReplayBuffer | SequenceReplayBuffer:
    """Actor worker ``source``'s ring in an Ape-X (or R2D2) replay shard: the ``replay:``
    section with ``replay.size / runner.n_actors`` env steps."""
    share = dataclasses.replace(config.replay, size=config.replay.size // config.runner.n_actors)
    return build_replay(dataclasses.replace(config, replay=share), seed=seed + source, recurrent=recurrent)


def build_sampler(config: ExperimentConfig, env_spaces: EnvSpaces, obs_norm, reward_norm) -> Sampler | AsyncSampler:
    """The sampler of ``sampler.kind`` (``runner.kind=async``: the handle on a sampler process
    that builds its own with this module's `build_experiment`)."""
    s, gamma = config.sampler, config.algo.gamma
    env_factory = functools.partial(make_env, config.env, training=True)
    if config.runner.kind == "async":
        return AsyncSampler(config, env_spaces, build_experiment, obs_norm, reward_norm)
    if s.kind == "parallel":
        from rlfleet.samplers.parallel import ParallelStepper

        stepper = ParallelStepper(env_factory, s.batch_B, discount=gamma, n_workers=s.n_workers)
        return Sampler(stepper, s.batch_T, obs_norm, reward_norm)
    if s.kind == "alternating":
        from rlfleet.samplers.alternating import AlternatingSampler, alternating_stepper

        stepper = alternating_stepper(env_factory, s.batch_B, discount=gamma, workers_per_group=s.n_workers)
        return AlternatingSampler(stepper, s.batch_T, obs_norm, reward_norm)
    if s.kind == "envpool":
        from rlfleet.samplers.envpool_stepper import EnvpoolStepper

        stepper = EnvpoolStepper(config.env, s.batch_B, discount=gamma, n_threads=s.n_workers)
        return Sampler(stepper, s.batch_T, obs_norm, reward_norm)
    return Sampler(SerialStepper(env_factory, s.batch_B, discount=gamma), s.batch_T, obs_norm, reward_norm)


def build_agent(config: ExperimentConfig, env_spaces: EnvSpaces) -> Agent:
    """The algorithm's agent on ``runner.device``, initialised on ``env_spaces`` (the agent of a
    central inference server)."""
    spec = get_algorithm(config.algorithm)
    agent_class = spec.agent_class(env_spaces.action_kind, recurrent=config.recurrent)
    agent = agent_class(model_factory(config, spec, env_spaces), config.agent, device=config.runner.device)
    agent.initialize(env_spaces, seed=config.seed)
    return agent


def build_experiment(
    config: ExperimentConfig, run_dir: Path | None = None, env_spaces: EnvSpaces | None = None
) -> Experiment:
    """Construct every component of the run (``run_dir``: open it for logging and checkpoints
    at once; None writes nothing)."""
    torch.set_num_threads(config.runner.torch_threads)
    seed_everything(config.seed)
    spec = get_algorithm(config.algorithm)
    env_spaces = env_spaces or probe_spaces(config)
    obs_space = env_spaces.observation
    obs_norm = None
    if config.env.normalize_obs:
        if not isinstance(obs_space, Box) or len(obs_space.shape) == 3:
            raise ConfigError("env.normalize_obs works on vector (Box) observations only")
        obs_norm = ObservationNormalizer(obs_space.shape, clip=config.env.clip_obs)
    reward_norm = (
        RewardNormalizer(config.sampler.batch_B, config.algo.gamma, clip=config.env.clip_reward)
        if config.env.normalize_reward
        else None
    )
    on_ray = config.runner.kind == "ray"
    sampler = None if on_ray else build_sampler(config, env_spaces, obs_norm, reward_norm)

    agent = build_agent(config, env_spaces)
    replay = None
    if spec.off_policy:  # its seed comes from the agent's generator, after the agent's own draws
        replay_seed = int(torch.randint(2**31, (1,), generator=agent.generator))
        if on_ray:  # Ape-X: the shards hold the replay, the pool is the sampler
            from rlfleet.distributed.learner import ActorPool, RemoteReplay

            sequence_length = config.replay.sequence_length if config.replay.kind == "sequence" else None
            replay = RemoteReplay(seed=replay_seed, sequence_length=sequence_length)
            ring = functools.partial(source_ring, config, replay_seed, agent.recurrent)
            sampler = ActorPool(config, env_spaces, build_experiment, replay, ring)
        else:
            replay = build_replay(config, seed=replay_seed, recurrent=agent.recurrent)
    if on_ray and not spec.off_policy:  # IMPALA, A3C: actor workers send batches or gradients
        from rlfleet.distributed.learner import ActorPool

        sampler = ActorPool(
            config, env_spaces, build_experiment, None, None, make_agent=build_agent, make_sampler=build_sampler
        )
    sampler.initialize(agent, seed=config.seed)
    algo = spec.algorithm_class()(config.algo)
    r, s = config.runner, config.sampler
    algo.initialize(agent, r.n_steps, s.batch_T, s.batch_B, replay=replay)

    evaluator = None
    common: dict[str, Any] = dict(
        n_steps=r.n_steps,
        log_interval_steps=r.log_interval_steps,
        checkpoint_interval_steps=r.checkpoint_interval_steps,
        console=ConsoleProgress(r.n_steps, enabled=config.logger.console),
        config=to_dict(config),
        replay=replay,
        save_replay=r.save_replay,
    )
    evaluation: dict[str, Any] = {}
    if r.eval_interval_steps > 0:
        test_env = held_out_config(config.env)
        evaluator = Evaluator(
            functools.partial(make_env, config.env, training=False),
            r.eval_envs,
            r.eval_episodes,
            seed=evaluation_seed(config.seed),
            obs_normalizer=obs_norm,
            discount=config.algo.gamma,
            max_episode_steps=r.eval_max_steps,
            test_env_factory=None if test_env is None else functools.partial(make_env, test_env, training=False),
        )
        evaluation = dict(evaluator=evaluator, eval_interval_steps=r.eval_interval_steps)
    if on_ray:
        from rlfleet.distributed.learner import RayLearner

        evaluation = evaluation or dict(evaluator=None, eval_interval_steps=0)
        runner: MinibatchRl = RayLearner(
            algo, agent, sampler, pool=sampler, weight_sync_interval=r.weight_sync_interval, **evaluation, **common
        )
    elif evaluation:
        runner = MinibatchRlEval(algo, agent, sampler, **evaluation, **common)
    else:
        runner = MinibatchRl(algo, agent, sampler, **common)
    experiment = Experiment(config, spec, agent, algo, replay, sampler, evaluator, runner)
    if run_dir is not None:
        experiment.open_run_dir(run_dir)
    return experiment
