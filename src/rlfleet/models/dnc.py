"""Differentiable neural computer core (Graves et al. 2016, "Hybrid computing using neural
networks with dynamic external memory").

An LSTM controller reads ``[x_t, r_{t-1}]`` and emits an interface vector that drives one write
head and ``R`` read heads over a memory of ``N`` words of width ``W``: content addressing
(cosine similarity sharpened by a key strength), dynamic allocation (usage, free gates, the
allocation weighting over slots sorted by usage) and, optionally, the temporal link matrix with
its precedence weighting (forward and backward reads). The core's output is a linear map of the
controller output and the new read vectors. The addressing functions are pure and batched over
``B``; the paper's equation names are kept in the code.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from rlfleet.config.rules import Count

EPS = 1e-6
"""Keeps cosine similarity finite on zero words and the allocation product off exact zeros."""


def content_weights(memory: torch.Tensor, keys: torch.Tensor, strengths: torch.Tensor) -> torch.Tensor:
    """Content addressing ``C(M, k, beta)``: ``memory [B,N,W]``, ``keys [B,K,W]``, ``strengths
    [B,K]`` -> ``[B,K,N]``, for each key the softmax over slots of ``beta * cos(k, M[i])``."""
    memory = memory * torch.rsqrt(memory.square().sum(-1, keepdim=True) + EPS)
    keys = keys * torch.rsqrt(keys.square().sum(-1, keepdim=True) + EPS)
    similarity = torch.bmm(keys, memory.transpose(1, 2))
    return torch.softmax(similarity * strengths.unsqueeze(-1), dim=-1)


def allocation_weights(usage: torch.Tensor) -> torch.Tensor:
    """Allocation weighting: ``usage [B,N]`` in ``[0,1]`` -> ``a [B,N]``, with ``phi`` the slots
    sorted by ascending usage, ``a[phi_j] = (1 - u[phi_j]) prod_{i<j} u[phi_i]``. Usage is
    moved into ``[EPS, 1]`` first so that the product never multiplies exact zeros."""
    usage = EPS + (1 - EPS) * usage
    sorted_usage, order = torch.sort(usage, dim=-1, stable=True)
    before = torch.cumprod(torch.cat([torch.ones_like(usage[:, :1]), sorted_usage[:, :-1]], dim=-1), dim=-1)
    return torch.zeros_like(usage).scatter(-1, order, (1 - sorted_usage) * before)


def update_link(
    link: torch.Tensor, precedence: torch.Tensor, write_weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Temporal link update: ``link [B,N,N]`` (``L[i,j]``: slot ``i`` written after slot ``j``),
    ``precedence [B,N]`` (``p_{t-1}``), ``write_weights [B,N]`` -> ``(L_t, p_t)`` with
    ``L_t[i,j] = (1 - w[i] - w[j]) L[i,j] + w[i] p[j]`` (zero diagonal) and
    ``p_t = (1 - sum_i w[i]) p + w``."""
    w_i = write_weights.unsqueeze(2)
    link = (1 - w_i - write_weights.unsqueeze(1)) * link + w_i * precedence.unsqueeze(1)
    link = link.masked_fill(torch.eye(link.shape[-1], dtype=torch.bool, device=link.device), 0)
    precedence = (1 - write_weights.sum(-1, keepdim=True)) * precedence + write_weights
    return link, precedence


class DncState(NamedTuple):
    """The DNC's state, one tensor per part (each ``[B,...]``); flat, in this order, in the core's
    ``[B,S]`` state. All zeros is the initial state: empty memory, no usage, no links."""

    h: torch.Tensor  # [B,H] controller output
    c: torch.Tensor  # [B,H] controller cell
    memory: torch.Tensor  # [B,N,W]
    usage: torch.Tensor  # [B,N]
    link: torch.Tensor  # [B,N,N] ([B,0,0] without the link matrix)
    precedence: torch.Tensor  # [B,N] ([B,0] without the link matrix)
    read_weights: torch.Tensor  # [B,R,N]
    write_weights: torch.Tensor  # [B,N]
    read_vectors: torch.Tensor  # [B,R*W]


