"""Build a run from its config and train it: the Python face of ``rlfleet train``.

from rlfleet.experiment import train
run_dir, row = train("ppo", "CartPole-v1", overrides=["runner.n_steps=50000"], seed=1)
"""

from __future__ import annotations

import functools
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlfleet.agents.base import Agent
from rlfleet.algos.base import Algorithm
from rlfleet.algos.registry import get_algorithm
from rlfleet.checkpoint import Checkpointer, load_checkpoint
from rlfleet.config.loader import apply_overrides, load_yaml, resolve, save_config, to_dict, validate
from rlfleet.config.schema import ExperimentConfig
from rlfleet.envs.make import make_env
from rlfleet.envs.normalize import ObservationNormalizer, RewardNormalizer
from rlfleet.envs.spaces import Box, EnvSpaces
from rlfleet.errors import ConfigError
from rlfleet.logging.console import ConsoleProgress
from rlfleet.logging.progress import ProgressLogger
from rlfleet.runners.async_rl import AsyncSampler
from rlfleet.runners.data_parallel_train import train_data_parallel
from rlfleet.runners.minibatch_rl import MinibatchRl, MinibatchRlEval
from rlfleet.samplers.evaluation import Evaluator, evaluation_seed
from rlfleet.samplers.sampler import Sampler
from rlfleet.samplers.steppers import SerialStepper
from rlfleet.utils.imports import import_object


@dataclass
class Experiment:
    """The built components of one run."""

    config: ExperimentConfig
    agent: Agent
    algo: Algorithm
    sampler: Sampler | AsyncSampler
    runner: MinibatchRl
    run_dir: Path | None

    def close(self) -> None:
        self.sampler.close()
        evaluator = getattr(self.runner, "evaluator", None)
        if evaluator is not None:
            evaluator.close()
        if self.runner.logger is not None:
            self.runner.logger.close()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def probe_spaces(config: ExperimentConfig) -> EnvSpaces:
    env = make_env(config.env)
    try:
        return env.spaces
    finally:
        env.close()


def model_factory(config: ExperimentConfig, env_spaces: EnvSpaces):
    """``f(env_spaces) -> nn.Module``: the default model of the algorithm, or ``model._target_``."""
    kwargs = dict(config.model)
    target = kwargs.pop("_target_", None)
    cls = (
        import_object(str(target), what="model")
        if target
        else get_algorithm(config.algorithm).default_model(env_spaces)
    )

    def build(spaces: EnvSpaces):
        return cls(observation_space=spaces.observation, action_space=spaces.action, **kwargs)

    return build


def run_dir_for(config: ExperimentConfig, name: str, root: str | Path = "runs") -> Path:
    """``runs/<env>/<algo>/<name>/seed<N>`` (``/`` and ``:`` in env ids become ``-``)."""
    return run_path(config.env.id, config.algorithm, name, config.seed, root)


def run_path(env_id: str, algorithm: str, name: str, seed: int, root: str | Path = "runs") -> Path:
    """The run directory of ``(env, algorithm, name, seed)`` under ``root``."""
    return Path(root) / re.sub(r"[/:]", "-", env_id) / algorithm / name / f"seed{seed}"


