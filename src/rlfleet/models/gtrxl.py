"""Gated transformer memory core (GTrXL: Parisotto et al. 2020, "Stabilizing Transformers for
Reinforcement Learning"), on Transformer-XL's recurrence (Dai et al. 2019).

Each layer keeps its inputs of the last ``memory_length`` steps as memory. A step attends to its
own layer input and those of the ``memory_length`` steps before it (a sliding window, so that a
``[T,B]`` unroll computes exactly what ``T`` single steps chained through the state compute),
with Transformer-XL's relative positions (sinusoids of the distance projected per layer, and the
learned content and position biases ``u`` and ``v``). Layers are in identity-map order (layer
norm on the sublayer inputs only, a ReLU on the sublayer outputs) and GRU-type gates take the
place of the residual additions.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from rlfleet.config.rules import Count, NonNegative
from rlfleet.errors import ConfigError


def relative_positions(distances: int, size: int) -> torch.Tensor:
    """Transformer-XL's sinusoid encodings of the distances ``0..distances-1``: ``[distances, size]``
    (``sin`` in the first half of the channels, ``cos`` in the second)."""
    inverse_frequency = 1.0 / 10_000 ** (torch.arange(0, size, 2, dtype=torch.float32) / size)
    angles = torch.arange(distances, dtype=torch.float32).unsqueeze(1) * inverse_frequency
    return torch.cat([angles.sin(), angles.cos()], dim=-1)[:, :size]


class GruGate(nn.Module):
    """GTrXL's gating layer ``g(x, y)`` in place of the residual ``x + y``, for a stream ``x`` and a
    sublayer output ``y`` (both ``[..., D]``):

        r = sigmoid(W_r y + U_r x)
        z = sigmoid(W_z y + U_z x + b_z)
        h = tanh(W_g y + U_g (r * x))
        g(x, y) = (1 - z) * x + z * h

    ``b_z`` is learned and starts at ``-bias``, so a new gate is close to the identity ``g = x``
    (the paper's ``b_g = bias``; 0 gives a GRU's plain update gate).
    """

    def __init__(self, size: int, bias: float):
        super().__init__()
        self.w = nn.Linear(size, 3 * size, bias=False)  # W_r, W_z, W_g
        self.u = nn.Linear(size, 2 * size, bias=False)  # U_r, U_z
        self.u_g = nn.Linear(size, size, bias=False)
        self.z_bias = nn.Parameter(torch.full((size,), -float(bias)))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        wr, wz, wg = self.w(y).chunk(3, dim=-1)
        ur, uz = self.u(x).chunk(2, dim=-1)
        r = torch.sigmoid(wr + ur)
        z = torch.sigmoid(wz + uz + self.z_bias)
        h = torch.tanh(wg + self.u_g(r * x))
        return x + z * (h - x)


class GatedTransformerLayer(nn.Module):
    """One GTrXL layer: gated relative multi-head attention over ``[memory, segment]``, then a
    gated position-wise MLP.

    ``forward(e [T,B,D], context [K,B,D], mask_bias [B,1,T,K], distance [T,K]) -> [T,B,D]``:
    ``context`` is the layer's memory followed by ``e`` (``K = M + T``), ``mask_bias`` is 0 where a
    query may attend a key and ``-inf`` elsewhere, ``distance`` the query-key distances in
    ``0..M`` (clamped where masked).
    """

    def __init__(self, size: int, heads: int, feedforward_size: int, memory_length: int, gate_bias: float):
        super().__init__()
        self.heads, self.head_size = heads, size // heads
        self.attention_norm = nn.LayerNorm(size)
        self.query = nn.Linear(size, size, bias=False)
        self.key_value = nn.Linear(size, 2 * size, bias=False)
        self.position = nn.Linear(size, size, bias=False)  # W_R
        self.content_bias = nn.Parameter(torch.zeros(heads, self.head_size))  # u
        self.position_bias = nn.Parameter(torch.zeros(heads, self.head_size))  # v
        self.attention_out = nn.Linear(size, size)
        self.attention_gate = GruGate(size, gate_bias)
        self.mlp_norm = nn.LayerNorm(size)
        self.mlp = nn.Sequential(nn.Linear(size, feedforward_size), nn.ReLU(), nn.Linear(feedforward_size, size))
        self.mlp_gate = GruGate(size, gate_bias)
        self.register_buffer("sinusoids", relative_positions(memory_length + 1, size), persistent=False)

    def heads_first(self, x: torch.Tensor) -> torch.Tensor:
        """``[L,B,D]`` -> ``[B,heads,L,head_size]``."""
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_size).permute(1, 2, 0, 3)

    def forward(
        self, e: torch.Tensor, context: torch.Tensor, mask_bias: torch.Tensor, distance: torch.Tensor
    ) -> torch.Tensor:
        T, B, D = e.shape
        normed = self.attention_norm(context)
        q = self.heads_first(self.query(normed[-T:]))
        k, v = (self.heads_first(p) for p in self.key_value(normed).chunk(2, dim=-1))
        positions = self.position(self.sinusoids).view(-1, self.heads, self.head_size)  # [M+1, heads, hs]
        by_distance = torch.einsum("bhtd,phd->bhtp", q + self.position_bias.unsqueeze(1), positions)
        position_scores = by_distance.gather(-1, distance.expand(B, self.heads, T, -1))  # [B,heads,T,K]
        bias = position_scores / math.sqrt(self.head_size) + mask_bias
        attended = F.scaled_dot_product_attention(q + self.content_bias.unsqueeze(1), k, v, attn_mask=bias)
        attended = self.attention_out(attended.permute(2, 0, 1, 3).reshape(T, B, D))
        e = self.attention_gate(e, F.relu(attended))
        return self.mlp_gate(e, F.relu(self.mlp(self.mlp_norm(e))))


class GatedTransformerCore(nn.Module):
    """A GTrXL over ``[T,B,F]`` with episode resets, with the `rlfleet.models.core.RecurrentCore`
    interface. A linear embedding of the features enters the first layer; the last layer's output
    is the core's output.

    A query at step ``t`` attends to the layer inputs of steps ``t - memory_length .. t`` of its
    own episode: keys from before the last episode start at or before ``t`` are masked, as are
    memory slots not yet filled. The ``T`` steps of a call go through one masked attention per
    layer.

    Args:
        input_size: ``F``.
        hidden_size: ``D = H``, the model and output width; a multiple of ``heads``.
        layers: the number of layers.
        heads: attention heads per layer.
        memory_length: ``M``, the steps each layer remembers.
        feedforward_size: the MLP's hidden width (None: ``4 D``).
        gate_bias: ``b_g``: how close to the identity the gates start (Parisotto et al.: 2).

    Attributes:
        state_size: ``S = layers * M * D + M``: each layer's memory ``[M,D]`` (oldest first, in
            layer order) and the validity of each memory slot (1 filled, 0 empty); all zeros is
            an empty memory. Memory does not carry gradients between calls unless the caller's
            state does.
        output_size: ``D``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        layers: Count = 2,
        heads: Count = 4,
        memory_length: Count = 32,
        feedforward_size: Count | None = None,
        gate_bias: NonNegative = 2.0,
    ):
        super().__init__()
        if hidden_size % heads:
            divisors = [h for h in range(1, hidden_size + 1) if hidden_size % h == 0]
            nearest = min(divisors, key=lambda h: (abs(h - heads), h))
            raise ConfigError(
                f"model.core_options.heads={heads} does not divide the gtrxl width {hidden_size} "
                f"(model.core_size); use heads={nearest}"
            )
        self.hidden_size = self.output_size = hidden_size
        self.layers, self.memory_length = layers, memory_length
        self.embed = nn.Linear(input_size, hidden_size)
        self.blocks = nn.ModuleList(
            GatedTransformerLayer(hidden_size, heads, feedforward_size or 4 * hidden_size, memory_length, gate_bias)
            for _ in range(layers)
        )
        self.state_size = layers * memory_length * hidden_size + memory_length

    def forward(
        self,
        x: torch.Tensor,
        state: torch.Tensor,
        episode_start: torch.Tensor | None = None,
        final_state: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x [T,B,F]``, ``state [B,S]`` (before step 0), ``episode_start [T,B]`` bool (None: no
        resets) -> ``(out [T,B,D], state [B,S] after the last step, None when final_state is
        False)``."""
        T, B = x.shape[:2]
        M, D, device = self.memory_length, self.hidden_size, x.device
        memory = state[:, : self.layers * M * D].view(B, self.layers, M, D).permute(1, 2, 0, 3)  # [layers,M,B,D]
        key_valid = torch.cat([state[:, -M:] > 0.5, torch.ones(B, T, dtype=torch.bool, device=device)], dim=1)
        steps, keys = torch.arange(T, device=device), torch.arange(M + T, device=device)
        offset = M + steps.unsqueeze(1) - keys  # [T,K]: query t (at M + t) minus key position
        allowed = (offset >= 0) & (offset <= M) & key_valid.unsqueeze(1)  # [B,T,K]
        if episode_start is not None:
            last = torch.where(episode_start, steps.unsqueeze(1), -1).cummax(0).values.t()  # [B,T]
            first_key = torch.where(last >= 0, M + last, 0)  # keys before the last start are masked
            allowed = allowed & (keys >= first_key.unsqueeze(-1))
        mask_bias = torch.zeros(allowed.shape, dtype=x.dtype, device=device).masked_fill(~allowed, -math.inf)
        mask_bias, distance = mask_bias.unsqueeze(1), offset.clamp(0, M)
        e, contexts = self.embed(x), []
        for layer, block in enumerate(self.blocks):
            context = torch.cat([memory[layer], e], dim=0)
            contexts.append(context[-M:])
            e = block(e, context, mask_bias, distance)
        if not final_state:
            return e, None
        valid = key_valid[:, -M:]
        if episode_start is not None:
            valid = valid & (keys[-M:] >= first_key[:, -1:])
        kept = torch.stack(contexts).permute(2, 0, 1, 3) * valid.view(B, 1, M, 1).to(x.dtype)  # [B,layers,M,D]
        return e, torch.cat([kept.reshape(B, -1), valid.to(x.dtype)], dim=-1)
