"""The experiment config: one typed dataclass per component."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlfleet.envs.make import EnvConfig

SAMPLER_KINDS = ("serial", "parallel")
RUNNER_KINDS = ("minibatch",)


@dataclass
class SamplerConfig:
    """How samples are collected.

    Attributes:
        kind: ``serial`` (envs in this process) or ``parallel`` (worker processes stepping into
            shared memory; one batched forward pass in this process).
        batch_T: time steps per batch.
        batch_B: envs (the batch width B).
        n_workers: env slices stepped at once for ``parallel``, this process's own slice
            included (default: one per core, at most B).
    """

    kind: str = "serial"
    batch_T: int = 128
    batch_B: int = 8
    n_workers: int | None = None


@dataclass
class RunnerConfig:
    """The training loop.

    Attributes:
        kind: one of `RUNNER_KINDS`: ``minibatch`` (sample, then optimise, in this process).
        n_steps: env-step budget.
        log_interval_steps: env steps between progress rows.
        eval_interval_steps: env steps between deterministic evaluations (0: none).
        eval_episodes: episodes per evaluation.
        eval_envs: envs stepped together during evaluation.
        checkpoint_interval_steps: env steps between checkpoints (0: at the end only).
        keep_checkpoints: checkpoints kept on disk.
        save_replay: include the replay buffer in checkpoints (exact off-policy resume).
        torch_threads: torch intra-op threads (1 is fastest for small MLPs).
        device: torch device of the agent and the update.
    """

    kind: str = "minibatch"
    n_steps: int = 100_000
    log_interval_steps: int = 10_000
    eval_interval_steps: int = 10_000
    eval_episodes: int = 10
    eval_envs: int = 5
    checkpoint_interval_steps: int = 0
    keep_checkpoints: int = 3
    save_replay: bool = False
    torch_threads: int = 1
    device: str = "cpu"


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
    wandb_mode: str = "offline"
    wandb_project: str = "rlfleet"
    console: bool = True


@dataclass
class ExperimentConfig:
    """Everything a run needs; saved as ``config.yaml`` in the run directory.

    ``algo`` and ``agent`` hold the chosen algorithm's and agent's dataclasses; ``model`` holds
    keyword arguments of the default model, or ``_target_`` (an import path) plus the kwargs
    of a custom model.
    """

    algorithm: str
    seed: int = 0
    env: EnvConfig = field(default_factory=EnvConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    algo: Any = None
    agent: Any = None
    model: dict[str, Any] = field(default_factory=dict)
