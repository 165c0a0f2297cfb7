"""DQN (Mnih et al. 2015) with double Q-learning, n-step returns and a uniform replay."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rlfleet.algos.base import Algorithm
from rlfleet.algos.optimizer import FlatOptimizer
from rlfleet.replays.n_step import NStepReplayBuffer
from rlfleet.samplers.sampler import SamplerBatch


@dataclass
class DQNConfig:
    """DQN hyperparameters.

    Attributes:
        lr: Adam learning rate.
        gamma: discount.
        batch_size: transitions per gradient step.
        replay_size: transitions the replay holds.
        learning_starts: env steps collected before the first update.
        replay_ratio: transitions trained on per transition sampled (rlpyt's ratio):
            updates per sampler batch = replay_ratio * T * B / batch_size.
        n_step: return horizon.
        double: double DQN target (van Hasselt et al. 2016).
        loss: ``huber`` or ``mse``.
        huber_delta: Huber threshold.
        target_update_interval: updates between hard target copies (used when target_tau = 1).
        target_tau: soft (Polyak) target update rate applied every update when < 1.
        max_grad_norm: global gradient-norm clip (0 disables).
        optimizer_eps: Adam epsilon.
    """

    lr: float = 1e-4
    gamma: float = 0.99
    batch_size: int = 32
    replay_size: int = 100_000
    learning_starts: int = 1_000
    replay_ratio: float = 8.0
    n_step: int = 1
    double: bool = True
    loss: str = "huber"
    huber_delta: float = 1.0
    target_update_interval: int = 1_000
    target_tau: float = 1.0
    max_grad_norm: float = 10.0
    optimizer_eps: float = 1e-8


class DQN(Algorithm):
    """Per update: sample a batch, regress ``Q(s_t, a_t)`` onto

    ``y = R_t^(n) + gamma^n Q_target(s_{t+n}, argmax_a Q(s_{t+n}, a))`` (double) or
    ``y = R_t^(n) + gamma^n max_a Q_target(s_{t+n}, a)``, zero bootstrap on termination.
    """

    def __init__(self, config: DQNConfig):
        super().__init__()
        if config.loss not in ("huber", "mse"):
            raise ValueError(f"unknown loss {config.loss!r}; choose 'huber' or 'mse'")
        self.config = config
        self.replay: NStepReplayBuffer | None = None
        self.save_replay = True

    def initialize(self, agent, n_steps: int, batch_T: int, batch_B: int) -> None:
        super().initialize(agent, n_steps, batch_T, batch_B)
        c = self.config
        self.optimizer = FlatOptimizer(agent.parameters(), "adam", c.lr, c.optimizer_eps, c.max_grad_norm)
        seed = int(torch.randint(2**31, (1,), generator=agent.generator))
        self.replay = NStepReplayBuffer(c.replay_size, batch_B, c.n_step, c.gamma, seed)
        self.updates_per_batch = max(1, round(c.replay_ratio * batch_T * batch_B / c.batch_size))

    def loss(self, samples) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(loss, td_error [N])``."""
        c, agent = self.config, self.agent
        q = agent(*samples.agent_inputs)
        q_taken = q.gather(-1, samples.action.long().unsqueeze(-1)).squeeze(-1)
        with torch.no_grad():
            target_q = agent.target(*samples.bootstrap_inputs)
            if c.double:
                next_action = agent(*samples.bootstrap_inputs).argmax(dim=-1, keepdim=True)
                next_q = target_q.gather(-1, next_action).squeeze(-1)
            else:
                next_q = target_q.max(dim=-1).values
            y = samples.return_ + samples.discount * next_q
        td_error = y - q_taken
        if c.loss == "huber":
            loss = F.huber_loss(q_taken, y, delta=c.huber_delta)
        else:
            loss = F.mse_loss(q_taken, y)
        return loss, td_error

    def optimize_agent(self, env_steps: int, batch: SamplerBatch) -> dict[str, float]:
        c, agent = self.config, self.agent
        self.replay.append(batch.samples)
        stats: dict[str, list[torch.Tensor]] = defaultdict(list)
        if env_steps < c.learning_starts or not self.replay.can_sample():
            return {"epsilon": agent.epsilon}
        for _ in range(self.updates_per_batch):
            samples = self.replay.sample(c.batch_size)
            loss, td_error = self.loss(samples)
            grad_norm = self.optimizer.step(loss)
            self.updates += 1
            self.samples_trained += c.batch_size
            if c.target_tau < 1.0:
                agent.update_target(c.target_tau)
            elif self.updates % c.target_update_interval == 0:
                agent.update_target()
            stats["loss"].append(loss.detach())
            stats["td_abs"].append(td_error.abs().mean())
            stats["grad_norm"].append(grad_norm)
        return {**{k: torch.stack(v).mean().item() for k, v in stats.items()}, "epsilon": agent.epsilon}

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["replay"] = self.replay.state_dict() if self.save_replay else None
        state["replay_rng"] = self.replay.rng.bit_generator.state
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if state.get("replay") is not None:
            self.replay.load_state_dict(state["replay"])
        else:
            self.replay.rng.bit_generator.state = state["replay_rng"]
