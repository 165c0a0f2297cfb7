"""The recurrent policy-gradient agent.

An agent with a recurrent model keeps one state ``[B,S]`` per env while sampling and a separate
one for evaluation (`rlfleet.agents.base.RnnStates`, which the base `Agent` resets, clears for
each evaluation and checkpoints). Each step it records the state the step started from as
``agent_info.prev_rnn_state`` (zero at an episode's first step, since ``reset_envs`` zeroed it
after the previous step ended that episode), so training can restart the unroll from any stored
step.
"""

from __future__ import annotations

import numpy as np
import torch

from rlfleet.agents.base import AgentStep, RnnStates
from rlfleet.agents.pg import _detached_cpu, _PgAgent
from rlfleet.distributions import Categorical, DistInfo, DistInfoStd, Gaussian
from rlfleet.envs.spaces import Box, Discrete, EnvSpaces
from rlfleet.errors import ConfigError
from rlfleet.models.core import episode_starts
from rlfleet.utils.buffers import map_buffer
from rlfleet.utils.namedarraytuple import namedarraytuple

RecurrentPgAgentInfo = namedarraytuple("RecurrentPgAgentInfo", ["dist_info", "value", "prev_rnn_state"])


class RecurrentPgAgent(_PgAgent):
    """Policy-gradient agent over a recurrent actor-critic model (``model.core=lstm|gru``),
    for Discrete (categorical policy) or Box (Gaussian policy) actions.

    Sampling: ``step(observation [B,..], prev_action [B,..], prev_reward [B])`` runs one step of
    the model from the held state, records that state as ``agent_info.prev_rnn_state [B,S]`` and
    keeps the next one. Training: ``agent(observation [T,B,..], prev_action, prev_reward,
    rnn_state [B,S], episode_start [T,B])`` unrolls from a stored state with resets inside.
    """

    recurrent = True

    def check_spaces(self, env_spaces: EnvSpaces) -> None:
        if not isinstance(env_spaces.action, (Discrete, Box)):
            raise ConfigError(
                f"this agent needs a Discrete or Box action space, got {type(env_spaces.action).__name__}"
            )

    def initialize(self, env_spaces: EnvSpaces, seed: int = 0) -> None:
        super().initialize(env_spaces, seed)
        self.discrete = isinstance(env_spaces.action, Discrete)
        self.distribution = (
            Categorical(env_spaces.action.n) if self.discrete else Gaussian(int(np.prod(env_spaces.action.shape)))
        )
        if self.model.rnn_state_size == 0:
            raise ConfigError("a recurrent agent needs a model with a core: set model.core=lstm or model.core=gru")
        self.rnn_states = RnnStates(self.model.rnn_state_size, self.device)

    def _dist_info(self, *pi: torch.Tensor) -> DistInfo | DistInfoStd:
        return DistInfo(logits=pi[0]) if self.discrete else DistInfoStd(mean=pi[0], log_std=pi[1])

    def _forward(self, observation, prev_action, prev_reward, rnn_state, episode_start=None, final_state=True):
        """``(dist_info, value, next_state)``; inputs ``[T,B,..]`` or ``[B,..]``."""
        inputs = self.to_model_inputs(observation, prev_action, prev_reward)
        *pi, value, next_state = self.model(*inputs, rnn_state, episode_start, final_state)
        return self._dist_info(*pi), value, next_state

    def __call__(self, observation, prev_action, prev_reward, rnn_state, episode_start) -> tuple:
        """Training forward over ``[T,B]`` from ``rnn_state [B,S]``: ``(dist_info, value [T,B])``."""
        dist_info, value, _ = self._forward(
            observation,
            prev_action,
            prev_reward,
            rnn_state.to(self.device),
            episode_start.to(self.device),
            final_state=False,
        )
        return dist_info, value

    @torch.no_grad()
    def step(self, observation, prev_action, prev_reward) -> AgentStep:
        mode = self.rnn_mode
        state = self.rnn_states.get(mode, prev_reward.shape[0])
        dist_info, value, next_state = self._forward(observation, prev_action, prev_reward, state)
        self.rnn_states.set(mode, next_state)
        if self._mode == "eval":
            action = self.distribution.mode(dist_info)
        else:
            action = self.distribution.sample(dist_info, generator=self.rng)
        agent_info = RecurrentPgAgentInfo(dist_info=dist_info, value=value, prev_rnn_state=state)
        return AgentStep(action=action.cpu(), agent_info=map_buffer(_detached_cpu, agent_info))

    @torch.no_grad()
    def value(self, observation, prev_action, prev_reward) -> torch.Tensor:
        """``V [B]`` of the sampling envs' next step, from the held state (which it leaves as is)."""
        state = self.rnn_states.get("sample", prev_reward.shape[0])
        return self._forward(observation, prev_action, prev_reward, state)[1].cpu()

    @torch.no_grad()
    def truncated_values(self, samples) -> torch.Tensor:
        """``V`` of the final observations of the truncated steps of ``samples [T,B]``
        (in ``truncated.nonzero()`` order), each from the state its episode reached: the column's
        unroll from the episode's first stored step (or the batch start) up to the cut."""
        env, agent = samples.env, samples.agent
        episode_start = episode_starts(env.terminated | env.truncated)
        values = []
        for t, b in env.truncated.nonzero().tolist():
            starts = episode_start[: t + 1, b].nonzero()
            t0 = int(starts[-1]) if len(starts) else 0
            column = samples[t0 : t + 1, b : b + 1]
            _, _, state = self._forward(
                column.env.observation,
                column.agent.prev_action,
                column.env.prev_reward,
                column.agent.agent_info.prev_rnn_state[0].to(self.device),
            )
            final = env.final_observation[t, b : b + 1]
            _, value, _ = self._forward(final, agent.action[t, b : b + 1], env.reward[t, b : b + 1], state)
            values.append(value.cpu())
        return torch.cat(values)
