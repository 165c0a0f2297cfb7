"""Distributional Retrace (Gruslys et al. 2018, Section 3.2): Retrace's target for a categorical
critic.

Unrolling the recursion of `rlfleet.algos.dqn.retrace` writes the scalar target of step ``t`` as
a combination of bootstrapped multi-step returns,

    G_t = sum_{s >= t} sum_b q_{t,s}(b) * ( R_{t,s} + D_{t,s} Q(x_{s+1}, b) ),
    q_{t,s}(b) = (c_{t+1} ... c_s) * ( pi(b | x_{s+1}) - c_{s+1} [b = a_{s+1}] ),

with ``R_{t,s} = sum_{u=t..s} gamma^(u-t) r_u`` and ``D_{t,s} = gamma^(s-t+1)`` (0 after a
terminated step ``s``). The coefficients sum to one (the products telescope: the trace is cut,
``c = 0``, after an episode end and at the window's last step), some may be negative. Replacing
each ``Q(x_{s+1}, b)`` by its return distribution gives the target distribution: the mixture,
with weights ``q_{t,s}(b)``, of the distributions of ``R_{t,s} + D_{t,s} Z(x_{s+1}, b)``, each
projected onto the critic's fixed support as C51 projects its target. Its mean is the scalar
Retrace target (up to the clipping of atoms to the support) and its total mass is one.
"""

from __future__ import annotations

import torch

from rlfleet.algos.dqn.losses import project_onto_support


def categorical_retrace_targets(
    target_probs: torch.Tensor,
    pi: torch.Tensor,
    next_column: torch.Tensor,
    action: torch.Tensor,
    behaviour_prob: torch.Tensor,
    reward: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    trained: int,
    gamma: float,
    retrace_lambda: float,
    v_min: float,
    v_max: float,
) -> torch.Tensor:
    """Target distributions ``[L, N, K]`` of the first ``L = trained`` steps of a window.

    Args:
        target_probs: ``[S + 1, C, A, K]`` the target critic's probabilities at steps
            ``0 .. S`` of the window's ``C >= N`` columns (truncation columns after the ``N``
            sequences).
        pi: ``[S + 1, C, A]`` the target policy (the actor's, without gradient).
        next_column: ``[S, N]`` int64, the column holding the observation after step ``s``.
        action: ``[S + 1, N]`` the actions taken.
        behaviour_prob: ``[S + 1, N]`` ``mu`` of the actions taken.
        reward: ``[S, N]``.
        terminated, truncated: ``[S, N]`` bool.
        trained: ``L <= S``, the steps to return targets for.
        gamma, retrace_lambda: discount and ``lambda``.
        v_min, v_max: the support's edges (``K`` atoms).
    """
    S, N = reward.shape
    A, K = target_probs.shape[-2:]
    device, dtype = target_probs.device, target_probs.dtype
    support = torch.linspace(v_min, v_max, K, device=device, dtype=dtype)
    steps = torch.arange(S, device=device)[:, None]

    pi_next = pi[steps + 1, next_column]  # [S, N, A]: pi at the observation after step s
    probs_next = target_probs[steps + 1, next_column]  # [S, N, A, K]
    taken_next = action[1:].long()  # a_{s+1} [S, N]
    ratio = pi[1:, :N].gather(-1, taken_next.unsqueeze(-1)).squeeze(-1) / behaviour_prob[1:].to(dtype)
    continues = ~(terminated | truncated)
    continues[-1] = False  # the window's last step bootstraps only
    trace = retrace_lambda * ratio.clamp(max=1.0) * continues.to(dtype)  # c_{s+1} [S, N]
    coefficient_next = pi_next - trace.unsqueeze(-1) * torch.nn.functional.one_hot(taken_next, A).to(dtype)
    bootstrap = (~terminated).to(dtype)

    target = torch.zeros(trained, N, K, device=device, dtype=dtype)
    product = torch.ones(trained, N, device=device, dtype=dtype)  # c_{t+1} ... c_s
    returns = torch.zeros(trained, N, device=device, dtype=dtype)  # R_{t,s}
    t = torch.arange(trained, device=device)
    for k in range(S):  # s = t + k
        s = t + k
        live = s < S
        if not live.any():
            break
        s_live, t_live = s[live], t[live]
        returns[t_live] = returns[t_live] + gamma**k * reward[s_live]
        discount = gamma ** (k + 1) * bootstrap[s_live]  # [l, N]
        weight = product[t_live].unsqueeze(-1) * coefficient_next[s_live]  # [l, N, A]
        atoms = returns[t_live][..., None, None] + discount[..., None, None] * support  # [l, N, 1, K]
        atoms = atoms.expand(*weight.shape, K)
        mass = weight.unsqueeze(-1) * probs_next[s_live]  # [l, N, A, K]
        projected = project_onto_support(mass.reshape(-1, K), atoms.reshape(-1, K), v_min, v_max)
        target[t_live] += projected.reshape(*weight.shape, K).sum(dim=-2)
        product[t_live] = product[t_live] * trace[s_live]
    return target
