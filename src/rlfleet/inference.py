"""A trained run as a policy: ``load_agent(run_dir).act(observation)``.

    import gymnasium as gym
    from rlfleet import load_agent

    policy = load_agent("runs/CartPole-v1/ppo/x/seed0")
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=0)
    action = policy.act(obs)

The run is loaded as ``rlfleet eval`` loads it (`rlfleet.evaluate.load_run`: the config.yaml,
the latest or a given checkpoint read without running code from it and checked against the
rebuilt agent; only the agent and the observation normaliser are restored). ``act`` takes the
env's own observations, as the Gymnasium env that rlfleet builds for the run returns them (for
Atari ids that env includes rlfleet's preprocessing: `Policy.make_env` builds it), applies the
run's observation normaliser with its frozen statistics, and returns the action as that env
takes it (Box actions mapped from the agent's [-1, 1] onto the env's bounds by
`GymEnv.to_env_action`, Discrete ones as ``int`` plus the space's ``start``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlfleet.envs.make import make_env
from rlfleet.envs.spaces import Composite
from rlfleet.errors import RlfleetError
from rlfleet.evaluate import LoadedRun, load_run
from rlfleet.utils.buffers import buffer_from_example, torchify_buffer


class Policy:
    """A loaded run's agent acting on raw observations (made by `load_agent`).

    Attributes:
        config: the run's validated `ExperimentConfig`.
        agent: the rlfleet agent (in ``eval_mode`` unless the last ``act`` sampled).
        obs_normalizer: the run's observation normaliser (None without ``env.normalize_obs``).
        steps: the env steps of the checkpoint.
    """

    def __init__(self, run: LoadedRun):
        self.config = run.config
        self.agent = run.agent
        self.obs_normalizer = run.obs_normalizer
        self.steps = run.steps
        env = make_env(self.config.env, training=False)  # its spaces and action mapping only
        env.close()
        run.close()  # the built envs are not needed: the agent and normaliser are kept
        self._env = env
        self.observation_space = env.observation_space
        self.action_space = env.action_space  # the agent's (Box actions in [-1, 1])
        self._deterministic = True
        self._n_envs: int | None = None
        self._prev_action: torch.Tensor | None = None  # [N]: the last actions, the agent's prev_action

    def make_env(self, render_mode: str | None = None) -> gym.Env:
        """The Gymnasium env as rlfleet builds it for this run's evaluation (``env.*`` options,
        wrappers such as Atari preprocessing), whose observations ``act`` takes."""
        return make_env(self.config.env, training=False, render_mode=render_mode).env

    def _observations(self, observation: Any) -> tuple[Any, bool]:
        """``([N, ...] observations as the agent's env presents them, whether one was given)``."""
        space = self.observation_space
        if isinstance(space, Composite):  # Dict/Tuple observations: one at a time
            return buffer_from_example(space.convert(observation), (1,)), True
        obs = np.asarray(observation, dtype=space.dtype)
        shape = tuple(space.shape)
        if obs.shape == shape:
            return obs[None], True
        if obs.ndim == len(shape) + 1 and obs.shape[1:] == shape:
            return obs, False
        raise RlfleetError(
            f"act: an observation of shape {list(shape)} or a batch [N, {', '.join(map(str, shape))}] "
            f"was expected, got shape {list(obs.shape)}"
        )

    def reset(self, done: Any = None) -> None:
        """Start new episodes: every env (``done`` None) or those where ``done [N]`` is True.
        A recurrent agent (``model.core``) carries its state from one ``act`` to the next and
        forgets it here; a feed-forward one has nothing to forget."""
        if self._n_envs is None:  # nothing acted yet
            return
        mask = torch.ones(self._n_envs, dtype=torch.bool) if done is None else torch.as_tensor(done, dtype=torch.bool)
        mask = mask.reshape(self._n_envs)
        self.agent.reset_envs(mask)
        self._prev_action[mask] = self._null_actions(int(mask.sum()))  # as the sampler: zero after an episode end

    def _null_actions(self, n: int) -> torch.Tensor:
        return torch.from_numpy(buffer_from_example(self.action_space.null_value(), (n,)))

    def act(self, observation: Any, deterministic: bool = True, reward: Any = None) -> Any:
        """The action for one observation (an ``int`` for Discrete actions, an array for Box
        ones) or for a batch ``[N, ...]`` (an ``[N]`` or ``[N, ...]`` array). ``deterministic``:
        the agent's evaluation behaviour (as ``rlfleet eval``); False samples with the agent's
        own exploration (as its training sampler, at the checkpoint's schedules). A recurrent
        agent continues from the state its last call left (call `reset` at episode ends).

        The agent sees the previous action (the one this policy returned last, null after
        `reset`) and ``reward``, the reward of the step that produced ``observation`` (a number
        or ``[N]``; None: 0, as at an episode's first step), as during training: models that
        read them (``model.core_prev_action_reward``, R2D2's default) need the reward passed."""
        obs, single = self._observations(observation)
        if deterministic != self._deterministic:
            (self.agent.eval_mode if deterministic else self.agent.sample_mode)(self.steps)
            self._deterministic = deterministic
        if self.obs_normalizer is not None:
            obs = self.obs_normalizer(obs, update=False)
        n = len(obs) if not isinstance(self.observation_space, Composite) else 1
        self._n_envs = n
        if self._prev_action is None or len(self._prev_action) != n:
            self._prev_action = self._null_actions(n)
        prev_reward = torch.zeros(n) if reward is None else torch.as_tensor(reward, dtype=torch.float32).reshape(n)
        step_action = self.agent.step(torchify_buffer(obs), self._prev_action, prev_reward).action
        self._prev_action = step_action.clone()
        action = step_action.numpy()
        if single:
            return self._env.to_env_action(action[0])
        return np.asarray([self._env.to_env_action(a) for a in action])


def load_agent(
    run_dir: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
) -> Policy:
    """The policy of the run in ``run_dir`` (``runs/<env>/<algo>/<name>/seed<N>``), from its
    latest checkpoint or ``checkpoint``; ``device`` overrides the run's ``runner.device``.
    A bad directory or checkpoint raises a one-line `RlfleetError`."""
    return Policy(load_run(Path(run_dir), checkpoint, None if device is None else str(device)))
