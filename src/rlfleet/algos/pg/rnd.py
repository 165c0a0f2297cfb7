"""Random network distillation (Burda et al. 2018, "Exploration by Random Network Distillation").

A fixed, randomly initialised target network ``f`` embeds observations; a predictor ``f_hat``
is trained to match it on the observations the agent visits. Its error is small on familiar
observations and large on new ones, so it serves as an intrinsic reward:

    i_t = ||f_hat(s_{t+1}) - f(s_{t+1})||^2

on ``s_{t+1}`` normalised by the running mean and std of observations and clipped to +-5
(`ObservationStatistics`). The reward is divided by the running std of its discounted return,
filtered over time per env (`IntrinsicRewardNormalizer`). The intrinsic stream is non-episodic:
an episode's end is one more transition, into the next episode's first observation, for the
reward and the value bootstrap alike (`intrinsic_targets`), so a novel state is worth reaching
even if the episode ends on the way. PPO (`rlfleet.algos.pg.ppo`) learns it with a second value
head of its own discount and the combined advantage ``A = ext_coef A_ext + int_coef A_int``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from rlfleet.algos.optimizer import FlatOptimizer
from rlfleet.algos.pg.returns import generalized_advantage_estimation
from rlfleet.algos.specs.ppo import RNDConfig
from rlfleet.config.rules import EncoderSections
from rlfleet.envs.normalize import RunningMeanStd
from rlfleet.envs.spaces import Box, Space
from rlfleet.errors import ConfigError
from rlfleet.models.encoder import Encoder, orthogonal_init
from rlfleet.models.mlp import MLP

OBS_CLIP = 5.0
EPSILON = 1e-8


class ObservationStatistics:
    """Running mean and variance of observations ``[N, *shape]``; ``normalize`` gives
    ``clip((obs - mean) / sqrt(var + eps), -5, 5)`` as float32."""

    def __init__(self, shape: tuple[int, ...]):
        self.stats = RunningMeanStd(shape)

    def update(self, observation: torch.Tensor) -> None:
        self.stats.update(observation.detach().cpu().double().numpy())

    def normalize(self, observation: torch.Tensor) -> torch.Tensor:
        mean = torch.as_tensor(self.stats.mean, device=observation.device)
        std = torch.as_tensor(np.sqrt(self.stats.var + EPSILON), device=observation.device)
        return ((observation.double() - mean) / std).clamp(-OBS_CLIP, OBS_CLIP).float()

    def state_dict(self) -> dict:
        return self.stats.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.stats.load_state_dict(state)


def discounted_return_filter(reward: torch.Tensor, running: torch.Tensor, gamma: float) -> torch.Tensor:
    """``R_t = gamma R_{t-1} + r_t`` over time (dim 0) for each env: ``reward [T,B]``, the return
    before the batch ``running [B]``; returns ``R [T,B]``. Never reset at episode ends."""
    returns = torch.empty_like(reward)
    for t in range(reward.shape[0]):
        running = gamma * running + reward[t]
        returns[t] = running
    return returns


class IntrinsicRewardNormalizer:
    """Divide intrinsic rewards ``[T,B]`` by the running std of their discounted returns.

    Each env's return is filtered over time (`discounted_return_filter`, carried across batches
    and episodes); the running variance is taken over every ``R[t,b]`` seen so far.

    Args:
        n_envs: B.
        gamma: the intrinsic discount.
    """

    def __init__(self, n_envs: int, gamma: float):
        self.gamma = gamma
        self.returns = torch.zeros(n_envs, dtype=torch.float64)
        self.stats = RunningMeanStd(())

    def __call__(self, reward: torch.Tensor) -> torch.Tensor:
        returns = discounted_return_filter(reward.double().cpu(), self.returns, self.gamma)
        self.returns = returns[-1].clone()
        self.stats.update(returns.reshape(-1).numpy())
        return reward / float(np.sqrt(self.stats.var + EPSILON))

    def state_dict(self) -> dict:
        return {**self.stats.state_dict(), "returns": self.returns.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.stats.load_state_dict(state)
        self.returns = state["returns"].clone()


@torch.no_grad()
def intrinsic_targets(
    reward: torch.Tensor, value: torch.Tensor, bootstrap: torch.Tensor, gamma: float, gae_lambda: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-episodic GAE of the intrinsic stream: ``reward [T,B]``, ``value [T,B]`` (the intrinsic
    head), ``bootstrap [B]`` after the batch; no step cuts the recursion. Returns
    ``(advantage [T,B], return_ [T,B])``."""
    next_value = torch.cat([value[1:], bootstrap.unsqueeze(0)], dim=0)
    never_done = torch.zeros_like(reward, dtype=torch.bool)
    return generalized_advantage_estimation(reward, value, next_value, never_done, gamma, gae_lambda)


