"""Train a run: the Python face of ``rlfleet train``.

config -> validate -> build -> run directory -> runner. Everything that can fail on a bad
config (keys, values, the env, the model on the env's spaces, the agent and the algorithm)
happens before the run directory is created; the runner of ``runner.kind`` is looked up in one
table, `RUNNERS`, which the CLI reaches through `train`.

from rlfleet.experiment import train
run_dir, row = train("ppo", "CartPole-v1", overrides=["runner.n_steps=50000"], seed=1)
"""

from __future__ import annotations

import dataclasses
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlfleet.build import build_experiment, probe_spaces
from rlfleet.checkpoint import Checkpointer, load_checkpoint
from rlfleet.config.loader import apply_overrides, load_yaml, resolve, save_config, validate
from rlfleet.config.schema import ExperimentConfig
from rlfleet.envs.make import time_limit_note
from rlfleet.envs.spaces import EnvSpaces
from rlfleet.errors import ConfigError
from rlfleet.runners.data_parallel_train import train_data_parallel


def run_dir_for(config: ExperimentConfig, name: str, root: str | Path = "runs") -> Path:
    """``runs/<env>/<algo>/<name>/seed<N>`` (``/`` and ``:`` in env ids become ``-``)."""
    return run_path(config.env.id, config.algorithm, name, config.seed, root)


def run_path(env_id: str, algorithm: str, name: str, seed: int, root: str | Path = "runs") -> Path:
    """The run directory of ``(env, algorithm, name, seed)`` under ``root``."""
    return Path(root) / re.sub(r"[/:]", "-", env_id) / algorithm / name / f"seed{seed}"


def prepare_new_run(
    algorithm: str | None,
    env_id: str | None,
    overrides: list[str] | None = None,
    seed: int | None = None,
    name: str | None = None,
    config_file: str | Path | None = None,
    root: str | Path = "runs",
) -> tuple[ExperimentConfig, Path, EnvSpaces]:
    """Resolve and validate the config, probe the env, and choose the run directory (which
    must not hold a run yet); nothing is written."""
    data = resolve(algorithm, env_id, overrides, config_file, seed)
    config = validate(data)
    env_spaces = probe_spaces(config)
    config = validate(data, env_spaces)
    run_dir = run_dir_for(config, name or time.strftime("%Y%m%d-%H%M%S"), root)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"run directory {run_dir} already holds a run; pass --resume {run_dir} or another --name")
    return config, run_dir, env_spaces


def run_in_process(
    config: ExperimentConfig, run_dir: Path, env_spaces: EnvSpaces, checkpoint: Path | None
) -> dict[str, float]:
    """``minibatch`` and ``async``: the runner in this process (``async`` moves sampling into
    a process of its own behind the runner's sampler)."""
    state = load_checkpoint(checkpoint) if checkpoint is not None else None
    exp = build_experiment(config, env_spaces=env_spaces)  # the dry build: nothing on disk yet
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        exp.open_run_dir(run_dir)
        if state is not None and not exp.runner.load_state_dict(state):
            exp.runner.console.line("note: these envs cannot be saved; resumed runs restart their episodes")
        save_config(config, run_dir / "config.yaml")
        return exp.runner.train()
    finally:
        exp.close()


def run_data_parallel(
    config: ExperimentConfig, run_dir: Path, env_spaces: EnvSpaces, checkpoint: Path | None
) -> dict[str, float]:
    """``data_parallel``: ``runner.n_replicas`` processes, each building its own components."""
    dry = build_experiment(dataclasses.replace(config, runner=dataclasses.replace(config.runner, kind="minibatch")))
    dry.close()
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    return train_data_parallel(config, run_dir, build_experiment, env_spaces, checkpoint=checkpoint)


RunnerEntry = Callable[[ExperimentConfig, Path, EnvSpaces, "Path | None"], dict[str, float]]
RUNNERS: dict[str, RunnerEntry] = {
    "minibatch": run_in_process,
    "async": run_in_process,
    "data_parallel": run_data_parallel,
}


def train(
    algorithm: str | None = None,
    env_id: str | None = None,
    overrides: list[str] | None = None,
    seed: int | None = None,
    name: str | None = None,
    config_file: str | Path | None = None,
    resume: str | Path | None = None,
    root: str | Path = "runs",
) -> tuple[Path, dict[str, Any]]:
    """Train a new run (or resume one) and return ``(run_dir, last progress row)``."""
    if resume is not None:
        run_dir = Path(resume)
        checkpoint = Checkpointer(run_dir / "checkpoints").latest()
        data = apply_overrides(load_yaml(run_dir / "config.yaml"), overrides or [])
        config = validate(data)
        env_spaces = probe_spaces(config)
        config = validate(data, env_spaces)
    else:
        config, run_dir, env_spaces = prepare_new_run(algorithm, env_id, overrides, seed, name, config_file, root)
        checkpoint = None
    note = time_limit_note(config.env)  # once per run, not per env (workers build envs too)
    if note and config.logger.console:
        print(note, file=sys.stderr, flush=True)
    return run_dir, RUNNERS[config.runner.kind](config, run_dir, env_spaces, checkpoint)