def build_experiment(
    config: ExperimentConfig, run_dir: Path | None = None, env_spaces: EnvSpaces | None = None
) -> Experiment:
    """Construct envs, agent, algorithm, sampler and runner (nothing is written to disk)."""
    torch.set_num_threads(config.runner.torch_threads)
    seed_everything(config.seed)
    spec = get_algorithm(config.algorithm)
    env_spaces = env_spaces or probe_spaces(config)
    spec.check_action_space(env_spaces, config.env.id)

    s = config.sampler
    gamma = getattr(config.algo, "gamma", 0.99)
    obs_space = env_spaces.observation
    obs_norm = None
    if config.env.normalize_obs:
        if not isinstance(obs_space, Box) or len(obs_space.shape) == 3:
            raise ConfigError("env.normalize_obs works on vector (Box) observations only")
        obs_norm = ObservationNormalizer(obs_space.shape, clip=config.env.clip_obs)
    reward_norm = (
        RewardNormalizer(s.batch_B, gamma, clip=config.env.clip_reward) if config.env.normalize_reward else None
    )
    env_factory = functools.partial(make_env, config.env, training=True)
    if config.runner.kind == "async":  # its sampler process builds the envs (runners/async_rl.py)
        sampler = AsyncSampler(config, env_spaces, obs_norm, reward_norm)
    elif s.kind == "parallel":
        from rlfleet.samplers.parallel import ParallelStepper

        stepper = ParallelStepper(env_factory, s.batch_B, discount=gamma, n_workers=s.n_workers)
        sampler = Sampler(stepper, s.batch_T, obs_norm, reward_norm)
    elif s.kind == "alternating":
        from rlfleet.samplers.alternating import AlternatingSampler, alternating_stepper

        stepper = alternating_stepper(env_factory, s.batch_B, discount=gamma, workers_per_group=s.n_workers)
        sampler = AlternatingSampler(stepper, s.batch_T, obs_norm, reward_norm)
    elif s.kind == "envpool":
        from rlfleet.samplers.envpool_stepper import EnvpoolStepper

        stepper = EnvpoolStepper(config.env, s.batch_B, discount=gamma, n_threads=s.n_workers)
        sampler = Sampler(stepper, s.batch_T, obs_norm, reward_norm)
    else:
        sampler = Sampler(SerialStepper(env_factory, s.batch_B, discount=gamma), s.batch_T, obs_norm, reward_norm)

    agent = spec.make_agent(env_spaces, config.agent, model_factory(config, env_spaces), config.runner.device)
    agent.initialize(env_spaces, seed=config.seed)
    sampler.initialize(agent, seed=config.seed)
    algo = spec.algo_class(config.algo)
    algo.initialize(agent, config.runner.n_steps, s.batch_T, s.batch_B)
    if isinstance(sampler, AsyncSampler):
        sampler.connect(algo)
    if hasattr(algo, "save_replay"):
        algo.save_replay = config.runner.save_replay

    r, lg = config.runner, config.logger
    logger = checkpointer = None
    if run_dir is not None:
        logger = ProgressLogger(
            run_dir,
            tensorboard=lg.tensorboard,
            wandb=lg.wandb,
            wandb_mode=lg.wandb_mode,
            wandb_project=lg.wandb_project,
            config=to_dict(config),
        )
        checkpointer = Checkpointer(run_dir / "checkpoints", keep=r.keep_checkpoints)
    console = ConsoleProgress(r.n_steps, enabled=lg.console)
    common: dict[str, Any] = dict(
        n_steps=r.n_steps,
        log_interval_steps=r.log_interval_steps,
        checkpoint_interval_steps=r.checkpoint_interval_steps,
        logger=logger,
        checkpointer=checkpointer,
        console=console,
        config=to_dict(config),
    )
    if r.eval_interval_steps > 0:
        evaluator = Evaluator(
            functools.partial(make_env, config.env, training=False),
            r.eval_envs,
            r.eval_episodes,
            seed=evaluation_seed(config.seed),
            obs_normalizer=obs_norm,
            discount=gamma,
        )
        runner: MinibatchRl = MinibatchRlEval(
            algo, agent, sampler, evaluator=evaluator, eval_interval_steps=r.eval_interval_steps, **common
        )
    else:
        runner = MinibatchRl(algo, agent, sampler, **common)
    return Experiment(config, agent, algo, sampler, runner, run_dir)


def prepare_new_run(
    algorithm: str | None,
    env_id: str | None,
    overrides: list[str] | None = None,
    seed: int | None = None,
    name: str | None = None,
    config_file: str | Path | None = None,
    root: str | Path = "runs",
) -> tuple[ExperimentConfig, Path, EnvSpaces]:
    """Resolve and validate everything before any file is written."""
    data = resolve(algorithm, env_id, overrides, config_file, seed)
    config = validate(data)
    env_spaces = probe_spaces(config)
    config = validate(data, env_spaces)
    get_algorithm(config.algorithm).check_action_space(env_spaces, config.env.id)
    run_dir = run_dir_for(config, name or time.strftime("%Y%m%d-%H%M%S"), root)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"run directory {run_dir} already holds a run; pass --resume {run_dir} or another --name")
    return config, run_dir, env_spaces


def train(
    algorithm: str | None = None,
    env_id: str | None = None,
    overrides: list[str] | None = None,
    seed: int | None = None,
    name: str | None = None,
    config_file: str | Path | None = None,
    resume: str | Path | None = None,
    root: str | Path = "runs",
) -> tuple[Path, dict[str, float]]:
    """Train a new run (or resume one) and return ``(run_dir, last progress row)``."""
    if resume is not None:
        run_dir = Path(resume)
        checkpoint = Checkpointer(run_dir / "checkpoints").latest()
        state = load_checkpoint(checkpoint)
        data = apply_overrides(load_yaml(run_dir / "config.yaml"), overrides or [])
        config = validate(data)
        config = validate(data, probe_spaces(config))
        if config.runner.kind == "data_parallel":
            save_config(config, run_dir / "config.yaml")
            return run_dir, train_data_parallel(config, run_dir, checkpoint=checkpoint)
        exp = build_experiment(config, run_dir)
        exact = exp.runner.load_state_dict(state)
        if not exact:
            exp.runner.console.line("note: these envs cannot be saved; resumed runs restart their episodes")
        save_config(config, run_dir / "config.yaml")
    else:
        config, run_dir, env_spaces = prepare_new_run(algorithm, env_id, overrides, seed, name, config_file, root)
        run_dir.mkdir(parents=True, exist_ok=True)
        if config.runner.kind == "data_parallel":
            save_config(config, run_dir / "config.yaml")
            return run_dir, train_data_parallel(config, run_dir, env_spaces)
        exp = build_experiment(config, run_dir, env_spaces)
        save_config(config, run_dir / "config.yaml")
    try:
        row = exp.runner.train()
    finally:
        exp.close()
    return run_dir, row
