"""SEED-style central inference (Espeholt et al. 2020) for IMPALA on Ray
(``runner.inference=central``).

Actor workers keep their envs but no model: their sampler's agent is a `RemoteAgent`, which
sends each step's ``[B]`` inputs to the `InferenceServer` and gets the actions and agent info
back. The server is one Ray actor holding the only acting copy of the agent (on
``runner.device``, a GPU in SEED's setting) with the learner's published weights; it gathers the
requests of all workers and answers them with one batched forward pass: a batch is run as soon
as every worker has a request waiting, or ``runner.inference_wait_ms`` after its first request.
``InferenceBatchSize`` in progress.csv is the mean number of env rows per forward pass.

The server's ``act`` is a coroutine (Ray runs it on the actor's event loop, so requests from
several workers wait together); each worker's requests arrive one at a time, in step order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from rlfleet.agents.base import AgentStep
from rlfleet.envs.spaces import EnvSpaces
from rlfleet.utils.buffers import concat_buffers, map_buffer, numpify_buffer, torchify_buffer


class InferenceServer:
    """One agent acting for every actor worker (a Ray actor with an event loop).

    Args:
        make_agent: builds the agent (model on its device, initialised on the env's spaces).
        n_clients: the actor workers sending requests (a batch runs when all have one waiting).
        max_wait_s: the longest a request waits for the others.
    """

    def __init__(self, make_agent: Callable[[], Any], n_clients: int, max_wait_s: float):
        self.agent = make_agent()
        self.n_clients, self.max_wait_s = n_clients, max_wait_s
        self.version = -1
        self._waiting: list[tuple[tuple[Any, Any, Any], asyncio.Future]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._batches = 0
        self._rows = 0

    def load_weights(self, version: int, weights: dict[str, Any]) -> None:
        """Act with the learner's weights of update ``version`` from now on (newer ones only)."""
        if version > self.version:
            self.agent.load_weights(weights)
            self.version = version

    def sample_mode(self, env_steps: int) -> None:
        self.agent.sample_mode(env_steps)

    async def act(self, observation: Any, prev_action: Any, prev_reward: Any) -> tuple[Any, Any, int]:
        """``[B]`` inputs of one worker -> ``(action [B], agent_info [B], weights version)``."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(((observation, prev_action, prev_reward), future))
        if len(self._waiting) >= self.n_clients:
            self._run()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.max_wait_s, self._run)
        return await future

    def _run(self) -> None:
        """One forward pass over every waiting request; each gets its rows back."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting = self._waiting, []
        if not waiting:
            return
        try:
            inputs = [[torchify_buffer(x) for x in request] for request, _ in waiting]
            sizes = [int(np.asarray(request[2]).shape[0]) for request, _ in waiting]
            observation, prev_action, prev_reward = (concat_buffers([i[k] for i in inputs]) for k in range(3))
            step = self.agent.step(observation, prev_action, prev_reward)
            action, agent_info = numpify_buffer(step.action), numpify_buffer(step.agent_info)
        except Exception as err:  # noqa: BLE001 - every waiting worker gets it from ray.get
            for _, future in waiting:
                future.set_exception(err)
            return
        self._batches += 1
        self._rows += sum(sizes)
        start = 0
        for (_, future), size in zip(waiting, sizes):
            rows = slice(start, start + size)
            future.set_result((action[rows], None if agent_info is None else agent_info[rows], self.version))
            start += size

    def stats(self) -> dict[str, float]:
        """``InferenceBatchSize``: mean env rows per forward pass since the previous call."""
        mean = self._rows / self._batches if self._batches else float("nan")
        self._batches, self._rows = 0, 0
        return {"InferenceBatchSize": mean}


class RemoteAgent:
    """The agent an actor worker's sampler steps with under central inference: no model, each
    step a round trip to the `InferenceServer` (what the `Sampler` uses of an `Agent`: ``step``,
    ``reset_envs``, ``generator``, the modes).

    Args:
        server: the server's Ray handle.
        env_spaces: the envs' spaces.
    """

    def __init__(self, server: Any, env_spaces: EnvSpaces):
        self.server, self.env_spaces = server, env_spaces
        self.generator = torch.Generator()  # the sampler saves and restores it around its example step
        self.env_steps = 0
        self.version = -1

    def step(self, observation: Any, prev_action: Any, prev_reward: Any) -> AgentStep:
        import ray

        inputs = numpify_buffer((observation, prev_action, prev_reward))
        action, agent_info, self.version = ray.get(self.server.act.remote(*inputs))
        # copies: the object store hands out read-only views
        return AgentStep(torchify_buffer(np.array(action)), torchify_buffer(map_buffer(np.array, agent_info)))

    def reset_envs(self, done: torch.Tensor) -> None:
        """Feed-forward agents keep no per-env state (recurrent ones are refused on Ray)."""

    def sample_mode(self, env_steps: int) -> None:
        self.env_steps = env_steps

    def parameters(self) -> list[torch.nn.Parameter]:
        return []
