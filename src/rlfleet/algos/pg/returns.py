"""Return and advantage estimators on ``[T,B]`` tensors.

Conventions: ``reward[t]`` follows the action at ``t``; ``next_value[t]`` is the value of the
state reached at ``t+1``, already zero where the episode *terminated* at ``t`` and the value
of the final observation where it was *truncated* at ``t``; ``done[t]`` (terminated or
truncated) cuts the recursion so nothing leaks across episode boundaries.
"""

from __future__ import annotations

import torch


def next_values(
    value: torch.Tensor,
    bootstrap_value: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    truncated_value: torch.Tensor,
) -> torch.Tensor:
    """``[T,B]`` value of the next state: ``value[t+1]`` (``bootstrap_value [B]`` after the last
    step), ``truncated_value[t]`` where truncated, 0 where terminated."""
    nxt = torch.cat([value[1:], bootstrap_value.unsqueeze(0)], dim=0)
    nxt = torch.where(truncated, truncated_value, nxt)
    return nxt * (~terminated)


def generalized_advantage_estimation(
    reward: torch.Tensor,
    value: torch.Tensor,
    next_value: torch.Tensor,
    done: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE (Schulman et al. 2016): ``delta_t = r_t + gamma V(s_{t+1}) - V(s_t)``,
    ``A_t = delta_t + gamma lambda (1 - done_t) A_{t+1}``. Returns ``(advantage, return_)``
    with ``return_ = advantage + value`` (the lambda-return value target). ``gae_lambda=1``
    gives n-step discounted returns bootstrapped at the batch end (A2C)."""
    delta = reward + gamma * next_value - value
    not_done = (~done).to(reward.dtype)
    advantage = torch.zeros_like(reward)
    running = torch.zeros_like(reward[0])
    for t in reversed(range(reward.shape[0])):
        running = delta[t] + gamma * gae_lambda * not_done[t] * running
        advantage[t] = running
    return advantage, advantage + value
