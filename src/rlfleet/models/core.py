"""Recurrent cores: the middle of Encoder -> Core -> Heads.

A core turns features ``[T,B,F]`` into outputs ``[T,B,H]`` while carrying a state ``[B,S]``
across time. Every state is one flat tensor per env (the LSTM's ``h`` and ``c`` side by side),
so agents, samplers and replays store, reset and slice it like any other ``[B,...]`` array.
``episode_start [T,B]`` marks the steps that begin a new episode: the state of those envs is
zeroed just before the step, inside the unroll, so one ``[T,B]`` batch may hold several
episodes per env.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from rlfleet.config.rules import CoreKind
from rlfleet.envs.spaces import Discrete, Space
from rlfleet.models.encoder import flat_size


class RecurrentCore(nn.Module):
    """An LSTM or GRU layer over ``[T,B,F]`` with episode resets.

    Args:
        kind: ``lstm`` or ``gru``.
        input_size: ``F``.
        hidden_size: ``H``, the output width.

    Attributes:
        state_size: ``S``: ``2H`` for an LSTM (``h`` then ``c``), ``H`` for a GRU.
    """

    def __init__(self, kind: Literal["lstm", "gru"], input_size: int, hidden_size: int):
        super().__init__()
        self.kind = kind
        self.hidden_size = hidden_size
        self.output_size = hidden_size
        self.rnn = (nn.LSTM if kind == "lstm" else nn.GRU)(input_size, hidden_size)
        self.state_size = 2 * hidden_size if kind == "lstm" else hidden_size

    def _run(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One uninterrupted stretch: ``x [t,B,F]``, ``state [B,S]`` -> ``(out [t,B,H], state [B,S])``."""
        if self.kind == "lstm":
            h, c = state.unsqueeze(0).chunk(2, dim=-1)
            out, (h, c) = self.rnn(x, (h.contiguous(), c.contiguous()))
            return out, torch.cat([h, c], dim=-1).squeeze(0)
        out, h = self.rnn(x, state.unsqueeze(0).contiguous())
        return out, h.squeeze(0)

    def forward(
        self, x: torch.Tensor, state: torch.Tensor, episode_start: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [T,B,F]``, ``state [B,S]`` (the state before step 0), ``episode_start [T,B]``
        bool (None: no resets) -> ``(out [T,B,H], final state [B,S])``.

        The batch is cut at the steps where any env starts an episode; each stretch between
        cuts runs as one call of the torch layer, with the starting envs' state zeroed first.
        """
        if episode_start is None:
            return self._run(x, state)
        cuts = episode_start.any(dim=1)
        cuts[0] = True
        bounds = cuts.nonzero().flatten().tolist() + [x.shape[0]]
        outs = []
        for start, stop in zip(bounds[:-1], bounds[1:]):
            state = state * (~episode_start[start]).unsqueeze(-1).to(state.dtype)
            out, state = self._run(x[start:stop], state)
            outs.append(out)
        return torch.cat(outs) if len(outs) > 1 else outs[0], state


def make_core(kind: CoreKind, input_size: int, hidden_size: int) -> RecurrentCore | None:
    """The core of ``kind`` (None for ``none``: a feed-forward model)."""
    return None if kind == "none" else RecurrentCore(kind, input_size, hidden_size)


def episode_starts(done: torch.Tensor) -> torch.Tensor:
    """``episode_start [T,B]`` of a batch from its ``done [T,B]`` (terminated or truncated): step
    ``t`` starts an episode where step ``t-1`` ended one. Row 0 is False: the state stored at a
    batch's first step already belongs to that step (zero where an episode began there)."""
    return torch.cat([torch.zeros_like(done[:1]), done[:-1]])


def action_reward_size(action_space: Space) -> int:
    """Width `previous_action_reward` adds: one-hot (Discrete) or flat (Box) action plus reward."""
    return (action_space.n if isinstance(action_space, Discrete) else flat_size(action_space)) + 1


def previous_action_reward(prev_action: torch.Tensor, prev_reward: torch.Tensor, action_space: Space) -> torch.Tensor:
    """``prev_action [N,...]``, ``prev_reward [N]`` -> ``[N, action_reward_size]`` core inputs
    (R2D2 feeds them to its LSTM beside the observation features)."""
    if isinstance(action_space, Discrete):
        action = nn.functional.one_hot(prev_action.long().reshape(-1), action_space.n).float()
    else:
        action = prev_action.reshape(prev_reward.numel(), -1).float()
    return torch.cat([action, prev_reward.reshape(-1, 1).float()], dim=-1)
