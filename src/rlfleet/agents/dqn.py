"""DQN agent: epsilon-greedy over a Q model, plus a target copy of the model."""

from __future__ import annotations

import copy

import torch

from rlfleet.agents.base import Agent, AgentStep, polyak_update
from rlfleet.agents.config import DqnAgentConfig
from rlfleet.distributions import EpsilonGreedy
from rlfleet.envs.spaces import Discrete, EnvSpaces
from rlfleet.errors import ConfigError
from rlfleet.models.noisy import has_noise, reset_noise, set_noise
from rlfleet.utils.namedarraytuple import namedarraytuple
from rlfleet.utils.schedules import LinearSchedule

AgentInfo = namedarraytuple("AgentInfo", ["q", "action_prob"])


class DqnAgent(Agent):
    """Acts epsilon-greedily on ``Q(s, .)``; holds ``target_model`` for bootstrapping.

    Sampling records ``agent_info``: ``q [B, A]`` and ``action_prob [B]``, the probability
    ``mu(a | s)`` the epsilon-greedy policy gave the action it took (the sequence replay keeps it
    for off-policy corrections such as Retrace).

    Models with noisy layers (``models.noisy``) explore through their noise: it is on while
    sampling and training, off in evaluation, and resampled by the algorithm before every
    update (``reset_noise``). Subclasses whose models output distributions override
    ``q_values``.

    Args:
        model_factory, config, device: as for `Agent`; ``config`` is a `DqnAgentConfig`
            (epsilon linearly annealed from ``eps_start`` to ``eps_end`` over ``eps_steps`` env
            steps; ``eps_eval`` in evaluation).
    """

    config_class = DqnAgentConfig

    def __init__(self, model_factory, config: DqnAgentConfig | None = None, device: str = "cpu"):
        super().__init__(model_factory, config, device)
        c = self.config
        self.eps_schedule = LinearSchedule(c.eps_start, c.eps_end, c.eps_steps)
        self.eps_eval = c.eps_eval
        self.fixed_epsilon: torch.Tensor | None = None

    def check_spaces(self, env_spaces: EnvSpaces) -> None:
        if not isinstance(env_spaces.action, Discrete):
            raise ConfigError(
                f"dqn needs a Discrete action space, got {type(env_spaces.action).__name__}; "
                "for continuous actions use ppo or a2c"
            )

    def initialize(self, env_spaces: EnvSpaces, seed: int = 0) -> None:
        super().initialize(env_spaces, seed)
        self.target_model = copy.deepcopy(self.model)
        self.target_model.requires_grad_(False)
        self.distribution = EpsilonGreedy(env_spaces.action.n, self.eps_schedule.start)
        self.noisy = has_noise(self.model)

    def __call__(self, observation, prev_action, prev_reward) -> torch.Tensor:
        """The model's output (here ``Q(s, .)``) with the caller's leading dims."""
        return self.model(*self.to_model_inputs(observation, prev_action, prev_reward))

    def target(self, observation, prev_action, prev_reward) -> torch.Tensor:
        """The target network's output."""
        return self.target_model(*self.to_model_inputs(observation, prev_action, prev_reward))

    def q_values(self, output: torch.Tensor) -> torch.Tensor:
        """``Q(s, .) [..., A]`` from a model output."""
        return output

    @torch.no_grad()
    def step(self, observation, prev_action, prev_reward) -> AgentStep:
        q = self.q_values(self(observation, prev_action, prev_reward)).cpu()
        self.distribution.epsilon = self.sampling_epsilon()
        action = self.distribution.sample(q, generator=self.rng)
        return AgentStep(action=action, agent_info=AgentInfo(q=q, action_prob=self.distribution.probability(q, action)))

    def sampling_epsilon(self) -> float | torch.Tensor:
        """Epsilon of the current mode: ``eps_eval`` in evaluation, else the env slots' fixed
        epsilons (``[B]``, `set_fixed_epsilon`) or the annealed schedule."""
        if self._mode == "eval":
            return self.eps_eval
        return self.eps_schedule(self.env_steps) if self.fixed_epsilon is None else self.fixed_epsilon

    def set_fixed_epsilon(self, epsilon: torch.Tensor | None) -> None:
        """Explore with one fixed epsilon per env (``[B]``; Ape-X's actor epsilons) in place of
        the schedule; None returns to the schedule."""
        self.fixed_epsilon = epsilon

    @property
    def epsilon(self) -> float:
        return self.eps_schedule(self.env_steps)

    def reset_noise(self) -> None:
        """Resample the noise of noisy layers in the online and target networks."""
        if self.noisy:
            reset_noise(self.model, self.generator)
            reset_noise(self.target_model, self.generator)

    def sample_mode(self, env_steps: int) -> None:
        super().sample_mode(env_steps)
        set_noise(self.model, True)

    def eval_mode(self, env_steps: int) -> None:
        super().eval_mode(env_steps)
        set_noise(self.model, False)

    def train_mode(self, env_steps: int) -> None:
        super().train_mode(env_steps)
        set_noise(self.model, True)

    def update_target(self, tau: float = 1.0) -> None:
        """``target <- tau * online + (1 - tau) * target`` (tau=1: hard copy)."""
        if tau >= 1.0:
            self.target_model.load_state_dict(self.model.state_dict())
        else:
            polyak_update(self.target_model, self.model, tau)

    def weights(self) -> dict[str, dict[str, torch.Tensor]]:
        """The online and the target network (actors compute Ape-X's initial priorities)."""
        return {**super().weights(), "target_model": self.target_model.state_dict()}

    def load_weights(self, weights: dict[str, dict[str, torch.Tensor]]) -> None:
        super().load_weights(weights)
        self.target_model.load_state_dict(weights["target_model"])

    def state_dict(self) -> dict:
        return {**super().state_dict(), "target_model": self.target_model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.target_model.load_state_dict(state["target_model"])
