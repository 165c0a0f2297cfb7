"""Fast learning tests for the value-based and actor-critic families, on two small tasks from
tests/learning_envs.py where the optimal policy depends on the state:

- ``TwoGoalCorridor`` (discrete): optimal return -5; a constant policy averages -15 and the
  untrained networks score -15 to -30. Every value-based algorithm and SAC-discrete must reach
  the optimum exactly (deterministic evaluation, 10 episodes, both goal sides) in 3,000 steps.
- ``PointReach`` (continuous): optimal return about -0.6, standing still -7.5, the untrained
  actor about -5. DDPG, TD3, SAC and TAC must reach -1.5 in 2,000 steps.

Each test also checks that the first evaluation (before any update) is far from the threshold,
so passing means the agent learned. The CartPole-scale results are in docs/benchmarks/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import QUIET, eval_returns
from rlfleet.experiment import train

pytestmark = pytest.mark.slow  # learning tests: the quick subset (-m 'not slow') leaves them out

EVALS = ["runner.log_interval_steps=500", "runner.eval_interval_steps=500", "runner.eval_episodes=10"]

CORRIDOR = "learning_envs:TwoGoalCorridor"
CORRIDOR_OPTIMUM = -5.0
VALUE_COMMON = [
    "sampler.batch_T=4",
    "replay.size=5000",
    "algo.learning_starts=200",
    "algo.batch_size=32",
    "algo.replay_ratio=32",  # one update of 32 per env step
    "algo.target_update_interval=50",
    "algo.lr=0.001",
    "algo.gamma=0.95",
    "agent.eps_steps=1000",
    "agent.eps_end=0.2",
    "model.hidden_sizes=[64,64]",
]
QUANTILES = ["algo.n_quantiles=16", "algo.n_target_quantiles=16", "agent.policy_quantiles=16", "model.embedding_dim=32"]
VALUE_CASES = {
    "dqn": [],
    "c51": ["model.n_atoms=21", "agent.v_min=-30", "agent.v_max=0"],
    "rainbow": ["model.n_atoms=21", "agent.v_min=-30", "agent.v_max=0"],
    "qrdqn": ["model.n_quantiles=16"],
    "iqn": QUANTILES,
    "fqf": ["model.n_fractions=16", "model.embedding_dim=32", "algo.fraction_lr=1e-8"],
    "mdqn": [],
    "miqn": QUANTILES,
}

REACH = "learning_envs:PointReach"
REACH_THRESHOLD = -1.5
CONTINUOUS_COMMON = [
    "sampler.batch_T=1",
    "replay.size=5000",
    "algo.learning_starts=200",
    "algo.batch_size=64",
    "algo.gamma=0.9",
    "agent.random_action_steps=200",
    "model.hidden_sizes=[64,64]",
]


def run(tmp_path: Path, algorithm: str, env: str, overrides: list[str], n_steps: int) -> list[float]:
    args = [*overrides, *EVALS, *QUIET, f"runner.n_steps={n_steps}"]
    run_dir, _ = train(algorithm, env, args, seed=0, name="learn", root=tmp_path)
    return eval_returns(run_dir)


@pytest.mark.parametrize("algorithm", list(VALUE_CASES))
def test_value_based_learns_two_goal_corridor(tmp_path, algorithm):
    returns = run(tmp_path, algorithm, CORRIDOR, [*VALUE_COMMON, *VALUE_CASES[algorithm]], 3000)
    assert returns[0] <= -10.0, returns  # untrained: ignores the goal side
    assert returns[-1] == pytest.approx(CORRIDOR_OPTIMUM), returns


def test_sac_discrete_learns_two_goal_corridor(tmp_path):
    overrides = [
        "sampler.batch_T=4",
        "algo.learning_starts=200",
        "algo.batch_size=32",
        "algo.gamma=0.95",
        "model.hidden_sizes=[64,64]",
    ]
    returns = run(tmp_path, "sac_discrete", CORRIDOR, overrides, 3000)
    assert returns[0] <= -10.0, returns
    assert returns[-1] == pytest.approx(CORRIDOR_OPTIMUM), returns


@pytest.mark.parametrize("algorithm", ["ddpg", "td3", "sac", "tac"])
def test_actor_critic_learns_point_reach(tmp_path, algorithm):
    returns = run(tmp_path, algorithm, REACH, CONTINUOUS_COMMON, 2000)
    assert returns[0] <= -3.0, returns  # untrained
    assert returns[-1] >= REACH_THRESHOLD, returns
