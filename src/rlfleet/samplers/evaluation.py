"""Deterministic evaluation of an agent in its own envs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np
import torch

from rlfleet.agents.base import Agent
from rlfleet.envs.gym_env import GymEnv
from rlfleet.envs.make import own_time_limit
from rlfleet.envs.normalize import ObservationNormalizer
from rlfleet.samplers.traj_info import TrajInfo
from rlfleet.utils.buffers import buffer_from_example, torchify_buffer


class EvaluationInterrupted(Exception):
    """An evaluation abandoned because ``interrupted()`` said so (Ctrl-C)."""


DEFAULT_EVAL_MAX_STEPS = 10_000
"""The evaluation episode cap for envs with no time limit of their own."""


def evaluate_agent(
    agent: Agent,
    envs: Sequence[GymEnv],
    n_episodes: int,
    seed: int,
    obs_normalizer: ObservationNormalizer | None = None,
    discount: float = 0.99,
    max_steps: int = 1_000_000,
    on_frame: Callable[[np.ndarray], None] | None = None,
    max_episode_steps: int | None = None,
    interrupted: Callable[[], bool] | None = None,
) -> list[dict[str, float]]:
    """Run ``n_episodes`` episodes, spread evenly over ``envs`` (env ``b`` runs
    ``ceil((n_episodes - b) / B)`` of them so short episodes are not favoured); the agent must
    already be in ``eval_mode``. ``on_frame`` receives ``envs[0].render()`` after every step of env 0.
    Returns the completed trajectory statistics, in env order.

    An episode that reaches ``max_episode_steps`` steps without ending is cut there and counted
    as truncated; its record holds ``Capped: 1.0``. ``interrupted()`` is asked before every env
    step; when it answers True the evaluation is abandoned with `EvaluationInterrupted`.
    """
    B = len(envs)
    quota = [len(range(b, n_episodes, B)) for b in range(B)]
    obs = buffer_from_example(envs[0].observation_space.null_value(), (B,))
    for b, env in enumerate(envs):
        obs[b] = env.reset(seed=seed + b)
        if on_frame is not None and b == 0:
            on_frame(env.render())
    prev_action = torch.from_numpy(buffer_from_example(envs[0].action_space.null_value(), (B,)))
    prev_reward = torch.zeros(B)
    traj_infos = [TrajInfo(discount) for _ in envs]
    results: list[list[dict[str, float]]] = [[] for _ in envs]
    active = np.array([q > 0 for q in quota])
    steps = 0
    while active.any() and steps < max_steps:
        agent_obs = obs if obs_normalizer is None else obs_normalizer(obs, update=False)
        action = agent.step(torchify_buffer(agent_obs), prev_action, prev_reward).action
        ended = np.zeros(B, bool)
        for b in np.flatnonzero(active):
            if interrupted is not None and interrupted():
                raise EvaluationInterrupted
            step = envs[b].step(action[b].numpy())
            traj_infos[b].step(step.reward, step.info)
            if on_frame is not None and b == 0:
                on_frame(envs[b].render())
            next_obs, reward = step.observation, step.reward
            capped = (
                max_episode_steps is not None
                and traj_infos[b].Length >= max_episode_steps
                and not (step.terminated or step.truncated)
            )
            if step.terminated or step.truncated or capped:
                ended[b] = True
                results[b].append({**traj_infos[b].completed(), **({"Capped": 1.0} if capped else {})})
                traj_infos[b] = TrajInfo(discount)
                active[b] = len(results[b]) < quota[b]
                if active[b]:
                    next_obs = envs[b].reset()
                action[b], reward = 0, 0.0
            obs[b] = next_obs
            prev_action[b] = action[b]
            prev_reward[b] = reward
        if ended.any():  # per-env agent state (recurrent) starts afresh with the next episode
            agent.reset_envs(torch.from_numpy(ended))
        steps += 1
    return [traj for env_results in results for traj in env_results]


# Mixed with the run's seed so the evaluation seeds form a stream of their own.
EVALUATION_STREAM = 0xE7A1


def evaluation_seed(run_seed: int) -> int:
    """The base seed of a run's evaluation episodes, drawn from the run's seed so that runs with
    neighbouring seeds evaluate on unrelated initial states (a base of ``run_seed + c`` would give
    seeds 0, 1 and 2 nearly the same episodes, correlating their evaluations). Below 2**30, so
    ``base + 1000 k + b`` fits every env's seed type."""
    return int(np.random.SeedSequence([run_seed, EVALUATION_STREAM]).generate_state(1)[0]) % 2**30


