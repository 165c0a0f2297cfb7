"""Soft actor-critic (Haarnoja et al. 2018, "Soft Actor-Critic: Off-Policy Maximum Entropy Deep
RL with a Stochastic Actor", and "Soft Actor-Critic Algorithms and Applications"): twin critics
with clipped double-Q soft targets, a reparameterised tanh-Gaussian actor, and an automatically
tuned (or fixed) temperature; the base of SAC-discrete and TAC."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from rlfleet.algos.off_policy import OffPolicyAlgorithm
from rlfleet.algos.optimizer import FlatOptimizer
from rlfleet.algos.specs.sac import SACConfig
from rlfleet.envs.spaces import EnvSpaces
from rlfleet.replays.n_step import ReplaySamples


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """No parameter gradients for ``module`` in the graph built inside (gradients still flow
    through it to its inputs): the actor's step leaves the critics' gradients alone."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)


class SAC(OffPolicyAlgorithm):
    """Per update, on a batch of n-step transitions ``(s, a, R, gamma_n, s')``
    (``gamma_n = gamma^n``, 0 after termination; the replay bootstraps truncated episodes):

    critics: minimise ``E[1/2 sum_i (Q_i(s, a) - y)^2]`` with
    ``y = reward_scale R + gamma_n (min_i Q'_i(s', a') - alpha log pi(a'|s'))``, ``a' ~ pi(.|s')``;
    actor (every ``policy_delay`` updates): minimise ``E[alpha log pi(a|s) - min_i Q_i(s, a)]``
    with the reparameterised ``a = tanh(mu(s) + sigma(s) eps)``, ``eps ~ N(0, I)``;
    temperature (with the actor): minimise ``E[-log alpha (log pi(a|s) + target_entropy)]``;
    targets: ``theta' <- tau theta + (1 - tau) theta'`` every ``target_update_interval`` updates.

    The n-step return holds rewards only: the entropy terms of the intermediate steps are left
    out (n = 1 is the paper's target). With PER the critics' squared errors are
    importance-weighted and the priority is the mean of ``|y - Q_1|`` and ``|y - Q_2|``.

    Subclasses change ``entropy_log`` (TAC: the q-logarithm), or ``soft_target``,
    ``critic_values`` and ``actor_loss`` (SAC-discrete: exact expectations over the actions).
    The agent is a `SacAgent`; actor, critics and ``log alpha`` each have a `FlatOptimizer`.
    """

    config: SACConfig

    def build_optimizers(self, agent) -> None:
        c, model = self.config, agent.model
        self.critic_optimizer = FlatOptimizer(
            model.critic.parameters(), "adam", c.critic_lr, c.optimizer_eps, c.max_grad_norm, name="critic_loss"
        )
        self.optimizer = self.critic_optimizer  # checkpointed by the base class
        self.actor_optimizer = FlatOptimizer(
            model.actor.parameters(), "adam", c.actor_lr, c.optimizer_eps, c.max_grad_norm, name="actor_loss"
        )
        self.log_alpha = nn.Parameter(torch.tensor(math.log(c.alpha), device=agent.device), requires_grad=c.auto_alpha)
        self.alpha_optimizer = (
            FlatOptimizer([self.log_alpha], "adam", c.alpha_lr, c.optimizer_eps, name="alpha_loss")
            if c.auto_alpha
            else None
        )
        self.target_entropy = (
            c.target_entropy if c.target_entropy is not None else self.default_target_entropy(agent.env_spaces)
        )

    def optimizers(self) -> list[FlatOptimizer]:
        optimizers = [self.critic_optimizer, self.actor_optimizer, self.alpha_optimizer]
        return [o for o in optimizers if o is not None]

    def default_target_entropy(self, env_spaces: EnvSpaces) -> float:
        """``-dim(A)`` (Haarnoja et al. 2018b)."""
        return -float(np.prod(env_spaces.action.shape))

    @property
    def alpha(self) -> torch.Tensor:
        """The temperature ``exp(log alpha)`` (0-dim, no gradient)."""
        return self.log_alpha.detach().exp()

    def entropy_log(self, log_pi: torch.Tensor) -> torch.Tensor:
        """The logarithm inside the entropy bonus, from ``log pi``: ``log pi`` itself for SAC
        (Shannon entropy ``-E[log pi]``)."""
        return log_pi

    def soft_target(self, samples: ReplaySamples) -> torch.Tensor:
        """``y [N] = reward_scale R + gamma_n (min_i Q'_i(s', a') - alpha log pi(a'|s'))`` with
        ``a' ~ pi(.|s')`` from the current policy."""
        agent = self.agent
        return_, discount = agent.to_model_inputs(samples.return_, samples.discount)
        next_action, next_log_pi = agent.pi(*samples.bootstrap_inputs)
        next_q1, next_q2 = agent.target_q(samples.bootstrap_inputs.observation, next_action)
        next_value = torch.min(next_q1, next_q2) - self.alpha * self.entropy_log(next_log_pi)
        return self.config.reward_scale * return_ + discount * next_value

    def critic_values(self, samples: ReplaySamples) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Q_1(s, a), Q_2(s, a))`` of the replayed actions, ``[N]`` each."""
        return self.agent.q(samples.agent_inputs.observation, samples.action)

    def actor_loss(self, samples: ReplaySamples) -> tuple[torch.Tensor, torch.Tensor]:
        """``(J_pi, log pi(a|s) [N])``: ``J_pi = mean(alpha log pi(a|s) - min_i Q_i(s, a))`` with
        the reparameterised ``a ~ pi(.|s)`` (gradients reach the actor through ``a`` and
        ``log pi``; the critics' parameters get none)."""
        agent = self.agent
        action, log_pi = agent.pi(*samples.agent_inputs)
        with frozen(agent.model.critic):
            q1, q2 = agent.q(samples.agent_inputs.observation, action)
        log_pi = self.entropy_log(log_pi)
        return (self.alpha * log_pi - torch.min(q1, q2)).mean(), log_pi

    def temperature_loss(self, log_pi: torch.Tensor) -> torch.Tensor:
        """``J(alpha) = mean(-log alpha (log pi + target_entropy))`` over ``log_pi [N]`` (no
        gradient to the policy): alpha grows while the entropy ``-log pi`` is below the target."""
        return -(self.log_alpha * (log_pi.detach() + self.target_entropy)).mean()

    def gradient_step(self, samples: ReplaySamples, weights: torch.Tensor | None) -> tuple[torch.Tensor, dict]:
        c = self.config
        # Critics: regress both Q_i(s, a) onto the clipped double-Q soft target.
        with torch.no_grad():
            y = self.soft_target(samples)
        q1, q2 = self.critic_values(samples)
        td_error1, td_error2 = y - q1, y - q2
        critic_loss = self.weighted_mean(0.5 * (td_error1.square() + td_error2.square()), weights)
        critic_grad_norm = self.critic_optimizer.step(critic_loss)
        info = {"critic_loss": critic_loss.detach(), "critic_grad_norm": critic_grad_norm, "q": q1.detach().mean()}

        # Actor and temperature, every policy_delay updates (self.updates counts those before this one).
        if (self.updates + 1) % c.policy_delay == 0:
            actor_loss, log_pi = self.actor_loss(samples)
            info["actor_grad_norm"] = self.actor_optimizer.step(actor_loss)
            info["actor_loss"] = actor_loss.detach()
            info["entropy"] = -log_pi.detach().mean()
            if c.auto_alpha:
                alpha_loss = self.temperature_loss(log_pi)
                self.alpha_optimizer.step(alpha_loss)
                info["alpha_loss"] = alpha_loss.detach()
        return ((td_error1.abs() + td_error2.abs()) / 2).detach(), info

    def after_update(self) -> None:
        c = self.config
        if self.updates % c.target_update_interval == 0:
            self.agent.update_target(c.tau)

    def extra_stats(self) -> dict[str, float]:
        return {"alpha": self.alpha.item()}

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "alpha_optimizer": None if self.alpha_optimizer is None else self.alpha_optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        if self.alpha_optimizer is not None:
            self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
