"""Retrace(lambda) (Munos et al. 2016): a multi-step off-policy return with truncated importance
weights, for the value-based family over sequence replay (``algo.target=retrace``).

For a sequence of steps ``s`` with rewards ``r_s``, the target policy ``pi``, the behaviour
policy ``mu`` the actor sampled with, and target-network values
``Q(x, a)`` and ``V(x) = sum_a pi(a|x) Q(x, a)``, the return is the backward recursion

    G_s = r_s + gamma_s * ( V(x_{s+1}) + c_{s+1} * (G_{s+1} - Q(x_{s+1}, a_{s+1})) ),
    c_s = lambda * min(1, pi(a_s|x_s) / mu(a_s|x_s)),

which is the paper's ``Q(x_s, a_s) + sum_{t>=s} gamma^(t-s) (prod_{s<i<=t} c_i) delta_t`` with
``delta_t = r_t + gamma V(x_{t+1}) - Q(x_t, a_t)`` written one step at a time. Episode ends
follow the rules of every target in rlfleet: after a terminated step ``gamma_s = 0`` (``G_s = r_s``);
after a truncated one the trace stops and ``V`` is taken at the final observation the episode was
cut at; the last step of the sequence bootstraps only (``G = r + gamma V``).

With ``pi`` putting all its mass on the actions the behaviour took (``pi == mu`` deterministic)
and ``lambda = 1``, ``c = 1`` and ``V(x_{s+1}) = Q(x_{s+1}, a_{s+1})``, so ``G_s`` telescopes to
the uncorrected multi-step return ``sum_k gamma^k r_{s+k} + gamma^m V(x_{s+m})``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from rlfleet.replays.sequence import SequenceBatch


def retrace_returns(
    reward: torch.Tensor,
    discount: torch.Tensor,
    continues: torch.Tensor,
    next_value: torch.Tensor,
    next_q: torch.Tensor,
    next_trace: torch.Tensor,
) -> torch.Tensor:
    """The recursion of the module docstring over ``S`` steps, every argument ``[S, N]``.

    Args:
        reward: ``r_s``.
        discount: ``gamma_s``: 0 after a terminated step, ``gamma`` otherwise.
        continues: 1 where the trace runs on into step ``s + 1`` (no episode end at ``s``), else 0;
            the last step's value is ignored (it bootstraps only).
        next_value: ``V(x_{s+1})`` (the final observation's after a truncated step).
        next_q: ``Q(x_{s+1}, a_{s+1})``.
        next_trace: ``c_{s+1}``.

    Returns:
        ``G [S, N]``.
    """
    S = reward.shape[0]
    returns = torch.empty_like(reward)
    following = next_value[-1]  # G_{S}: unused, the last step bootstraps only
    for s in range(S - 1, -1, -1):
        trace = next_trace[s] * continues[s] if s < S - 1 else torch.zeros_like(next_trace[s])
        following = reward[s] + discount[s] * (next_value[s] + trace * (following - next_q[s]))
        returns[s] = following
    return returns


def epsilon_greedy_probabilities(q: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``pi(. | x) [..., A]`` of the epsilon-greedy policy on ``q [..., A]`` (greedy: epsilon 0)."""
    n = q.shape[-1]
    greedy = torch.nn.functional.one_hot(q.argmax(dim=-1), n).to(q.dtype)
    return (1.0 - epsilon) * greedy + epsilon / n


def sequence_retrace_targets(
    batch: SequenceBatch,
    q: torch.Tensor,
    target_q: torch.Tensor,
    gamma: float,
    retrace_lambda: float,
    target_epsilon: float,
    to_value: Callable[[torch.Tensor], torch.Tensor],
    from_value: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Retrace targets ``y [L, N]`` of a sequence batch's trained steps (no gradient).

    Args:
        batch: the `SequenceBatch` (window of ``W`` steps, ``N`` sequences and ``K`` truncation
            columns).
        q: ``[W - burn_in, N + K, A]`` online network outputs from the first trained step on;
            the target policy ``pi`` is epsilon-greedy (``target_epsilon``; 0: greedy) on them.
        target_q: the target network's, same shape: ``Q`` and ``V`` of the recursion.
        gamma: discount.
        retrace_lambda: ``lambda`` of the traces.
        target_epsilon: epsilon of the target policy.
        to_value, from_value: network outputs to returns and back (the value transform ``h^-1``
            and ``h``, or identities).
    """
    burn_in, (L, N) = batch.burn_in, batch.return_.shape
    device = q.device
    S = q.shape[0] - 1  # steps with a successor in the window: burn_in .. W - 2
    steps = torch.arange(S, device=device)[:, None].expand(S, N)
    own = torch.arange(N, device=device)[None, :].expand(S, N)
    window = slice(burn_in, burn_in + S)
    next_column = batch.next_column[window].to(device)  # the column holding x_{s+1}
    pi = epsilon_greedy_probabilities(q, target_epsilon)
    values = to_value(target_q)  # [W - burn_in, N + K, A] returns

    next_value = (pi[steps + 1, next_column] * values[steps + 1, next_column]).sum(-1)
    next_action = batch.samples.action[burn_in + 1 : burn_in + 1 + S, :N].to(device).long()
    next_q = values[steps + 1, own].gather(-1, next_action.unsqueeze(-1)).squeeze(-1)
    pi_taken = pi[steps + 1, own].gather(-1, next_action.unsqueeze(-1)).squeeze(-1)
    mu_taken = batch.samples.behaviour_prob[burn_in + 1 : burn_in + 1 + S, :N].to(device)
    next_trace = retrace_lambda * torch.clamp(pi_taken / mu_taken, max=1.0)

    terminated = batch.terminated[window].to(device)
    truncated = batch.truncated[window].to(device)
    reward = batch.reward[window].to(device)
    discount = gamma * (~terminated).to(reward.dtype)
    continues = (~(terminated | truncated)).to(reward.dtype)
    returns = retrace_returns(reward, discount, continues, next_value, next_q, next_trace)
    return from_value(returns[:L])
