"""R2D2 (Kapturowski et al. 2019): recurrent DQN trained on replayed sequences, and its
zero-start-state, no-burn-in form (recurrent DQN, ``rdqn``).

One update, as the paper's Figure/Section 3 describe it:

1. sample N sequences of ``burn_in + L + n`` steps from the sequence replay (prioritized by
   ``eta * max |delta| + (1 - eta) * mean |delta|``), each with the recurrent state the actor
   stored at its first step (``stored_state``; else zeros);
2. burn-in: unroll the online and the target network over the first ``burn_in`` steps without
   gradient, so that both start the trained steps from a state produced by their own weights;
3. unroll both over the remaining steps (the online one with gradient);
4. n-step double-Q targets with the invertible value rescaling ``h`` (Pohlen et al. 2018):
   ``y_t = h(R_t + gamma^m h^-1(Q_target(s_{t+m}, argmax_a Q(s_{t+m}, a))))``, no bootstrap
   after a termination, the final observation's Q after a truncation (the replay's
   ``bootstrap_t, bootstrap_b`` point at it);
5. loss ``0.5 (y_t - Q(s_t, a_t))^2`` (or Huber) summed over each sequence's valid trained
   steps (as the paper and Acme do: with Adam's eps 1e-3 the scale matters), averaged over the
   sequences with the importance weights, one Adam step;
6. per-step ``|delta_t|`` back to the replay (which mixes them into sequence priorities), and a
   hard target copy every ``target_update_interval`` updates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlfleet.algos.dqn.dqn import DQN
from rlfleet.algos.dqn.unroll import unroll_sequences
from rlfleet.algos.specs.r2d2 import R2D2Config
from rlfleet.errors import ConfigError
from rlfleet.replays.sequence import SequenceBatch


class R2D2(DQN):
    """Recurrent DQN over a `SequenceReplayBuffer` (``replay.kind=sequence``; on Ray, over the
    replay shards' sequence rings through `RemoteReplay`).

    ``algo.batch_size`` counts sequences; the replay ratio counts trained steps
    (``batch_size * sequence_length`` per update).
    """

    config: R2D2Config

    def initialize(self, agent, n_steps, batch_T, batch_B, replay=None):
        if replay is None or replay.sequence_length is None:
            raise ConfigError("r2d2 and rdqn train on sequences: set replay.kind=sequence")
        super().initialize(agent, n_steps, batch_T, batch_B, replay)

    def gradient_step(self, batch: SequenceBatch, weights: torch.Tensor | None) -> tuple[torch.Tensor, dict]:
        c, agent, device = self.config, self.agent, self.agent.device
        samples, burn_in = batch.samples, batch.burn_in
        L, N = batch.return_.shape
        start = batch.start_state if c.stored_state else torch.zeros_like(batch.start_state)
        agent.reset_noise()

        # 1-2. burn both networks in without gradient, then unroll the trained steps and the
        # bootstrap tail: [W - burn_in, N + K, A]
        q, target_q = unroll_sequences(agent, batch, start)

        # 3. double-Q n-step targets through the value rescaling h (or Retrace returns)
        if c.target == "retrace":
            y = self.retrace_target(batch, q.detach(), target_q)
        else:
            t, b = (batch.bootstrap_t - burn_in).to(device), batch.bootstrap_b.to(device)  # [L, N]
            selector = q.detach() if c.double else target_q
            next_action = selector[t, b].argmax(dim=-1, keepdim=True)
            next_q = target_q[t, b].gather(-1, next_action).squeeze(-1)
            y = self.bootstrap(batch.return_.to(device), batch.discount.to(device), next_q)

        # 4. loss over the valid trained steps of the N sequences, importance-weighted
        action = samples.action[burn_in : burn_in + L, :N].to(device).long()
        q_taken = q[:L, :N].gather(-1, action.unsqueeze(-1)).squeeze(-1)
        valid = samples.valid[burn_in : burn_in + L, :N].to(device).float()
        td = y - q_taken
        if c.loss == "huber":
            step_loss = F.huber_loss(q_taken, y, delta=c.huber_delta, reduction="none")
        else:
            step_loss = 0.5 * td.square()
        sequence_loss = (step_loss * valid).sum(0)  # summed over time, as in the paper
        loss = self.weighted_mean(sequence_loss, None if weights is None else weights.to(device))
        grad_norm = self.optimizer.step(loss)

        # 5. per-step errors back to the replay (it mixes them into sequence priorities)
        diagnostics = {"loss": loss.detach(), "grad_norm": grad_norm, "q": q_taken.mean().detach()}
        return (td.detach() * valid).cpu(), diagnostics
