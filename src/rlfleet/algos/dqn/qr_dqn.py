"""QR-DQN: distributional DQN by quantile regression (Dabney et al. 2018a)."""

from __future__ import annotations

import torch

from rlfleet.algos.dqn.dqn import DQN
from rlfleet.algos.dqn.losses import quantile_huber_loss
from rlfleet.algos.specs.qrdqn import QRDQNConfig
from rlfleet.replays.n_step import ReplaySamples


class QRDQN(DQN):
    """The model outputs K quantile values per action at the fixed fractions
    ``hat tau_i = (2i + 1) / 2K``. Per update the target quantiles
    ``R + gamma^n theta_j(s_{t+n}, a*)`` (``a*`` greedy by the mean) regress the current ones
    with the quantile Huber loss, which is also the PER priority.
    """

    config: QRDQNConfig

    def loss(self, samples: ReplaySamples) -> tuple[torch.Tensor, torch.Tensor]:
        agent = self.agent
        quantiles = agent(*samples.agent_inputs)  # [N, A, K]
        rows = torch.arange(quantiles.shape[0])
        taken = quantiles[rows, samples.action.long()]  # [N, K]
        k = taken.shape[-1]
        taus = (2 * torch.arange(k, device=taken.device, dtype=taken.dtype) + 1) / (2 * k)
        with torch.no_grad():
            target_quantiles = agent.target(*samples.bootstrap_inputs)  # [N, A, K]
            next_action = self.next_action(target_quantiles.mean(dim=-1), samples)
            y = self.bootstrap(samples.return_, samples.discount, target_quantiles[rows, next_action])
        loss = quantile_huber_loss(taken, y, taus, self.config.kappa)
        return loss, loss.detach()
