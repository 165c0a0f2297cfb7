"""Targets and losses of the distributional and Munchausen value methods, as pure tensor functions.

Every function is batched over ``N`` samples (the caller flattens ``[T, B]`` to ``N``) and keeps
no state. Conventions shared by all of them:

- ``discount`` is the bootstrap factor of each sample: ``gamma^n`` for an n-step return and
  ``0`` after termination (a truncated episode keeps ``gamma^n``).
- Functions that build a *target* (``project_onto_support``, ``categorical_projection``,
  ``munchausen_target``, ``munchausen_quantile_target``) run under ``torch.no_grad()``: their result is a constant.
- Losses detach the tensors the paper treats as constants (the target quantiles of
  ``quantile_huber_loss``, the quantile values of ``fraction_proposal_loss``) themselves.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def project_onto_support(probs: torch.Tensor, atoms: torch.Tensor, v_min: float, v_max: float) -> torch.Tensor:
    """Project a categorical distribution with arbitrary atom locations onto C51's fixed support.

    The support is ``z_k = v_min + k * dz``, ``dz = (v_max - v_min) / (K - 1)``. Each atom
    location is clipped to ``[v_min, v_max]``; with its position ``b = (atom - v_min) / dz`` and
    ``l = floor(b)``, support atom ``l`` receives ``mass * (l + 1 - b)`` and atom ``l + 1`` receives
    ``mass * (b - l)`` (Bellemare et al. 2017, Algorithm 1).

    ``l`` is capped at ``K - 2``, so a location exactly on a support atom (``b`` integral,
    including the top edge ``b = K - 1``) gives its whole mass to that atom and none is lost:
    each row of the result sums to the row sum of ``probs``.

    Args:
        probs: ``[N, K]`` probability of each atom.
        atoms: ``[N, K]`` atom locations (e.g. ``R + gamma^n z``, or its value-transformed form).
        v_min: lowest support atom.
        v_max: highest support atom.

    Returns:
        ``[N, K]`` probabilities on the support ``z``, without gradient.
    """
    n_atoms = probs.shape[-1]
    if n_atoms < 2:
        raise ValueError(f"the support needs at least 2 atoms, got {n_atoms}")
    if not v_min < v_max:
        raise ValueError(f"need v_min < v_max, got v_min={v_min}, v_max={v_max}")
    delta = (v_max - v_min) / (n_atoms - 1)
    position = ((atoms.to(probs.dtype).clamp(v_min, v_max) - v_min) / delta).clamp(0, n_atoms - 1)
    lower = position.floor().clamp(max=n_atoms - 2)
    upper_weight = position - lower
    lower_index = lower.long()
    projected = torch.zeros_like(probs)
    projected.scatter_add_(-1, lower_index, probs * (1.0 - upper_weight))
    projected.scatter_add_(-1, lower_index + 1, probs * upper_weight)
    return projected


@torch.no_grad()
def categorical_projection(
    next_probs: torch.Tensor,
    returns: torch.Tensor,
    discounts: torch.Tensor,
    v_min: float,
    v_max: float,
) -> torch.Tensor:
    """C51's projected distributional Bellman target ``Phi T Z`` (Bellemare et al. 2017).

    The bootstrap distribution's atoms ``z_j = linspace(v_min, v_max, K)`` are moved to
    ``Tz_j = R + discount * z_j`` and projected back onto ``z`` by ``project_onto_support``
    (clip to ``[v_min, v_max]``, split each atom's mass between its two neighbours on ``z``).

    Args:
        next_probs: ``[N, K]`` probabilities of the bootstrap distribution (e.g. of the target
            network at ``s_{t+n}`` for the chosen next action).
        returns: ``[N]`` (n-step) rewards ``R``.
        discounts: ``[N]`` bootstrap factors (``gamma^n``, 0 after termination).
        v_min: lowest support atom.
        v_max: highest support atom.

    Returns:
        ``[N, K]`` target probabilities on the support ``z``, without gradient; rows sum like
        the rows of ``next_probs`` (to 1).
    """
    dtype, device = next_probs.dtype, next_probs.device
    support = torch.linspace(v_min, v_max, next_probs.shape[-1], dtype=dtype, device=device)
    shifted = returns.to(dtype).unsqueeze(-1) + discounts.to(dtype).unsqueeze(-1) * support
    return project_onto_support(next_probs, shifted, v_min, v_max)


def quantile_huber_loss(
    quantiles: torch.Tensor,
    targets: torch.Tensor,
    taus: torch.Tensor,
    kappa: float = 1.0,
) -> torch.Tensor:
    """Quantile (Huber) regression loss of QR-DQN (Dabney et al. 2018a) and IQN (Dabney et al. 2018b).

    For every pair of predicted quantile ``theta_i`` (at fraction ``tau_i``) and target sample
    ``T_j``, with the TD error ``u_ij = T_j - theta_i``:

    ``rho_ij = |tau_i - 1{u_ij < 0}| * L_kappa(u_ij) / kappa``, where the Huber loss is
    ``L_kappa(u) = u^2 / 2`` for ``|u| <= kappa`` and ``kappa * (|u| - kappa / 2)`` otherwise;
    ``kappa = 0`` gives the plain quantile loss ``|tau_i - 1{u_ij < 0}| * |u_ij|``.

    Convention: per sample, the loss is summed over the predicted quantiles ``i`` and averaged
    over the target samples ``j``: ``loss = sum_i (1/M) sum_j rho_ij`` (QR-DQN's
    ``sum_i E_j[rho]``, IQN's ``(1/N') sum_i sum_j rho``). ``targets`` is detached here, so
    callers may pass it with or without a graph; gradients reach ``quantiles`` only.

    Args:
        quantiles: ``[N, K]`` predicted quantile values ``theta_i`` (of the taken action).
        targets: ``[N, M]`` target samples ``T_j = R + discount * theta'_j``.
        taus: ``[N, K]`` per-sample fractions (IQN, FQF's hat taus) or ``[K]`` shared by all
            samples (QR-DQN's fixed midpoints ``(2i + 1) / (2K)``).
        kappa: Huber threshold, ``>= 0``.

    Returns:
        ``[N]`` loss per sample.
    """
    if kappa < 0:
        raise ValueError(f"kappa must be >= 0, got {kappa}")
    td = targets.detach().unsqueeze(-2) - quantiles.unsqueeze(-1)  # u_ij: [N, K, M]
    weight = (taus.unsqueeze(-1) - (td < 0).to(td.dtype)).abs()
    if kappa == 0:
        elementwise = td.abs()
    else:
        abs_td = td.abs()
        huber = torch.where(abs_td <= kappa, 0.5 * td.square(), kappa * (abs_td - 0.5 * kappa))
        elementwise = huber / kappa
    return (weight * elementwise).mean(dim=-1).sum(dim=-1)


def sample_taus(
    shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """IQN's quantile fractions ``tau ~ U[0, 1)``, e.g. ``shape = (N, K)`` for per-sample taus."""
    return torch.rand(shape, generator=generator, dtype=dtype, device=device)


def tau_hats(taus: torch.Tensor) -> torch.Tensor:
    """FQF's midpoint fractions ``hat tau_i = (tau_i + tau_{i+1}) / 2`` (Yang et al. 2019).

    Args:
        taus: ``[N, K + 1]`` increasing fractions ``0 = tau_0 < ... < tau_K = 1``.

    Returns:
        ``[N, K]`` midpoints ``hat tau_0 .. hat tau_{K-1}``, where the quantiles are evaluated.
    """
    return 0.5 * (taus[..., :-1] + taus[..., 1:])


def fraction_proposal_loss(
    quantiles_at_taus: torch.Tensor,
    quantiles_at_tau_hats: torch.Tensor,
    taus: torch.Tensor,
) -> torch.Tensor:
    """FQF's fraction proposal loss (Yang et al. 2019, Proposition 1).

    The 1-Wasserstein distance ``W1`` between the return distribution and the staircase that
    takes value ``F^-1(hat tau_{i-1})`` on ``[tau_{i-1}, tau_i)`` has, for the interior fractions
    ``i = 1 .. K - 1``, the partial derivatives

    ``dW1/dtau_i = 2 F^-1(tau_i) - F^-1(hat tau_i) - F^-1(hat tau_{i-1})``.

    This returns ``sum_i tau_i * stopgrad(dW1/dtau_i)``, whose gradient with respect to
    ``tau_1 .. tau_{K-1}`` is exactly that derivative; the quantile values are detached here, and
    the end points ``tau_0 = 0`` and ``tau_K = 1`` receive no gradient. Minimising it moves the
    fractions to reduce ``W1``; its value itself is not ``W1``.

    Args:
        quantiles_at_taus: ``[N, K - 1]`` ``F^-1(tau_i)`` for the interior fractions ``i = 1 .. K - 1``.
        quantiles_at_tau_hats: ``[N, K]`` ``F^-1(hat tau_i)`` for ``i = 0 .. K - 1``.
        taus: ``[N, K + 1]`` fractions ``tau_0 .. tau_K`` from the fraction proposal network.

    Returns:
        ``[N]`` loss per sample.
    """
    grad_w1 = 2.0 * quantiles_at_taus - quantiles_at_tau_hats[..., 1:] - quantiles_at_tau_hats[..., :-1]
    return (grad_w1.detach() * taus[..., 1:-1]).sum(dim=-1)


def _log_policy(q: torch.Tensor, entropy_tau: float) -> torch.Tensor:
    """``log pi`` for ``pi = softmax(q / tau)`` over the last dimension (log-sum-exp, stable for small tau)."""
    if entropy_tau <= 0:
        raise ValueError(f"entropy_tau must be > 0, got {entropy_tau}")
    return torch.log_softmax(q / entropy_tau, dim=-1)


def _munchausen_bonus(
    q_target_s: torch.Tensor, action: torch.Tensor, entropy_tau: float, alpha: float, clip_min: float
) -> torch.Tensor:
    """``alpha * clip(tau * log pi(a|s), clip_min, 0)``: ``[N]``."""
    if clip_min > 0:
        raise ValueError(f"clip_min must be <= 0, got {clip_min}")
    log_pi = _log_policy(q_target_s, entropy_tau).gather(-1, action.long().unsqueeze(-1)).squeeze(-1)
    return alpha * (entropy_tau * log_pi).clamp(clip_min, 0.0)


@torch.no_grad()
def munchausen_target(
    reward_n: torch.Tensor,
    discount: torch.Tensor,
    q_target_s: torch.Tensor,
    action: torch.Tensor,
    q_target_next: torch.Tensor,
    entropy_tau: float,
    alpha: float,
    clip_min: float = -1.0,
) -> torch.Tensor:
    """Munchausen DQN regression target (Vieillard et al. 2020, M-DQN with the clipped bonus).

    ``y = R + alpha * clip(tau * log pi(a_t|s_t), clip_min, 0)
    + discount * sum_a' pi(a'|s') (q'(s', a') - tau * log pi(a'|s'))``

    with ``pi = softmax(q' / tau)`` the softmax policy of the target network ``q'``, its log
    computed as ``log_softmax(q' / tau)`` (log-sum-exp). For an n-step target, ``R`` and
    ``discount`` are the n-step return and ``gamma^n`` with ``s' = s_{t+n}``; the Munchausen
    bonus is applied to the first action ``a_t`` only. ``alpha = 0`` gives soft DQN.

    Args:
        reward_n: ``[N]`` (n-step) return ``R``.
        discount: ``[N]`` bootstrap factor (``gamma^n``, 0 after termination).
        q_target_s: ``[N, A]`` target-network Q-values at ``s_t``.
        action: ``[N]`` action ``a_t`` taken at ``s_t``.
        q_target_next: ``[N, A]`` target-network Q-values at ``s'``.
        entropy_tau: entropy temperature ``tau > 0``.
        alpha: Munchausen scaling ``alpha``.
        clip_min: lower clip ``l_0 <= 0`` of the scaled log-policy.

    Returns:
        ``[N]`` target ``y``, without gradient.
    """
    bonus = _munchausen_bonus(q_target_s, action, entropy_tau, alpha, clip_min)
    next_log_pi = _log_policy(q_target_next, entropy_tau)
    soft_value = (next_log_pi.exp() * (q_target_next - entropy_tau * next_log_pi)).sum(dim=-1)
    return reward_n + bonus + discount * soft_value


@torch.no_grad()
def munchausen_quantile_target(
    reward_n: torch.Tensor,
    discount: torch.Tensor,
    q_target_s: torch.Tensor,
    action: torch.Tensor,
    next_quantiles: torch.Tensor,
    entropy_tau: float,
    alpha: float,
    clip_min: float = -1.0,
) -> torch.Tensor:
    """Munchausen IQN target samples (Vieillard et al. 2020, M-IQN).

    For each target quantile sample ``j``:

    ``T_j = R + alpha * clip(tau * log pi(a_t|s_t), clip_min, 0)
    + discount * sum_a' pi(a'|s') (Z_j(s', a') - tau * log pi(a'|s'))``

    where both policies are ``softmax(Q / tau)`` of the target network's expected values: at
    ``s_t`` the caller passes them as ``q_target_s`` (means over quantiles), at ``s'`` they are
    ``Q(s', a') = mean_j Z_j(s', a')`` computed here. With all ``Z_j`` equal this is
    ``munchausen_target``. The bonus is applied to the first action only (see there).

    Args:
        reward_n: ``[N]`` (n-step) return ``R``.
        discount: ``[N]`` bootstrap factor (``gamma^n``, 0 after termination).
        q_target_s: ``[N, A]`` target-network expected Q-values at ``s_t``.
        action: ``[N]`` action ``a_t`` taken at ``s_t``.
        next_quantiles: ``[N, M, A]`` target-network quantile samples ``Z_j(s', a')``.
        entropy_tau: entropy temperature ``tau > 0``.
        alpha: Munchausen scaling ``alpha``.
        clip_min: lower clip ``l_0 <= 0`` of the scaled log-policy.

    Returns:
        ``[N, M]`` target samples ``T_j`` (the ``targets`` of ``quantile_huber_loss``), without gradient.
    """
    bonus = _munchausen_bonus(q_target_s, action, entropy_tau, alpha, clip_min)
    next_log_pi = _log_policy(next_quantiles.mean(dim=-2), entropy_tau).unsqueeze(-2)  # [N, 1, A]
    soft_samples = (next_log_pi.exp() * (next_quantiles - entropy_tau * next_log_pi)).sum(dim=-1)
    return (reward_n + bonus).unsqueeze(-1) + discount.unsqueeze(-1) * soft_samples
