"""Parallel stepper: B envs split over worker processes that write into shared memory.

Worker ``w`` owns the contiguous env slice ``[start_w, stop_w)`` and runs an `EnvGroup` over
that slice of the shared ``[B, ...]`` `StepBuffers`. Per step the main process writes the
``[B, ...]`` actions into a shared action buffer, posts each worker's *go* semaphore and waits
on each worker's *done* semaphore. Rare commands (reset, pop_completed, state_dict, ...) travel
through one pipe per worker.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
import traceback
import weakref
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Sequence

import numpy as np

from rlfleet.samplers.env_group import EnvGroup, StepBuffers, step_buffers_from_env
from rlfleet.samplers.steppers import EnvFactory
from rlfleet.utils.buffers import map_buffer
from rlfleet.utils.namedarraytuple import namedarraytuple

_STEP, _CALL, _CLOSE = 0, 1, 2
_ALIGN = 64
_POLL_S = 0.5
SPIN_GO_S = float(os.environ.get("RLF_SPIN_GO", "0"))
SPIN_DONE_S = float(os.environ.get("RLF_SPIN_DONE", "0"))
YIELD = bool(int(os.environ.get("RLF_YIELD", "0")))

SharedBlock = namedarraytuple("SharedBlock", ["step", "action", "error", "command"])


class ParallelWorkerError(RuntimeError):
    """An exception raised in (or the death of) a parallel sampler worker."""


@dataclass(frozen=True)
class _ArraySpec:
    """Where one array lives in the shared block."""

    offset: int
    shape: tuple[int, ...]
    dtype: str


def _layout(example: Any) -> tuple[Any, int]:
    """Place every leaf of ``example`` in one block; returns (specs, total bytes)."""
    total = 0

    def place(arr: np.ndarray) -> _ArraySpec:
        nonlocal total
        offset = -(-total // _ALIGN) * _ALIGN
        total = offset + arr.nbytes
        return _ArraySpec(offset, arr.shape, arr.dtype.str)

    return map_buffer(place, example), max(total, 1)


def _views(specs: Any, raw: Any) -> Any:
    """numpy views of ``raw`` (a shared ctypes array) following ``specs``."""
    base = np.frombuffer(raw, dtype=np.uint8)
    return map_buffer(lambda s: np.ndarray(s.shape, np.dtype(s.dtype), buffer=base, offset=s.offset), specs)


def _acquire_spin(sem: Any, spin_s: float) -> bool:
    if spin_s > 0:
        deadline = time.perf_counter() + spin_s
        while time.perf_counter() < deadline:
            if sem.acquire(False):
                return True
            if YIELD:
                os.sched_yield()
    return sem.acquire(timeout=_POLL_S)


def _worker(
    index: int,
    env_factory: EnvFactory,
    env_slice: tuple[int, int],
    discount: float,
    raw: Any,
    specs: Any,
    go: Any,
    done: Any,
    conn: Connection,
    parent_pid: int,
) -> None:
    """Worker loop: build the slice's envs, then serve step / call / close commands."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process handles Ctrl-C and closes us
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    start, stop = env_slice
    shared = _views(specs, raw)
    try:
        group = EnvGroup([env_factory() for _ in range(start, stop)], shared.step[start:stop], discount)
    except Exception:  # noqa: BLE001 - reported to the main process
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ok", None))
    actions, command, error = shared.action[start:stop], shared.command, shared.error
    while True:
        if not _acquire_spin(go, SPIN_GO_S):
            if os.getppid() != parent_pid:  # orphaned: the main process died without closing us
                break
            continue
        cmd = command[0]
        if cmd == _STEP:
            try:
                group.step(actions)
            except Exception:  # noqa: BLE001 - reported to the main process
                error[index] = 1
                conn.send(traceback.format_exc())
            done.release()
        elif cmd == _CALL:
            method, args = conn.recv()
            try:
                conn.send(("ok", getattr(group, method)(*args)))
            except Exception:  # noqa: BLE001 - reported to the main process
                conn.send(("error", traceback.format_exc()))
        else:
            break
    for env in group.envs:
        env.close()
    conn.close()


def _shutdown(processes: list[Any], command: np.ndarray, gos: list[Any], conns: list[Connection]) -> None:
    """Ask workers to exit, then terminate stragglers. Safe to call more than once."""
    command[0] = _CLOSE
    for proc, go in zip(processes, gos):
        if proc.is_alive():
            go.release()
    for proc in processes:
        proc.join(timeout=2.0)
        if proc.is_alive():
            proc.terminate()
            proc.join()
    for conn in conns:
        conn.close()


