"""FQF: fully parameterized quantile function (Yang et al. 2019)."""

from __future__ import annotations

import torch

from rlfleet.algos.dqn.iqn import IQN
from rlfleet.algos.dqn.losses import fraction_proposal_loss, quantile_huber_loss
from rlfleet.algos.optimizer import FlatOptimizer
from rlfleet.algos.specs.fqf import FQFConfig
from rlfleet.replays.n_step import ReplaySamples


class FQF(IQN):
    """Per update, the fraction network proposes ``0 = tau_0 < ... < tau_K = 1`` for ``s_t``
    (on detached state features). The quantile network is trained like IQN on the midpoints
    ``hat tau_i`` (targets from the target net at the same midpoints), and the fraction
    network minimises the 1-Wasserstein error of the staircase, through
    ``dW1/dtau_i = 2 F^-1(tau_i) - F^-1(hat tau_i) - F^-1(hat tau_{i-1})``, with its own
    RMSprop optimizer.
    """

    config: FQFConfig

    def build_optimizers(self, agent) -> None:
        c, model = self.config, agent.model
        self.optimizer = FlatOptimizer(model.quantile_net.parameters(), "adam", c.lr, c.optimizer_eps, c.max_grad_norm)
        self.fraction_optimizer = FlatOptimizer(
            model.fraction_net.parameters(),
            "rmsprop",
            c.fraction_lr,
            eps=1e-5,
            rmsprop_alpha=0.95,
            name="fraction_loss",
        )

    def optimizers(self) -> list[FlatOptimizer]:
        return [self.optimizer, self.fraction_optimizer]

    def gradient_step(self, samples: ReplaySamples, weights: torch.Tensor | None) -> tuple[torch.Tensor, dict]:
        c, agent, model = self.config, self.agent, self.agent.model
        agent.reset_noise()
        inputs = agent.to_model_inputs(*samples.agent_inputs)
        features = model.quantile_net.features(*inputs)  # [N, F]
        taus, tau_hats, entropy = model.fraction_net(features.detach())  # [N, K+1], [N, K], [N]
        rows, action = torch.arange(features.shape[0]), samples.action.long()
        tau_hats = tau_hats.detach()
        quantile_hats = model.quantile_net.quantiles(features, tau_hats)[rows, action]  # [N, K]
        with torch.no_grad():
            next_action = self.next_action(agent.target(*samples.bootstrap_inputs), samples)
            next_quantiles = agent.target(*samples.bootstrap_inputs, tau_hats)[rows, next_action]
            y = self.bootstrap(samples.return_, samples.discount, next_quantiles)
            quantiles_at_taus = model.quantile_net.quantiles(features, taus[:, 1:-1])[rows, action]  # [N, K-1]
        quantile_loss = quantile_huber_loss(quantile_hats, y, tau_hats, c.kappa)
        fraction_loss = fraction_proposal_loss(quantiles_at_taus, quantile_hats.detach(), taus)
        fraction_loss = fraction_loss - c.fraction_entropy_coef * entropy
        quantile_loss_mean = self.weighted_mean(quantile_loss, weights)
        fraction_loss_mean = self.weighted_mean(fraction_loss, weights)
        grad_norm = self.optimizer.step(quantile_loss_mean)
        self.fraction_optimizer.step(fraction_loss_mean)
        return quantile_loss.detach(), {
            "loss": quantile_loss_mean.detach(),
            "fraction_loss": fraction_loss_mean.detach(),
            "fraction_entropy": entropy.mean().detach(),
            "grad_norm": grad_norm,
        }

    def state_dict(self) -> dict:
        return {**super().state_dict(), "fraction_optimizer": self.fraction_optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.fraction_optimizer.load_state_dict(state["fraction_optimizer"])
