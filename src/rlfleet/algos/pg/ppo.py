"""PPO with the clipped surrogate objective (Schulman et al. 2017), optionally with random
network distillation (``algo.rnd``, Burda et al. 2018; `rlfleet.algos.pg.rnd`)."""

from __future__ import annotations

import functools

import torch

from rlfleet.algos.optimizer import FlatOptimizer
from rlfleet.algos.pg.base import PolicyGradientAlgorithm, Targets
from rlfleet.algos.pg.rnd import RND, combined_advantage, intrinsic_targets
from rlfleet.algos.specs.ppo import PPOConfig
from rlfleet.models.core import episode_starts
from rlfleet.samplers.sampler import SamplerBatch
from rlfleet.utils.buffers import map_buffer
from rlfleet.utils.namedarraytuple import namedarraytuple

Minibatch = namedarraytuple(
    "Minibatch",
    [
        "observation",
        "prev_action",
        "prev_reward",
        "action",
        "advantage",
        "return_",
        "old_value",
        "old_log_prob",
        "prev_rnn_state",  # recurrent agents only (else None)
        "episode_start",  # recurrent agents only (else None)
        "rnd_observation",  # with algo.rnd: the normalised next observation (else None)
    ],
)


def as_sequences(x: torch.Tensor, length: int) -> torch.Tensor:
    """``[T,B,...] -> [L, T/L * B, ...]``: each env column cut into chunks of ``L`` steps, the
    chunks side by side (chunk ``k`` of column ``b`` at index ``k * B + b``)."""
    T, B = x.shape[:2]
    return x.reshape(T // length, length, B, *x.shape[2:]).transpose(0, 1).reshape(length, -1, *x.shape[2:])


def clipped_surrogate_loss(ratio: torch.Tensor, advantage: torch.Tensor, clip: float) -> torch.Tensor:
    """PPO's policy loss ``-E[min(r A, clip(r, 1 - eps, 1 + eps) A)]`` over ratios ``r``."""
    return -torch.min(ratio * advantage, ratio.clamp(1 - clip, 1 + clip) * advantage).mean()


def value_errors(
    value: torch.Tensor, old_value: torch.Tensor, return_: torch.Tensor, clip_value: float
) -> torch.Tensor:
    """Per-element ``(V - R)^2``; with ``clip_value > 0`` PPO2's pessimistic clipped form
    ``max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2)``."""
    if clip_value <= 0:
        return (value - return_).pow(2)
    value_clipped = old_value + (value - old_value).clamp(-clip_value, clip_value)
    return torch.max((value - return_).pow(2), (value_clipped - return_).pow(2))


def approx_kl(log_ratio: torch.Tensor) -> torch.Tensor:
    """Schulman's low-variance estimator of KL(old || new): ``E[(r - 1) - log r]``."""
    return ((log_ratio.exp() - 1) - log_ratio).mean()


class PPO(PolicyGradientAlgorithm):
    """Per batch: GAE targets, then ``epochs`` passes of shuffled minibatches minimising

    ``L = -E[min(r A, clip(r, 1-eps, 1+eps) A)] + c_v E[(V - R)^2] - c_e E[H]``,
    ``r = pi(a|s) / pi_old(a|s)``.

    A feed-forward agent's minibatches are shuffled transitions of the flattened ``[T*B]``
    batch. A recurrent agent's are whole sequences: the batch is cut into ``T / L`` chunks per env
    column (``L = sequence_length``, 0: ``T``), each chunk unrolled from the state stored at its
    first step, ``minibatch_size / L`` sequences per minibatch.

    With ``algo.rnd.enabled`` (`rnd_targets`): the model has two value heads (extrinsic, intrinsic;
    ``value [...,2]``), the advantage is ``ext_coef A_ext + int_coef A_int``, the value loss the
    sum of both heads', and each minibatch also trains the RND predictor on a random
    ``update_proportion`` of its rows. Batches ending within the first ``warmup_steps`` env
    steps only update RND's observation statistics.
    """

    def __init__(self, config: PPOConfig):
        super().__init__()
        self.config = config
        self.gamma, self.gae_lambda = config.gamma, config.gae_lambda
        self.generator = torch.Generator()

    def initialize(self, agent, n_steps: int, batch_T: int, batch_B: int, replay: None = None) -> None:
        super().initialize(agent, n_steps, batch_T, batch_B)
        c = self.config
        self.optimizer = FlatOptimizer(agent.parameters(), "adam", c.lr, c.optimizer_eps, c.max_grad_norm)
        self.generator.manual_seed(int(torch.randint(2**31, (1,), generator=agent.generator)))
        self.rnd = None
        if c.rnd.enabled:
            observation_space = agent.env_spaces.observation
            self.rnd = RND(observation_space, c.rnd, batch_B, c.lr, c.optimizer_eps, c.max_grad_norm, agent.device)

    def optimizers(self) -> list[FlatOptimizer]:
        return [self.optimizer] if self.rnd is None else [self.optimizer, self.rnd.optimizer]

    @torch.no_grad()
    def rnd_targets(self, batch: SamplerBatch) -> tuple[Targets, torch.Tensor, torch.Tensor]:
        """``(Targets(combined advantage [T,B], returns [T,B,2], values [T,B,2]), normalised next
        observations [T,B,...], intrinsic rewards [T,B])``: the extrinsic head's episodic GAE
        (``gamma``), the intrinsic head's non-episodic GAE (``int_gamma``) of the normalised
        intrinsic rewards. The observation statistics see the batch first."""
        r, s = self.config.rnd, batch.torch_samples
        next_observation = torch.cat([s.env.observation[1:], batch.last.observation.unsqueeze(0)])
        self.rnd.observation_statistics.update(next_observation.flatten(0, 1))
        normalized = self.rnd.normalize(next_observation)
        intrinsic_reward = self.rnd.reward_normalizer(self.rnd.intrinsic_reward(normalized))
        values = self.value_estimates(batch)
        ext = self.episodic_targets(batch, values.head(0))
        intrinsic = values.head(1)
        int_advantage, int_return = intrinsic_targets(
            intrinsic_reward, intrinsic.value, intrinsic.bootstrap, r.int_gamma, self.gae_lambda
        )
        advantage = combined_advantage(ext.advantage, int_advantage, r.ext_coef, r.int_coef)
        targets = Targets(advantage, torch.stack([ext.return_, int_return], -1), values.value)
        return targets, normalized, intrinsic_reward

    def optimize_agent(self, env_steps: int, batch: SamplerBatch) -> dict[str, float]:
        c, agent, s, rnd = self.config, self.agent, batch.torch_samples, self.rnd
        if rnd is not None and env_steps <= c.rnd.warmup_steps:  # warm-up: statistics only
            next_observation = torch.cat([s.env.observation[1:], batch.last.observation.unsqueeze(0)])
            rnd.observation_statistics.update(next_observation.flatten(0, 1))
            return {}
        if rnd is None:
            (advantage, return_, old_value), rnd_observation = self.targets(batch), None
        else:
            (advantage, return_, old_value), rnd_observation, intrinsic_reward = self.rnd_targets(batch)
        old_log_prob = agent.distribution.log_likelihood(s.agent.action, s.agent.agent_info.dist_info)
        self.optimizer.lr = self.annealed(c.lr, env_steps) if c.anneal_lr else c.lr
        clip = self.annealed(c.clip_range, env_steps) if c.anneal_clip else c.clip_range
        if rnd is not None:
            rnd.optimizer.lr = self.optimizer.lr

        data = Minibatch(
            s.env.observation,
            s.agent.prev_action,
            s.env.prev_reward,
            s.agent.action,
            advantage,
            return_,
            old_value,
            old_log_prob,
            s.agent.agent_info.prev_rnn_state if agent.recurrent else None,
            episode_starts(s.env.terminated | s.env.truncated) if agent.recurrent else None,
            rnd_observation,
        )
        if agent.recurrent:  # [T,B] -> [L, T/L * B]: sequences side by side, sliced on dim 1
            L = c.sequence_length or data.advantage.shape[0]
            data = map_buffer(functools.partial(as_sequences, length=L), data)
            per_minibatch = max(1, c.minibatch_size // L)
        else:  # [T,B] -> [T*B]: transitions, sliced on dim 0
            data = map_buffer(lambda a: a.reshape(-1, *a.shape[2:]), data)
            per_minibatch = c.minibatch_size
        n = data.advantage.shape[1 if agent.recurrent else 0]
        losses: list[torch.Tensor] = []  # [loss, pi_loss, value_loss, entropy, grad_norm] per minibatch
        rnd_losses: list[torch.Tensor] = []  # with RND: [rnd_loss, ext_value_loss, int_value_loss]
        log_ratios: list[torch.Tensor] = []
        for _ in range(c.epochs):
            order = torch.randperm(n, generator=self.generator)
            shuffled = data[:, order] if agent.recurrent else data[order]  # one gather per epoch
            epoch_log_ratios = []
            for start in range(0, n, per_minibatch):
                window = slice(start, start + per_minibatch)
                mb = shuffled[:, window] if agent.recurrent else shuffled[window]  # views, no copies
                adv = mb.advantage
                if c.normalize_advantage and adv.numel() > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)

                if agent.recurrent:
                    dist_info, value = agent(
                        mb.observation, mb.prev_action, mb.prev_reward, mb.prev_rnn_state[0], mb.episode_start
                    )
                else:
                    dist_info, value = agent(mb.observation, mb.prev_action, mb.prev_reward)
                log_prob = agent.distribution.log_likelihood(mb.action, dist_info)
                log_ratio = log_prob - mb.old_log_prob
                ratio = log_ratio.exp()
                pi_loss = clipped_surrogate_loss(ratio, adv, clip)
                value_error = value_errors(value, mb.old_value, mb.return_, c.clip_value)
                if rnd is None:
                    value_loss = value_error.mean()
                else:  # one loss per head (extrinsic, intrinsic), summed
                    head_losses = value_error.reshape(-1, 2).mean(0)
                    value_loss = head_losses.sum()
                with torch.set_grad_enabled(c.entropy_coef != 0):  # only a diagnostic without a bonus
                    entropy = agent.distribution.entropy(dist_info).mean()
                loss = pi_loss + c.value_coef * value_loss - c.entropy_coef * entropy

                grad_norm = self.optimizer.step(loss)
                if rnd is not None:  # the predictor, on a random update_proportion of the minibatch
                    train = torch.rand(adv.shape, generator=self.generator) < c.rnd.update_proportion
                    observation = mb.rnd_observation.reshape(-1, *mb.rnd_observation.shape[adv.dim() :])
                    rnd_loss = rnd.predictor_loss(observation, train.reshape(-1).float())
                    rnd.optimizer.step(rnd_loss)
                    rnd_losses.append(torch.cat([rnd_loss.detach().reshape(1), head_losses.detach()]))
                self.updates += 1
                self.samples_trained += adv.numel()
                losses.append(torch.stack([loss, pi_loss, value_loss, entropy, grad_norm]).detach())
                epoch_log_ratios.append(log_ratio.detach().flatten())
            log_ratios += epoch_log_ratios
            if c.target_kl > 0 and approx_kl(torch.cat(epoch_log_ratios)).item() > c.target_kl:
                break
        log_ratio = torch.cat(log_ratios)
        loss, pi_loss, value_loss, entropy, grad_norm = torch.stack(losses).mean(dim=0).tolist()
        if rnd is not None:  # the extrinsic head's
            return_, old_value = return_[..., 0], old_value[..., 0]
        explained_var = 1 - (return_ - old_value).var() / (return_.var() + 1e-8)
        info = {
            "loss": loss,
            "pi_loss": pi_loss,
            "value_loss": value_loss,
            "entropy": entropy,
            "grad_norm": grad_norm,
            "approx_kl": approx_kl(log_ratio).item(),
            "clip_fraction": ((log_ratio.exp() - 1).abs() > clip).float().mean().item(),
            "explained_variance": explained_var.item(),
            "lr": self.optimizer.lr,
            "clip_range": clip,
        }
        if rnd is not None:
            rnd_loss, ext_value_loss, int_value_loss = torch.stack(rnd_losses).mean(dim=0).tolist()
            info.update(
                intrinsic_reward=intrinsic_reward.mean().item(),
                rnd_loss=rnd_loss,
                ext_value_loss=ext_value_loss,
                int_value_loss=int_value_loss,
            )
        return info

    def state_dict(self) -> dict:
        state = {**super().state_dict(), "generator": self.generator.get_state()}
        return state if self.rnd is None else {**state, "rnd": self.rnd.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.generator.set_state(state["generator"])
        if self.rnd is not None:
            self.rnd.load_state_dict(state["rnd"])