def combined_advantage(
    ext_advantage: torch.Tensor, int_advantage: torch.Tensor, ext_coef: float, int_coef: float
) -> torch.Tensor:
    """``A = ext_coef A_ext + int_coef A_int`` (``[T,B]``)."""
    return ext_coef * ext_advantage + int_coef * int_advantage


class RNDNetwork(nn.Module):
    """``observation [N, *shape] (normalised) -> embedding [N, output_size]``: the observation
    space's encoder (or ``encoder`` block sections), an MLP of ``hidden_sizes`` (ReLU) and a
    linear output; orthogonal initialisation."""

    def __init__(
        self,
        observation_space: Box,
        hidden_sizes: Sequence[int],
        output_size: int,
        encoder: EncoderSections | None,
    ):
        super().__init__()
        self.encoder = Encoder(observation_space, [], "relu", blocks=encoder)
        self.mlp = MLP(self.encoder.output_size, hidden_sizes, output_size, activation="relu")
        orthogonal_init(self)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.encoder(observation, observation.shape[0]))


class RND:
    """The target and predictor networks, the predictor's optimizer and the normalisers.

    Args:
        observation_space: the agent's observation space (a Box).
        config: the ``algo.rnd`` options.
        n_envs: B (the intrinsic return is tracked per env).
        lr, optimizer_eps, max_grad_norm: the predictor's Adam (PPO's values).
        device: where the networks live.

    ``intrinsic_reward(obs [T,B,*shape])`` (normalised observations) -> ``[T,B]``;
    ``predictor_loss(obs [N,*shape], mask [N])`` -> the masked mean squared error.
    """

    def __init__(
        self,
        observation_space: Space,
        config: RNDConfig,
        n_envs: int,
        lr: float,
        optimizer_eps: float,
        max_grad_norm: float,
        device: torch.device | str,
    ):
        if not isinstance(observation_space, Box):
            raise ConfigError(f"algo.rnd needs a Box observation space, got {observation_space}")
        self.config = config
        self.device = device
        shape = observation_space.shape
        self.target = RNDNetwork(observation_space, config.target_hidden_sizes, config.output_size, config.encoder)
        self.predictor = RNDNetwork(
            observation_space, config.predictor_hidden_sizes, config.output_size, config.encoder
        )
        self.target.to(device).requires_grad_(False)
        self.predictor.to(device)
        self.optimizer = FlatOptimizer(
            self.predictor.parameters(), "adam", lr, optimizer_eps, max_grad_norm, name="rnd_loss"
        )
        self.observation_statistics = ObservationStatistics(shape)
        self.reward_normalizer = IntrinsicRewardNormalizer(n_envs, config.int_gamma)

    def normalize(self, observation: torch.Tensor) -> torch.Tensor:
        return self.observation_statistics.normalize(observation.to(self.device))

    def _squared_error(self, observation: torch.Tensor) -> torch.Tensor:
        """``[N, output_size]`` squared errors of the predictor on normalised ``[N, *shape]``."""
        with torch.no_grad():
            target = self.target(observation)
        return (self.predictor(observation) - target).pow(2)

    @torch.no_grad()
    def intrinsic_reward(self, observation: torch.Tensor) -> torch.Tensor:
        """``||f_hat(s) - f(s)||^2`` of normalised ``[T,B,*shape]``, unnormalised, ``[T,B]``."""
        T, B = observation.shape[:2]
        return self._squared_error(observation.reshape(T * B, *observation.shape[2:])).sum(-1).view(T, B)

    def predictor_loss(self, observation: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The predictor's mean squared error over the ``mask``-ed rows of ``[N, *shape]``."""
        error = self._squared_error(observation).mean(-1)
        return (error * mask).sum() / mask.sum().clamp(min=1)

    def state_dict(self) -> dict:
        return {
            "target": self.target.state_dict(),
            "predictor": self.predictor.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "observation_statistics": self.observation_statistics.state_dict(),
            "reward_normalizer": self.reward_normalizer.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.target.load_state_dict(state["target"])
        self.predictor.load_state_dict(state["predictor"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.observation_statistics.load_state_dict(state["observation_statistics"])
        self.reward_normalizer.load_state_dict(state["reward_normalizer"])
