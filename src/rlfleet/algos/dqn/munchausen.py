"""Munchausen DQN and Munchausen IQN (Vieillard et al. 2020)."""

from __future__ import annotations

import torch

from rlfleet.algos.dqn.dqn import DQN
from rlfleet.algos.dqn.iqn import IQN
from rlfleet.algos.dqn.losses import munchausen_quantile_target, munchausen_target, quantile_huber_loss
from rlfleet.algos.specs.mdqn import MunchausenDQNConfig
from rlfleet.algos.specs.miqn import MunchausenIQNConfig
from rlfleet.replays.n_step import ReplaySamples


class MunchausenDQN(DQN):
    """Regress ``Q(s_t, a_t)`` onto the Munchausen target

    ``y = R + alpha clip(tau log pi(a_t|s_t), l0, 0) + gamma^n sum_a' pi(a'|s') (Q'(s', a') - tau log pi(a'|s'))``

    with ``pi = softmax(Q_target / tau)``. With n-step returns the bonus is that of the first
    action. With ``value_transform`` the target is computed on ``h^-1(Q_target)`` and mapped
    back through ``h``.
    """

    config: MunchausenDQNConfig

    def target(self, samples: ReplaySamples) -> torch.Tensor:
        c, agent = self.config, self.agent
        y = munchausen_target(
            samples.return_,
            samples.discount,
            self.to_value_space(agent.target(*samples.agent_inputs)),
            samples.action.long(),
            self.to_value_space(agent.target(*samples.bootstrap_inputs)),
            c.entropy_tau,
            c.munchausen_alpha,
            c.log_policy_clip,
        )
        return self.from_value_space(y)


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
            quantiles_s = self.to_value_space(agent.target(*samples.agent_inputs, target_taus))  # [N, A, n']
            next_quantiles = self.to_value_space(agent.target(*samples.bootstrap_inputs, target_taus))
            y = munchausen_quantile_target(
                samples.return_,
                samples.discount,
                quantiles_s.mean(dim=-1),
                samples.action.long(),
                next_quantiles.transpose(1, 2),  # [N, n', A]
                c.entropy_tau,
                c.munchausen_alpha,
                c.log_policy_clip,
            )
            y = self.from_value_space(y)
        loss = quantile_huber_loss(taken, y, taus, c.kappa)
        return loss, loss.detach()
