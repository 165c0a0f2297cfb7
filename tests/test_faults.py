"""Faults during a run (issue 11, item 6): an exception in a user env, NaN or Inf in a loss or
the parameters, a killed sampler worker. Each stops the run with one ``rlfleet: error:`` line,
a non-zero exit and no traceback on stderr; what is kept on disk is checked too."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from cli_helpers import TESTS_DIR, rlfleet
from conftest import QUIET
from rlfleet.algos.optimizer import FlatOptimizer
from rlfleet.build import build_experiment
from rlfleet.config.loader import resolve, validate
from rlfleet.errors import EnvError, NonFiniteError, RlfleetError, SamplerWorkerDied

# PPO with one update per 32-step iteration (T=16, B=2), no evaluation.
TINY = [
    "sampler.batch_T=16",
    "sampler.batch_B=2",
    "algo.epochs=1",
    "algo.minibatch_size=32",
    "runner.eval_interval_steps=0",
    "runner.log_interval_steps=64",
    *QUIET,
]


def _train(tmp_path: Path, env: str, *overrides: str) -> tuple[subprocess.CompletedProcess, Path]:
    proc = rlfleet("train", "ppo", "-e", env, "--runs-dir", "runs", "--name", "f", *TINY, *overrides, cwd=tmp_path)
    run_dir = tmp_path / "runs" / env.replace(":", "-") / "ppo" / "f" / "seed0"
    return proc, run_dir


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The single ``rlfleet: error:`` line of a failed run (no traceback on stderr)."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("rlfleet: error: "), proc.stderr
    return lines[0]


def _checkpoint_steps(run_dir: Path) -> list[int]:
    return sorted(int(re.fullmatch(r"ckpt_(\d+)\.pt", p.name).group(1)) for p in (run_dir / "checkpoints").iterdir())


# ----- exceptions in user envs -----
def test_env_step_exception_serial(tmp_path):
    # Each env raises at its 100th step: per env 16 steps an iteration, so during iteration 7,
    # after 6 * 32 = 192 env steps.
    proc, run_dir = _train(tmp_path, "faulty_envs:StepFails", "runner.n_steps=4096")
    line = _one_error_line(proc)
    log = run_dir.relative_to(tmp_path) / "error.log"
    assert line == (
        f"rlfleet: error: env faulty_envs:StepFails raised ValueError('boom') in step; traceback in {log}; "
        "checkpoint written at 192 steps"
    )
    text = (tmp_path / log).read_text()
    assert "Traceback (most recent call last)" in text and 'raise ValueError("boom")' in text
    assert _checkpoint_steps(run_dir) == [192]


# parallel: this process's env and one worker's; alternating: one worker per env group
WORKERS = [("parallel", 2), ("alternating", 1)]


@pytest.mark.parametrize("kind, n_workers", WORKERS)
def test_env_reset_exception_in_workers(tmp_path, kind, n_workers):
    # Each env raises at its 3rd reset: the second episode end, at its 40th step (iteration 3).
    proc, run_dir = _train(
        tmp_path,
        "faulty_envs:ResetFails",
        "runner.n_steps=4096",
        f"sampler.kind={kind}",
        f"sampler.n_workers={n_workers}",
    )
    line = _one_error_line(proc)
    assert line.startswith("rlfleet: error: env faulty_envs:ResetFails raised RuntimeError('reset broke') in reset; ")
    assert line.endswith("; checkpoint written at 64 steps")
    text = (run_dir / "error.log").read_text()
    assert "sampler worker" in text and 'raise RuntimeError("reset broke")' in text  # the worker's traceback
    assert _checkpoint_steps(run_dir) == [64]


def test_env_error_names_env_and_keeps_an_existing_checkpoint(tmp_path):
    # A periodic checkpoint at 192 steps, the step count of the last completed iteration: kept as it is.
    proc, run_dir = _train(
        tmp_path, "faulty_envs:StepFails", "runner.n_steps=4096", "runner.checkpoint_interval_steps=64"
    )
    line = _one_error_line(proc)
    assert line.endswith("; the checkpoint at 192 steps is kept")
    assert _checkpoint_steps(run_dir) == [64, 128, 192]


# ----- NaN / Inf -----
def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    # Rewards are NaN from each env's 100th step on: the batch of iteration 7 (steps 192-224)
    # holds them, so its update (the 7th) has a NaN loss. Checkpoints every 64 steps.
    proc, run_dir = _train(
        tmp_path, "faulty_envs:NanReward", "runner.n_steps=4096", "runner.checkpoint_interval_steps=64"
    )
    line = _one_error_line(proc)
    ckpt = run_dir.relative_to(tmp_path) / "checkpoints" / "ckpt_0000000192.pt"
    assert line == (
        "rlfleet: error: non-finite loss (nan) at update 7, 224 env steps; "
        f"the last checkpoint before it is kept ({ckpt})"
    )
    # nothing after the NaN: no end-of-run checkpoint, the last one's weights are finite
    assert _checkpoint_steps(run_dir) == [64, 128, 192]
    state = torch.load(tmp_path / ckpt, map_location="cpu", weights_only=False)
    assert all(torch.isfinite(t).all() for t in state["agent"]["model"].values())


def _optimizer(lr: float, name: str = "loss") -> tuple[nn.Module, FlatOptimizer]:
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    return model, FlatOptimizer(model.parameters(), "adam", lr=lr, max_grad_norm=0.5, name=name)


def test_flat_optimizer_checks_the_loss_and_the_parameters():
    model, opt = _optimizer(1e-3)
    x = torch.ones(4, 3)
    opt.step(model(x).pow(2).mean())  # finite: no error
    with pytest.raises(NonFiniteError) as caught:
        opt.step(model(x).mean() * float("nan"))
    err = caught.value
    assert not err.in_parameters and math.isnan(err.loss)
    assert str(err) == "non-finite loss (nan)"

    model, opt = _optimizer(1e-3, name="critic_loss")
    opt.grad_hook = lambda flat_grad: flat_grad.fill_(float("inf"))  # a finite loss, Inf gradients
    with pytest.raises(NonFiniteError) as caught:
        opt.step(model(x).pow(2).mean())
    err = caught.value
    assert err.in_parameters and math.isfinite(err.loss)
    assert str(err).startswith("non-finite parameters after the critic_loss step (critic_loss ")


@pytest.mark.parametrize("algorithm", ["sac", "ddpg", "fqf", "dqn", "ppo"])
def test_every_optimizer_names_a_logged_loss(algorithm):
    """Each optimizer's name is a progress.csv column its algorithm logs."""
    env = "Pendulum-v1" if algorithm in ("sac", "ddpg") else "CartPole-v1"
    exp = build_experiment(validate(resolve(algorithm, env, ["runner.eval_interval_steps=0", *QUIET])))
    try:
        names = {o.name for o in exp.algo.optimizers()}
    finally:
        exp.close()
    expected = {"sac": {"critic_loss", "actor_loss", "alpha_loss"}, "ddpg": {"critic_loss", "actor_loss"}}
    assert names == expected.get(algorithm, {"fqf": {"loss", "fraction_loss"}}.get(algorithm, {"loss"}))


