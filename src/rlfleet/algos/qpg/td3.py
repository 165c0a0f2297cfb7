"""TD3 (Fujimoto et al. 2018): DDPG with clipped double Q-learning, delayed policy and target
updates, and target policy smoothing."""

from __future__ import annotations

import torch

from rlfleet.algos.qpg.ddpg import DDPG
from rlfleet.algos.specs.td3 import TD3Config
from rlfleet.replays.n_step import ReplaySamples
from rlfleet.utils.rng import randn


def smoothed_target_action(
    target_mu: torch.Tensor, noise_std: float, noise_clip: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``clip(mu'(s') + clip(eps, -c, c), -1, 1)`` with ``eps ~ N(0, noise_std^2)``; ``target_mu
    [N, *action_shape]``, noise drawn on the CPU from ``generator``."""
    noise = (randn(target_mu.shape, generator, target_mu.device) * noise_std).clamp(-noise_clip, noise_clip)
    return (target_mu + noise.to(target_mu.device)).clamp(-1.0, 1.0)


class TD3(DDPG):
    """Per update, on n-step transitions ``(s_t, a_t, R_t, gamma_t, s_{t+n})``:

    ``a' = clip(mu'(s') + clip(eps, -c, c), -1, 1)``, ``eps ~ N(0, sigma^2)`` (target smoothing);
    ``y = R_t + gamma_t min(Q'_1(s', a'), Q'_2(s', a'))`` (clipped double Q-learning);
    both critics regress onto ``y``; every ``policy_delay`` updates the actor ascends
    ``Q_1(s, mu(s))`` and the targets move by ``tau``.

    With PER both squared errors are importance-weighted and the priority is
    ``max(|y - Q_1|, |y - Q_2|)`` (as in Fujimoto et al. 2020's LAP). The smoothing noise comes
    from the agent's generator.
    """

    config: TD3Config

    def target_value(self, samples: ReplaySamples) -> torch.Tensor:
        """``y [N] = R + gamma_t min_i Q'_i(s', a')`` with the smoothed target action ``a'``."""
        c, agent = self.config, self.agent
        return_, discount = agent.to_model_inputs(samples.return_, samples.discount)
        next_observation = samples.bootstrap_inputs.observation
        with torch.no_grad():
            next_action = smoothed_target_action(
                agent.target_pi(next_observation), c.target_noise, c.target_noise_clip, agent.generator
            )
            next_q1, next_q2 = agent.target_q(next_observation, next_action)
        return return_ + discount * torch.min(next_q1, next_q2)

    def gradient_step(self, samples: ReplaySamples, weights: torch.Tensor | None) -> tuple[torch.Tensor, dict]:
        c, agent = self.config, self.agent
        y = self.target_value(samples)
        q1, q2 = agent.q(samples.agent_inputs.observation, samples.action)
        td_error1, td_error2 = y - q1, y - q2
        critic_loss = self.weighted_mean(td_error1.square() + td_error2.square(), weights) + self.weight_decay()
        critic_grad_norm = self.critic_optimizer.step(critic_loss)
        info = {"critic_loss": critic_loss.detach(), "critic_grad_norm": critic_grad_norm, "q": q1.detach().mean()}
        if (self.updates + 1) % c.policy_delay == 0:  # self.updates counts the updates before this one
            info.update(self.actor_step(samples))
            agent.update_target(c.tau)
        return torch.max(td_error1.abs(), td_error2.abs()).detach(), info
