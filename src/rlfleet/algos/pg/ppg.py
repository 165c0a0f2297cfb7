"""Phasic Policy Gradient (Cobbe, Hilton, Klimov & Schulman 2020, arXiv:2009.04416)."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from rlfleet.algos.optimizer import FlatOptimizer
from rlfleet.algos.pg.base import PolicyGradientAlgorithm
from rlfleet.algos.pg.ppo import approx_kl, clipped_surrogate_loss
from rlfleet.algos.specs.ppg import PPGConfig
from rlfleet.distributions import Categorical, Gaussian
from rlfleet.errors import CheckpointError
from rlfleet.samplers.sampler import SamplerBatch
from rlfleet.utils.buffers import buffer_to, map_buffer
from rlfleet.utils.namedarraytuple import namedarraytuple

# One flattened transition of the policy phase ([T*B] after flattening).
Transition = namedarraytuple(
    "Transition", ["observation", "prev_action", "prev_reward", "action", "advantage", "return_", "old_log_prob"]
)
# What the auxiliary phase keeps of each batch: the agent's inputs and the value target.
AuxSample = namedarraytuple("AuxSample", ["observation", "prev_action", "prev_reward", "return_"])


class AuxLosses(NamedTuple):
    joint: torch.Tensor  # L_joint = aux_value + beta_clone * kl_clone (policy network)
    aux_value: torch.Tensor  # 0.5 E[(V_aux - V_targ)^2]
    kl_clone: torch.Tensor  # E[KL(pi_old || pi)]
    value: torch.Tensor  # L_value = 0.5 E[(V - V_targ)^2] (value network)


def auxiliary_losses(
    distribution: Categorical | Gaussian,
    old_dist_info: Any,
    dist_info: Any,
    value: torch.Tensor,
    aux_value: torch.Tensor,
    return_: torch.Tensor,
    beta_clone: float,
) -> AuxLosses:
    """The auxiliary phase's losses on a minibatch ``[N]``: ``old_dist_info`` is the policy
    before the phase, ``dist_info``, ``value`` and ``aux_value`` the current outputs,
    ``return_`` the stored value targets."""
    aux_value_loss = 0.5 * (aux_value - return_).pow(2).mean()
    kl_clone = distribution.kl(old_dist_info, dist_info).mean()
    value_loss = 0.5 * (value - return_).pow(2).mean()
    return AuxLosses(aux_value_loss + beta_clone * kl_clone, aux_value_loss, kl_clone, value_loss)


def flatten_time_env(x: torch.Tensor) -> torch.Tensor:
    """``[T,B,...] -> [T*B,...]``."""
    return x.reshape(-1, *x.shape[2:])


class PPG(PolicyGradientAlgorithm):
    """Alternates a policy phase of ``N_pi`` PPO iterations with an auxiliary phase.

    Policy phase, per sampler batch (GAE advantages ``A``, lambda-returns ``V_targ``; full-batch
    standardised ``A``), ``max(E_pi, E_V)`` epochs of shuffled minibatches, each step minimising

    ``L = [e < E_pi] (L_clip - c_e E[H]) + [e < E_V] c_v E[(V - V_targ)^2]``,
    ``L_clip = -E[min(r A, clip(r, 1-eps, 1+eps) A)]``, ``r = pi(a|s) / pi_old(a|s)``;

    the batch's inputs and ``V_targ`` are stored. After ``N_pi`` batches, the auxiliary phase:
    ``pi_old`` = the policy on every stored transition, then ``E_aux`` epochs of shuffled
    minibatches, each step minimising

    ``L_joint + L_value``, ``L_joint = 0.5 E[(V_aux - V_targ)^2] + beta_clone E[KL(pi_old || pi)]``,
    ``L_value = 0.5 E[(V - V_targ)^2]``;

    then the store is cleared. Which parameters each term trains is the model's arrangement
    (`rlfleet.models.ppg`): with ``separate`` networks ``L_joint`` trains the policy network and
    ``L_value`` the value network.

    One Adam (one `FlatOptimizer`) steps both phases, as in CleanRL's ``ppg_procgen.py``: the
    data-parallel runner averages its one flat gradient, and a parameter outside a step's loss
    (the value network during a policy-only epoch) gets a zero gradient, moved only by Adam's
    momentum. Every replica takes the same number of steps: ``max(E_pi, E_V) * ceil(T*B / mb)``
    per batch, ``E_aux * ceil(N_pi*T*B / aux_mb)`` per auxiliary phase, nothing stops early.
    """

    def __init__(self, config: PPGConfig):
        super().__init__()
        self.config = config
        self.gamma, self.gae_lambda = config.gamma, config.gae_lambda
        self.generator = torch.Generator()
        self.phase_iteration = 0  # batches stored in the current phase
        self.aux_phases = 0
        self.store: Any = None  # AuxSample [T, N_pi * B], allocated by the phase's first batch

    def initialize(self, agent, n_steps: int, batch_T: int, batch_B: int, replay: None = None) -> None:
        super().initialize(agent, n_steps, batch_T, batch_B)
        c = self.config
        self.optimizer = FlatOptimizer(agent.parameters(), "adam", c.lr, c.optimizer_eps, c.max_grad_norm)
        self.generator.manual_seed(int(torch.randint(2**31, (1,), generator=agent.generator)))

    def optimize_agent(self, env_steps: int, batch: SamplerBatch) -> dict[str, float]:
        c = self.config
        self.optimizer.lr = self.annealed(c.lr, env_steps) if c.anneal_lr else c.lr
        info = self.policy_phase(batch)
        self.phase_iteration += 1
        info["phase_iteration"] = float(self.phase_iteration)
        info["aux_phase"] = 0.0
        if self.phase_iteration == c.n_policy_iterations:
            info |= self.auxiliary_phase()
            info["aux_phase"] = 1.0
            self.phase_iteration, self.store = 0, None
            self.aux_phases += 1
        return info

    # ----- policy phase -----
    def policy_phase(self, batch: SamplerBatch) -> dict[str, float]:
        c, agent, s = self.config, self.agent, batch.torch_samples
        advantage, return_, old_value = self.targets(batch)
        if c.normalize_advantage and advantage.numel() > 1:
            advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)
        self.store_batch(AuxSample(s.env.observation, s.agent.prev_action, s.env.prev_reward, return_))
        old_log_prob = agent.distribution.log_likelihood(s.agent.action, s.agent.agent_info.dist_info)
        data = Transition(
            s.env.observation, s.agent.prev_action, s.env.prev_reward, s.agent.action, advantage, return_, old_log_prob
        )
        data = buffer_to(map_buffer(flatten_time_env, data), agent.device)
        n = data.advantage.shape[0]

        losses: list[torch.Tensor] = []  # [loss, pi_loss, value_loss, entropy, grad_norm] per minibatch
        log_ratios: list[torch.Tensor] = []
        for epoch in range(max(c.policy_epochs, c.value_epochs)):
            train_pi, train_value = epoch < c.policy_epochs, epoch < c.value_epochs
            shuffled = data[torch.randperm(n, generator=self.generator)]
            for start in range(0, n, c.minibatch_size):
                mb = shuffled[start : start + c.minibatch_size]
                dist_info, value = agent(mb.observation, mb.prev_action, mb.prev_reward)
                log_ratio = agent.distribution.log_likelihood(mb.action, dist_info) - mb.old_log_prob
                ratio = log_ratio.exp()
                pi_loss = clipped_surrogate_loss(ratio, mb.advantage, c.clip_range)
                value_loss = (value - mb.return_).pow(2).mean()
                with torch.set_grad_enabled(train_pi and c.entropy_coef != 0):
                    entropy = agent.distribution.entropy(dist_info).mean()
                loss = (pi_loss - c.entropy_coef * entropy) * train_pi + c.value_coef * value_loss * train_value

                grad_norm = self.optimizer.step(loss)
                self.updates += 1
                self.samples_trained += mb.advantage.numel()
                losses.append(torch.stack([loss, pi_loss, value_loss, entropy, grad_norm]).detach())
                if train_pi:
                    log_ratios.append(log_ratio.detach())
        log_ratio = torch.cat(log_ratios)
        loss, pi_loss, value_loss, entropy, grad_norm = torch.stack(losses).mean(dim=0).tolist()
        return {
            "loss": loss,
            "pi_loss": pi_loss,
            "value_loss": value_loss,
            "entropy": entropy,
            "grad_norm": grad_norm,
            "approx_kl": approx_kl(log_ratio).item(),
            "clip_fraction": ((log_ratio.exp() - 1).abs() > c.clip_range).float().mean().item(),
            "explained_variance": (1 - (return_ - old_value).var() / (return_.var() + 1e-8)).item(),
            "lr": self.optimizer.lr,
        }

    def store_batch(self, sample: Any) -> None:
        """Copy the batch's ``AuxSample [T,B]`` into columns ``[k*B, (k+1)*B)`` of the store
        (``k``: the batch's place in the phase)."""
        B, k = sample.return_.shape[1], self.phase_iteration
        if self.store is None:
            self.store = self.empty_store(sample, B)
        self.store[:, k * B : (k + 1) * B] = sample

    def empty_store(self, example: Any, B: int) -> Any:
        """Zeros shaped like ``example [T, ., ...]`` with ``n_policy_iterations * B`` columns."""
        n_columns = self.config.n_policy_iterations * B
        return map_buffer(lambda x: x.new_zeros((x.shape[0], n_columns, *x.shape[2:])), example)

    # ----- auxiliary phase -----
    def auxiliary_phase(self) -> dict[str, float]:
        c, agent = self.config, self.agent
        data = map_buffer(flatten_time_env, self.store)  # [N_pi*T*B], stays on the CPU
        n = data.return_.shape[0]
        old_dist_info = self.policy_before_phase(data)

        losses: list[torch.Tensor] = []  # [aux_loss, aux_value_loss, kl_clone, aux_real_value_loss, grad_norm]
        for _ in range(c.aux_epochs):
            order = torch.randperm(n, generator=self.generator)
            for start in range(0, n, c.aux_minibatch_size):
                index = order[start : start + c.aux_minibatch_size]
                mb = data[index]
                dist_info, value, aux_value = agent.aux_forward(mb.observation, mb.prev_action, mb.prev_reward)
                aux = auxiliary_losses(
                    agent.distribution,
                    old_dist_info[index],
                    dist_info,
                    value,
                    aux_value,
                    mb.return_.to(agent.device),
                    c.beta_clone,
                )
                loss = aux.joint + aux.value
                grad_norm = self.optimizer.step(loss)
                self.updates += 1
                self.samples_trained += index.numel()
                losses.append(torch.stack([loss, aux.aux_value, aux.kl_clone, aux.value, grad_norm]).detach())
        loss, aux_value_loss, kl_clone, value_loss, grad_norm = torch.stack(losses).mean(dim=0).tolist()
        return {
            "aux_loss": loss,
            "aux_value_loss": aux_value_loss,
            "kl_clone": kl_clone,
            "aux_real_value_loss": value_loss,
            "aux_grad_norm": grad_norm,
        }

    @torch.no_grad()
    def policy_before_phase(self, data: Any) -> Any:
        """``pi_old``: the policy's ``dist_info [N,...]`` on every stored transition ``[N]``
        (on the agent's device), in chunks of ``aux_minibatch_size``."""
        n, m = data.return_.shape[0], self.config.aux_minibatch_size
        old = None
        for start in range(0, n, m):
            window = slice(start, start + m)
            chunk = data[window]
            dist_info, _ = self.agent(chunk.observation, chunk.prev_action, chunk.prev_reward)
            if old is None:
                old = map_buffer(lambda x: x.new_empty((n, *x.shape[1:])), dist_info)
            old[window] = dist_info
        return old

    # ----- state -----
    def state_dict(self) -> dict:
        k, store = self.phase_iteration, self.store
        B = 0 if store is None else store.return_.shape[1] // self.config.n_policy_iterations
        return {
            **super().state_dict(),
            "generator": self.generator.get_state(),
            "phase_iteration": k,
            "aux_phases": self.aux_phases,
            # the phase's stored batches (a copy: a view would save the whole allocation)
            "store": None if store is None else map_buffer(torch.clone, store[:, : k * B]),
            # stamps this part of the state to the optimizer state saved with it (see load_state_dict)
            "optimizer_steps": self.optimizer.steps,
        }

    def load_state_dict(self, state: dict) -> None:
        """Also refuses a phase state saved apart from its optimizer state: a data-parallel
        replica the checkpoint holds no part for (written with fewer replicas) would start an
        empty phase while the others are mid-phase, and the replicas would take different numbers
        of gradient steps."""
        if state["optimizer_steps"] != state["optimizer"]["steps"]:
            raise CheckpointError(
                "this checkpoint holds no PPG phase state for this replica (it was written with fewer "
                "replicas or by the minibatch runner): resume PPG with the runner.kind and runner.n_replicas "
                "it was written with"
            )
        super().load_state_dict(state)
        self.generator.set_state(state["generator"])
        self.phase_iteration, self.aux_phases = state["phase_iteration"], state["aux_phases"]
        saved, self.store = state["store"], None
        if saved is not None:  # the phase_iteration batches stored before the checkpoint
            self.store = self.empty_store(saved, saved.return_.shape[1] // self.phase_iteration)
            self.store[:, : saved.return_.shape[1]] = saved
