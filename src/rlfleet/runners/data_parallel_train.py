"""Train a run with ``runner.kind=data_parallel``: check the config, start ``runner.n_replicas``
replicas (`replicas.launch`), build each one's experiment with the composition root's build
callable (handed in by `rlfleet.experiment`), and run `DataParallelRl` in each.

Each replica builds the components of the ``minibatch`` runner from a copy of the config that
differs in three places: its device (``cuda:<index + rank>`` when ``runner.device`` is CUDA);
its seed, ``seed + rank * sampler.batch_B``, so replica r's envs are seeded
``seed + r * B + b`` (the seeds one sampler of ``N * B`` envs would use) and its agent and PPO
minibatch RNGs differ from the others'; and, for ranks above 0, no evaluation, console, or run
directory (nothing written). Rank 0 therefore builds exactly what the minibatch runner would;
its model is broadcast to the others.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from rlfleet.checkpoint import load_checkpoint
from rlfleet.config.loader import to_dict
from rlfleet.config.schema import ExperimentConfig
from rlfleet.envs.spaces import EnvSpaces
from rlfleet.errors import ConfigError
from rlfleet.runners.data_parallel import DataParallelRl
from rlfleet.runners.minibatch_rl import TrainingInterrupted
from rlfleet.runners.replicas import Replica, launch


def backend_for(config: ExperimentConfig) -> str:
    """``runner.dist_backend``, or nccl for a CUDA device and gloo otherwise."""
    if config.runner.dist_backend is not None:
        return config.runner.dist_backend
    return "nccl" if torch.device(config.runner.device).type == "cuda" else "gloo"


def replica_device(device: str, rank: int) -> str:
    """Replica ``rank``'s device: ``cuda:<index + rank>`` for CUDA, ``device`` otherwise."""
    parsed = torch.device(device)
    return f"cuda:{(parsed.index or 0) + rank}" if parsed.type == "cuda" else device


def check_config(config: ExperimentConfig) -> None:
    """ConfigError for devices and backends data parallelism cannot use (which algorithms it
    runs is their specs' ``runner_kinds``, checked at validation)."""
    r = config.runner  # n_replicas >= 1 and dist_backend's choices: the schema's (RunnerConfig)
    device = torch.device(r.device)
    if backend_for(config) == "nccl" and device.type != "cuda":
        raise ConfigError(f"runner.dist_backend=nccl needs a CUDA runner.device, got {r.device!r}")
    if device.type == "cuda" and (device.index or 0) + r.n_replicas > torch.cuda.device_count():
        raise ConfigError(
            f"runner.n_replicas={r.n_replicas} on {r.device} needs {(device.index or 0) + r.n_replicas} "
            f"CUDA devices, found {torch.cuda.device_count()} (one replica per device)"
        )


def replica_config(config: ExperimentConfig, rank: int) -> ExperimentConfig:
    """The config replica ``rank`` builds its components from (see the module docstring)."""
    runner = dataclasses.replace(config.runner, kind="minibatch", device=replica_device(config.runner.device, rank))
    if rank == 0:
        return dataclasses.replace(config, runner=runner)
    return dataclasses.replace(
        config,
        seed=config.seed + rank * config.sampler.batch_B,
        runner=dataclasses.replace(runner, eval_interval_steps=0),
        logger=dataclasses.replace(config.logger, console=False, tensorboard=False, wandb=False),
    )


BuildExperiment = Callable[..., Any]


def train_data_parallel(
    config: ExperimentConfig,
    run_dir: Path,
    build: BuildExperiment,
    env_spaces: EnvSpaces | None = None,
    checkpoint: Path | None = None,
) -> dict[str, float]:
    """Train (or, from ``checkpoint``, resume) the run in ``run_dir`` with ``runner.n_replicas``
    replicas, each building its components with ``build(config, run_dir, env_spaces)`` (a
    module-level function, so that it pickles into the spawned replicas); returns rank 0's
    last progress row. Raises `TrainingInterrupted` after Ctrl-C (once rank 0's checkpoint is
    written) and the first replica's error if one fails."""
    check_config(config)
    results = launch(
        _train_replica,
        config.runner.n_replicas,
        backend_for(config),
        (config, run_dir, build, env_spaces, checkpoint),
    )
    outcome, value = results[0]
    if outcome == "interrupted":
        raise TrainingInterrupted(value)
    return value


def _train_replica(
    replica: Replica,
    config: ExperimentConfig,
    run_dir: Path,
    build: BuildExperiment,
    env_spaces: EnvSpaces | None,
    checkpoint: Path | None,
) -> tuple[str, Any]:
    """One replica: ``("finished", last row)`` or ``("interrupted", message)``."""
    own_config = replica_config(config, replica.rank)
    if torch.device(own_config.runner.device).type == "cuda":
        torch.cuda.set_device(own_config.runner.device)
    exp = build(own_config, run_dir if replica.rank == 0 else None, env_spaces)
    try:
        runner = DataParallelRl(exp.runner, exp.evaluator, replica, to_dict(config), config.runner.eval_interval_steps)
        if checkpoint is not None and not runner.load_state_dict(load_checkpoint(checkpoint)):
            runner.console.line("note: these envs cannot be saved; resumed runs restart their episodes")
        try:
            return "finished", runner.train()
        except TrainingInterrupted as err:
            return "interrupted", str(err)
    finally:
        exp.close()
