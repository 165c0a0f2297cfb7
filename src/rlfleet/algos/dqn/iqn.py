"""IQN: implicit quantile networks (Dabney et al. 2018b)."""

from __future__ import annotations

import torch

from rlfleet.algos.dqn.dqn import DQN
from rlfleet.algos.dqn.losses import quantile_huber_loss
from rlfleet.algos.specs.iqn import IQNConfig
from rlfleet.replays.n_step import ReplaySamples


class IQN(DQN):
    """The model maps a state and fractions ``tau ~ U(0, 1)`` to quantile values. Per update,
    N fractions for ``s_t`` and N' for the target ``R + gamma^n Z_tau'(s_{t+n}, a*)`` (``a*``
    greedy by the mean over the agent's policy fractions); the loss is the quantile Huber loss
    over all N x N' pairs, which is also the PER priority.
    """

    config: IQNConfig

    def quantiles_taken(self, samples: ReplaySamples) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Z_tau(s_t, a_t) [N, n_quantiles], tau [N, n_quantiles])``."""
        agent = self.agent
        taus = agent.sample_taus((len(samples.action),), self.config.n_quantiles)
        quantiles = agent(*samples.agent_inputs, taus)  # [N, A, n]
        return quantiles[torch.arange(quantiles.shape[0]), samples.action.long()], taus

    def loss(self, samples: ReplaySamples) -> tuple[torch.Tensor, torch.Tensor]:
        agent = self.agent
        taken, taus = self.quantiles_taken(samples)
        with torch.no_grad():
            next_q = agent.q_values(agent.target(*samples.bootstrap_inputs))
            next_action = self.next_action(next_q, samples)
            target_taus = agent.sample_taus((len(next_action),), self.config.n_target_quantiles)
            target_quantiles = agent.target(*samples.bootstrap_inputs, target_taus)  # [N, A, n']
            next_quantiles = target_quantiles[torch.arange(len(next_action)), next_action]
            y = self.bootstrap(samples.return_, samples.discount, next_quantiles)
        loss = quantile_huber_loss(taken, y, taus, self.config.kappa)
        return loss, loss.detach()
