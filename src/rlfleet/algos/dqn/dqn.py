"""DQN (Mnih et al. 2015) with double Q-learning, n-step returns, uniform or prioritized replay,
and the transformed Bellman operator; the base of the value-based family."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rlfleet.algos.base import Algorithm
from rlfleet.algos.dqn.value_transform import h, h_inverse
from rlfleet.algos.optimizer import FlatOptimizer
from rlfleet.replays.n_step import NStepReplayBuffer, ReplaySamples
from rlfleet.replays.prioritized import PrioritizedReplayBuffer
from rlfleet.samplers.sampler import SamplerBatch
from rlfleet.utils.schedules import LinearSchedule


@dataclass
class DQNConfig:
    """DQN hyperparameters, shared by every value-based algorithm.

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
        loss: ``huber`` or ``mse`` (scalar-valued DQNs).
        huber_delta: Huber threshold.
        target_update_interval: updates between hard target copies (used when target_tau = 1).
        target_tau: soft (Polyak) target update rate applied every update when < 1.
        max_grad_norm: global gradient-norm clip (0 disables).
        optimizer_eps: Adam epsilon.
        prioritized: prioritized replay (Schaul et al. 2016, proportional).
        priority_alpha: priority exponent.
        priority_beta_start: importance-weight exponent at the start, annealed linearly to 1 ...
        priority_beta_steps: ... over this many env steps (0: over the whole run).
        priority_eps: added to errors before the exponent.
        value_transform: transformed Bellman operator (Pohlen et al. 2018):
            ``y = h(R + gamma^n h^-1(Q_target))`` with ``h(x) = sign(x)(sqrt(|x|+1)-1) + eps x``.
        value_transform_eps: the ``eps`` of ``h``.
        replay_frame_stack: store stacked image observations one frame at a time and rebuild
            the stacks when sampling (set to the env's frame stack, e.g. 4 on Atari; 0: store
            observations whole).
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
    prioritized: bool = False
    priority_alpha: float = 0.6
    priority_beta_start: float = 0.4
    priority_beta_steps: int = 0
    priority_eps: float = 1e-6
    value_transform: bool = False
    value_transform_eps: float = 1e-3
    replay_frame_stack: int = 0


class DQN(Algorithm):
    """Per update: sample a batch, regress ``Q(s_t, a_t)`` onto

    ``y = R_t^(n) + gamma^n Q_target(s_{t+n}, argmax_a Q(s_{t+n}, a))`` (double) or
    ``y = R_t^(n) + gamma^n max_a Q_target(s_{t+n}, a)``, zero bootstrap on termination.

    Subclasses change ``loss`` (and, when they train more than one network,
    ``gradient_step``); the replay, importance weights, priorities, noise resampling and target
    updates stay here.
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
        self.build_optimizers(agent)
        seed = int(torch.randint(2**31, (1,), generator=agent.generator))
        replay_args = dict(n_step=c.n_step, gamma=c.gamma, seed=seed, frame_stack=c.replay_frame_stack)
        if c.prioritized:
            self.replay = PrioritizedReplayBuffer(
                c.replay_size, batch_B, alpha=c.priority_alpha, eps=c.priority_eps, **replay_args
            )
            self.beta = LinearSchedule(c.priority_beta_start, 1.0, c.priority_beta_steps or n_steps)
        else:
            self.replay = NStepReplayBuffer(c.replay_size, batch_B, **replay_args)
        self.updates_per_batch = max(1, round(c.replay_ratio * batch_T * batch_B / c.batch_size))

    def build_optimizers(self, agent) -> None:
        c = self.config
        self.optimizer = FlatOptimizer(agent.parameters(), "adam", c.lr, c.optimizer_eps, c.max_grad_norm)

    def bootstrap(self, return_: torch.Tensor, discount: torch.Tensor, next_value: torch.Tensor) -> torch.Tensor:
        """``R + discount * next_value`` (or its transformed form); ``return_`` and ``discount``
        are ``[N]``, ``next_value`` is ``[N]`` or ``[N, M]`` (one target per quantile)."""
        c = self.config
        if next_value.dim() > return_.dim():
            return_, discount = return_.unsqueeze(-1), discount.unsqueeze(-1)
        if c.value_transform:
            eps = c.value_transform_eps
            return h(return_ + discount * h_inverse(next_value, eps), eps)
        return return_ + discount * next_value

    def next_action(self, next_q_target: torch.Tensor, samples: ReplaySamples) -> torch.Tensor:
        """``a* [N]`` at ``s_{t+n}``: argmax of the online net's Q-values (double) or of the
        target net's (``next_q_target [N, A]``)."""
        if self.config.double:
            next_q_target = self.agent.q_values(self.agent(*samples.bootstrap_inputs))
        return next_q_target.argmax(dim=-1)

    def loss(self, samples: ReplaySamples) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(loss [N], priority [N])``: per-sample loss and the error PER stores."""
        c, agent = self.config, self.agent
        q = agent(*samples.agent_inputs)
        q_taken = q.gather(-1, samples.action.long().unsqueeze(-1)).squeeze(-1)
        with torch.no_grad():
            target_q = agent.target(*samples.bootstrap_inputs)
            next_action = self.next_action(target_q, samples)
            next_q = target_q.gather(-1, next_action.unsqueeze(-1)).squeeze(-1)
            y = self.bootstrap(samples.return_, samples.discount, next_q)
        if c.loss == "huber":
            loss = F.huber_loss(q_taken, y, delta=c.huber_delta, reduction="none")
        else:
            loss = F.mse_loss(q_taken, y, reduction="none")
        return loss, (y - q_taken).detach()

    def gradient_step(self, samples: ReplaySamples, weights: torch.Tensor | None) -> tuple[torch.Tensor, dict]:
        """One update from a batch; ``weights [N]`` are PER importance weights (None: uniform).
        Returns ``(priority [N], diagnostics of 0-dim tensors)``."""
        loss, priority = self.loss(samples)
        loss = (loss * weights).mean() if weights is not None else loss.mean()
        grad_norm = self.optimizer.step(loss)
        return priority, {"loss": loss.detach(), "grad_norm": grad_norm}

    def optimize_agent(self, env_steps: int, batch: SamplerBatch) -> dict[str, float]:
        c, agent = self.config, self.agent
        self.replay.append(batch.samples)
        stats: dict[str, list[torch.Tensor]] = defaultdict(list)
        if env_steps < c.learning_starts or not self.replay.can_sample():
            return {"epsilon": agent.epsilon}
        for _ in range(self.updates_per_batch):
            if c.prioritized:
                sampled = self.replay.sample(c.batch_size, beta=self.beta(env_steps))
                samples, weights = sampled.samples, sampled.weights
            else:
                samples, weights = self.replay.sample(c.batch_size), None
            agent.reset_noise()
            priority, diagnostics = self.gradient_step(samples, weights)
            if c.prioritized:
                self.replay.update_priorities(sampled.indices, priority.abs())
            self.updates += 1
            self.samples_trained += c.batch_size
            if c.target_tau < 1.0:
                agent.update_target(c.target_tau)
            elif self.updates % c.target_update_interval == 0:
                agent.update_target()
            for key, value in diagnostics.items():
                stats[key].append(value)
            stats["priority"].append(priority.abs().mean())
        out = {k: torch.stack(v).mean().item() for k, v in stats.items()}
        if c.prioritized:
            out["beta"] = self.beta(env_steps)
        return {**out, "epsilon": agent.epsilon}

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
