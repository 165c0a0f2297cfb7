"""Uniform replay of ``[T,B]`` samples with n-step returns.

Samples are stored as they come from the sampler, in a ring of ``T_ring = size // B`` time
steps by B envs. An n-step target sums rewards up to the first episode end inside the window:
a *terminated* episode is not bootstrapped; a *truncated* one bootstraps from the final
observation it was cut at (kept aside, since the ring holds the reset observation there).

Observations live in an observation store: `WholeObservations` keeps them as given;
`StackedFrames` keeps only the newest frame of each frame stack and rebuilds the stacks when
sampled, which divides the observation memory of an Atari replay by the stack size.

`append` is the one way in: it writes a sampler batch into the ring and records it (time step
counter, final observations, and in `PrioritizedReplayBuffer` the priorities).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from rlfleet.agents.base import AgentInputs
from rlfleet.utils.buffers import buffer_from_example, map_buffer, torchify_buffer
from rlfleet.utils.namedarraytuple import namedarraytuple

ReplaySamples = namedarraytuple("ReplaySamples", ["agent_inputs", "action", "return_", "bootstrap_inputs", "discount"])
_Stored = namedarraytuple("_Stored", ["action", "reward", "prev_action", "prev_reward", "terminated", "truncated"])


def _truncation_finals(samples: Any) -> dict[tuple[int, int], Any]:
    """``{(t, b): copy of samples.env.final_observation[t, b]}`` for every truncated step of a
    ``[T,B]`` sampler batch."""
    env = samples.env
    return {
        (int(t), int(b)): map_buffer(np.copy, env.final_observation[t, b]) for t, b in zip(*np.nonzero(env.truncated))
    }


def truncate_row(buffer: Any, row: int, final_observation: dict[int, Any], next_observation: Any) -> None:
    """Mark every env's step at ring ``row`` of ``buffer`` (with ``terminated`` and
    ``truncated [T_ring, B]``) truncated unless it already ended an episode, keeping
    ``next_observation [B]`` as its final observation under the flat index ``row * B + b``."""
    B = buffer.truncated.shape[1]
    for b in np.flatnonzero(~(buffer.terminated[row] | buffer.truncated[row])):
        buffer.truncated[row, b] = True
        final_observation[int(row * B + b)] = map_buffer(lambda x, b=b: np.copy(x[b]), next_observation)


class WholeObservations:
    """Observations stored as given: ``[T_ring, B, ...]`` (nested observations too).

    Args:
        T_ring: time steps the ring holds.
        B: envs.
    """

    history = 0  # earlier time steps that reading one observation needs

    def __init__(self, T_ring: int, B: int):
        self.T_ring, self.B = T_ring, B
        self.observation: Any = None

    def allocate(self, observation: Any) -> None:
        """Allocate the ring for observations like ``observation [T,B,...]``."""
        self.observation = buffer_from_example(observation[0, 0], (self.T_ring, self.B))

    def write(self, t: int, observation: Any) -> None:
        """Store ``observation [T,B,...]`` at absolute time steps ``t .. t+T-1``."""
        if self.observation is None:
            self.allocate(observation)
        self.observation[np.arange(t, t + len(observation)) % self.T_ring] = observation

    def read(self, rows: np.ndarray, b: np.ndarray) -> Any:
        """Observations ``[N,...]`` (a copy) at ring rows ``rows [N]`` of envs ``b [N]``."""
        return self.observation[rows, b]

    @property
    def nbytes(self) -> int:
        leaves: list[np.ndarray] = []
        map_buffer(leaves.append, self.observation)
        return sum(leaf.nbytes for leaf in leaves)

    def state_dict(self) -> dict[str, Any]:
        return {"observation": self.observation}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.observation = state["observation"]


class StackedFrames:
    """Frame-stacked observations ``[k, *frame]`` stored one frame per time step.

    The observations must be what Gymnasium's ``FrameStackObservation`` (``padding_type="reset"``)
    returns: each one is the previous one shifted by a frame, or, at an episode start, the reset
    frame repeated k times. Only the newest frame ``[T_ring, B, *frame]`` and an episode-start
    flag ``[T_ring, B]`` are kept; reading a stack gathers the k-1 frames before it, repeating the
    episode's first frame in place of frames from before the episode started.

    Starts are found from the data (a stack that does not continue the previous one), so an env
    reset that the done flags do not show (e.g. on resume) is handled too; `write` raises
    ValueError on observations that neither continue the previous stack nor are reset-padded.

    Args:
        T_ring: time steps the ring holds.
        B: envs.
        frame_stack: k, the frames per observation.
    """

    def __init__(self, T_ring: int, B: int, frame_stack: int):
        if frame_stack < 1:
            raise ValueError(f"frame_stack must be >= 1, got {frame_stack}")
        self.T_ring, self.B, self.k = T_ring, B, frame_stack
        self.history = frame_stack - 1
        self.frames: np.ndarray | None = None
        self.episode_start: np.ndarray | None = None

    def _check(self, obs: Any) -> None:
        if not isinstance(obs, np.ndarray) or obs.ndim < 3 or obs.shape[2] != self.k:
            shape = getattr(obs, "shape", type(obs).__name__)
            raise ValueError(f"frame_stack={self.k} needs array observations [T,B,{self.k},...], got {shape}")

    def allocate(self, obs: np.ndarray) -> None:
        """Allocate the frame ring ``[T_ring, B, *frame]`` and the episode-start flags for
        stacks like ``obs [T,B,k,*frame]``."""
        self._check(obs)
        self.frames = buffer_from_example(obs[0, 0, -1], (self.T_ring, self.B))
        self.episode_start = buffer_from_example(np.bool_(False), (self.T_ring, self.B))

    def write(self, t: int, obs: np.ndarray) -> None:
        """Store the newest frames of ``obs [T,B,k,*frame]`` at absolute time steps ``t .. t+T-1``."""
        self._check(obs)
        if self.frames is None:
            self.allocate(obs)
        continues = np.zeros(obs.shape[:2], bool)
        continues[1:] = _continues(obs[:-1], obs[1:])
        if t > 0:
            previous = self.read(np.full(self.B, (t - 1) % self.T_ring), np.arange(self.B))
            continues[0] = _continues(previous[None], obs[:1])[0]
        starts = obs[~continues]  # [S,k,*frame]
        if not (starts[:, :-1] == starts[:, -1:]).all():
            raise ValueError(
                "frame-stacked observations must come from FrameStackObservation(padding_type='reset'): "
                "found a stack that neither continues the previous one nor repeats its first frame"
            )
        rows = np.arange(t, t + len(obs)) % self.T_ring
        self.frames[rows] = obs[:, :, -1]
        self.episode_start[rows] = ~continues

    def read(self, rows: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Rebuilt stacks ``[N,k,*frame]`` at ring rows ``rows [N]`` of envs ``b [N]``; the
        ``history`` time steps before each row must still be in the ring."""
        k, T = self.k, self.T_ring
        steps_back = np.arange(k)
        started = self.episode_start[(rows[:, None] - steps_back[None, :-1]) % T, b[:, None]]  # [N,k-1]
        since_start = np.cumprod(~started, axis=1).sum(axis=1)  # [N]: steps back to a start, at most k-1
        source = (rows[:, None] - np.minimum(steps_back[None, ::-1], since_start[:, None])) % T  # [N,k]
        return self.frames[source, b[:, None]]

    @property
    def nbytes(self) -> int:
        return 0 if self.frames is None else self.frames.nbytes + self.episode_start.nbytes

    def state_dict(self) -> dict[str, Any]:
        return {"frames": self.frames, "episode_start": self.episode_start}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.frames, self.episode_start = state["frames"], state["episode_start"]


