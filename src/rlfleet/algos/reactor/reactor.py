"""Reactor (Gruslys et al. 2018): an actor-critic trained on replayed sequences.

One update, on N sequences of the sequence replay (each with the behaviour's ``mu(a_t | x_t)``):

1. unroll the online and the target network over the window (recurrent: from the stored
   state, after a burn-in without gradient, as R2D2 does): outputs ``[W', C, A, K + 1]``, per
   action ``K`` critic logits over the support ``z`` and one policy logit;
2. critic: the distributional Retrace target ``Y_t`` of each trained step from the target
   critic and the current policy ``pi`` (`categorical_retrace_targets`), and the cross-entropy
   ``-sum_k Y_t(k) log p_k(x_t, a_t)``;
3. actor, the beta-leave-one-out policy gradient: with ``Q = E[Z]`` of the online critic (no
   gradient), ``G_t = E[Y_t]`` and ``beta = min(loo_beta_max, 1 / mu(a_t | x_t))``, ascend
   ``beta (G_t - Q(x_t, a_t)) pi(a_t | x_t) + sum_b Q(x_t, b) pi(b | x_t)`` plus
   ``entropy_coef * H(pi(. | x_t))``;
4. the sum of both losses, averaged over each sequence's valid trained steps and
   importance-weighted over sequences, one Adam step; ``|G_t - Q(x_t, a_t)|`` per step back to
   the replay (sequence priorities), the target network copied every ``target_update_interval``
   updates (or Polyak-averaged with ``target_tau < 1``).

Reactor's own sequence prioritisation (priorities of unsampled sequences estimated from their
neighbours) is replaced by the sequence replay's R2D2-style priorities: ``eta * max + (1 - eta) *
mean`` of the per-step errors.
"""

from __future__ import annotations

import torch

from rlfleet.agents.reactor import critic_logits, policy_probabilities
from rlfleet.algos.dqn.unroll import unroll_sequences
from rlfleet.algos.off_policy import OffPolicyAlgorithm, update_target_network
from rlfleet.algos.optimizer import FlatOptimizer
from rlfleet.algos.reactor.retrace import categorical_retrace_targets
from rlfleet.algos.specs.reactor import ReactorConfig
from rlfleet.errors import ConfigError
from rlfleet.replays.sequence import SequenceBatch


def beta_loo_surrogate(
    pi: torch.Tensor, q: torch.Tensor, action: torch.Tensor, retrace_return: torch.Tensor, beta: torch.Tensor
) -> torch.Tensor:
    """The beta-leave-one-out objective ``beta (G - Q(x, a)) pi(a | x) + sum_b Q(x, b) pi(b | x)``
    ``[...]``, whose gradient (through ``pi [..., A]`` only) is the paper's estimate: ``q [..., A]``,
    ``retrace_return [...]`` and ``beta [...]`` carry no gradient, ``action [...]`` is the one taken."""
    pi_taken = pi.gather(-1, action.unsqueeze(-1)).squeeze(-1)
    q_taken = q.gather(-1, action.unsqueeze(-1)).squeeze(-1)
    return beta * (retrace_return - q_taken) * pi_taken + (pi * q).sum(-1)


class Reactor(OffPolicyAlgorithm):
    """See the module docstring. ``algo.batch_size`` counts sequences."""

    config: ReactorConfig

    def initialize(self, agent, n_steps, batch_T, batch_B, replay=None):
        if replay is None or replay.sequence_length is None:
            raise ConfigError("reactor trains on sequences: set replay.kind=sequence")
        super().initialize(agent, n_steps, batch_T, batch_B, replay)

    @property
    def samples_per_update(self) -> int:
        return self.config.batch_size * self.replay.sequence_length

    def build_optimizers(self, agent) -> None:
        c = self.config
        self.optimizer = FlatOptimizer(agent.parameters(), "adam", c.lr, c.optimizer_eps, c.max_grad_norm)

    def gradient_step(self, batch: SequenceBatch, weights: torch.Tensor | None) -> tuple[torch.Tensor, dict]:
        c, agent, device = self.config, self.agent, self.agent.device
        samples, burn_in = batch.samples, batch.burn_in
        L, N = batch.return_.shape
        agent.reset_noise()

        # 1. both networks over the window
        outputs, target_outputs = unroll_sequences(agent, batch, batch.start_state)
        pi = policy_probabilities(outputs)  # [W', C, A]
        n_atoms = outputs.shape[-1] - 1
        support = agent.support(n_atoms)

        # 2. critic: distributional Retrace targets and their cross-entropy
        tail = slice(burn_in, batch.reward.shape[0] - 1)  # steps with a successor in the window
        window = slice(burn_in, None)
        with torch.no_grad():
            target = categorical_retrace_targets(
                critic_logits(target_outputs).softmax(dim=-1),
                pi.detach(),
                batch.next_column[tail].to(device),
                samples.action[window, :N].to(device),
                samples.behaviour_prob[window, :N].to(device),
                batch.reward[tail].to(device),
                batch.terminated[tail].to(device),
                batch.truncated[tail].to(device),
                L,
                c.gamma,
                c.retrace_lambda,
                agent.config.v_min,
                agent.config.v_max,
            )  # [L, N, atoms]
        action = samples.action[burn_in : burn_in + L, :N].to(device).long()
        log_p = critic_logits(outputs[:L, :N]).log_softmax(dim=-1)  # [L, N, A, atoms]
        log_p_taken = log_p.gather(2, action[..., None, None].expand(L, N, 1, n_atoms)).squeeze(2)
        critic_loss = -(target * log_p_taken).sum(-1)  # [L, N]

        # 3. actor: beta-leave-one-out policy gradient with an entropy bonus
        with torch.no_grad():
            q = (log_p.exp() * support).sum(-1)  # [L, N, A]
            q_taken = q.gather(-1, action.unsqueeze(-1)).squeeze(-1)
            retrace_return = (target * support).sum(-1)  # G_t = E[Y_t]
            mu = samples.behaviour_prob[burn_in : burn_in + L, :N].to(device)
            beta = (1.0 / mu).clamp(max=c.loo_beta_max)  # the paper's truncated 1 / mu
        pi_t = pi[:L, :N]
        surrogate = beta_loo_surrogate(pi_t, q, action, retrace_return, beta)
        entropy = -(pi_t * torch.log(pi_t.clamp(min=1e-8))).sum(-1)
        actor_loss = -(surrogate + c.entropy_coef * entropy)

        # 4. one step on both, per-step errors back to the replay
        valid = samples.valid[burn_in : burn_in + L, :N].to(device).float()
        step_loss = critic_loss + c.actor_coef * actor_loss
        sequence_loss = (step_loss * valid).sum(0) / valid.sum(0).clamp(min=1.0)
        loss = self.weighted_mean(sequence_loss, None if weights is None else weights.to(device))
        grad_norm = self.optimizer.step(loss)
        count = valid.sum().clamp(min=1.0)
        diagnostics = {
            "loss": loss.detach(),
            "critic_loss": (critic_loss.detach() * valid).sum() / count,
            "actor_loss": (actor_loss.detach() * valid).sum() / count,
            "entropy": (entropy.detach() * valid).sum() / count,
            "q": (q_taken * valid).sum() / count,
            "grad_norm": grad_norm,
        }
        return ((retrace_return - q_taken) * valid).cpu(), diagnostics

    def after_update(self) -> None:
        c = self.config
        update_target_network(self.agent, self.updates, c.target_tau, c.target_update_interval)
