"""Uniform replay of ``[T,B]`` samples with n-step returns.

Samples are stored as they come from the sampler, in a ring of ``T_ring = size // B`` time
steps by B envs. An n-step target sums rewards up to the first episode end inside the window:
a *terminated* episode is not bootstrapped; a *truncated* one bootstraps from the final
observation it was cut at (kept aside, since the ring holds the reset observation there).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlfleet.agents.base import AgentInputs
from rlfleet.utils.buffers import buffer_from_example, map_buffer, torchify_buffer
from rlfleet.utils.namedarraytuple import namedarraytuple

ReplaySamples = namedarraytuple("ReplaySamples", ["agent_inputs", "action", "return_", "bootstrap_inputs", "discount"])
_Stored = namedarraytuple(
    "_Stored", ["observation", "action", "reward", "prev_action", "prev_reward", "terminated", "truncated"]
)


class NStepReplayBuffer:
    """Args:
        size: transitions held (rounded down to a multiple of B).
        batch_B: envs per sampler batch.
        n_step: return horizon n.
        gamma: discount.
        seed: seed of the sampling RNG (checkpointed).

    ``sample(batch_size)`` returns ``ReplaySamples`` of ``[N]`` tensors:
    ``return_ = sum_{k<m} gamma^k r_{t+k}`` with ``m <= n`` the steps before the window ends,
    ``discount = gamma^m`` (0 if the episode terminated inside the window) and
    ``bootstrap_inputs`` the agent inputs at ``s_{t+m}``.
    """

    def __init__(self, size: int, batch_B: int, n_step: int = 1, gamma: float = 0.99, seed: int = 0):
        self.B = batch_B
        self.T = size // batch_B
        if self.T <= n_step:
            raise ValueError(f"replay size {size} too small for {batch_B} envs and n_step {n_step}")
        self.n_step = n_step
        self.gamma = gamma
        self.rng = np.random.default_rng(seed)
        self.t = 0  # absolute time steps written
        self.buffer: Any = None
        self.final_observation: dict[int, Any] = {}  # flat ring index -> final obs of a truncated episode

    def append(self, samples: Any) -> None:
        """Store a ``[T,B]`` sampler batch (numpy Samples)."""
        new = _Stored(
            observation=samples.env.observation,
            action=samples.agent.action,
            reward=samples.env.reward,
            prev_action=samples.agent.prev_action,
            prev_reward=samples.env.prev_reward,
            terminated=samples.env.terminated,
            truncated=samples.env.truncated,
        )
        if self.buffer is None:
            self.buffer = buffer_from_example(new[0, 0], (self.T, self.B))
        T = samples.env.reward.shape[0]
        idx = np.arange(self.t, self.t + T) % self.T
        for flat in (idx[:, None] * self.B + np.arange(self.B)).ravel():
            self.final_observation.pop(int(flat), None)
        self.buffer[idx] = new
        for t, b in zip(*np.nonzero(samples.env.truncated)):
            self.final_observation[int(idx[t] * self.B + b)] = map_buffer(np.copy, samples.env.final_observation[t, b])
        self.t += T

    def __len__(self) -> int:
        return min(self.t, self.T) * self.B

    def can_sample(self) -> bool:
        return self.t > self.n_step

    def sample(self, batch_size: int) -> ReplaySamples:
        newest = self.t - 1 - self.n_step  # s_{t+n} must be written
        oldest = max(0, self.t - self.T)
        t_abs = self.rng.integers(oldest, newest + 1, size=batch_size)
        b = self.rng.integers(0, self.B, size=batch_size)
        return self.samples_at(t_abs % self.T, b)

    def samples_at(self, t: np.ndarray, b: np.ndarray) -> ReplaySamples:
        """n-step samples starting at ring rows ``t`` of envs ``b`` (both ``[N]``)."""
        buf, n, batch_size = self.buffer, self.n_step, len(t)

        window = (t[None, :] + np.arange(n)[:, None]) % self.T  # [n, N]
        reward = buf.reward[window, b]
        done = buf.terminated[window, b] | buf.truncated[window, b]
        alive = np.cumprod(np.concatenate([np.ones((1, batch_size), bool), ~done[:-1]]), axis=0).astype(bool)
        discounts = self.gamma ** np.arange(n, dtype=np.float64)[:, None]
        return_ = (reward * alive * discounts).sum(axis=0)
        m = alive.sum(axis=0)  # rewards in the window
        last = (t + m - 1) % self.T
        ended = done[m - 1, np.arange(batch_size)]
        terminated = ended & buf.terminated[last, b]
        truncated = ended & buf.truncated[last, b]
        discount = np.where(terminated, 0.0, self.gamma**m)

        boot_t = (t + m) % self.T
        boot_obs = buf.observation[boot_t, b]
        for i in np.flatnonzero(truncated):
            boot_obs[i] = self.final_observation[int(last[i] * self.B + b[i])]
        bootstrap = AgentInputs(boot_obs, buf.action[last, b], buf.reward[last, b])
        current = AgentInputs(buf.observation[t, b], buf.prev_action[t, b], buf.prev_reward[t, b])
        out = ReplaySamples(
            current, buf.action[t, b], return_.astype(np.float32), bootstrap, discount.astype(np.float32)
        )
        return torchify_buffer(out)

    def state_dict(self) -> dict[str, Any]:
        return {
            "buffer": self.buffer,
            "t": self.t,
            "final_observation": self.final_observation,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer, self.t = state["buffer"], state["t"]
        self.final_observation = state["final_observation"]
        self.rng.bit_generator.state = state["rng"]
