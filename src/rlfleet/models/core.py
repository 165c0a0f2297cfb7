"""Recurrent cores: the middle of Encoder -> Core -> Heads.

A core turns features ``[T,B,F]`` into outputs ``[T,B,H]`` while carrying a state ``[B,S]``
across time. Every state is one flat tensor per env (the LSTM's ``h`` and ``c`` side by side),
so agents, samplers and replays store, reset and slice it like any other ``[B,...]`` array.
``episode_start [T,B]`` marks the steps that begin a new episode: the state of those envs is
zeroed just before the step, inside the unroll, so one ``[T,B]`` batch may hold several
episodes per env.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import nn

from rlfleet.config.rules import CoreKind
from rlfleet.config.validate import check_kwargs
from rlfleet.envs.spaces import Discrete, Space
from rlfleet.errors import ConfigError
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

    def _run(self, x, state: torch.Tensor) -> tuple:
        """Sequences without resets: ``x [t,N,F]`` (or a PackedSequence), ``state [N,S]`` ->
        ``(out [t,N,H] (or packed), state [N,S])``; a single step skips the layer's Python
        wrapper for the fused cell."""
        if isinstance(x, torch.Tensor) and x.shape[0] == 1:
            return self._cell(x[0], state)
        if self.kind == "lstm":
            h, c = state.unsqueeze(0).chunk(2, dim=-1)
            out, (h, c) = self.rnn(x, (h.contiguous(), c.contiguous()))
            return out, torch.cat([h, c], dim=-1).squeeze(0)
        out, h = self.rnn(x, state.unsqueeze(0).contiguous())
        return out, h.squeeze(0)

    def _cell(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: ``x [N,F]``, ``state [N,S]`` -> ``(out [1,N,H], state [N,S])``."""
        rnn = self.rnn
        weights = (rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)
        if self.kind == "lstm":
            h, c = state.chunk(2, dim=-1)
            h, c = torch.lstm_cell(x, (h, c), *weights)
            return h.unsqueeze(0), torch.cat([h, c], dim=-1)
        h = torch.gru_cell(x, state, *weights)
        return h.unsqueeze(0), h

    def forward(
        self,
        x: torch.Tensor,
        state: torch.Tensor,
        episode_start: torch.Tensor | None = None,
        final_state: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x [T,B,F]``, ``state [B,S]`` (the state before step 0), ``episode_start [T,B]``
        bool (None: no resets) -> ``(out [T,B,H], final state [B,S])`` (the state is None when
        ``final_state`` is False and an episode starts inside the batch).

        Where episodes start inside the batch, each env column is cut at its episode starts into
        fragments; the fragments (a new episode's from zero state, the first from ``state``) run
        side by side through one call of the torch layer, padded to the longest, and the outputs
        are put back in ``[T,B]`` order: one layer call whatever the number of resets
        (sb3-contrib #113: a call per step or per reset is what makes recurrent PPO slow). The
        padding's steps come after each fragment's own, so they change no output; only the
        final state needs the fragments packed to their lengths, a slower call made only when
        asked for.
        """
        if episode_start is None or not episode_start[1:].any():
            if episode_start is not None:
                state = state * (~episode_start[0]).unsqueeze(-1).to(state.dtype)
            return self._run(x, state)
        T, B = episode_start.shape
        starts = episode_start.t().clone()  # [B,T], column-major like the fragments
        starts[:, 0] = True
        first = starts.flatten().nonzero().squeeze(1)  # flat index b*T + t0 of each fragment start
        column = first // T
        lengths = torch.diff(first, append=first.new_tensor([B * T]))
        steps = torch.arange(int(lengths.max()), device=x.device)
        valid = steps < lengths.unsqueeze(1)  # [n, Lmax]
        flat = (first.unsqueeze(1) + steps).clamp(max=B * T - 1)  # [n, Lmax] positions in x's columns
        by_column = x.transpose(0, 1).reshape(B * T, -1)
        fragments = by_column[flat].transpose(0, 1)  # [Lmax, n, F]
        carried = (first % T == 0) & ~episode_start[0, column]  # a column's first fragment keeps its state
        init = state[column] * carried.unsqueeze(-1).to(state.dtype)
        if final_state:
            packed = nn.utils.rnn.pack_padded_sequence(fragments, lengths.cpu(), enforce_sorted=False)
            out, final = self._run(packed, init)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, total_length=len(steps))  # [Lmax, n, H]
        else:
            out, _ = self._run(fragments, init)
        position = torch.empty(B * T, dtype=torch.long, device=x.device)
        position[flat[valid]] = (torch.arange(len(first), device=x.device).unsqueeze(1) * len(steps) + steps)[valid]
        out = out.transpose(0, 1).reshape(-1, out.shape[-1])[position]  # [B*T, H], column-major
        out = out.view(B, T, -1).transpose(0, 1)
        if not final_state:
            return out, None
        last = torch.cat([column[1:] != column[:-1], column.new_ones(1, dtype=torch.bool)])
        return out, final[last]


def memory_core_class(kind: str) -> type[nn.Module]:
    """The class of a memory core kind: ``dnc`` or ``gtrxl``."""
    from rlfleet.models.dnc import DncCore
    from rlfleet.models.gtrxl import GatedTransformerCore

    return {"dnc": DncCore, "gtrxl": GatedTransformerCore}[kind]


def make_core(
    kind: CoreKind, input_size: int, hidden_size: int, options: Mapping[str, Any] | None = None
) -> nn.Module | None:
    """The core of ``kind`` (None for ``none``: a feed-forward model): a `RecurrentCore` (lstm,
    gru), a `rlfleet.models.dnc.DncCore` or a `rlfleet.models.gtrxl.GatedTransformerCore`, the
    last two with their keyword ``options`` (``model.core_options``, checked against their
    signatures). Every core has the `RecurrentCore` interface: ``(x [T,B,F], state [B,S],
    episode_start [T,B], final_state) -> (out [T,B,hidden_size], state [B,S])``, ``state_size``."""
    options = dict(options or {})
    if kind in ("none", "lstm", "gru"):
        if options:
            raise ConfigError(
                f"model.core_options {sorted(options)} are options of the dnc and gtrxl cores; "
                f"model.core={kind} takes none"
            )
        return None if kind == "none" else RecurrentCore(kind, input_size, hidden_size)
    cls = memory_core_class(kind)
    check_kwargs(cls, options, "model.core_options", skip=("input_size", "hidden_size"))
    return cls(input_size, hidden_size, **options)


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
