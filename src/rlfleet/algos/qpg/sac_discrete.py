"""SAC for discrete actions (Christodoulou 2019, "Soft Actor-Critic for Discrete Action
Settings"): the policy's expectations are computed exactly over the actions instead of
sampled."""

from __future__ import annotations

import math

import torch

from rlfleet.algos.qpg.sac import SAC
from rlfleet.algos.specs.sac_discrete import SACDiscreteConfig
from rlfleet.envs.spaces import EnvSpaces
from rlfleet.replays.n_step import ReplaySamples


class SACDiscrete(SAC):
    """SAC with a categorical policy; per update, on n-step transitions ``(s, a, R, gamma_n, s')``:

    critics: regress ``Q_i(s, a)`` onto ``y = reward_scale R + gamma_n V(s')`` with the exact soft
    value ``V(s') = sum_a' pi(a'|s') (min_i Q'_i(s', a') - alpha log pi(a'|s'))``;
    actor: minimise ``E_s[sum_a pi(a|s) (alpha log pi(a|s) - min_i Q_i(s, a))]`` (no sampling, no
    reparameterisation; the critics are constants here);
    temperature: minimise ``E_s[-log alpha (sum_a pi(a|s) log pi(a|s) + target_entropy)]``.

    The agent is a `SacDiscreteAgent`; schedule, PER and targets as in `SAC`.
    """

    config: SACDiscreteConfig

    def default_target_entropy(self, env_spaces: EnvSpaces) -> float:
        """``target_entropy_scale * log|A|``."""
        return self.config.target_entropy_scale * math.log(env_spaces.action.n)

    def soft_target(self, samples: ReplaySamples) -> torch.Tensor:
        """``y [N] = reward_scale R + gamma_n sum_a' pi(a'|s') (min_i Q'_i(s', a') - alpha log pi(a'|s'))``."""
        agent = self.agent
        return_, discount = agent.to_model_inputs(samples.return_, samples.discount)
        next_pi, next_log_pi = agent.policy(*samples.bootstrap_inputs)
        next_q1, next_q2 = agent.target_q(*samples.bootstrap_inputs)
        next_value = (next_pi * (torch.min(next_q1, next_q2) - self.alpha * self.entropy_log(next_log_pi))).sum(-1)
        return self.config.reward_scale * return_ + discount * next_value

    def critic_values(self, samples: ReplaySamples) -> tuple[torch.Tensor, torch.Tensor]:
        q1, q2 = self.agent.q(*samples.agent_inputs)
        action = self.agent.to_model_inputs(samples.action)[0].long().unsqueeze(-1)
        return q1.gather(-1, action).squeeze(-1), q2.gather(-1, action).squeeze(-1)

    def actor_loss(self, samples: ReplaySamples) -> tuple[torch.Tensor, torch.Tensor]:
        """``(J_pi, sum_a pi(a|s) log pi(a|s) [N])`` with
        ``J_pi = mean_s sum_a pi(a|s) (alpha log pi(a|s) - min_i Q_i(s, a))``."""
        pi, log_pi = self.agent.policy(*samples.agent_inputs)
        with torch.no_grad():
            q1, q2 = self.agent.q(*samples.agent_inputs)
        log_pi = self.entropy_log(log_pi)
        loss = (pi * (self.alpha * log_pi - torch.min(q1, q2))).sum(-1).mean()
        return loss, (pi * log_pi).sum(-1)
