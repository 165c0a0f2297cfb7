"""Envs without a time limit of their own, evaluation's episode cap, Ctrl-C during an evaluation,
and ``-e module:Class`` found in the current directory (issue 12, items 1 and 3).

Every run here is a real ``python -m rlfleet`` subprocess started in ``tmp_path`` with no
``PYTHONPATH``: the env module is a file written there, as a user's ``corridor.py`` would be.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cli_helpers import rlfleet_cmd
from conftest import read_progress
from rlfleet.checkpoint import Checkpointer, load_checkpoint

CORRIDOR = textwrap.dedent(
    '''
    """A corridor that never ends: no termination, no truncation, no time limit."""

    import time
    from pathlib import Path

    import gymnasium as gym
    import numpy as np


    class Corridor(gym.Env):
        observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        action_space = gym.spaces.Discrete(2)

        def __init__(self, delay=0.0, marker=None):
            self.delay, self.marker, self.position = delay, marker, 0

        def reset(self, seed=None, options=None):
            super().reset(seed=seed)
            self.position = 0
            return self._obs(), {}

        def step(self, action):
            if self.marker and not Path(self.marker).exists():  # the first step (an evaluation's)
                Path(self.marker).write_text("stepping")
            if self.delay:
                time.sleep(self.delay)
            self.position += 1 if action else -1
            return self._obs(), float(action), False, False, {}

        def _obs(self):
            return np.array([np.tanh(self.position / 10), 1.0], np.float32)
    '''
)
NOTE = "note: corridor:Corridor has no time limit; episodes are truncated at 1000 steps (env.max_episode_steps)"
QUIET = ["logger.tensorboard=false"]


def clean_env() -> dict[str, str]:
    """This environment without PYTHONPATH (the cwd must be found by rlfleet itself)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "PYTHONUNBUFFERED": "1"}


def run(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=clean_env())
    assert proc.returncode == 0, proc.stderr
    return proc


def only_run_dir(root: Path) -> Path:
    (progress,) = root.rglob("progress.csv")
    return progress.parent


@pytest.fixture
def corridor(tmp_path: Path) -> Path:
    (tmp_path / "corridor.py").write_text(CORRIDOR)
    return tmp_path


def train_corridor(cwd: Path, *overrides: str) -> tuple[Path, subprocess.CompletedProcess]:
    args = ["train", "ppo", "-e", "corridor:Corridor", "--runs-dir", "runs", "runner.n_steps=2048"]
    proc = run(rlfleet_cmd(*args, "runner.eval_episodes=2", *QUIET, *overrides), cwd)
    return only_run_dir(cwd / "runs"), proc


def check_capped_run(run_dir: Path, proc: subprocess.CompletedProcess) -> None:
    assert proc.stderr.count("has no time limit") == 1, proc.stderr
    assert NOTE in proc.stderr
    rows = read_progress(run_dir)
    evals = [r for r in rows if r.get("EvalEpisodes")]
    assert len(evals) == 2  # at step 0 and at the end
    for row in evals:
        assert float(row["EvalEpisodes"]) == 2
        assert float(row["EvalLengthMax"]) == float(row["EvalLengthMin"]) == 1000
    assert float(rows[-1]["CumSteps"]) == 2048


def test_never_ending_env_from_the_cwd_trains_with_a_time_limit(corridor: Path):
    run_dir, proc = train_corridor(corridor)
    check_capped_run(run_dir, proc)

    # (c) rlfleet eval of that run from the same directory; through the console script when it
    # is installed (its sys.path[0] is its own folder, not the cwd, unlike python -m)
    script = Path(sys.executable).with_name("rlfleet")
    script_cmd = [str(script)] if script.exists() else [shutil.which("rlfleet") or ""]
    cmd = [*script_cmd, "eval"] if script_cmd[0] else rlfleet_cmd("eval")
    out = run([*cmd, str(run_dir.relative_to(corridor)), "--episodes", "2"], corridor).stdout
    assert out.startswith("2 episodes at 2048 steps: return"), out


def test_never_ending_env_with_parallel_workers(corridor: Path):
    run_dir, proc = train_corridor(corridor, "sampler.kind=parallel", "sampler.n_workers=2")
    check_capped_run(run_dir, proc)


def test_ctrl_c_during_an_evaluation_stops_at_once_and_resumes(corridor: Path):
    marker = corridor / "evaluating"
    args = [
        *("train", "ppo", "-e", "corridor:Corridor", "--runs-dir", "runs", "--name", "slow"),
        *("runner.n_steps=128", "sampler.batch_T=32", "sampler.batch_B=2", "algo.minibatch_size=32"),
        *("runner.eval_episodes=1", "runner.eval_envs=1", "runner.eval_max_steps=100000"),
        *("env.max_episode_steps=100000", "env.kwargs.delay=0.005", f"env.kwargs.marker={marker}", *QUIET),
    ]
    proc = subprocess.Popen(
        rlfleet_cmd(*args), cwd=corridor, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env()
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():  # the step-0 evaluation is stepping (training has not begun)
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the evaluation did not start within 60 s"
            time.sleep(0.02)
        time.sleep(0.3)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert took < 3, f"exit {took:.1f} s after Ctrl-C"
    assert "evaluation at 0 steps abandoned" in err and "checkpoint written" in err, err
    run_dir = corridor / "runs" / "corridor-Corridor" / "ppo" / "slow" / "seed0"
    state = load_checkpoint(Checkpointer(run_dir / "checkpoints").latest())
    assert state["runner"]["cum_steps"] == 0 and state["runner"]["eval_pending"]
    assert state["evaluations"] == 0  # the abandoned evaluation's count was put back

    # the resumed run runs the abandoned evaluation first (cut at the new, small cap), then trains
    resumed = run(
        rlfleet_cmd("train", "--resume", str(run_dir.relative_to(corridor)), "runner.eval_max_steps=20"), corridor
    )
    assert "reached 20 steps and were cut there (runner.eval_max_steps)" in resumed.stderr
    rows = read_progress(run_dir)
    evals = [r for r in rows if r.get("EvalEpisodes")]
    assert [float(r["CumSteps"]) for r in evals] == [0, 128]
    assert all(float(r["EvalLengthMax"]) == 20 and float(r["EvalCapped"]) == 1 for r in evals)
    assert float(rows[-1]["CumSteps"]) == 128
