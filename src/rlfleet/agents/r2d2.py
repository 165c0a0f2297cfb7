"""The recurrent DQN agent of R2D2 and recurrent DQN: epsilon-greedy over a recurrent Q model
(``model.core=lstm|gru``), with per-env state and a target copy of the model."""

from __future__ import annotations

import torch

from rlfleet.agents.base import AgentStep, RnnStates
from rlfleet.agents.dqn import DqnAgent
from rlfleet.envs.spaces import EnvSpaces
from rlfleet.errors import ConfigError
from rlfleet.utils.namedarraytuple import namedarraytuple

R2d2AgentInfo = namedarraytuple("R2d2AgentInfo", ["q", "action_prob", "prev_rnn_state"])


class R2d2Agent(DqnAgent):
    """Acts epsilon-greedily on ``Q(h_t, .)`` of a recurrent Q model, holding one state per env.

    Sampling: ``step(observation [B,..], prev_action [B], prev_reward [B])`` runs one step from
    the held state, records that state as ``agent_info.prev_rnn_state [B,S]`` (zero at an
    episode's first step: ``reset_envs`` zeroed it) and keeps the next one. Evaluation keeps its
    own state, zeroed at the start of every evaluation. Training: ``agent(observation [T,B,..],
    prev_action, prev_reward, rnn_state [B,S], episode_start [T,B])`` and ``agent.target(...)``
    unroll the online and target networks and return ``(q [T,B,A], state after the last step)``.

    Args:
        model_factory, config, device: as for `DqnAgent` (epsilon schedule in
            `DqnAgentConfig`).
    """

    recurrent = True

    def initialize(self, env_spaces: EnvSpaces, seed: int = 0) -> None:
        super().initialize(env_spaces, seed)
        if self.model.rnn_state_size == 0:
            raise ConfigError("a recurrent Q agent needs a model with a core: set model.core=lstm or model.core=gru")
        self.rnn_states = RnnStates(self.model.rnn_state_size, self.device)

    def _unroll(self, model, observation, prev_action, prev_reward, rnn_state, episode_start, final_state):
        inputs = self.to_model_inputs(observation, prev_action, prev_reward)
        starts = None if episode_start is None else episode_start.to(self.device)
        return model(*inputs, rnn_state.to(self.device), starts, final_state)

    def __call__(self, observation, prev_action, prev_reward, rnn_state, episode_start=None, final_state=True):
        """The online network unrolled from ``rnn_state``: ``(q [T,B,A], next state [B,S])``
        (the state may be None with ``final_state=False``, the core's faster path)."""
        return self._unroll(self.model, observation, prev_action, prev_reward, rnn_state, episode_start, final_state)

    def target(self, observation, prev_action, prev_reward, rnn_state, episode_start=None, final_state=True):
        """The target network unrolled from ``rnn_state``: ``(q [T,B,A], next state [B,S])``."""
        return self._unroll(
            self.target_model, observation, prev_action, prev_reward, rnn_state, episode_start, final_state
        )

    @torch.no_grad()
    def step(self, observation, prev_action, prev_reward) -> AgentStep:
        mode = self.rnn_mode
        state = self.rnn_states.get(mode, prev_reward.shape[0])
        q, next_state = self(observation, prev_action, prev_reward, state)
        self.rnn_states.set(mode, next_state)
        q = q.cpu()
        self.distribution.epsilon = self.sampling_epsilon()
        action = self.distribution.sample(q, generator=self.rng)
        action_prob = self.distribution.probability(q, action)
        return AgentStep(
            action=action, agent_info=R2d2AgentInfo(q=q, action_prob=action_prob, prev_rnn_state=state.cpu())
        )
