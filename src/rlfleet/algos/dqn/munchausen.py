"""Munchausen DQN and Munchausen IQN (Vieillard et al. 2020)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rlfleet.algos.dqn.dqn import DQN, DQNConfig
from rlfleet.algos.dqn.iqn import IQN, IQNConfig
from rlfleet.algos.dqn.losses import munchausen_quantile_target, munchausen_target, quantile_huber_loss
from rlfleet.algos.dqn.value_transform import h, h_inverse
from rlfleet.replays.n_step import ReplaySamples


@dataclass
class MunchausenDQNConfig(DQNConfig):
    """M-DQN hyperparameters (``double`` is unused: the soft target replaces the max).

    Attributes:
        entropy_tau: temperature of the softmax policy ``pi = softmax(Q_target / tau)``.
        munchausen_alpha: scale of the log-policy bonus.
        log_policy_clip: lower clip of ``tau log pi(a|s)`` (its upper bound is 0).
    """

    entropy_tau: float = 0.03
    munchausen_alpha: float = 0.9
    log_policy_clip: float = -1.0


@dataclass
class MunchausenIQNConfig(IQNConfig):
    """M-IQN hyperparameters: IQN's, plus ``entropy_tau``, ``munchausen_alpha`` and
    ``log_policy_clip`` as in `MunchausenDQNConfig`."""

    entropy_tau: float = 0.03
    munchausen_alpha: float = 0.9
    log_policy_clip: float = -1.0


class MunchausenDQN(DQN):
    """Regress ``Q(s_t, a_t)`` onto the Munchausen target

    ``y = R + alpha clip(tau log pi(a_t|s_t), l0, 0) + gamma^n sum_a' pi(a'|s') (Q'(s', a') - tau log pi(a'|s'))``

    with ``pi = softmax(Q_target / tau)``. With n-step returns the bonus is that of the first
    action. With ``value_transform`` the target is computed on ``h^-1(Q_target)`` and mapped
    back through ``h``.
    """

    config: MunchausenDQNConfig

    def loss(self, samples: ReplaySamples) -> tuple[torch.Tensor, torch.Tensor]:
        c, agent = self.config, self.agent
        q = agent(*samples.agent_inputs)
        q_taken = q.gather(-1, samples.action.long().unsqueeze(-1)).squeeze(-1)
        with torch.no_grad():
            q_target_s = agent.target(*samples.agent_inputs)
            q_target_next = agent.target(*samples.bootstrap_inputs)
            if c.value_transform:
                q_target_s = h_inverse(q_target_s, c.value_transform_eps)
                q_target_next = h_inverse(q_target_next, c.value_transform_eps)
            y = munchausen_target(
                samples.return_,
                samples.discount,
                q_target_s,
                samples.action.long(),
                q_target_next,
                c.entropy_tau,
                c.munchausen_alpha,
                c.log_policy_clip,
            )
            if c.value_transform:
                y = h(y, c.value_transform_eps)
        if c.loss == "huber":
            loss = F.huber_loss(q_taken, y, delta=c.huber_delta, reduction="none")
        else:
            loss = F.mse_loss(q_taken, y, reduction="none")
        return loss, (y - q_taken).detach()


class MunchausenIQN(IQN):
    """IQN with the Munchausen target applied to every target quantile:
    ``y_j = R + alpha clip(tau log pi(a_t|s_t), l0, 0) + gamma^n sum_a' pi(a'|s') (Z_j(s', a') - tau log pi(a'|s'))``,
    the policies taken from the target net's mean over the same target fractions."""

    config: MunchausenIQNConfig

    def loss(self, samples: ReplaySamples) -> tuple[torch.Tensor, torch.Tensor]:
        c, agent = self.config, self.agent
        taken, taus = self.quantiles_taken(samples)
        with torch.no_grad():
            target_taus = agent.sample_taus((len(taken),), c.n_target_quantiles)
            quantiles_s = agent.target(*samples.agent_inputs, target_taus)  # [N, A, n']
            next_quantiles = agent.target(*samples.bootstrap_inputs, target_taus).transpose(1, 2)  # [N, n', A]
            if c.value_transform:
                quantiles_s = h_inverse(quantiles_s, c.value_transform_eps)
                next_quantiles = h_inverse(next_quantiles, c.value_transform_eps)
            y = munchausen_quantile_target(
                samples.return_,
                samples.discount,
                quantiles_s.mean(dim=-1),
                samples.action.long(),
                next_quantiles,
                c.entropy_tau,
                c.munchausen_alpha,
                c.log_policy_clip,
            )
            if c.value_transform:
                y = h(y, c.value_transform_eps)
        loss = quantile_huber_loss(taken, y, taus, c.kappa)
        return loss, loss.detach()
