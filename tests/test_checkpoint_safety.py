"""Loading a checkpoint never runs code from it, and a checkpoint that does not fit the run
(a part missing, another algorithm, another model shape) is one clear error line.

Every test works on its own copy of one tiny PPO CartPole run (trained once per module)."""

from __future__ import annotations

import io
import os
import pathlib
import pickle
import re
import shutil
import subprocess
import sys

import pytest
import torch

from rlfleet.checkpoint import (
    FORMAT_VERSION,
    Checkpointer,
    check_checkpoint,
    is_refused_global,
    load_checkpoint,
    pickle_globals,
    restricted_loads,
)
from rlfleet.errors import CheckpointError, RlfleetError
from rlfleet.experiment import train

TINY = [
    "runner.n_steps=128",
    "sampler.batch_T=16",
    "sampler.batch_B=2",
    "algo.epochs=1",
    "algo.minibatch_size=32",
    "runner.eval_episodes=1",
    "logger.console=false",
    "logger.tensorboard=false",
]


class _TouchOnLoad:
    """Unpickling it creates ``marker`` (what a crafted checkpoint would do)."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


class _ShellOnLoad:
    """Unpickling it runs a shell command creating ``marker``."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> pathlib.Path:
    run_dir, _ = train("ppo", "CartPole-v1", TINY, root=tmp_path_factory.mktemp("runs"), name="tiny")
    return run_dir


@pytest.fixture
def run(tiny_run, tmp_path) -> pathlib.Path:
    """A private copy of the tiny run."""
    return pathlib.Path(shutil.copytree(tiny_run, tmp_path / "run"))


def newest(run_dir: pathlib.Path) -> pathlib.Path:
    return Checkpointer(run_dir / "checkpoints").latest()


def plant(run_dir: pathlib.Path, state: dict) -> pathlib.Path:
    """Write ``state`` as the run's newest checkpoint."""
    path = run_dir / "checkpoints" / "ckpt_9999999999.pt"
    torch.save(state, path)
    return path


def real_state(run_dir: pathlib.Path) -> dict:
    return dict(load_checkpoint(newest(run_dir)))


