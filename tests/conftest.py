"""Helpers shared by the test modules: import them by name (``from conftest import QUIET, read_progress``).

pytest imports this file before any test module, as the top-level module ``conftest`` (the tests
folder has no ``__init__.py``, so pytest puts it on ``sys.path``), and ``from conftest import``
returns that same module. Running the CLI as a subprocess lives in ``cli_helpers.py``.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rlfleet.checkpoint import Checkpointer, load_checkpoint
from rlfleet.utils.buffers import map_buffer

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:  # in-process runs import custom_components, learning_envs by name
    sys.path.insert(0, str(TESTS_DIR))

QUIET = ["logger.tensorboard=false", "logger.console=false"]
TIMING_COLUMNS = {"CumTime", "StepsPerSecond", "UpdatesPerSecond"}
# PPO on CartPole with a constant learning rate and clip range (the preset anneals both over
# runner.n_steps, which a resume with a larger budget changes on purpose); 128 steps per
# iteration, several minibatches per epoch.
PPO_ARGS = [
    "algo.anneal_lr=false",
    "algo.anneal_clip=false",
    "sampler.batch_T=32",
    "sampler.batch_B=4",
    "algo.epochs=4",
    "algo.minibatch_size=32",
    "runner.log_interval_steps=256",
    "runner.eval_interval_steps=512",
    "runner.eval_episodes=2",
    *QUIET,
]


# ----- a run's files -----
def read_progress(run_dir: Path) -> list[dict[str, str]]:
    """The rows of ``run_dir/progress.csv``."""
    with open(run_dir / "progress.csv", newline="") as f:
        return list(csv.DictReader(f))


def eval_returns(run_dir: Path) -> list[float]:
    """``EvalReturnAverage`` of every progress row that has one."""
    return [float(r["EvalReturnAverage"]) for r in read_progress(run_dir) if r.get("EvalReturnAverage")]


def best_eval(run_dir: Path, budget: int) -> float:
    """The best ``EvalReturnAverage`` logged within the first ``budget`` steps."""
    rows = [r for r in read_progress(run_dir) if r.get("EvalReturnAverage")]
    return max(float(r["EvalReturnAverage"]) for r in rows if int(r["CumSteps"]) <= budget)


def learning_columns(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Progress rows without the timing columns (which differ between identical runs)."""
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]


def latest_state(run_dir: Path) -> dict[str, Any]:
    """The state saved in the run's latest checkpoint."""
    return load_checkpoint(Checkpointer(run_dir / "checkpoints").latest())


# ----- exact equality -----
def assert_identical(a: Any, b: Any, where: str = "") -> None:
    """Recursive exact equality of (nested) checkpoint state: tensors, arrays, numbers."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and np.array_equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where} keys differ"
        for key in a:
            assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where} length differs"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_model(run_a: Path, run_b: Path) -> None:
    model_a, model_b = latest_state(run_a)["agent"]["model"], latest_state(run_b)["agent"]["model"]
    assert model_a.keys() == model_b.keys()
    for key in model_a:
        assert torch.equal(model_a[key], model_b[key]), f"parameter {key} differs"


def assert_exact_resume(full: Path, resumed: Path, n_steps: int) -> None:
    """Run ``full`` (``n_steps`` in one go) and run ``resumed`` (stopped, then resumed to
    ``n_steps``) hold the same learner state and logged the same numbers."""
    full_state, resumed_state = latest_state(full), latest_state(resumed)
    assert full_state["runner"]["cum_steps"] == resumed_state["runner"]["cum_steps"] == n_steps
    assert full_state["algo"]["updates"] > 0
    assert_same_model(full, resumed)
    # the rest of the learner state too: optimizer moments, exploration RNGs, replay
    assert_identical(full_state["agent"], resumed_state["agent"], "agent")
    assert_identical(full_state["algo"], resumed_state["algo"], "algo")
    rows_full, rows_resumed = read_progress(full), read_progress(resumed)
    assert [int(r["CumSteps"]) for r in rows_full][-1] == n_steps
    assert any("loss" in k for k in rows_full[0]), "progress.csv has no learning columns"
    assert learning_columns(rows_full) == learning_columns(rows_resumed)


def buffer_leaves(buffer) -> list:
    """The leaves (arrays or tensors) of a (nested) buffer, in ``map_buffer`` order."""
    leaves: list = []
    map_buffer(leaves.append, buffer)
    return leaves


def assert_sampler_state_round_trip(sampler) -> dict[str, Any]:
    """Restored from its state dict (and its agent's), ``sampler`` collects the same batch again.
    Returns the sampler's state dict."""
    sampler.obtain_samples()
    state, agent_state = sampler.state_dict(), sampler.agent.state_dict()
    first = sampler.obtain_samples()
    first_samples, first_trajs = map_buffer(np.copy, first.samples), first.traj_infos
    assert sampler.load_state_dict(state) is True
    sampler.agent.load_state_dict(agent_state)
    second = sampler.obtain_samples()
    for x, y in zip(buffer_leaves(first_samples), buffer_leaves(second.samples)):
        np.testing.assert_array_equal(x, y)
    assert second.traj_infos == first_trajs
    return state


# ----- fixtures -----
@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny forward passes: extra intra-op threads only add overhead (a lot on a busy machine).
    Modules use it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n_threads)
