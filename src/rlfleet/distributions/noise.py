"""Exploration noise added to a deterministic policy's actions (DDPG, TD3).

Both processes draw from a caller-supplied ``torch.Generator`` (the agent's, checkpointed), so
exploration is reproducible and resumes exactly.
"""

from __future__ import annotations

import math

import torch


class GaussianNoise:
    """Independent ``N(0, std^2)`` noise every step (Fujimoto et al. 2018).

    Args:
        std: standard deviation, in the agent's action units ([-1, 1]).
    """

    def __init__(self, std: float):
        self.std = std

    def sample(self, shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
        """Noise ``[B, *action_shape]``."""
        return torch.randn(shape, generator=generator) * self.std

    def reset(self, done: torch.Tensor) -> None:
        """Nothing to forget: the noise has no state."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class OrnsteinUhlenbeckNoise:
    """Temporally correlated noise (Lillicrap et al. 2016), one process per env.

    The Euler-Maruyama discretisation of ``dx = theta (mu - x) dt + sigma dW``:

    ``x_{k+1} = x_k + theta (mu - x_k) dt + sigma sqrt(dt) eps_k``, ``eps_k ~ N(0, I)``,

    the form of OpenAI Baselines and Stable-Baselines3 (dt = 1e-2 there). Its stationary
    standard deviation is ``sigma / sqrt(2 theta - theta^2 dt)`` (about ``sigma / sqrt(2 theta)``
    for small dt) and its lag-1 autocorrelation ``1 - theta dt``. ``dt = 1`` gives the
    undiscretised recursion of rllab's OU strategy. The state ``x [B, *action_shape]`` starts at
    ``mu``; `reset` returns chosen envs to ``mu`` (at an episode start, as in the paper).

    Args:
        theta: mean-reversion rate.
        sigma: diffusion scale, in the agent's action units ([-1, 1]).
        dt: time step of the discretisation.
        mu: long-run mean.
    """

    def __init__(self, theta: float = 0.15, sigma: float = 0.2, dt: float = 1e-2, mu: float = 0.0):
        self.theta, self.sigma, self.dt, self.mu = theta, sigma, dt, mu
        self.x: torch.Tensor | None = None

    @property
    def stationary_std(self) -> float:
        return self.sigma / math.sqrt(2 * self.theta - self.theta**2 * self.dt)

    def sample(self, shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
        """Advance every env's process one step and return the new state ``[B, *action_shape]``
        (a copy). A state of another shape (first call, other B) restarts at ``mu``."""
        if self.x is None or self.x.shape != torch.Size(shape):
            self.x = torch.full(shape, self.mu)
        eps = torch.randn(shape, generator=generator)
        self.x = self.x + self.theta * (self.mu - self.x) * self.dt + self.sigma * math.sqrt(self.dt) * eps
        return self.x.clone()

    def reset(self, done: torch.Tensor) -> None:
        """Restart the processes of the envs where ``done [B]`` (bool) is set."""
        if self.x is not None and done.any():
            self.x[done] = self.mu

    def state_dict(self) -> dict:
        return {"x": None if self.x is None else self.x.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.x = None if state["x"] is None else state["x"].clone()
