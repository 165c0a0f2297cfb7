"""PPO with the clipped surrogate objective (Schulman et al. 2017)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch

from rlfleet.algos.pg.base import PolicyGradientAlgorithm, make_optimizer
from rlfleet.samplers.sampler import SamplerBatch
from rlfleet.utils.buffers import map_buffer


@dataclass
class PPOConfig:
    """PPO hyperparameters (defaults follow Stable-Baselines3).

    Attributes:
        lr: learning rate (Adam).
        anneal_lr: decay the learning rate linearly to 0 over the run.
        gamma: discount.
        gae_lambda: GAE lambda.
        epochs: passes over each batch.
        minibatch_size: transitions per gradient step (the ``[T,B]`` batch is flattened).
        clip_range: epsilon of the clipped ratio ``clip(r, 1 - eps, 1 + eps)``.
        anneal_clip: decay ``clip_range`` linearly to 0 over the run.
        clip_value: clip the value update to ``clip_value_range`` around the old value
            (0 disables; PPO2-style).
        value_coef: weight of the value loss.
        entropy_coef: weight of the entropy bonus.
        normalize_advantage: standardise advantages per minibatch.
        max_grad_norm: global gradient-norm clip (0 disables).
        target_kl: stop the epochs early once approx-KL exceeds it (0 disables).
        optimizer_eps: Adam epsilon.
    """

    lr: float = 3e-4
    anneal_lr: bool = False
    gamma: float = 0.99
    gae_lambda: float = 0.95
    epochs: int = 10
    minibatch_size: int = 64
    clip_range: float = 0.2
    anneal_clip: bool = False
    clip_value: float = 0.0
    value_coef: float = 0.5
    entropy_coef: float = 0.0
    normalize_advantage: bool = True
    max_grad_norm: float = 0.5
    target_kl: float = 0.0
    optimizer_eps: float = 1e-5


class PPO(PolicyGradientAlgorithm):
    """Per batch: GAE targets, then ``epochs`` passes of shuffled minibatches minimising

    ``L = -E[min(r A, clip(r, 1-eps, 1+eps) A)] + c_v E[(V - R)^2] - c_e E[H]``,
    ``r = pi(a|s) / pi_old(a|s)``.
    """

    def __init__(self, config: PPOConfig):
        super().__init__()
        self.config = config
        self.gamma, self.gae_lambda = config.gamma, config.gae_lambda
        self.generator = torch.Generator()

    def initialize(self, agent, n_steps: int, batch_T: int, batch_B: int) -> None:
        super().initialize(agent, n_steps, batch_T, batch_B)
        self.optimizer = make_optimizer("adam", agent.parameters(), self.config.lr, self.config.optimizer_eps)
        self.generator.manual_seed(int(torch.randint(2**31, (1,), generator=agent.generator)))

    def optimize_agent(self, env_steps: int, batch: SamplerBatch) -> dict[str, float]:
        c, agent, s = self.config, self.agent, batch.torch_samples
        advantage, return_, old_value = self.targets(batch)
        old_log_prob = agent.distribution.log_likelihood(s.agent.action, s.agent.agent_info.dist_info)
        lr = self.annealed(c.lr, env_steps) if c.anneal_lr else c.lr
        clip = self.annealed(c.clip_range, env_steps) if c.anneal_clip else c.clip_range
        for group in self.optimizer.param_groups:
            group["lr"] = lr

        def flat(*buffers):  # [T,B,...] -> [T*B,...]
            return [map_buffer(lambda a: a.reshape(-1, *a.shape[2:]), b) for b in buffers]

        observation, prev_action, prev_reward, action = flat(
            s.env.observation, s.agent.prev_action, s.env.prev_reward, s.agent.action
        )
        advantage, return_, old_value, old_log_prob = flat(advantage, return_, old_value, old_log_prob)
        n = advantage.shape[0]
        stats: dict[str, list[torch.Tensor]] = defaultdict(list)
        for _ in range(c.epochs):
            permutation = torch.randperm(n, generator=self.generator)
            for start in range(0, n, c.minibatch_size):
                idx = permutation[start : start + c.minibatch_size]
                adv = advantage[idx]
                if c.normalize_advantage and len(idx) > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)

                dist_info, value = agent(observation[idx], prev_action[idx], prev_reward[idx])
                log_prob = agent.distribution.log_likelihood(action[idx], dist_info)
                log_ratio = log_prob - old_log_prob[idx]
                ratio = log_ratio.exp()
                pi_loss = -torch.min(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv).mean()

                if c.clip_value > 0:
                    value_clipped = old_value[idx] + (value - old_value[idx]).clamp(-c.clip_value, c.clip_value)
                    value_loss = torch.max((value - return_[idx]).pow(2), (value_clipped - return_[idx]).pow(2)).mean()
                else:
                    value_loss = (value - return_[idx]).pow(2).mean()
                entropy = agent.distribution.entropy(dist_info).mean()
                loss = pi_loss + c.value_coef * value_loss - c.entropy_coef * entropy

                self.optimizer.zero_grad()
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(agent.parameters(), c.max_grad_norm or float("inf"))
                self.optimizer.step()
                self.updates += 1
                self.samples_trained += len(idx)

                with torch.no_grad():
                    approx_kl = ((ratio - 1) - log_ratio).mean()  # Schulman's low-variance KL estimator
                    clip_fraction = ((ratio - 1).abs() > clip).float().mean()
                for key, value_ in (
                    ("loss", loss),
                    ("pi_loss", pi_loss),
                    ("value_loss", value_loss),
                    ("entropy", entropy),
                    ("grad_norm", grad_norm),
                    ("approx_kl", approx_kl),
                    ("clip_fraction", clip_fraction),
                ):
                    stats[key].append(value_.detach())
            if c.target_kl > 0 and stats["approx_kl"][-1].item() > c.target_kl:
                break
        explained_var = 1 - (return_ - old_value).var() / (return_.var() + 1e-8)
        return {
            **{k: torch.stack(v).mean().item() for k, v in stats.items()},
            "explained_variance": explained_var.item(),
            "lr": lr,
            "clip_range": clip,
        }

    def state_dict(self) -> dict:
        return {**super().state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.generator.set_state(state["generator"])
