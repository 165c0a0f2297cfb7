"""DDPG (Lillicrap et al. 2016), in its original form or as re-tuned by Fujimoto et al. 2018
("our DDPG"); the base of TD3."""

from __future__ import annotations

import torch

from rlfleet.algos.off_policy import OffPolicyAlgorithm
from rlfleet.algos.optimizer import FlatOptimizer
from rlfleet.algos.specs.ddpg import DDPGConfig
from rlfleet.replays.n_step import ReplaySamples


class DDPG(OffPolicyAlgorithm):
    """Per update, on a batch of n-step transitions ``(s_t, a_t, R_t, gamma_t, s_{t+n})``:

    critic: minimise ``(y - Q(s_t, a_t))^2`` with ``y = R_t + gamma_t Q'(s_{t+n}, mu'(s_{t+n}))``
    (``gamma_t = gamma^n``, 0 after termination; the replay bootstraps truncated episodes);
    actor: maximise ``Q(s_t, mu(s_t))`` (deterministic policy gradient);
    targets: ``theta' <- tau theta + (1 - tau) theta'``.

    With PER the squared errors are importance-weighted and ``|y - Q|`` is the new priority.
    The agent is a `DdpgAgent`; each network has its own `FlatOptimizer`.
    """

    config: DDPGConfig

    def build_optimizers(self, agent) -> None:
        c, model = self.config, agent.model
        self.actor_optimizer = FlatOptimizer(
            model.actor.parameters(), "adam", c.actor_lr, c.optimizer_eps, c.max_grad_norm, name="actor_loss"
        )
        self.critic_optimizer = FlatOptimizer(
            model.critic.parameters(), "adam", c.critic_lr, c.optimizer_eps, c.max_grad_norm, name="critic_loss"
        )
        self.optimizer = self.critic_optimizer  # checkpointed by the base class

    def optimizers(self) -> list[FlatOptimizer]:
        return [self.actor_optimizer, self.critic_optimizer]

    def target_value(self, samples: ReplaySamples) -> torch.Tensor:
        """``y [N] = R + gamma_t Q'(s', mu'(s'))``."""
        agent = self.agent
        return_, discount = agent.to_model_inputs(samples.return_, samples.discount)
        next_observation = samples.bootstrap_inputs.observation
        with torch.no_grad():
            next_q = agent.target_q(next_observation, agent.target_pi(next_observation))
        return return_ + discount * next_q

    def weight_decay(self) -> torch.Tensor | float:
        """``c/2 ||theta_Q||^2`` over the critic's parameters (0 when disabled)."""
        c = self.config.critic_weight_decay
        if c == 0:
            return 0.0
        return 0.5 * c * sum(p.square().sum() for p in self.agent.model.critic.parameters())

    def actor_step(self, samples: ReplaySamples) -> dict[str, torch.Tensor]:
        """One ascent step on ``mean Q_1(s, mu(s))``."""
        observation = samples.agent_inputs.observation
        actor_loss = -self.agent.q1(observation, self.agent(*samples.agent_inputs)).mean()
        grad_norm = self.actor_optimizer.step(actor_loss)
        return {"actor_loss": actor_loss.detach(), "actor_grad_norm": grad_norm}

    def gradient_step(self, samples: ReplaySamples, weights: torch.Tensor | None) -> tuple[torch.Tensor, dict]:
        c, agent = self.config, self.agent
        y = self.target_value(samples)
        q = agent.q(samples.agent_inputs.observation, samples.action)
        td_error = y - q
        critic_loss = self.weighted_mean(td_error.square(), weights) + self.weight_decay()
        critic_grad_norm = self.critic_optimizer.step(critic_loss)
        actor_info = self.actor_step(samples)
        agent.update_target(c.tau)
        info = {"critic_loss": critic_loss.detach(), "critic_grad_norm": critic_grad_norm, "q": q.detach().mean()}
        return td_error.detach(), {**info, **actor_info}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "actor_optimizer": self.actor_optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
