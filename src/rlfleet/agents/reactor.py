"""Reactor's agents (Gruslys et al. 2018): they act by sampling the actor's policy ``pi`` (mixed
with ``epsilon``-uniform exploration when ``agent.eps_*`` ask for it) and record the probability
``mu(a | x)`` of the action taken, which the critic's Retrace traces and the actor's
beta-leave-one-out gradient read back from the sequence replay."""

from __future__ import annotations

from typing import Any

import torch

from rlfleet.agents.base import AgentStep
from rlfleet.agents.config import ReactorAgentConfig
from rlfleet.agents.dqn import AgentInfo, DqnAgent
from rlfleet.agents.r2d2 import R2d2Agent, R2d2AgentInfo


def policy_probabilities(outputs: torch.Tensor) -> torch.Tensor:
    """``pi(. | x) [..., A]`` from `ReactorModel` outputs ``[..., A, K + 1]``."""
    return outputs[..., -1].softmax(dim=-1)


def critic_logits(outputs: torch.Tensor) -> torch.Tensor:
    """The critic's logits ``[..., A, K]`` from `ReactorModel` outputs ``[..., A, K + 1]``."""
    return outputs[..., :-1]


class _ReactorActing:
    """What both Reactor agents share: the support, Q-values and the sampling of ``pi``."""

    config: ReactorAgentConfig
    rng: torch.Generator
    _mode: str
    _support: torch.Tensor | None = None

    def support(self, n_atoms: int) -> torch.Tensor:
        """The critic's atoms ``z [K] = linspace(v_min, v_max, K)`` on the model's device."""
        if self._support is None or len(self._support) != n_atoms:
            self._support = torch.linspace(self.config.v_min, self.config.v_max, n_atoms, device=self.device)
        return self._support

    def q_values(self, outputs: torch.Tensor) -> torch.Tensor:
        """``Q(x, .) [..., A]``: the means of the critic's distributions."""
        logits = critic_logits(outputs)
        return (logits.softmax(dim=-1) * self.support(logits.shape[-1]).to(logits.device)).sum(dim=-1)

    def act(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(action [B], mu(action) [B], Q [B, A])`` from outputs ``[B, A, K + 1]`` (CPU):
        the most probable action of ``pi`` in evaluation, else a draw from
        ``mu = (1 - eps) pi + eps / A``."""
        pi = policy_probabilities(outputs)
        q = self.q_values(outputs)
        if self._mode == "eval":
            action = pi.argmax(dim=-1)
            return action, torch.ones(action.shape), q
        epsilon = self.sampling_epsilon()
        mu = (1.0 - epsilon) * pi + epsilon / pi.shape[-1]
        action = torch.multinomial(mu.reshape(-1, pi.shape[-1]), 1, generator=self.rng).reshape(pi.shape[:-1])
        return action, mu.gather(-1, action.unsqueeze(-1)).squeeze(-1), q


class ReactorAgent(_ReactorActing, DqnAgent):
    """Feed-forward Reactor agent over a `ReactorModel`; holds a target copy of it.

    ``agent(observation [..], prev_action, prev_reward)`` returns the model's outputs
    ``[..., A, K + 1]``; sampling records ``agent_info`` ``q [B, A]`` and ``action_prob [B]``.
    """

    config_class = ReactorAgentConfig

    @torch.no_grad()
    def step(self, observation: Any, prev_action: torch.Tensor, prev_reward: torch.Tensor) -> AgentStep:
        action, action_prob, q = self.act(self(observation, prev_action, prev_reward).cpu())
        return AgentStep(action=action, agent_info=AgentInfo(q=q, action_prob=action_prob))


class RecurrentReactorAgent(_ReactorActing, R2d2Agent):
    """Reactor with a recurrent core (``model.core=lstm|gru``): per-env state as `R2d2Agent`
    keeps it (recorded as ``agent_info.prev_rnn_state``), acting as `ReactorAgent`."""

    config_class = ReactorAgentConfig

    @torch.no_grad()
    def step(self, observation: Any, prev_action: torch.Tensor, prev_reward: torch.Tensor) -> AgentStep:
        mode = self.rnn_mode
        state = self.rnn_states.get(mode, prev_reward.shape[0])
        outputs, next_state = self(observation, prev_action, prev_reward, state)
        self.rnn_states.set(mode, next_state)
        action, action_prob, q = self.act(outputs.cpu())
        info = R2d2AgentInfo(q=q, action_prob=action_prob, prev_rnn_state=state.cpu())
        return AgentStep(action=action, agent_info=info)