def test_fault_errors_are_one_line_rlfleet_errors_and_pickle():
    import pickle

    env_error = EnvError("my_pkg.envs:Broken", "step", "ValueError('boom')")
    env_error.details = ["traceback in runs/x/error.log", "checkpoint written at 256 steps"]
    nan = NonFiniteError("critic_loss", float("nan"), 1.0, in_parameters=False)
    nan.at = "at update 37, 1184 env steps"
    for err in (env_error, nan, SamplerWorkerDied("sampler worker 0 died")):
        assert isinstance(err, RlfleetError) and "\n" not in str(err)
        assert str(pickle.loads(pickle.dumps(err))) == str(err)  # data-parallel replicas send them
    assert str(env_error) == (
        "env my_pkg.envs:Broken raised ValueError('boom') in step; traceback in runs/x/error.log; "
        "checkpoint written at 256 steps"
    )
    assert str(nan) == "non-finite critic_loss (nan) at update 37, 1184 env steps"


# ----- a killed sampler worker -----
def _sampler_workers(pid: int) -> list[int]:
    """Children of ``pid`` that are multiprocessing ``spawn`` workers (not the resource tracker)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"spawn_main" in cmdline:
            found.append(int(entry))
    return found


@pytest.mark.parametrize("kind, n_workers", WORKERS)
def test_killed_worker_stops_the_run_within_seconds(tmp_path, kind, n_workers):
    pythonpath = os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "rlfleet", "train", "ppo", "-e", "CartPole-v1", "--runs-dir", "runs"]
    cmd += ["--name", "k", *TINY, "runner.n_steps=10000000", f"sampler.kind={kind}", f"sampler.n_workers={n_workers}"]
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": pythonpath},
    )
    progress = tmp_path / "runs" / "CartPole-v1" / "ppo" / "k" / "seed0" / "progress.csv"
    try:
        deadline = time.monotonic() + 120
        while not (progress.is_file() and len(progress.read_text().splitlines()) >= 3):  # training is under way
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no progress rows after 120 s"
            time.sleep(0.05)
        workers = _sampler_workers(proc.pid)
        assert workers, "no sampler worker found"
        os.kill(workers[-1], signal.SIGKILL)
        killed = time.monotonic()
        _, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert elapsed < 10, f"took {elapsed:.1f} s to stop"
    line = _one_error_line(SimpleNamespace(returncode=proc.returncode, stderr=err))
    assert re.fullmatch(
        rf"rlfleet: error: sampler worker \d \(envs \(\d, \d\), pid {workers[-1]}\) died: killed by signal SIGKILL; "
        r"at \d+ env steps; no checkpoint written",
        line,
    ), line
