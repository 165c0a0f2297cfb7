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
import functools
import os
import re
import secrets
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
from rlfleet.runners.minibatch_rl import RunAlreadyFinished


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
    """Resolve and validate the config, probe the env, and propose the run directory (which
    must not exist yet); nothing is written. The directory is only claimed, by
    `claim_run_dir`, once the run has been built (`run_in_process`, `run_data_parallel`), so
    this check is early feedback, not the guarantee. Without ``name`` it is a timestamp plus a
    random suffix (`default_run_name`), redrawn at the claim if taken."""
    data = resolve(algorithm, env_id, overrides, config_file, seed)
    config = validate(data)
    env_spaces = probe_spaces(config)
    config = validate(data, env_spaces)
    run_dir = run_dir_for(config, name or default_run_name(), root)
    if run_dir.exists() and name is not None:
        raise _taken(run_dir)
    return config, run_dir, env_spaces


def default_run_name() -> str:
    """``%Y%m%d-%H%M%S-<4 hex>``: the suffix (from ``secrets``, not the seeded RNGs, which
    concurrent runs of one seed share) keeps names apart for runs started in the same second."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def _taken(run_dir: Path) -> ConfigError:
    return ConfigError(f"run directory {run_dir} already holds a run; pass --resume {run_dir} or another --name")


def claim_run_dir(run_dir: Path, default_name: bool = False) -> Path:
    """Claim ``run_dir`` (``.../<name>/seed<N>``) for a new run with one atomic ``os.mkdir``;
    its parents are created as needed (shared by the seeds and grid points of one name). The
    leaf must not exist: any directory there, even an empty one, counts as claimed (an empty
    one cannot be taken over atomically: removing and recreating it would let two runs both
    believe they own it), so two runs never write into one directory. A taken explicit name
    is a `ConfigError`; for a ``default_name`` the name's suffix is redrawn until a mkdir
    succeeds. Returns the claimed directory."""
    while True:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(run_dir)
            return run_dir
        except FileExistsError:
            if not default_name:
                raise _taken(run_dir) from None
        run_dir = run_dir.parent.with_name(default_run_name()) / run_dir.name


NewRunClaim = Callable[[Path], Path]  # proposed run directory -> the claimed one


def run_in_process(
    config: ExperimentConfig,
    run_dir: Path,
    env_spaces: EnvSpaces,
    checkpoint: Path | None,
    claim: NewRunClaim | None = None,
) -> tuple[Path, dict[str, float]]:
    """``minibatch`` and ``async``: the runner in this process (``async`` moves sampling into
    a process of its own behind the runner's sampler). A new run (``claim`` given) claims its
    directory after the dry build, before anything is written; returns ``(run_dir, last row)``.
    A resumed run loads its checkpoint before the run directory is opened (so a bad checkpoint
    or `RunAlreadyFinished` leaves the directory untouched), then drops the progress rows logged
    after it."""
    state = load_checkpoint(checkpoint) if checkpoint is not None else None
    exp = build_experiment(config, env_spaces=env_spaces)  # the dry build: nothing on disk yet
    try:
        if state is not None:
            exact = exp.runner.load_state_dict(state)
            if exp.runner.cum_steps >= config.runner.n_steps:
                raise RunAlreadyFinished(run_dir, exp.runner.cum_steps)
            if not exact:
                exp.runner.console.line("note: these envs cannot be saved; resumed runs restart their episodes")
        run_dir = claim(run_dir) if claim is not None else run_dir
        exp.open_run_dir(run_dir)
        if state is not None:
            exp.runner.logger.truncate_after(exp.runner.cum_steps)
        save_config(config, run_dir / "config.yaml")
        return run_dir, exp.runner.train()
    finally:
        exp.close()


def run_data_parallel(
    config: ExperimentConfig,
    run_dir: Path,
    env_spaces: EnvSpaces,
    checkpoint: Path | None,
    claim: NewRunClaim | None = None,
) -> tuple[Path, dict[str, float]]:
    """``data_parallel``: ``runner.n_replicas`` processes, each building its own components."""
    dry = build_experiment(dataclasses.replace(config, runner=dataclasses.replace(config.runner, kind="minibatch")))
    try:
        if checkpoint is not None:  # checked as rank 0's part (each replica loads it again)
            dry.runner.load_state_dict(load_checkpoint(checkpoint))
            if dry.runner.cum_steps >= config.runner.n_steps:
                raise RunAlreadyFinished(run_dir, dry.runner.cum_steps)
    finally:
        dry.close()
    run_dir = claim(run_dir) if claim is not None else run_dir
    save_config(config, run_dir / "config.yaml")
    return run_dir, train_data_parallel(config, run_dir, build_experiment, env_spaces, checkpoint=checkpoint)


RunnerEntry = Callable[
    [ExperimentConfig, Path, EnvSpaces, "Path | None", "NewRunClaim | None"], tuple[Path, dict[str, float]]
]
RUNNERS: dict[str, RunnerEntry] = {
    "minibatch": run_in_process,
    "async": run_in_process,
    "ray": run_in_process,
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
    """Train a new run (or resume one) and return ``(run_dir, last progress row)``.

    Resuming a run whose latest checkpoint is at ``runner.n_steps`` or beyond raises
    `RunAlreadyFinished` once the checkpoint is loaded and before anything is written (the CLI
    prints it and exits 0)."""
    claim: NewRunClaim | None = None
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
        claim = functools.partial(claim_run_dir, default_name=name is None)
    note = time_limit_note(config.env)  # once per run, not per env (workers build envs too)
    if note and config.logger.console:
        print(note, file=sys.stderr, flush=True)
    return RUNNERS[config.runner.kind](config, run_dir, env_spaces, checkpoint, claim)
