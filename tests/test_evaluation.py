"""Evaluation episodes: reproducible per run, unrelated between runs with neighbouring seeds."""

from __future__ import annotations

import gymnasium as gym

from rlfleet.samplers.evaluation import evaluation_seed


def first_states(run_seed: int, evaluations: int = 3, envs: int = 5) -> set[tuple[float, ...]]:
    """The initial Pendulum states of the first episode of each eval env, for ``evaluations``
    evaluations of a run, seeded as `Evaluator` seeds them (``base + 1000 k + b``)."""
    env = gym.make("Pendulum-v1")
    base = evaluation_seed(run_seed)
    states = {tuple(env.reset(seed=base + 1000 * k + b)[0].round(6)) for k in range(evaluations) for b in range(envs)}
    env.close()
    return states


def test_evaluation_seed_is_reproducible_and_below_2_to_the_30():
    seeds = [evaluation_seed(s) for s in range(100)]
    assert seeds == [evaluation_seed(s) for s in range(100)]
    assert len(set(seeds)) == 100 and all(0 <= s < 2**30 for s in seeds)


def test_neighbouring_run_seeds_evaluate_on_disjoint_initial_states():
    runs = [first_states(seed) for seed in (0, 1, 2)]
    assert all(len(states) == 15 for states in runs)  # every episode of a run starts elsewhere
    assert not runs[0] & runs[1] and not runs[0] & runs[2] and not runs[1] & runs[2]
