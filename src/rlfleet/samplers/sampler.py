"""The sampler: runs the agent in B envs for T steps and returns ``[T,B]`` samples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rlfleet.agents.base import Agent, AgentInputs
from rlfleet.checkpoint import check_pickled_state
from rlfleet.envs.normalize import ObservationNormalizer, RewardNormalizer
from rlfleet.samplers.steppers import Stepper
from rlfleet.utils.buffers import buffer_from_example, map_buffer, numpify_buffer, torchify_buffer
from rlfleet.utils.namedarraytuple import namedarraytuple

Samples = namedarraytuple("Samples", ["agent", "env"])
AgentSamples = namedarraytuple("AgentSamples", ["action", "prev_action", "agent_info"])
EnvSamples = namedarraytuple(
    "EnvSamples", ["observation", "reward", "prev_reward", "terminated", "truncated", "final_observation"]
)


@dataclass
class SamplerBatch:
    """What one call of `Sampler.obtain_samples` returns.

    Attributes:
        samples: ``[T,B]`` Samples (numpy; ``torch_samples`` views the same memory).
            ``env.final_observation[t,b]`` is the observation an episode was truncated at
            (only meaningful where ``env.truncated[t,b]``).
        torch_samples: the same buffers as torch tensors (zero-copy).
        last: AgentInputs ``[B]`` following the batch, to bootstrap from.
        traj_infos: statistics of the trajectories completed in this batch.
    """

    samples: Any
    torch_samples: Any
    last: Any
    traj_infos: list[dict[str, float]]


@dataclass
class _EnvRows:
    """Views of the sampler's buffers for envs ``[start, stop)``: the rows one agent call acts on.

    Attributes:
        envs: ``slice(start, stop)``.
        samples, torch_samples: ``[T, n]`` views of the sampler's samples (numpy, torch).
        step_buffers: ``[n]`` rows of the stepper's StepBuffers.
        prev_action, prev_reward: ``[n]`` rows of the sampler's previous action and reward
            (numpy), and ``prev_action_t``, ``prev_reward_t`` the same memory as torch.
    """

    envs: slice
    samples: Any
    torch_samples: Any
    step_buffers: Any
    prev_action: np.ndarray
    prev_reward: np.ndarray
    prev_action_t: torch.Tensor
    prev_reward_t: torch.Tensor


class Sampler:
    """Collects ``[T,B]`` batches with one batched agent forward pass per time step.

    The envs are stepped by ``stepper`` (serial in this process, or parallel workers writing
    into shared memory); everything else, normalisation included, happens here.

    Args:
        stepper: steps the B envs.
        batch_T: time steps per batch.
        obs_normalizer, reward_normalizer: optional running normalisers (updated here).
    """

    def __init__(
        self,
        stepper: Stepper,
        batch_T: int,
        obs_normalizer: ObservationNormalizer | None = None,
        reward_normalizer: RewardNormalizer | None = None,
    ):
        self.stepper = stepper
        self.batch_T = batch_T
        self.batch_B = stepper.n_envs
        self.env_spaces = stepper.env_spaces
        self.obs_normalizer = obs_normalizer
        self.reward_normalizer = reward_normalizer
        self.agent: Agent | None = None

    @property
    def batch_size(self) -> int:
        return self.batch_T * self.batch_B

    def initialize(self, agent: Agent, seed: int) -> None:
        """Reset the envs with seeds ``seed + b`` and allocate buffers after the agent's output."""
        self.agent = agent
        self.stepper.reset([seed + b for b in range(self.batch_B)])
        B = self.batch_B
        action_space = self.env_spaces.action
        self._prev_action = buffer_from_example(action_space.null_value(), (B,))
        self._prev_reward = np.zeros(B, np.float32)
        observation = self._observation(update=False)
        rng_state = agent.generator.get_state()
        example = agent.step(observation, self.prev_action, self.prev_reward)
        agent.generator.set_state(rng_state)
        agent.reset_envs(torch.ones(B, dtype=torch.bool))  # the example step leaves no per-env state behind
        example_samples = Samples(
            agent=AgentSamples(
                action=numpify_buffer(example.action[0]),
                prev_action=action_space.null_value(),
                agent_info=numpify_buffer(example.agent_info[0]),
            ),
            env=EnvSamples(
                observation=observation[0],
                reward=np.float32(0),
                prev_reward=np.float32(0),
                terminated=np.bool_(False),
                truncated=np.bool_(False),
                final_observation=observation[0],
            ),
        )
        self.samples = buffer_from_example(example_samples, (self.batch_T, B))
        self.torch_samples = torchify_buffer(self.samples)
        self._all_envs = self._env_rows(0, B)

    def _env_rows(self, start: int, stop: int) -> _EnvRows:
        """Views of envs ``[start, stop)`` (built once; per-step work then only indexes time)."""
        envs = slice(start, stop)
        prev_action, prev_reward = self._prev_action[envs], self._prev_reward[envs]
        return _EnvRows(
            envs=envs,
            samples=self.samples[:, envs],
            torch_samples=self.torch_samples[:, envs],
            step_buffers=self.stepper.buffers[envs],
            prev_action=prev_action,
            prev_reward=prev_reward,
            prev_action_t=torch.from_numpy(prev_action),
            prev_reward_t=torch.from_numpy(prev_reward),
        )

    def _observation(self, update: bool) -> np.ndarray:
        obs = self.stepper.buffers.observation
        return obs if self.obs_normalizer is None else self.obs_normalizer(obs, update=update)

    def _act(self, rows: _EnvRows, t: int) -> np.ndarray:
        """Record time step ``t``'s inputs of ``rows`` and run the agent on them; returns their
        actions ``[n, ...]`` (a view of ``samples.agent.action[t]``) for the stepper."""
        samples = rows.samples
        obs = rows.step_buffers.observation
        samples.env.observation[t] = obs if self.obs_normalizer is None else self.obs_normalizer(obs, update=True)
        samples.agent.prev_action[t] = rows.prev_action
        samples.env.prev_reward[t] = rows.prev_reward
        agent_step = self.agent.step(rows.torch_samples.env.observation[t], rows.prev_action_t, rows.prev_reward_t)
        rows.torch_samples.agent[t] = AgentSamples(agent_step.action, None, agent_step.agent_info)
        return samples.agent.action[t]

    def _record(self, rows: _EnvRows, t: int) -> None:
        """Record the results of ``rows``' step ``t`` (now in the stepper's buffers), tell the
        agent which envs ended an episode, and set the next previous action and reward (zero
        after an episode end)."""
        samples, step_buf = rows.samples, rows.step_buffers
        # Per-step bookkeeping stays in numpy (cheaper than torch for [B] arrays); the agent
        # reads torch views of the same memory.
        terminated, truncated = step_buf.terminated, step_buf.truncated
        not_done = ~(terminated | truncated)
        reward = step_buf.reward
        if self.reward_normalizer is not None:
            reward = self.reward_normalizer(reward, ~not_done, rows.envs)
        samples.env.reward[t] = reward
        samples.env.terminated[t] = terminated
        samples.env.truncated[t] = truncated
        if truncated.any():
            final = step_buf.final_observation[truncated]
            if self.obs_normalizer is not None:
                final = self.obs_normalizer(final, update=False)
            samples.env.final_observation[t][truncated] = final
        if not not_done.all():
            done = np.zeros(self.batch_B, bool)
            done[rows.envs] = ~not_done
            self.agent.reset_envs(torch.from_numpy(done))
        not_done_shape = (-1,) + (1,) * (rows.prev_action.ndim - 1)
        np.multiply(samples.agent.action[t], not_done.reshape(not_done_shape), out=rows.prev_action, casting="unsafe")
        np.multiply(samples.env.reward[t], not_done, out=rows.prev_reward)

    def _batch(self) -> SamplerBatch:
        """The batch in ``samples``, the inputs that follow it and the completed trajectories."""
        last_obs = map_buffer(np.copy, self._observation(update=False))
        last = AgentInputs(torchify_buffer(last_obs), self.prev_action.clone(), self.prev_reward.clone())
        return SamplerBatch(self.samples, self.torch_samples, last, self.stepper.pop_completed())

    def obtain_samples(self) -> SamplerBatch:
        """``batch_T`` steps of all B envs: per step one agent call on all of them, then one
        stepper step."""
        rows = self._all_envs
        for t in range(self.batch_T):
            self.stepper.step(self._act(rows, t))
            self._record(rows, t)
        return self._batch()

    @property
    def prev_action(self) -> torch.Tensor:
        """``[B, ...]`` action before the current observation (zero after an episode start)."""
        return torch.from_numpy(self._prev_action)

    @property
    def prev_reward(self) -> torch.Tensor:
        """``[B]`` reward before the current observation (zero after an episode start)."""
        return torch.from_numpy(self._prev_reward)

    def state_dict(self) -> dict[str, Any]:
        return {
            "stepper": self.stepper.state_dict(),
            "observation": np.copy(self.stepper.buffers.observation),
            "prev_action": self.prev_action.clone(),
            "prev_reward": self.prev_reward.clone(),
            "obs_normalizer": None if self.obs_normalizer is None else self.obs_normalizer.state_dict(),
            "reward_normalizer": None if self.reward_normalizer is None else self.reward_normalizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        """Restore; returns False if the envs could not be restored exactly (they were reset).

        The saved env pickles are first checked here, in this process, against the globals of
        the fresh envs' own (``check_pickled_state``): CheckpointError before any env process
        sees a payload that needs anything else (each EnvGroup checks again as it loads)."""
        check_pickled_state(state["stepper"], self.stepper.state_dict())
        exact = self.stepper.load_state_dict(state["stepper"])
        if exact:
            self.stepper.buffers.observation[:] = state["observation"]
            self._prev_action[:] = state["prev_action"].numpy()
            self._prev_reward[:] = state["prev_reward"].numpy()
        else:
            self._prev_action[:] = 0
            self._prev_reward[:] = 0
        if self.obs_normalizer is not None:
            self.obs_normalizer.load_state_dict(state["obs_normalizer"])
        if self.reward_normalizer is not None:
            self.reward_normalizer.load_state_dict(state["reward_normalizer"])
        return exact

    def close(self) -> None:
        self.stepper.close()
