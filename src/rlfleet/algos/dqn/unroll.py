"""Unrolling the online and target networks over a batch of replayed sequences (R2D2, DQN with
Retrace targets, Reactor)."""

from __future__ import annotations

import torch

from rlfleet.replays.sequence import SequenceBatch


def unroll_sequences(agent, batch: SequenceBatch, start_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The online (with gradient) and target outputs ``[W - burn_in, N + K, ...]`` of a sequence
    batch from its first trained step on. A recurrent agent first burns both networks in from
    ``start_state [N + K, S]`` without gradient, so each starts the trained steps from a state its
    own weights produced; a feed-forward one reads every step in one pass."""
    samples, burn_in = batch.samples, batch.burn_in
    inputs, episode_start = samples.agent_inputs, samples.episode_start
    if not agent.recurrent:
        with torch.no_grad():
            target = agent.target(*inputs[burn_in:])
        return agent(*inputs[burn_in:]), target
    online_state = target_state = start_state
    if burn_in:
        with torch.no_grad():
            _, online_state = agent(*inputs[:burn_in], start_state, episode_start[:burn_in])
            _, target_state = agent.target(*inputs[:burn_in], start_state, episode_start[:burn_in])
    outputs, _ = agent(*inputs[burn_in:], online_state, episode_start[burn_in:], final_state=False)
    with torch.no_grad():
        target, _ = agent.target(*inputs[burn_in:], target_state, episode_start[burn_in:], final_state=False)
    return outputs, target
