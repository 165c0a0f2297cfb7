"""A2C: synchronous advantage actor-critic (Mnih et al. 2016)."""

from __future__ import annotations

import torch

from rlfleet.algos.optimizer import FlatOptimizer
from rlfleet.algos.pg.base import PolicyGradientAlgorithm
from rlfleet.algos.specs.a2c import A2CConfig
from rlfleet.models.core import episode_starts
from rlfleet.samplers.sampler import SamplerBatch


class A2C(PolicyGradientAlgorithm):
    """One gradient step per ``[T,B]`` batch:
    ``L = -E[log pi(a|s) A] + c_v E[(R - V(s))^2] - c_e E[H(pi(.|s))]``."""

    def __init__(self, config: A2CConfig):
        super().__init__()
        self.config = config
        self.gamma, self.gae_lambda = config.gamma, config.gae_lambda

    def initialize(self, agent, n_steps: int, batch_T: int, batch_B: int, replay: None = None) -> None:
        super().initialize(agent, n_steps, batch_T, batch_B)
        c = self.config
        self.optimizer = FlatOptimizer(
            agent.parameters(), c.optimizer, c.lr, c.optimizer_eps, c.max_grad_norm, rmsprop_alpha=c.rmsprop_alpha
        )

    def loss(self, env_steps: int, batch: SamplerBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """A2C's loss on one ``[T,B]`` batch (0-dim) and its terms (A3C's workers take its gradient)."""
        c, agent, s = self.config, self.agent, batch.torch_samples
        advantage, return_, _ = self.targets(batch)
        if c.normalize_advantage:
            advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)
        if c.anneal_lr:
            self.optimizer.lr = self.annealed(c.lr, env_steps)

        if agent.recurrent:  # one unroll of the whole batch from the state stored at its start
            episode_start = episode_starts(s.env.terminated | s.env.truncated)
            dist_info, value = agent(
                s.env.observation,
                s.agent.prev_action,
                s.env.prev_reward,
                s.agent.agent_info.prev_rnn_state[0],
                episode_start,
            )
        else:
            dist_info, value = agent(s.env.observation, s.agent.prev_action, s.env.prev_reward)
        log_prob = agent.distribution.log_likelihood(s.agent.action, dist_info)
        entropy = agent.distribution.entropy(dist_info).mean()
        pi_loss = -(log_prob * advantage).mean()
        value_loss = (return_ - value).pow(2).mean()
        loss = pi_loss + c.value_coef * value_loss - c.entropy_coef * entropy

        terms = {"pi_loss": pi_loss.detach(), "value_loss": value_loss.detach(), "entropy": entropy.detach()}
        return loss, terms

    def optimize_agent(self, env_steps: int, batch: SamplerBatch) -> dict[str, float]:
        loss, terms = self.loss(env_steps, batch)
        grad_norm = self.optimizer.step(loss)
        self.updates += 1
        self.samples_trained += batch.samples.env.reward.size
        return {
            "loss": loss.item(),
            **{key: value.item() for key, value in terms.items()},
            "grad_norm": grad_norm.item(),
            "lr": self.optimizer.lr,
        }