def _continues(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """``[T,B]``: whether each stack of ``after [T,B,k,...]`` is the one in ``before`` shifted by
    one frame."""
    same = after[:, :, :-1] == before[:, :, 1:]
    return same.all(axis=tuple(range(2, same.ndim)))


class ReplayBatch(NamedTuple):
    """What `sample_batch` returns.

    Attributes:
        samples: ReplaySamples of ``[N]`` tensors.
        weights: ``[N]`` float32 importance weights (prioritized replay), or None.
        indices: ``[N]`` int64 tree leaves for ``update_priorities`` (prioritized replay), or None.
    """

    samples: Any
    weights: torch.Tensor | None
    indices: np.ndarray | None


class NStepReplayBuffer:
    """Args:
        size: transitions held (rounded down to a multiple of B).
        batch_B: envs per sampler batch.
        n_step: return horizon n.
        gamma: discount.
        seed: seed of the sampling RNG (checkpointed).
        frame_stack: 0 stores observations whole; k > 0 expects ``[k, *frame]`` frame stacks
            from ``FrameStackObservation`` and stores each frame once (see `StackedFrames`).

    ``sample(batch_size)`` returns ``ReplaySamples`` of ``[N]`` tensors:
    ``return_ = sum_{k<m} gamma^k r_{t+k}`` with ``m <= n`` the steps before the window ends,
    ``discount = gamma^m`` (0 if the episode terminated inside the window) and
    ``bootstrap_inputs`` the agent inputs at ``s_{t+m}``.

    Attributes:
        t: absolute time steps recorded by `append`.
    """

    sequence_length: int | None = None  # transitions, not sequences (`SequenceReplayBuffer` declares L)

    def __init__(
        self, size: int, batch_B: int, n_step: int = 1, gamma: float = 0.99, seed: int = 0, frame_stack: int = 0
    ):
        self.B = batch_B
        self.T = size // batch_B
        self.observations = (
            StackedFrames(self.T, batch_B, frame_stack) if frame_stack else WholeObservations(self.T, batch_B)
        )
        if self.T <= n_step + self.observations.history:
            raise ValueError(
                f"replay size {size} too small for {batch_B} envs, n_step {n_step} and frame_stack {frame_stack}"
            )
        self.n_step = n_step
        self.gamma = gamma
        self.rng = np.random.default_rng(seed)
        self.t = 0  # absolute time steps written
        self.buffer: Any = None
        self.final_observation: dict[int, Any] = {}  # flat ring index -> final obs of a truncated episode

    @staticmethod
    def _stored(samples: Any) -> Any:
        """The ``[T,B]`` fields of a sampler batch that the ring keeps (observations aside)."""
        return _Stored(
            action=samples.agent.action,
            reward=samples.env.reward,
            prev_action=samples.agent.prev_action,
            prev_reward=samples.env.prev_reward,
            terminated=samples.env.terminated,
            truncated=samples.env.truncated,
        )

    def _store(self, t: int, samples: Any) -> None:
        """Write a ``[T,B]`` sampler batch (numpy Samples) into the ring at absolute time steps
        ``t .. t+T-1`` (allocated on first use)."""
        if self.buffer is None:
            self.buffer = buffer_from_example(self._stored(samples)[0, 0], (self.T, self.B))
        self.observations.write(t, samples.env.observation)
        self.buffer[np.arange(t, t + samples.env.reward.shape[0]) % self.T] = self._stored(samples)

    def append(self, samples: Any) -> None:
        """Store and record a ``[T,B]`` sampler batch (numpy Samples) at time steps
        ``t .. t+T-1``."""
        T, finals = samples.env.reward.shape[0], _truncation_finals(samples)
        self._store(self.t, samples)
        idx = np.arange(self.t, self.t + T) % self.T
        for flat in (idx[:, None] * self.B + np.arange(self.B)).ravel():
            self.final_observation.pop(int(flat), None)
        for (t, b), final in finals.items():
            self.final_observation[int(idx[t] * self.B + b)] = final
        self.t += T

    def cut(self, next_observation: Any) -> None:
        """End every env's stored stream at the newest row: its step, unless it already ended
        an episode, becomes truncated with ``next_observation [B]`` (numpy; the observations
        that followed it) as the final observation to bootstrap from. The next `append` may
        then come from restarted envs (a Ray actor worker restarted or resumed) without any
        n-step window spanning the cut."""
        if self.t:
            truncate_row(self.buffer, (self.t - 1) % self.T, self.final_observation, next_observation)

    def __len__(self) -> int:
        return min(self.t, self.T) * self.B

    def sampleable_rows(self) -> tuple[int, int]:
        """``(oldest, newest)``: the absolute time steps that may start a sample (empty when
        ``oldest > newest``). ``s_{t+n}`` must be written, and the observation history that
        rebuilding ``s_t`` reads must not be overwritten yet."""
        return max(0, self.t - self.T + self.observations.history), self.t - 1 - self.n_step

    def can_sample(self) -> bool:
        oldest, newest = self.sampleable_rows()
        return oldest <= newest

    def sample_batch(self, batch_size: int, env_steps: int) -> ReplayBatch:
        """The replay interface every off-policy algorithm uses: ``batch_size`` transitions
        drawn uniformly (no importance weights, no indices); ``env_steps`` drives prioritized
        replay's schedule and is ignored here."""
        return ReplayBatch(self.sample(batch_size), None, None)

    def update_priorities(self, indices: np.ndarray | None, errors: Any) -> None:
        """Uniform replay keeps no priorities."""

    def diagnostics(self, env_steps: int) -> dict[str, float]:
        """Values to log after each batch's updates."""
        return {}

    def sample(self, batch_size: int) -> ReplaySamples:
        oldest, newest = self.sampleable_rows()
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
        boot_obs = self.observations.read(boot_t, b)
        for i in np.flatnonzero(truncated):
            boot_obs[i] = self.final_observation[int(last[i] * self.B + b[i])]
        bootstrap = AgentInputs(boot_obs, buf.action[last, b], buf.reward[last, b])
        current = AgentInputs(self.observations.read(t, b), buf.prev_action[t, b], buf.prev_reward[t, b])
        out = ReplaySamples(
            current, buf.action[t, b], return_.astype(np.float32), bootstrap, discount.astype(np.float32)
        )
        return torchify_buffer(out)

    def state_dict(self) -> dict[str, Any]:
        return {
            "buffer": self.buffer,
            "observations": self.observations.state_dict(),
            "t": self.t,
            "final_observation": self.final_observation,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer, self.t = state["buffer"], state["t"]
        self.observations.load_state_dict(state["observations"])
        self.final_observation = state["final_observation"]
        self.rng.bit_generator.state = state["rng"]