def cli(*args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rlfleet", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def assert_one_error_line(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlfleet: error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ----- (a) a crafted checkpoint file -----
@pytest.mark.parametrize("payload", [_TouchOnLoad, _ShellOnLoad], ids=["path-touch", "os-system"])
def test_crafted_checkpoint_is_refused_without_running_it(tmp_path, payload):
    marker = tmp_path / "pwned"
    path = tmp_path / "ckpt_0000000001.pt"
    torch.save({"format_version": FORMAT_VERSION, "agent": payload(marker)}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "refusing" in message
    assert not marker.exists()


def test_crafted_checkpoint_is_refused_by_eval_and_resume(run, tmp_path):
    marker = tmp_path / "pwned"
    planted = plant(run, {**real_state(run), "agent": _ShellOnLoad(marker)})
    for args in (("eval", str(run)), ("train", "--resume", str(run))):
        assert_one_error_line(cli(*args, cwd=tmp_path), str(planted), "refusing")
        assert not marker.exists()


# ----- (b) a part missing -----
def test_checkpoint_without_agent_part_names_it(run, tmp_path):
    state = real_state(run)
    del state["agent"]
    planted = plant(run, state)
    assert_one_error_line(cli("train", "--resume", str(run), cwd=tmp_path), str(planted), "no 'agent' part")


@pytest.mark.parametrize("part", ["algo", "sampler", "runner", "rng", "config"])
def test_every_missing_part_is_named(run, part):
    state = real_state(run)
    del state[part]
    plant(run, state)
    loaded = load_checkpoint(newest(run))
    with pytest.raises(CheckpointError, match=rf"^checkpoint .*ckpt_9999999999\.pt has no '{part}' part$"):
        check_checkpoint(loaded, algorithm="ppo")


# ----- (c) another algorithm, another model shape -----
def test_checkpoint_of_another_algorithm(run):
    state = real_state(run)
    plant(run, {**state, "config": {**state["config"], "algorithm": "dqn"}})
    with pytest.raises(CheckpointError) as info:
        train(resume=run)
    assert str(info.value).endswith("was written by dqn, this run is ppo")
    assert "\n" not in str(info.value)


def test_resume_with_another_model_shape(run, tmp_path):
    result = cli("train", "--resume", str(run), "model.hidden_sizes=[32,32]", cwd=tmp_path)
    line = assert_one_error_line(result, str(newest(run)), "model parameter")
    assert re.search(
        r"model parameter '[\w.]+' has shape \[64(, \d+)?\] in the file, \[32(, \d+)?\] in this model$", line
    )


def test_eval_checks_the_algorithm_too(run, tmp_path):
    state = real_state(run)
    planted = plant(run, {**state, "config": {**state["config"], "algorithm": "a2c"}})
    assert_one_error_line(cli("eval", str(run), cwd=tmp_path), str(planted), "was written by a2c, this run is ppo")


# ----- (d) crafted env payloads -----
@pytest.mark.parametrize("payload", [_TouchOnLoad, _ShellOnLoad], ids=["path-touch", "os-system"])
@pytest.mark.parametrize("field", ["envs", "traj_infos"])
def test_crafted_env_payload_is_refused(run, tmp_path, payload, field):
    marker = tmp_path / "pwned"
    state = real_state(run)
    stepper = {**state["sampler"]["stepper"], field: pickle.dumps([payload(marker)])}
    planted = plant(run, {**state, "sampler": {**state["sampler"], "stepper": stepper}})
    with pytest.raises(CheckpointError) as info:
        train(resume=run)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"checkpoint {planted}: ") and "refusing" in message
    assert not marker.exists()


def test_crafted_env_payload_is_refused_by_the_cli(run, tmp_path):
    marker = tmp_path / "pwned"
    state = real_state(run)
    stepper = {**state["sampler"]["stepper"], "envs": pickle.dumps([_ShellOnLoad(marker)])}
    plant(run, {**state, "sampler": {**state["sampler"], "stepper": stepper}})
    assert_one_error_line(cli("train", "--resume", str(run), cwd=tmp_path), "system", "refusing")
    assert not marker.exists()


@pytest.mark.slow
def test_crafted_env_payload_of_a_parallel_worker_is_refused(tmp_path):
    """The parallel sampler's worker slices are checked in the main process, before any worker
    sees them: still one line, no traceback."""
    marker = tmp_path / "pwned"
    run_dir, _ = train("ppo", "CartPole-v1", [*TINY, "sampler.kind=parallel"], root=tmp_path / "runs", name="par")
    state = real_state(run_dir)
    groups = [dict(group) for group in state["sampler"]["stepper"]["groups"]]
    groups[-1]["envs"] = pickle.dumps([_TouchOnLoad(marker)])
    stepper = {**state["sampler"]["stepper"], "groups": groups}
    plant(run_dir, {**state, "sampler": {**state["sampler"], "stepper": stepper}})
    assert_one_error_line(cli("train", "--resume", str(run_dir), cwd=tmp_path), "Path.touch", "refusing")
    assert not marker.exists()


def test_restricted_loads_admits_the_fresh_envs_globals_only(run):
    envs = real_state(run)["sampler"]["stepper"]["envs"]
    allowed = pickle_globals(envs)
    assert ("gymnasium.envs.classic_control.cartpole", "CartPoleEnv") in allowed
    assert len(restricted_loads(envs, allowed)) == 2
    with pytest.raises(CheckpointError, match="CartPoleEnv"):
        restricted_loads(envs, allowed - {("gymnasium.envs.classic_control.cartpole", "CartPoleEnv")})
    # refused globals stay refused even when listed as allowed
    crafted = pickle.dumps(getattr)
    with pytest.raises(CheckpointError, match="builtins.getattr"):
        restricted_loads(crafted, pickle_globals(crafted))
    assert is_refused_global("builtins", "eval") and is_refused_global("subprocess", "Popen")
    assert not is_refused_global("builtins", "set")


def test_pickle_globals_lists_what_unpickling_looks_up(run):
    envs = real_state(run)["sampler"]["stepper"]["envs"]
    looked_up = set()

    class Recording(pickle.Unpickler):
        def find_class(self, module, name):
            looked_up.add((module, name))
            return super().find_class(module, name)

    Recording(io.BytesIO(envs)).load()
    assert pickle_globals(envs) == looked_up


def test_errors_are_rlfleet_errors():
    assert issubclass(CheckpointError, RlfleetError)
