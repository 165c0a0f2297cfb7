"""Sequence replay for recurrent value-based agents (R2D2, Kapturowski et al. 2019).

The ``[T,B]`` sampler batches are stored as they come, in a ring of ``T_ring = size // B`` time
steps by B envs (like `NStepReplayBuffer`). Each env's stream is cut into overlapping windows of
``W = burn_in + L + n_step`` steps, a new one every ``P = L - overlap`` steps: window ``k``
covers absolute time steps ``[k P, k P + W)``:

```
  | burn_in (warm-up, no loss) | L trained steps | n_step (bootstrap only) |
  kP                           kP + burn_in      kP + burn_in + L          kP + W
```

Together with a window the replay keeps the recurrent state the agent acted with at its first
step (``agent_info.prev_rnn_state`` at time ``kP``, zero there when an episode began at that
step). A window can be sampled once every step of it is written and while none of it (nor the
frame history its first observation needs) is overwritten, so every step of a sampled window is
real data; the first ``burn_in`` steps of each env's stream are only ever burned in.

Episode boundaries inside a window: ``episode_start [W, N]`` marks the steps that begin an
episode (the step after a terminated or truncated one); the model's core zeroes the state there,
inside the unroll, so no step of an earlier episode can reach the state of a later one. The burn-in
steps before the last episode start within the burn-in belong to an earlier episode than the
trained steps and are marked invalid (``valid``): they are unrolled (harmlessly, the state is
zeroed after them) but never read by a loss.

n-step targets of the trained steps stay inside the window and follow the transition replay's
rules: the return sums rewards up to the first episode end within ``n_step`` steps; after a
*terminated* step there is no bootstrap (discount 0); after a *truncated* one the bootstrap is
``Q`` of the final observation the episode was cut at (kept aside at `append`). That value needs
the state the episode had reached, so each truncated step from the first trained one to the
window's last but one gets an extra *truncation column*: a copy of its sequence whose step after
the cut holds the final observation (as a continuation: no episode start there).
``bootstrap_t, bootstrap_b`` name, for every trained step, the window step and column whose ``Q``
bootstraps its n-step target; ``next_column`` names, for every step, the column holding the
observation that follows it (multi-step recursions such as Retrace, `rlfleet.algos.dqn.retrace`,
read per-step ``reward``, ``terminated`` and ``truncated`` and the behaviour policy's
``behaviour_prob`` with it).

Sampling is uniform over the sampleable windows (``alpha = 0``) or proportional to sequence
priorities ``(p + eps)^alpha`` with ``p = eta * max_t |delta_t| + (1 - eta) * mean_t |delta_t|``
over the L trained steps (R2D2's mixture; new windows get the largest priority seen), with
importance weights ``(M P(i))^-beta`` normalised by the buffer-wide maximum.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch

from rlfleet.agents.base import AgentInputs
from rlfleet.replays.n_step import ReplayBatch, StackedFrames, WholeObservations, _truncation_finals, truncate_row
from rlfleet.replays.sum_tree import SumTree
from rlfleet.utils.buffers import buffer_from_example, map_buffer, torchify_buffer
from rlfleet.utils.namedarraytuple import namedarraytuple

SequenceSamples = namedarraytuple(
    "SequenceSamples", ["agent_inputs", "action", "behaviour_prob", "episode_start", "valid"]
)
_Stored = namedarraytuple(
    "_SequenceStored",
    ["action", "behaviour_prob", "reward", "prev_action", "prev_reward", "terminated", "truncated"],
)


class SequenceBatch(NamedTuple):
    """What `SequenceReplayBuffer.sample_batch` returns as ``ReplayBatch.samples`` (torch, CPU).

    ``N`` sequences were drawn; ``K >= 0`` truncation columns follow them (see the module
    docstring), so the unrolled batch is ``N + K`` columns wide.

    Attributes:
        samples: `SequenceSamples` ``[W, N + K]``: ``agent_inputs`` (observation, prev_action,
            prev_reward), ``action``, ``behaviour_prob`` (``mu(a_t | x_t)``, the probability the
            acting policy gave its action: ``agent_info.action_prob``), ``episode_start`` (bool:
            the core zeroes the state before that step) and ``valid`` (bool: False for burn-in
            steps of an earlier episode and the steps of a truncation column after its final
            observation).
        start_state: ``[N + K, S]`` the stored state before each window's first step.
        return_: ``[L, N]`` n-step returns of the trained steps ``burn_in .. burn_in + L - 1``.
        discount: ``[L, N]`` ``gamma^m`` for an m-step return that bootstraps, 0 after a
            termination.
        bootstrap_t: ``[L, N]`` int64, the window step whose Q bootstraps each trained step.
        bootstrap_b: ``[L, N]`` int64, its column (the step's own, or a truncation column).
        burn_in: steps before the trained ones.
        reward: ``[W, N]`` per-step rewards (multi-step targets such as Retrace's).
        terminated: ``[W, N]`` bool.
        truncated: ``[W, N]`` bool.
        next_column: ``[W, N]`` int64: the column whose step ``t + 1`` holds the observation that
            follows step ``t`` in its episode: the sequence's own, or the truncation column of a
            cut at ``t`` (every truncated step from ``burn_in`` to ``W - 2`` has one).
    """

    samples: Any
    start_state: torch.Tensor
    return_: torch.Tensor
    discount: torch.Tensor
    bootstrap_t: torch.Tensor
    bootstrap_b: torch.Tensor
    burn_in: int
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    next_column: torch.Tensor


def sequence_priorities(abs_errors: np.ndarray, eta: float) -> np.ndarray:
    """R2D2's priority of each sequence from the per-step ``|delta| [L, N]`` of its trained steps:
    ``eta * max_t |delta_t| + (1 - eta) * mean_t |delta_t|`` -> ``[N]``."""
    abs_errors = np.abs(np.asarray(abs_errors, np.float64))
    return eta * abs_errors.max(axis=0) + (1.0 - eta) * abs_errors.mean(axis=0)


def _full_correction(env_steps: int) -> float:
    return 1.0


class SequenceReplayBuffer:
    """Args:
        size: env steps held, all envs together (the ring holds ``size // batch_B`` steps per
            env).
        batch_B: envs per sampler batch.
        sequence_length: ``L``, trained steps per sequence.
        overlap: steps adjacent windows share (``< L``); a window starts every ``L - overlap``.
        burn_in: warm-up steps before the trained ones.
        n_step: return horizon; the window carries ``n_step`` steps after the trained ones.
        gamma: discount.
        seed: seed of the sampling RNG (checkpointed).
        alpha: priority exponent; 0 samples windows uniformly (no weights, no priorities kept).
        eps: added to a sequence priority before the exponent.
        beta: importance-weight exponent as a function of env steps (None: 1).
        eta: the max/mean mixture of `sequence_priorities`.
        frame_stack: 0 stores observations whole; k > 0 stores one frame per step
            (`StackedFrames`).
        recurrent: the agent is recurrent: keep the state it acted with at window starts
            (``agent_info.prev_rnn_state``); False (a feed-forward Q-network trained on
            sequences, ``algo.target=retrace``) keeps a zero-width state.

    Attributes:
        t: absolute time steps recorded by `append`.
        window: ``W = burn_in + L + n_step``.
        period: ``P = L - overlap``.
    """

    def __init__(
        self,
        size: int,
        batch_B: int,
        sequence_length: int = 80,
        overlap: int = 40,
        burn_in: int = 40,
        n_step: int = 5,
        gamma: float = 0.997,
        seed: int = 0,
        alpha: float = 0.9,
        eps: float = 1e-6,
        beta: Callable[[int], float] | None = None,
        eta: float = 0.9,
        frame_stack: int = 0,
        recurrent: bool = True,
    ):
        if not 0 <= overlap < sequence_length:
            raise ValueError(f"overlap must be in [0, sequence_length), got {overlap} and {sequence_length}")
        self.B, self.T = batch_B, size // batch_B
        self.L, self.burn_in, self.n_step, self.gamma = sequence_length, burn_in, n_step, gamma
        self.period = sequence_length - overlap
        self.window = burn_in + sequence_length + n_step
        self.observations = (
            StackedFrames(self.T, batch_B, frame_stack) if frame_stack else WholeObservations(self.T, batch_B)
        )
        if self.T < self.window + self.observations.history:
            raise ValueError(
                f"replay size {size} holds {self.T} steps per env for {batch_B} envs: too few for windows of "
                f"burn_in + sequence_length + n_step = {self.window} steps"
                + (f" and frame_stack {frame_stack}" if frame_stack else "")
            )
        self.n_slots = self.T // self.period + 1  # more than the windows that can be live at once
        self.alpha, self.eps, self.eta = alpha, eps, eta
        self.prioritized = alpha > 0
        self.beta = beta or _full_correction
        self.tree = SumTree(self.n_slots * self.B) if self.prioritized else None
        self.max_priority = 1.0
        self.rng = np.random.default_rng(seed)
        self.recurrent = recurrent
        self.t = 0
        self.buffer: Any = None
        self.start_state: np.ndarray | None = None  # [n_slots, B, S]: prev_rnn_state at window starts
        self.final_observation: dict[int, Any] = {}  # flat ring index -> final obs of a truncated step

    # ----- writing -----
    def append(self, samples: Any) -> None:
        """Store a ``[T,B]`` sampler batch (numpy Samples whose ``agent.agent_info`` has
        ``action_prob [T,B]`` and, for a recurrent agent, ``prev_rnn_state [T,B,S]``) at absolute
        time steps ``t .. t+T-1``; windows that became sampleable get the largest priority, those
        about to be overwritten 0."""
        old_first, old_last = self.live_windows()
        env, T, info = samples.env, samples.env.reward.shape[0], samples.agent.agent_info
        behaviour_prob = info.get("action_prob")
        if behaviour_prob is None:
            raise ValueError("the sequence replay needs agent_info.action_prob: the acting policy's action probability")
        stored = _Stored(
            samples.agent.action,
            behaviour_prob,
            env.reward,
            samples.agent.prev_action,
            env.prev_reward,
            env.terminated,
            env.truncated,
        )
        if self.buffer is None:
            self.buffer = buffer_from_example(stored[0, 0], (self.T, self.B))
        state = info.get("prev_rnn_state") if self.recurrent else np.zeros((T, self.B, 0), np.float32)
        if state is None:
            raise ValueError("the sequence replay needs agent_info.prev_rnn_state: a recurrent agent (model.core)")
        if self.start_state is None:
            self.start_state = np.zeros((self.n_slots, self.B, state.shape[-1]), np.float32)
        t_abs = np.arange(self.t, self.t + T)
        rows = t_abs % self.T
        self.observations.write(self.t, env.observation)
        self.buffer[rows] = stored
        for i in np.flatnonzero(t_abs % self.period == 0):
            self.start_state[(t_abs[i] // self.period) % self.n_slots] = state[i]
        for flat in (rows[:, None] * self.B + np.arange(self.B)).ravel():
            self.final_observation.pop(int(flat), None)
        for (t, b), final in _truncation_finals(samples).items():
            self.final_observation[int(rows[t] * self.B + b)] = final
        self.t += T
        if self.prioritized:
            first, last = self.live_windows()
            leaving = self._leaves(np.arange(old_first, min(old_last, first - 1) + 1))
            entering = self._leaves(np.arange(max(old_last + 1, first), last + 1))
            priorities = np.concatenate([np.zeros(len(leaving)), np.full(len(entering), self.max_priority)])
            self.tree.update(np.concatenate([leaving, entering]), priorities)

    def cut(self, next_observation: Any) -> None:
        """End every env's stored stream at the newest step, as `NStepReplayBuffer.cut` does:
        unless it already ended an episode, it becomes truncated with ``next_observation [B]``
        as its final observation, so the next `append` may come from restarted envs (a Ray actor
        worker restarted or resumed): the step after the cut starts an episode (the core zeroes
        the state there) and no n-step target reaches across it."""
        if self.t:
            truncate_row(self.buffer, (self.t - 1) % self.T, self.final_observation, next_observation)

    def _leaves(self, k: np.ndarray) -> np.ndarray:
        """Tree leaves ``[len(k) * B]`` of windows ``k`` of every env."""
        return ((k % self.n_slots)[:, None] * self.B + np.arange(self.B)).reshape(-1)

    # ----- what can be sampled -----
    def live_windows(self) -> tuple[int, int]:
        """``(first, last)`` window numbers ``k`` that can be sampled (none when first > last):
        every step of ``[kP, kP + W)`` written, the oldest (and its frame history) still held."""
        oldest = max(0, self.t - self.T + self.observations.history)
        return -(-oldest // self.period), (self.t - self.window) // self.period

    def can_sample(self) -> bool:
        first, last = self.live_windows()
        return first <= last

    def sampleable_sequences(self) -> int:
        """Windows that can be sampled, all envs together."""
        first, last = self.live_windows()
        return max(0, last - first + 1) * self.B

    @property
    def sequence_length(self) -> int:
        """``L``: the trained steps of a sampled sequence (transition replays declare None)."""
        return self.L

    def __len__(self) -> int:
        return min(self.t, self.T) * self.B

    # ----- sampling -----
    def sample_batch(self, batch_size: int, env_steps: int) -> ReplayBatch:
        """``batch_size`` sequences (a `SequenceBatch`), uniformly or by priority; importance
        weights ``[N]`` and tree indices ``[N]`` when prioritized (else None)."""
        first, last = self.live_windows()
        if first > last:
            raise ValueError("no sampleable sequences in the replay yet")
        if not self.prioritized:
            k = self.rng.integers(first, last + 1, size=batch_size)
            b = self.rng.integers(0, self.B, size=batch_size)
            return ReplayBatch(self.sequences_at(k, b), None, None)
        beta, total = self.beta(env_steps), self.tree.total
        prefix_sums = (np.arange(batch_size) + self.rng.random(batch_size)) * (total / batch_size)
        indices = self.tree.find(prefix_sums)
        slot, b = indices // self.B, indices % self.B
        k = last - (last - slot) % self.n_slots  # the live window held in that slot
        M = (last - first + 1) * self.B
        probability = self.tree.get(indices) / total
        weights = (M * probability) ** -beta / (M * self.tree.min / total) ** -beta
        return ReplayBatch(self.sequences_at(k, b), torch.as_tensor(weights, dtype=torch.float32), indices)

    def sequences_at(self, k: np.ndarray, b: np.ndarray) -> SequenceBatch:
        """The windows ``k [N]`` of envs ``b [N]`` (sampleable ones) with their n-step targets."""
        buf, N, W, L, n = self.buffer, len(k), self.window, self.L, self.n_step
        rows = (k[None, :] * self.period + np.arange(W)[:, None]) % self.T  # [W, N]
        terminated, truncated, reward = buf.terminated[rows, b], buf.truncated[rows, b], buf.reward[rows, b]
        done = terminated | truncated

        # n-step returns of the trained steps i = burn_in .. burn_in + L - 1, cut at episode ends
        trained = self.burn_in + np.arange(L)  # [L]
        horizon = trained[:, None] + np.arange(n)[None, :]  # [L, n]
        step_done = done[horizon]  # [L, n, N]
        alive = np.cumprod(np.concatenate([np.ones((L, 1, N), bool), ~step_done[:, :-1]], axis=1), axis=1).astype(bool)
        return_ = (reward[horizon] * alive * self.gamma ** np.arange(n)[None, :, None]).sum(axis=1)  # [L, N]
        m = alive.sum(axis=1)  # [L, N] rewards summed
        last = trained[:, None] + m - 1  # [L, N] window step of the last reward
        column = np.broadcast_to(np.arange(N), (L, N))
        ended = step_done[np.arange(L)[:, None], m - 1, column]
        end_terminated = ended & terminated[last, column]
        end_truncated = ended & truncated[last, column]
        discount = np.where(end_terminated, 0.0, self.gamma**m)
        bootstrap_t, bootstrap_b = trained[:, None] + m, column.copy()

        # one truncation column per (cut step, sequence) from the first trained step to W - 2
        # (every one a trained step's n-step target or a multi-step recursion may bootstrap from)
        cut_u, cut_c = np.nonzero(truncated[self.burn_in : W - 1])
        cuts = sorted((int(u) + self.burn_in, int(c)) for u, c in zip(cut_u, cut_c))
        extra = {cut: N + j for j, cut in enumerate(cuts)}
        next_column = np.broadcast_to(np.arange(N), (W, N)).copy()
        for (u, c), j in extra.items():
            next_column[u, c] = j
        for i, c in zip(*np.nonzero(end_truncated)):
            bootstrap_t[i, c], bootstrap_b[i, c] = last[i, c] + 1, extra[(int(last[i, c]), int(c))]
        source = np.concatenate([np.arange(N), np.array([c for _, c in cuts], np.int64)]).astype(np.int64)

        rows, b_all = rows[:, source], b[source]
        cols = np.broadcast_to(b_all, rows.shape)
        observation = map_buffer(
            lambda x: x.reshape(W, len(source), *x.shape[1:]), self.observations.read(rows.ravel(), cols.ravel())
        )
        prev_action, prev_reward = buf.prev_action[rows, cols], buf.prev_reward[rows, cols]
        done_all = done[:, source]
        episode_start = np.concatenate([np.zeros((1, len(source)), bool), done_all[:-1]])
        # burn-in steps before the last episode start within the burn-in are of an earlier episode
        since = np.where(episode_start[: self.burn_in + 1], np.arange(self.burn_in + 1)[:, None], 0).max(axis=0)
        valid = np.arange(W)[:, None] >= since[None, :]
        for (u, _), j in extra.items():  # the step after the cut continues the episode
            observation[u + 1, j] = self.final_observation[int(rows[u, j] * self.B + b_all[j])]
            prev_action[u + 1, j] = buf.action[rows[u, j], b_all[j]]
            prev_reward[u + 1, j] = buf.reward[rows[u, j], b_all[j]]
            episode_start[u + 1, j] = False
            valid[u + 2 :, j] = False
        samples = SequenceSamples(
            AgentInputs(observation, prev_action, prev_reward),
            buf.action[rows, cols],
            buf.behaviour_prob[rows, cols],
            episode_start,
            valid,
        )
        start_state = self.start_state[k[source] % self.n_slots, b_all]
        return SequenceBatch(
            torchify_buffer(samples),
            torch.from_numpy(start_state),
            torch.from_numpy(return_.astype(np.float32)),
            torch.from_numpy(discount.astype(np.float32)),
            torch.from_numpy(bootstrap_t.astype(np.int64)),
            torch.from_numpy(bootstrap_b.astype(np.int64)),
            self.burn_in,
            torch.from_numpy(reward.astype(np.float32)),
            torch.from_numpy(terminated),
            torch.from_numpy(truncated),
            torch.from_numpy(next_column),
        )

    # ----- priorities -----
    def update_priorities(self, indices: np.ndarray | None, errors: np.ndarray | torch.Tensor) -> None:
        """Set the priorities of the sampled windows ``indices [N]`` from the per-step errors
        ``[L, N]`` of their trained steps (`sequence_priorities` with ``eta``), or from sequence
        priorities ``[N]``. A no-op for uniform sampling; windows that stopped being sampleable
        since they were drawn keep 0."""
        if not self.prioritized or indices is None:
            return
        if isinstance(errors, torch.Tensor):
            errors = errors.detach().double().cpu().numpy()
        errors = np.asarray(errors, np.float64)
        priority = sequence_priorities(errors, self.eta) if errors.ndim == 2 else np.abs(errors)
        indices = np.asarray(indices, np.int64).reshape(-1)
        if priority.shape != indices.shape:
            raise ValueError(f"{len(indices)} indices but {len(priority)} sequence priorities")
        priority = (priority + self.eps) ** self.alpha
        live = self.tree.get(indices) > 0
        self.tree.update(indices[live], priority[live])
        if live.any():
            self.max_priority = max(self.max_priority, float(priority[live].max()))

    def diagnostics(self, env_steps: int) -> dict[str, float]:
        return {"beta": self.beta(env_steps)} if self.prioritized else {}

    # ----- checkpoints -----
    def state_dict(self) -> dict[str, Any]:
        return {
            "buffer": self.buffer,
            "observations": self.observations.state_dict(),
            # a tensor: a feed-forward agent's zero-width numpy state pickles as raw bytes, which
            # the safe checkpoint loader refuses
            "start_state": None if self.start_state is None else torch.from_numpy(self.start_state),
            "t": self.t,
            "final_observation": self.final_observation,
            "rng": self.rng.bit_generator.state,
            "tree": None if self.tree is None else self.tree.state_dict(),
            "max_priority": self.max_priority,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer, self.t = state["buffer"], state["t"]
        start_state = state["start_state"]
        self.start_state = None if start_state is None else np.array(torch.as_tensor(start_state).numpy(), np.float32)
        self.observations.load_state_dict(state["observations"])
        self.final_observation = state["final_observation"]
        self.rng.bit_generator.state = state["rng"]
        if self.tree is not None:
            self.tree.load_state_dict(state["tree"])
        self.max_priority = state["max_priority"]
