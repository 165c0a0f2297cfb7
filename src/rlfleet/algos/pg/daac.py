"""DAAC and IDAAC (Raileanu and Fergus 2021, "Decoupling Value and Policy for Generalization in
Reinforcement Learning")."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from rlfleet.algos.optimizer import FlatOptimizer
from rlfleet.algos.pg.base import PolicyGradientAlgorithm
from rlfleet.algos.pg.ppo import approx_kl, clipped_surrogate_loss, value_errors
from rlfleet.algos.specs.daac import DAACConfig
from rlfleet.models.core import episode_starts
from rlfleet.models.daac import OrderDiscriminator
from rlfleet.samplers.sampler import SamplerBatch
from rlfleet.utils.buffers import map_buffer
from rlfleet.utils.namedarraytuple import namedarraytuple

DaacBatch = namedarraytuple(
    "DaacBatch",
    [
        "observation",
        "prev_action",
        "prev_reward",
        "action",
        "advantage",  # the surrogate's weight and the advantage head's target
        "return_",
        "old_value",
        "old_log_prob",
        "partner",  # IDAAC only (else None): flat index of another step of the same episode
        "first",  # IDAAC only: whether this step came before its partner (the discriminator's label)
        "paired",  # IDAAC only: whether the step has a partner (False: a one-step episode segment)
    ],
)


def episode_partners(done: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """For every step of ``done [T,B]`` (terminated or truncated), another step of the same episode
    in the same env column, uniformly at random: ``(partner [T,B] time index, paired [T,B])``.
    A step alone in its episode's part of the batch is its own partner, with ``paired`` False."""
    T, B = done.shape
    t = torch.arange(T, device=done.device).unsqueeze(1).expand(T, B)
    start = torch.where(episode_starts(done), t, 0).cummax(0).values
    ends = torch.cat([done[:-1], torch.ones_like(done[-1:])])
    end = torch.where(ends, t, T - 1).flip(0).cummin(0).values.flip(0)
    others = end - start  # the episode's other steps in the column
    pick = start + (torch.rand(T, B, generator=generator).to(done.device) * others).long()  # [start, end - 1]
    partner = pick + (pick >= t).long()  # skip t itself: [start, end] without t
    paired = others > 0
    return torch.where(paired, partner, t), paired


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def advantage_loss(advantage: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``L_A = E[(A_theta(s, a) - A_hat)^2]``."""
    return (advantage - target).pow(2).mean()


def discriminator_loss(logit: torch.Tensor, first: torch.Tensor, paired: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``D = sigmoid(logit)`` against the order label ``first`` (1: ``s_i`` came
    before ``s_j``), ``-E[y log D + (1 - y) log(1 - D)]`` over the paired steps."""
    return masked_mean(F.binary_cross_entropy_with_logits(logit, first.float(), reduction="none"), paired)


def adversarial_loss(logit: torch.Tensor, paired: torch.Tensor) -> torch.Tensor:
    """The encoder's loss: cross-entropy of ``D`` against 1/2, ``-E[1/2 log D + 1/2 log(1 - D)]``,
    smallest (``log 2``) where ``D`` cannot tell the order."""
    return masked_mean(F.binary_cross_entropy_with_logits(logit, torch.full_like(logit, 0.5), reduction="none"), paired)


class DAAC(PolicyGradientAlgorithm):
    """Decoupled advantage actor-critic: a policy network ``pi_theta`` with an advantage head
    ``A_theta(s, a)`` and a value network ``V_phi(s)`` with no parameters in common.

    Per batch: GAE targets ``A_hat`` and ``R`` from ``V_phi`` (``A_hat`` standardised over the
    batch with ``normalize_advantage``), then

    1. ``E_pi`` passes of shuffled minibatches minimising the policy network's
       ``L_pi = -L_clip + alpha_a L_A - alpha_s H``, with
       ``L_clip = E[min(r A_hat, clip(r, 1-eps, 1+eps) A_hat)]``, ``r = pi(a|s) / pi_old(a|s)``,
       ``L_A = E[(A_theta(s, a) - A_hat)^2]``;
    2. every ``N_pi`` batches (the first included), ``E_V`` passes minimising the value network's
       ``L_V = 1/2 E[max((V_phi - R)^2, (V_old + clip(V_phi - V_old, -c, c) - R)^2)]``
       (the 1/2 as in the authors' code: under Adam it matters only through the gradient clip).

    IDAAC adds, in every policy minibatch, a discriminator ``D(f(s_i), f(s_j))`` of whether
    ``s_i`` came before ``s_j``, ``s_j`` drawn from the same episode once per batch: first one
    step of ``D`` on the cross-entropy with the true order (features detached), then the policy
    step with ``alpha_i L_adv`` added, ``L_adv = -E[1/2 log D + 1/2 log(1 - D)]``, which pushes
    ``D`` to 1/2: the features carry no sign of how far into its episode a state lies.
    """

    def __init__(self, config: DAACConfig):
        super().__init__()
        self.config = config
        self.gamma, self.gae_lambda = config.gamma, config.gae_lambda
        self.generator = torch.Generator()
        self.iterations = 0  # batches trained on (the value network's schedule)
        self.value_diagnostics: dict[str, float] = {}  # of the latest value phase
        self.discriminator: OrderDiscriminator | None = None
        self.discriminator_optimizer: FlatOptimizer | None = None

    def initialize(self, agent, n_steps: int, batch_T: int, batch_B: int, replay: None = None) -> None:
        super().initialize(agent, n_steps, batch_T, batch_B)
        c = self.config
        self.optimizer = FlatOptimizer(agent.policy_parameters(), "adam", c.lr, c.optimizer_eps, c.max_grad_norm)
        self.value_optimizer = FlatOptimizer(
            agent.value_parameters(), "adam", c.lr, c.optimizer_eps, c.max_grad_norm, name="value_loss"
        )
        if c.idaac:
            self.discriminator = OrderDiscriminator(agent.feature_size, c.discriminator_hidden_sizes).to(agent.device)
            self.discriminator_optimizer = FlatOptimizer(
                self.discriminator.parameters(),
                "adam",
                c.lr,
                c.optimizer_eps,
                c.max_grad_norm,
                name="discriminator_loss",
            )
        self.generator.manual_seed(int(torch.randint(2**31, (1,), generator=agent.generator)))

    def optimizers(self) -> list[FlatOptimizer]:
        extra = [self.discriminator_optimizer] if self.discriminator_optimizer is not None else []
        return [self.optimizer, self.value_optimizer, *extra]

    def optimize_agent(self, env_steps: int, batch: SamplerBatch) -> dict[str, float]:
        c, agent, s = self.config, self.agent, batch.torch_samples
        advantage, return_, old_value = self.targets(batch)
        if c.normalize_advantage:
            advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-5)
        old_log_prob = agent.distribution.log_likelihood(s.agent.action, s.agent.agent_info.dist_info)
        for optimizer in self.optimizers():
            optimizer.lr = self.annealed(c.lr, env_steps) if c.anneal_lr else c.lr

        partner = first = paired = None
        if c.idaac:
            partner_t, paired = episode_partners(s.env.terminated | s.env.truncated, self.generator)
            T, B = partner_t.shape
            partner = partner_t * B + torch.arange(B, device=partner_t.device)  # flat [T*B] index
            first = torch.arange(T, device=partner_t.device).unsqueeze(1) < partner_t
        data = DaacBatch(
            s.env.observation,
            s.agent.prev_action,
            s.env.prev_reward,
            s.agent.action,
            advantage,
            return_,
            old_value,
            old_log_prob,
            partner,
            first,
            paired,
        )
        data = map_buffer(lambda a: a.reshape(-1, *a.shape[2:]), data)  # [T,B] -> [T*B]

        diagnostics = self.train_policy(data)
        value_updated = self.iterations % c.value_freq == 0
        if value_updated:
            self.value_diagnostics = self.train_value(data)
        self.iterations += 1
        explained_var = 1 - (return_ - old_value).var() / (return_.var() + 1e-8)
        return {
            **diagnostics,
            **self.value_diagnostics,
            "value_updated": float(value_updated),
            "explained_variance": explained_var.item(),
            "lr": self.optimizer.lr,
        }

    def minibatches(self, data: DaacBatch, epochs: int):
        """``epochs`` passes over ``data [N]`` in shuffled minibatches (views of one gather per pass)."""
        n = data.advantage.shape[0]
        for _ in range(epochs):
            shuffled = data[torch.randperm(n, generator=self.generator)]
            for start in range(0, n, self.config.minibatch_size):
                yield shuffled[start : start + self.config.minibatch_size]

    def train_policy(self, data: DaacBatch) -> dict[str, float]:
        """``E_pi`` passes minimising ``L_pi`` (and, with IDAAC, training the discriminator)."""
        c, agent = self.config, self.agent
        losses, log_ratios = [], []
        for mb in self.minibatches(data, c.policy_epochs):
            out = agent(mb.observation, mb.prev_action, mb.prev_reward, mb.action)
            log_ratio = agent.distribution.log_likelihood(mb.action, out.dist_info) - mb.old_log_prob
            ratio = log_ratio.exp()
            adv = mb.advantage
            pi_loss = clipped_surrogate_loss(ratio, adv, c.clip_range)
            a_loss = advantage_loss(out.advantage, adv)
            entropy = agent.distribution.entropy(out.dist_info).mean()
            loss = pi_loss + c.advantage_coef * a_loss - c.entropy_coef * entropy
            idaac_terms = []
            if c.idaac:
                partner = data[mb.partner]
                partner_features = agent(
                    partner.observation, partner.prev_action, partner.prev_reward, partner.action
                ).features
                logit = self.discriminator(out.features.detach(), partner_features.detach())
                d_loss = discriminator_loss(logit, mb.first, mb.paired)
                self.discriminator_optimizer.step(d_loss)
                accuracy = masked_mean(((logit > 0) == mb.first).float(), mb.paired)
                adv_loss = adversarial_loss(self.discriminator(out.features, partner_features), mb.paired)
                loss = loss + c.idaac_coef * adv_loss
                idaac_terms = [d_loss, adv_loss, accuracy]

            grad_norm = self.optimizer.step(loss)
            self.updates += 1
            self.samples_trained += adv.numel()
            losses.append(torch.stack([loss, pi_loss, a_loss, entropy, grad_norm, *idaac_terms]).detach())
            log_ratios.append(log_ratio.detach())
        log_ratio = torch.cat(log_ratios)
        means = torch.stack(losses).mean(dim=0).tolist()
        names = ["loss", "pi_loss", "advantage_loss", "entropy", "grad_norm"]
        if c.idaac:
            names += ["discriminator_loss", "adversarial_loss", "discriminator_accuracy"]
        return {
            **dict(zip(names, means)),
            "approx_kl": approx_kl(log_ratio).item(),
            "clip_fraction": ((log_ratio.exp() - 1).abs() > c.clip_range).float().mean().item(),
        }

    def train_value(self, data: DaacBatch) -> dict[str, float]:
        """``E_V`` passes minimising ``L_V``."""
        c, agent = self.config, self.agent
        losses = []
        for mb in self.minibatches(data, c.value_epochs):
            value = agent.value_estimate(mb.observation, mb.prev_action, mb.prev_reward)
            value_loss = 0.5 * value_errors(value, mb.old_value, mb.return_, c.clip_value).mean()
            grad_norm = self.value_optimizer.step(value_loss)
            self.updates += 1
            self.samples_trained += value.numel()
            losses.append(torch.stack([value_loss, grad_norm]).detach())
        value_loss, grad_norm = torch.stack(losses).mean(dim=0).tolist()
        return {"value_loss": value_loss, "value_grad_norm": grad_norm}

    def state_dict(self) -> dict:
        state = {
            **super().state_dict(),
            "value_optimizer": self.value_optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "iterations": self.iterations,
            "value_diagnostics": dict(self.value_diagnostics),
        }
        if self.discriminator is not None:
            state["discriminator"] = self.discriminator.state_dict()
            state["discriminator_optimizer"] = self.discriminator_optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.value_optimizer.load_state_dict(state["value_optimizer"])
        self.generator.set_state(state["generator"])
        self.iterations = state["iterations"]
        self.value_diagnostics = dict(state["value_diagnostics"])
        if self.discriminator is not None:
            self.discriminator.load_state_dict(state["discriminator"])
            self.discriminator_optimizer.load_state_dict(state["discriminator_optimizer"])
