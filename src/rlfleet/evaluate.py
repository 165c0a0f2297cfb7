"""Evaluate a run's checkpoint: ``rlfleet eval RUN_DIR [--episodes N] [--video]``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlfleet.agents.base import Agent
from rlfleet.build import Experiment, build_experiment, probe_spaces
from rlfleet.checkpoint import Checkpointer, check_checkpoint, load_checkpoint
from rlfleet.config.loader import load_yaml, validate
from rlfleet.config.schema import ExperimentConfig
from rlfleet.envs.make import make_env
from rlfleet.envs.normalize import ObservationNormalizer
from rlfleet.errors import RlfleetError
from rlfleet.samplers.evaluation import evaluate_agent


@dataclass
class LoadedRun:
    """A run's config and built components with its checkpoint's agent and observation
    normaliser loaded (``steps``: the checkpoint's env steps). ``close()`` releases the envs."""

    config: ExperimentConfig
    experiment: Experiment
    steps: int

    @property
    def agent(self) -> Agent:
        return self.experiment.agent

    @property
    def obs_normalizer(self) -> ObservationNormalizer | None:
        return self.experiment.sampler.obs_normalizer

    def close(self) -> None:
        self.experiment.close()


def load_run(run_dir: str | Path, checkpoint: str | Path | None = None, device: str | None = None) -> LoadedRun:
    """Build the run's agent from its config.yaml (one serial env, no evaluator, nothing
    logged; ``device`` replaces ``runner.device``) and load only the agent and the observation
    normaliser from ``checkpoint`` (default: the run's latest), read safely and checked with
    `check_checkpoint`. One-line RlfleetError for a directory without config.yaml or
    checkpoints, and for a missing, crafted or mismatched checkpoint. The agent is left in
    ``eval_mode`` at the checkpoint's steps."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise RlfleetError(f"{run_dir} is not a run directory (no config.yaml)")
    state = load_checkpoint(checkpoint or Checkpointer(run_dir / "checkpoints").latest())
    data = load_yaml(run_dir / "config.yaml")
    runner = {**data.get("runner", {}), "eval_interval_steps": 0}
    if device is not None:
        runner["device"] = str(device)
    data = {
        **data,
        "runner": runner,
        "sampler": {**data.get("sampler", {}), "kind": "serial", "batch_B": 1},
        "logger": {**data.get("logger", {}), "console": False, "tensorboard": False, "wandb": False},
    }
    config = validate(data)
    config = validate(data, probe_spaces(config))
    exp = build_experiment(config, run_dir=None)
    try:
        check_checkpoint(
            state,
            algorithm=config.algorithm,
            agent_state=exp.agent.state_dict(),
            parts=("config", "runner", "agent", "sampler"),
        )
        exp.agent.load_state_dict(state["agent"])
        normalizer = exp.sampler.obs_normalizer
        if normalizer is not None:
            normalizer.load_state_dict(state["sampler"]["obs_normalizer"])
        steps = state["runner"]["cum_steps"]
        exp.agent.eval_mode(steps)
    except BaseException:
        exp.close()
        raise
    return LoadedRun(config, exp, steps)


def evaluate_run(
    run_dir: str | Path,
    episodes: int = 10,
    video: bool = False,
    checkpoint: str | Path | None = None,
    seed: int = 12_345,
) -> dict[str, Any]:
    """Load the run's config and checkpoint, run ``episodes`` deterministic episodes and, with
    ``video``, write the first episode to ``run_dir/videos/eval_<steps>.mp4``."""
    run_dir = Path(run_dir)
    run = load_run(run_dir, checkpoint)
    config, exp, normalizer, steps = run.config, run.experiment, run.obs_normalizer, run.steps
    try:
        frames: list[np.ndarray] = []
        trajs: list[dict[str, float]] = []
        if video:
            os.environ.setdefault("SDL_AUDIODRIVER", "dummy")  # headless pygame rendering
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
            from rlfleet.envs.render import make_render_env

            render_env = make_render_env(config.env)  # one line when the env cannot render
            trajs += evaluate_agent(exp.agent, [render_env], 1, seed, normalizer, on_frame=frames.append)
            render_env.close()
        if episodes > len(trajs):
            env = make_env(config.env, training=False)
            trajs += evaluate_agent(exp.agent, [env], episodes - len(trajs), seed + 1, normalizer)
            env.close()
    finally:
        exp.close()
    returns = np.array([t["Return"] for t in trajs])
    result: dict[str, Any] = {
        "episodes": len(trajs),
        "steps": steps,
        "mean": returns.mean(),
        "std": returns.std(),
        "min": returns.min(),
        "max": returns.max(),
    }
    if video and frames:
        import imageio.v2 as imageio

        path = run_dir / "videos" / f"eval_{steps:010d}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp.mp4")
        with imageio.get_writer(tmp, fps=30, macro_block_size=1) as writer:
            for frame in frames:
                writer.append_data(frame)
        os.replace(tmp, path)
        result["video"] = str(path)
    return result
