"""Evaluation episodes: reproducible per run, unrelated between runs with neighbouring seeds."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import torch

from rlfleet.config.schema import EnvConfig
from rlfleet.envs.make import make_env
from rlfleet.samplers.evaluation import Evaluator, evaluation_seed


class InitialStateRecorder:
    """Stands in for an agent: acts 0 and records the observations of each evaluation's first
    step, the ``[B, 3]`` initial Pendulum states."""

    def __init__(self):
        self.first_observations: list[torch.Tensor] = []
        self.new_evaluation = True

    def step(self, observation: torch.Tensor, prev_action: torch.Tensor, prev_reward: torch.Tensor) -> SimpleNamespace:
        if self.new_evaluation:
            self.first_observations.append(observation.clone())
            self.new_evaluation = False
        return SimpleNamespace(action=torch.zeros(len(observation), 1))

    def reset_envs(self, done: torch.Tensor) -> None:
        """No per-env state to forget."""


def initial_states(run_seed: int, evaluations: int = 3, envs: int = 5) -> set[tuple[float, ...]]:
    """The initial states of every eval env's first episode over a run's first ``evaluations``."""
    env_factory = functools.partial(make_env, EnvConfig(id="Pendulum-v1"), training=False)
    evaluator = Evaluator(env_factory, envs, envs, seed=evaluation_seed(run_seed))
    recorder = InitialStateRecorder()
    for _ in range(evaluations):
        recorder.new_evaluation = True
        evaluator(recorder)
    evaluator.close()
    return {tuple(obs.round(decimals=5).tolist()) for batch in recorder.first_observations for obs in batch}


def test_evaluation_seed_is_reproducible_and_below_2_to_the_30():
    seeds = [evaluation_seed(s) for s in range(100)]
    assert seeds == [evaluation_seed(s) for s in range(100)]
    assert len(set(seeds)) == 100 and all(0 <= s < 2**30 for s in seeds)


def test_neighbouring_run_seeds_evaluate_on_disjoint_initial_states():
    runs = [initial_states(seed) for seed in (0, 1, 2)]
    assert all(len(states) == 15 for states in runs)  # every episode of a run starts elsewhere
    assert not runs[0] & runs[1] and not runs[0] & runs[2] and not runs[1] & runs[2]