class DncCore(nn.Module):
    """A DNC over ``[T,B,F]`` with episode resets, with the `rlfleet.models.core.RecurrentCore`
    interface.

    Args:
        input_size: ``F``.
        hidden_size: ``H``: the LSTM controller's width and the output width.
        memory_slots: ``N``, the number of memory words.
        word_size: ``W``, the width of a word.
        read_heads: ``R``.
        link: keep the ``N x N`` temporal link matrix and the forward/backward read modes; False
            leaves content-based reads only (and ``N^2 + N`` fewer state entries).

    Attributes:
        state_size: ``S = 2H + NW + N + (N^2 + N if link) + RN + N + RW`` (the `DncState` parts,
            flat).
        output_size: ``H``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        memory_slots: Count = 16,
        word_size: Count = 16,
        read_heads: Count = 4,
        link: bool = True,
    ):
        super().__init__()
        n, w, r, h = memory_slots, word_size, read_heads, hidden_size
        self.hidden_size = self.output_size = h
        self.memory_slots, self.word_size, self.read_heads, self.link = n, w, r, link
        self.controller = nn.LSTMCell(input_size + r * w, h)
        # interface: read keys, write key, write vector, strengths (R read, 1 write), gates
        # (erase W, free R, allocation, write), read modes (backward, content, forward per head)
        self._interface_split = [r * w, w, w, r + 1, w + r + 2] + ([3 * r] if link else [])
        self.interface = nn.Linear(h, sum(self._interface_split))
        self.output = nn.Linear(h + r * w, h)
        links = n if link else 0
        self._shapes = [(h,), (h,), (n, w), (n,), (links, links), (links,), (r, n), (n,), (r * w,)]
        self._sizes = [int(torch.Size(s).numel()) for s in self._shapes]
        self.state_size = sum(self._sizes)

    def unflatten(self, state: torch.Tensor) -> DncState:
        """``[B,S]`` -> `DncState` (views)."""
        parts = state.split(self._sizes, dim=-1)
        return DncState(*(p.view(state.shape[0], *s) for p, s in zip(parts, self._shapes)))

    @staticmethod
    def flatten(state: DncState) -> torch.Tensor:
        """`DncState` -> ``[B,S]``."""
        return torch.cat([p.flatten(1) for p in state], dim=-1)

    def step(self, x: torch.Tensor, s: DncState) -> tuple[torch.Tensor, DncState]:
        """One step: ``x [B,F]``, the state before it -> ``(out [B,H], state after it)``."""
        B, R, W = x.shape[0], self.read_heads, self.word_size
        c = self.controller
        h, cell = torch.lstm_cell(
            torch.cat([x, s.read_vectors], dim=-1), (s.h, s.c), c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh
        )
        read_keys, write_key, write_vector, strengths, gates, *modes = self.interface(h).split(
            self._interface_split, dim=-1
        )
        strengths = 1 + F.softplus(strengths)  # oneplus
        erase, free, allocation_gate, write_gate = torch.sigmoid(gates).split([W, R, 1, 1], dim=-1)
        # usage after the previous write, then freed where the previous reads were (psi)
        usage = s.usage + s.write_weights - s.usage * s.write_weights
        usage = usage * torch.prod(1 - free.unsqueeze(-1) * s.read_weights, dim=1)
        write_content = content_weights(s.memory, write_key.unsqueeze(1), strengths[:, R:]).squeeze(1)
        write_weights = write_gate * (
            allocation_gate * allocation_weights(usage) + (1 - allocation_gate) * write_content
        )
        ww = write_weights.unsqueeze(2)
        memory = s.memory * (1 - ww * erase.unsqueeze(1)) + ww * write_vector.unsqueeze(1)
        read_weights = content_weights(memory, read_keys.view(B, R, W), strengths[:, :R])
        link, precedence = s.link, s.precedence
        if self.link:
            link, precedence = update_link(link, precedence, write_weights)
            forward = torch.bmm(s.read_weights, link.transpose(1, 2))
            backward = torch.bmm(s.read_weights, link)
            pi = torch.softmax(modes[0].view(B, R, 3), dim=-1)
            read_weights = pi[..., :1] * backward + pi[..., 1:2] * read_weights + pi[..., 2:] * forward
        read_vectors = torch.bmm(read_weights, memory).flatten(1)
        out = self.output(torch.cat([h, read_vectors], dim=-1))
        return out, DncState(h, cell, memory, usage, link, precedence, read_weights, write_weights, read_vectors)

    def forward(
        self,
        x: torch.Tensor,
        state: torch.Tensor,
        episode_start: torch.Tensor | None = None,
        final_state: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x [T,B,F]``, ``state [B,S]`` (before step 0), ``episode_start [T,B]`` bool (None: no
        resets) -> ``(out [T,B,H], state [B,S] after the last step, None when final_state is
        False)``. The state of an env is zeroed just before each step that starts an episode."""
        keep = None if episode_start is None else (~episode_start).to(state.dtype)
        if keep is not None:
            state = state * keep[0].unsqueeze(-1)
        s = self.unflatten(state)
        resets = keep is not None and x.shape[0] > 1 and bool(episode_start[1:].any())
        outs = []
        for t in range(x.shape[0]):
            if resets and t > 0:
                k = keep[t]
                s = DncState(*(p * k.view(-1, *(1,) * (p.dim() - 1)) for p in s))
            out, s = self.step(x[t], s)
            outs.append(out)
        return torch.stack(outs), self.flatten(s) if final_state else None