TRAIN_SPLIT = "Eval"
TEST_SPLIT = "EvalTest"
"""The keys of an evaluation's splits, the prefixes of their progress columns."""


class Evaluator:
    """Owns the evaluation envs and runs ``n_episodes`` deterministic episodes on request.

    Args:
        env_factory: ``f() -> GymEnv`` building an evaluation env (no reward clipping or
            life-loss terminals).
        n_envs: envs stepped together.
        n_episodes: episodes per evaluation.
        seed: evaluation ``k`` resets env ``b`` with seed ``seed + 1000 k + b``.
        obs_normalizer: the training normaliser (used, never updated).
        max_episode_steps: episodes are cut after this many steps (None: the env's own time
            limit when it has one, else `DEFAULT_EVAL_MAX_STEPS`); see `evaluate_agent`.
        test_env_factory: builds the envs of the held-out split (``EnvConfig.test_kwargs``);
            each evaluation then also runs ``n_episodes`` episodes in as many of those, from
            the same seeds, after the training split's.

    An evaluation changes nothing but ``count`` (its seed) and the agent's evaluation RNG, so
    an evaluation abandoned by ``interrupted`` can be run again exactly: the caller restores
    those two (`MinibatchRlEval` does) and the envs are reset with the evaluation's seeds.
    """

    def __init__(
        self,
        env_factory: Callable[[], GymEnv],
        n_envs: int,
        n_episodes: int,
        seed: int,
        obs_normalizer: ObservationNormalizer | None = None,
        discount: float = 0.99,
        max_episode_steps: int | None = None,
        test_env_factory: Callable[[], GymEnv] | None = None,
    ):
        self.envs = [env_factory() for _ in range(min(n_envs, n_episodes))]
        self.test_envs = [] if test_env_factory is None else [test_env_factory() for _ in self.envs]
        self.n_episodes = n_episodes
        self.seed = seed
        self.obs_normalizer = obs_normalizer
        self.discount = discount
        if max_episode_steps is None:
            gym_env = getattr(self.envs[0], "env", None) if self.envs else None
            if not (isinstance(gym_env, gym.Env) and own_time_limit(gym_env)):
                max_episode_steps = DEFAULT_EVAL_MAX_STEPS
        self.max_episode_steps = max_episode_steps
        self.count = 0

    def __call__(
        self, agent: Agent, interrupted: Callable[[], bool] | None = None
    ) -> dict[str, list[dict[str, float]]]:
        """Evaluation ``count`` (then ``count + 1``): the completed episodes of each split,
        ``{TRAIN_SPLIT: [...]}`` plus ``TEST_SPLIT`` when there are test envs."""
        seed = self.seed + 1000 * self.count
        self.count += 1
        splits = {TRAIN_SPLIT: self.envs, TEST_SPLIT: self.test_envs}
        return {
            name: evaluate_agent(
                agent,
                envs,
                self.n_episodes,
                seed,
                self.obs_normalizer,
                self.discount,
                max_episode_steps=self.max_episode_steps,
                interrupted=interrupted,
            )
            for name, envs in splits.items()
            if envs
        }

    def close(self) -> None:
        for env in self.envs + self.test_envs:
            env.close()
