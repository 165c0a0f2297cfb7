"""DQN (Mnih et al. 2015) with double Q-learning, n-step returns, uniform or prioritized replay,
and the transformed Bellman operator; the base of the value-based family. With
``algo.target=retrace`` it trains on sequences instead, towards Retrace(lambda) returns
(`rlfleet.algos.dqn.retrace`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlfleet.algos.dqn.retrace import sequence_retrace_targets
from rlfleet.algos.dqn.unroll import unroll_sequences
from rlfleet.algos.dqn.value_transform import h, h_inverse
from rlfleet.algos.off_policy import OffPolicyAlgorithm, update_target_network
from rlfleet.algos.optimizer import FlatOptimizer
from rlfleet.algos.specs.dqn import DQNConfig
from rlfleet.errors import ConfigError
from rlfleet.replays.n_step import ReplaySamples
from rlfleet.replays.sequence import SequenceBatch


class DQN(OffPolicyAlgorithm):
    """Per update: sample a batch, regress ``Q(s_t, a_t)`` onto

    ``y = R_t^(n) + gamma^n Q_target(s_{t+n}, argmax_a Q(s_{t+n}, a))`` (double) or
    ``y = R_t^(n) + gamma^n max_a Q_target(s_{t+n}, a)``, zero bootstrap on termination;
    with ``algo.target=retrace``, sample sequences and regress every trained step onto its
    Retrace return (`sequence_gradient_step`; ``algo.batch_size`` then counts sequences).

    Subclasses change ``loss`` (and, when they train more than one network,
    ``gradient_step``); noise resampling and target updates stay here, the replay in
    `OffPolicyAlgorithm`.
    """

    config: DQNConfig

    def initialize(self, agent, n_steps, batch_T, batch_B, replay=None):
        if self.config.target == "retrace" and (replay is None or replay.sequence_length is None):
            raise ConfigError("algo.target=retrace computes its returns over sequences: set replay.kind=sequence")
        super().initialize(agent, n_steps, batch_T, batch_B, replay)

    @property
    def samples_per_update(self) -> int:
        """Transitions, or the trained steps of the sampled sequences, per update."""
        return self.config.batch_size * (self.replay.sequence_length or 1)

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

    def retrace_target(self, batch: SequenceBatch, q: torch.Tensor, target_q: torch.Tensor) -> torch.Tensor:
        """``y [L, N]``: Retrace targets of the trained steps from the online and target outputs
        ``[W - burn_in, N + K, A]`` (through the value transform when it is on)."""
        c = self.config
        return sequence_retrace_targets(
            batch,
            q,
            target_q,
            c.gamma,
            c.retrace_lambda,
            c.retrace_target_epsilon,
            self.to_value_space,
            self.from_value_space,
        )

    def sequence_gradient_step(self, batch: SequenceBatch, weights: torch.Tensor | None) -> tuple[torch.Tensor, dict]:
        """One update on sequences with a feed-forward Q-network: Q of every window step in one
        pass, Retrace targets, the loss averaged over each sequence's valid trained steps and
        importance-weighted over sequences; per-step errors ``[L, N]`` for the priorities."""
        c, agent = self.config, self.agent
        samples, burn_in, device = batch.samples, batch.burn_in, agent.device
        L, N = batch.return_.shape
        agent.reset_noise()
        outputs, target_outputs = unroll_sequences(agent, batch, batch.start_state)
        q = agent.q_values(outputs)  # [W - burn_in, N + K, A]
        with torch.no_grad():
            y = self.retrace_target(batch, q.detach(), agent.q_values(target_outputs))
        action = samples.action[burn_in : burn_in + L, :N].to(device).long()
        q_taken = q[:L, :N].gather(-1, action.unsqueeze(-1)).squeeze(-1)
        valid = samples.valid[burn_in : burn_in + L, :N].to(device).float()
        if c.loss == "huber":
            step_loss = F.huber_loss(q_taken, y, delta=c.huber_delta, reduction="none")
        else:
            step_loss = F.mse_loss(q_taken, y, reduction="none")
        sequence_loss = (step_loss * valid).sum(0) / valid.sum(0).clamp(min=1.0)
        loss = self.weighted_mean(sequence_loss, None if weights is None else weights.to(device))
        grad_norm = self.optimizer.step(loss)
        return ((y - q_taken).detach() * valid).cpu(), {"loss": loss.detach(), "grad_norm": grad_norm}

    def gradient_step(self, samples: ReplaySamples, weights: torch.Tensor | None) -> tuple[torch.Tensor, dict]:
        if self.config.target == "retrace":
            return self.sequence_gradient_step(samples, weights)
        self.agent.reset_noise()
        loss, priority = self.loss(samples)
        loss = self.weighted_mean(loss, weights)
        grad_norm = self.optimizer.step(loss)
        return priority, {"loss": loss.detach(), "grad_norm": grad_norm}

    def after_update(self) -> None:
        c = self.config
        update_target_network(self.agent, self.updates, c.target_tau, c.target_update_interval)

    def extra_stats(self) -> dict[str, float]:
        return {"epsilon": self.agent.epsilon}
