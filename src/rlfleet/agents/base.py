"""Agent base class."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from rlfleet.agents.config import PgAgentConfig
from rlfleet.envs.spaces import EnvSpaces
from rlfleet.utils.buffers import buffer_to, torchify_buffer
from rlfleet.utils.namedarraytuple import namedarraytuple

AgentInputs = namedarraytuple("AgentInputs", ["observation", "prev_action", "prev_reward"])
AgentStep = namedarraytuple("AgentStep", ["action", "agent_info"])

ModelFactory = Callable[[EnvSpaces], nn.Module]


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """``target <- tau * online + (1 - tau) * target`` over all parameters, in one batched op
    (tau = 1 copies); buffers (e.g. noisy layers' noise) are left alone."""
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)


class RnnStates:
    """Per-env recurrent state ``[B,S]`` of the sampling envs and, apart, of the evaluation envs.

    A state is allocated as zeros on first use (and again when the number of envs changes);
    ``reset`` zeroes the rows of envs whose episode ended. Only the sampling state is
    checkpointed: every evaluation starts from zeros.
    """

    def __init__(self, size: int, device: torch.device):
        self.size = size
        self.device = device
        self.states: dict[str, torch.Tensor | None] = {"sample": None, "eval": None}

    def get(self, mode: str, n_envs: int) -> torch.Tensor:
        state = self.states[mode]
        if state is None or state.shape[0] != n_envs:
            state = torch.zeros(n_envs, self.size, device=self.device)
            self.states[mode] = state
        return state

    def set(self, mode: str, state: torch.Tensor) -> None:
        self.states[mode] = state

    def reset(self, mode: str, done: torch.Tensor) -> None:
        state = self.states[mode]
        if state is not None:
            self.states[mode] = state * (~done.to(state.device)).unsqueeze(-1).to(state.dtype)

    def clear(self, mode: str) -> None:
        self.states[mode] = None

    def state_dict(self) -> dict:
        return {"sample": self.states["sample"]}

    def load_state_dict(self, state: dict) -> None:
        self.states["sample"] = None if state["sample"] is None else state["sample"].to(self.device)


class Agent:
    """Owns a model and acts with it.

    The sampler calls ``step(observation, prev_action, prev_reward)`` with ``[B, ...]`` numpy
    or torch arrays and gets ``AgentStep(action [B,...], agent_info)`` back (torch, CPU). The
    algorithm calls the agent (``agent(*inputs)``) on ``[T,B,...]`` training batches.
    Exploration randomness comes from ``self.rng`` (``generator`` while sampling, a separate
    ``eval_generator`` in eval mode); both are checkpointed.

    Args:
        model_factory: ``f(env_spaces) -> nn.Module``; lets YAML swap in a custom model.
        config: the agent's options, an instance of its ``config_class`` (the ``agent:``
            section; None: the defaults).
        device: torch device for the model.
    """

    config_class: ClassVar[type] = PgAgentConfig
    recurrent: ClassVar[bool] = False
    """Whether the agent carries recurrent state (its training call then also takes the stored
    start state and ``episode_start``; see `rlfleet.agents.recurrent`)."""

    def __init__(self, model_factory: ModelFactory, config: Any = None, device: str = "cpu"):
        self.model_factory = model_factory
        self.config = config if config is not None else self.config_class()
        self.device = torch.device(device)
        self.model: nn.Module | None = None
        self.env_spaces: EnvSpaces | None = None
        self.generator = torch.Generator()
        self.eval_generator = torch.Generator()
        self._mode = "sample"
        self.env_steps = 0
        self.rnn_states: RnnStates | None = None  # set by recurrent agents in initialize

    def initialize(self, env_spaces: EnvSpaces, seed: int = 0) -> None:
        self.env_spaces = env_spaces
        self.check_spaces(env_spaces)
        self.model = self.model_factory(env_spaces).to(self.device)
        self.generator.manual_seed(seed)
        self.eval_generator.manual_seed(seed + 1)

    @property
    def rng(self) -> torch.Generator:
        """The generator of the current mode: evaluation never touches training randomness."""
        return self.eval_generator if self._mode == "eval" else self.generator

    def check_spaces(self, env_spaces: EnvSpaces) -> None:
        """Raise ConfigError if this agent cannot act in ``env_spaces.action``."""

    def to_model_inputs(self, *arrays: Any) -> tuple:
        return tuple(buffer_to(torchify_buffer(a), self.device) for a in arrays)

    def parameters(self):
        return self.model.parameters()

    def weights(self) -> dict[str, dict[str, torch.Tensor]]:
        """What an acting copy of this agent needs from the learner (Ray actor workers):
        ``{"model": state_dict}``; agents that act or bootstrap with more networks add them."""
        return {"model": self.model.state_dict()}

    def load_weights(self, weights: dict[str, dict[str, torch.Tensor]]) -> None:
        """Load `weights` published by a learner's copy of this agent."""
        self.model.load_state_dict(weights["model"])

    def __call__(self, observation, prev_action, prev_reward):
        raise NotImplementedError

    @torch.no_grad()
    def step(self, observation, prev_action, prev_reward) -> AgentStep:
        raise NotImplementedError

    @property
    def rnn_mode(self) -> str:
        """Which recurrent state the current mode acts with: evaluation its own, sampling and
        training the sampling one."""
        return "eval" if self._mode == "eval" else "sample"

    def reset_envs(self, done: torch.Tensor) -> None:
        """The envs where ``done [B]`` (bool) is set just ended an episode; their next step
        starts a new one. Agents with per-env state (exploration noise, recurrent state) reset
        it here, for the current mode (sampling and evaluation keep separate state); the sampler
        and the evaluation call this after every step in which an episode ended. Recurrent
        state (``rnn_states``) is zeroed here for every agent that holds one."""
        if self.rnn_states is not None:
            self.rnn_states.reset(self.rnn_mode, done)

    def sample_mode(self, env_steps: int) -> None:
        """Exploring behaviour, for the training sampler; ``env_steps`` drives schedules."""
        self._mode = "sample"
        self.env_steps = env_steps
        self.model.eval()

    def eval_mode(self, env_steps: int) -> None:
        """Deterministic behaviour, for evaluation; recurrent state starts from zeros."""
        self._mode = "eval"
        self.model.eval()
        if self.rnn_states is not None:
            self.rnn_states.clear("eval")

    def train_mode(self, env_steps: int) -> None:
        """Gradients on, for the algorithm's update."""
        self._mode = "train"
        self.model.train()

    def state_dict(self) -> dict:
        state = {
            "model": self.model.state_dict(),
            "generator": self.generator.get_state(),
            "eval_generator": self.eval_generator.get_state(),
        }
        if self.rnn_states is not None:
            state["rnn_states"] = self.rnn_states.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.generator.set_state(state["generator"])
        self.eval_generator.set_state(state["eval_generator"])
        if self.rnn_states is not None:
            self.rnn_states.load_state_dict(state["rnn_states"])
