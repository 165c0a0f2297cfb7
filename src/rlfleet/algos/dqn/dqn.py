"""DQN (Mnih et al. 2015) with double Q-learning, n-step returns, uniform or prioritized replay,
and the transformed Bellman operator; the base of the value-based family."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlfleet.algos.dqn.value_transform import h, h_inverse
from rlfleet.algos.off_policy import OffPolicyAlgorithm
from rlfleet.algos.optimizer import FlatOptimizer
from rlfleet.algos.specs.dqn import DQNConfig
from rlfleet.replays.n_step import ReplaySamples


class DQN(OffPolicyAlgorithm):
    """Per update: sample a batch, regress ``Q(s_t, a_t)`` onto

    ``y = R_t^(n) + gamma^n Q_target(s_{t+n}, argmax_a Q(s_{t+n}, a))`` (double) or
    ``y = R_t^(n) + gamma^n max_a Q_target(s_{t+n}, a)``, zero bootstrap on termination.

    Subclasses change ``loss`` (and, when they train more than one network,
    ``gradient_step``); noise resampling and target updates stay here, the replay in
    `OffPolicyAlgorithm`.
    """

    config: DQNConfig

    def build_optimizers(self, agent) -> None:
        c = self.config
        self.optimizer = FlatOptimizer(agent.parameters(), "adam", c.lr, c.optimizer_eps, c.max_grad_norm)

    def to_value_space(self, q: torch.Tensor) -> torch.Tensor:
        """Network outputs to returns: ``h^-1(q)`` with ``value_transform``, else ``q``."""
        c = self.config
        return h_inverse(q, c.value_transform_eps) if c.value_transform else q

    def from_value_space(self, y: torch.Tensor) -> torch.Tensor:
        """Returns to network outputs: ``h(y)`` with ``value_transform``, else ``y``."""
        c = self.config
        return h(y, c.value_transform_eps) if c.value_transform else y

    def bootstrap(self, return_: torch.Tensor, discount: torch.Tensor, next_value: torch.Tensor) -> torch.Tensor:
        """``R + discount * next_value`` (through the transform); ``return_`` and ``discount``
        are ``[N]``, ``next_value`` is ``[N]`` or ``[N, M]`` (one target per quantile)."""
        if next_value.dim() > return_.dim():
            return_, discount = return_.unsqueeze(-1), discount.unsqueeze(-1)
        return self.from_value_space(return_ + discount * self.to_value_space(next_value))

    def next_action(self, next_q_target: torch.Tensor, samples: ReplaySamples) -> torch.Tensor:
        """``a* [N]`` at ``s_{t+n}``: argmax of the online net's Q-values (double) or of the
        target net's (``next_q_target [N, A]``)."""
        if self.config.double:
            next_q_target = self.agent.q_values(self.agent(*samples.bootstrap_inputs))
        return next_q_target.argmax(dim=-1)

    def target(self, samples: ReplaySamples) -> torch.Tensor:
        """``y [N]``: the regression target of ``Q(s_t, a_t)`` (no gradient)."""
        agent = self.agent
        target_q = agent.target(*samples.bootstrap_inputs)
        next_action = self.next_action(target_q, samples)
        next_q = target_q.gather(-1, next_action.unsqueeze(-1)).squeeze(-1)
        return self.bootstrap(samples.return_, samples.discount, next_q)

    def loss(self, samples: ReplaySamples) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(loss [N], priority [N])``: per-sample loss and the error PER stores."""
        c = self.config
        q = self.agent(*samples.agent_inputs)
        q_taken = q.gather(-1, samples.action.long().unsqueeze(-1)).squeeze(-1)
        with torch.no_grad():
            y = self.target(samples)
        if c.loss == "huber":
            loss = F.huber_loss(q_taken, y, delta=c.huber_delta, reduction="none")
        else:
            loss = F.mse_loss(q_taken, y, reduction="none")
        return loss, (y - q_taken).detach()

    @torch.no_grad()
    def priorities(self, samples: ReplaySamples) -> torch.Tensor:
        """``|error| [N]`` of ``samples`` under the current networks, with no update: the
        initial priorities Ape-X's actors give the transitions they send to the replay."""
        return self.loss(samples)[1].abs()

    def gradient_step(self, samples: ReplaySamples, weights: torch.Tensor | None) -> tuple[torch.Tensor, dict]:
        self.agent.reset_noise()
        loss, priority = self.loss(samples)
        loss = self.weighted_mean(loss, weights)
        grad_norm = self.optimizer.step(loss)
        return priority, {"loss": loss.detach(), "grad_norm": grad_norm}

    def after_update(self) -> None:
        c = self.config
        if c.target_tau < 1.0:
            self.agent.update_target(c.target_tau)
        elif self.updates % c.target_update_interval == 0:
            self.agent.update_target()

    def extra_stats(self) -> dict[str, float]:
        return {"epsilon": self.agent.epsilon}
