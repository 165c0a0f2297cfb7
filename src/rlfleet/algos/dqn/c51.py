"""C51: the categorical distributional DQN (Bellemare et al. 2017); with PER, n-step, double
targets, a dueling and noisy model it is Rainbow (Hessel et al. 2018)."""

from __future__ import annotations

import torch

from rlfleet.algos.dqn.dqn import DQN
from rlfleet.algos.dqn.losses import project_onto_support
from rlfleet.replays.n_step import ReplaySamples


class CategoricalDQN(DQN):
    """The return distribution of ``(s, a)`` is a categorical over atoms
    ``z = linspace(v_min, v_max, K)`` (the agent's support). Per update the target
    distribution at ``s_{t+n}`` and ``a*`` (greedy by the expected value) is shifted to
    ``R + gamma^n z``, projected back onto ``z``, and the loss is the cross-entropy
    ``-sum_k m_k log p_k(s, a)``, which is also the PER priority.
    """

    def loss(self, samples: ReplaySamples) -> tuple[torch.Tensor, torch.Tensor]:
        agent = self.agent
        logits = agent(*samples.agent_inputs)  # [N, A, K]
        rows = torch.arange(logits.shape[0])
        log_p = logits.log_softmax(dim=-1)[rows, samples.action.long()]  # [N, K]
        with torch.no_grad():
            target_probs = agent.target(*samples.bootstrap_inputs).softmax(dim=-1)  # [N, A, K]
            support = agent.support(logits.shape[-1])
            next_action = self.next_action((target_probs * support).sum(dim=-1), samples)
            next_probs = target_probs[rows, next_action]  # [N, K]
            target_atoms = self.bootstrap(samples.return_, samples.discount, support.expand_as(next_probs))
            target = project_onto_support(next_probs, target_atoms, agent.v_min, agent.v_max)
        loss = -(target * log_p).sum(dim=-1)
        return loss, loss.detach()
