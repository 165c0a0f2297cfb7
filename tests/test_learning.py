"""Tiny learning tests: each algorithm must solve CartPole-v1 with its shipped preset.

A uniformly random policy averages about 22 on CartPole-v1 and essentially never reaches 475
over 10 evaluation episodes, so a deterministic evaluation average >= 475 means the agent
learned. Seeds are fixed, so these results are reproducible on a given machine.
"""

import pytest

from conftest import QUIET, best_eval
from rlfleet.experiment import train


@pytest.mark.slow
@pytest.mark.parametrize(
    ("algorithm", "budget"),
    [("ppo", 60_000), ("a2c", 200_000), ("dqn", 50_000)],
)
def test_solves_cartpole(tmp_path, algorithm, budget):
    run_dir, _ = train(algorithm, "CartPole-v1", QUIET + [f"runner.n_steps={budget}"], seed=0, name="t", root=tmp_path)
    assert best_eval(run_dir, budget) >= 475