class ParallelStepper:
    """Steps B envs in worker processes (``spawn``); drop-in replacement for `SerialStepper`.

    Args:
        env_factory: picklable ``f() -> GymEnv`` (called once here to read the spaces, then
            in the workers).
        n_envs: B.
        discount: for trajectory statistics.
        n_workers: worker processes (default ``min(n_envs, os.cpu_count())``); worker ``w``
            steps a contiguous slice of about ``B / n_workers`` envs.

    Attributes:
        buffers: ``[B, ...]`` StepBuffers in shared memory, written by the workers.
        env_spaces: the envs' spaces.
        n_envs: B.
    """

    def __init__(self, env_factory: EnvFactory, n_envs: int, discount: float = 0.99, n_workers: int | None = None):
        n_workers = min(n_envs, n_workers or os.cpu_count() or 1)
        probe = env_factory()
        self.env_spaces = probe.spaces
        self.n_envs = n_envs
        example = SharedBlock(
            step=step_buffers_from_env(probe, n_envs),
            action=np.zeros((n_envs,) + self.env_spaces.action.shape, self.env_spaces.action.dtype),
            error=np.zeros(n_workers, np.uint8),
            command=np.zeros(1, np.int32),
        )
        probe.close()
        specs, nbytes = _layout(example)
        ctx = mp.get_context("spawn")
        raw = ctx.RawArray("B", nbytes)
        shared = _views(specs, raw)
        self.buffers: StepBuffers = shared.step
        self._actions, self._error, self._command = shared.action, shared.error, shared.command
        bounds = np.linspace(0, n_envs, n_workers + 1).round().astype(int)
        self._slices = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
        self._gos = [ctx.Semaphore(0) for _ in self._slices]
        self._dones = [ctx.Semaphore(0) for _ in self._slices]
        self._conns: list[Connection] = []
        self._processes = []
        for w, env_slice in enumerate(self._slices):
            parent_conn, child_conn = ctx.Pipe()
            proc = ctx.Process(
                target=_worker,
                args=(w, env_factory, env_slice, discount, raw, specs, self._gos[w], self._dones[w], child_conn, os.getpid()),
                name=f"rlfleet-sampler-{w}",
                daemon=True,
            )
            proc.start()
            child_conn.close()
            self._conns.append(parent_conn)
            self._processes.append(proc)
        self._finalizer = weakref.finalize(self, _shutdown, self._processes, self._command, self._gos, self._conns)
        try:
            for w in range(n_workers):
                self._receive(w)
        except BaseException:
            self.close()
            raise

    @property
    def n_workers(self) -> int:
        return len(self._processes)

    def _check_open(self) -> None:
        if not self._finalizer.alive:
            raise RuntimeError("ParallelStepper is closed")

    def _dead(self, w: int) -> ParallelWorkerError:
        proc = self._processes[w]
        return ParallelWorkerError(f"sampler worker {w} (envs {self._slices[w]}) died with exit code {proc.exitcode}")

    def _receive(self, w: int) -> Any:
        """The next ``("ok", value)`` reply of worker ``w``; raises on an error reply or death."""
        conn = self._conns[w]
        while not conn.poll(_POLL_S):
            if not self._processes[w].is_alive():
                raise self._dead(w)
        try:
            status, value = conn.recv()
        except EOFError:
            raise self._dead(w) from None
        if status == "error":
            raise ParallelWorkerError(f"sampler worker {w} (envs {self._slices[w]}) failed:\n{value}")
        return value

    def _call(self, method: str, args_per_worker: Sequence[tuple]) -> list[Any]:
        """Run ``EnvGroup.method(*args)`` in every worker; returns the results in worker order."""
        self._check_open()
        try:
            self._command[0] = _CALL
            for conn, go, args in zip(self._conns, self._gos, args_per_worker):
                conn.send((method, args))
                go.release()
            results, first_error = [], None
            for w in range(self.n_workers):
                try:
                    results.append(self._receive(w))
                except ParallelWorkerError as err:
                    first_error = first_error or err
            self._command[0] = _STEP
        except BaseException:
            self.close()
            raise
        if first_error is not None:
            raise first_error
        return results

    def reset(self, seeds: Sequence[int | None]) -> None:
        """Reset every env (env ``b`` with ``seeds[b]``); observations land in ``buffers``."""
        self._call("reset", [(list(seeds[a:b]),) for a, b in self._slices])

    def step(self, actions: np.ndarray) -> None:
        """Step every env with ``actions`` ``[B, ...]``; results land in ``buffers``."""
        self._check_open()
        self._actions[:] = actions
        try:
            for go in self._gos:
                go.release()
            for w, done in enumerate(self._dones):
                while not _acquire_spin(done, SPIN_DONE_S):
                    if not self._processes[w].is_alive():
                        raise self._dead(w)
        except BaseException:
            self.close()
            raise
        if self._error.any():
            self._raise_step_error()

    def _raise_step_error(self) -> None:
        messages = []
        for w in np.flatnonzero(self._error):
            messages.append(f"sampler worker {w} (envs {self._slices[w]}) failed:\n{self._conns[w].recv()}")
        self._error[:] = 0
        raise ParallelWorkerError("\n".join(messages))

    def pop_completed(self) -> list[dict[str, float]]:
        """Trajectories completed since the last call: worker order, then completion order."""
        return [traj for completed in self._call("pop_completed", [()] * self.n_workers) for traj in completed]

    def state_dict(self) -> dict[str, Any]:
        """``{"slices": [(start, stop)], "workers": [EnvGroup.state_dict() per worker]}``."""
        return {"slices": list(self._slices), "workers": self._call("state_dict", [()] * self.n_workers)}

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        """Restore every worker's envs; True only if all were restored exactly (envs that
        cannot be pickled are reset instead). The env split must match this stepper's."""
        if [tuple(s) for s in state["slices"]] != self._slices:
            raise ValueError(f"state was saved with env slices {state['slices']}, this stepper has {self._slices}")
        return all(self._call("load_state_dict", [(s,) for s in state["workers"]]))

    def close(self) -> None:
        """Stop the workers (closing their envs); idempotent."""
        self._finalizer()
