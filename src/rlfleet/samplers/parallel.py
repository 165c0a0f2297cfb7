"""Parallel stepper: B envs split into contiguous slices stepped at the same time, one slice in
this (the main) process and one in each worker process, all writing into shared memory.

Slice ``k`` holds envs ``[start_k, stop_k)``; each slice is an `EnvGroup` over its rows of the
shared ``[B, ...]`` `StepBuffers`. Per step the main process writes the ``[B, ...]`` actions into a
shared action buffer, posts each worker's *go* semaphore, steps slice 0 itself, then waits on
each worker's *done* semaphore. Rare commands (reset, pop_completed, state_dict, ...) travel
through one pipe per worker.

With ``main_slice=False`` every slice has its own worker process and the main process only
posts and waits; `step_workers_async` and `wait_workers` step some of the workers while the
main process does other work (the alternating sampler's forward pass of the other env group).

Why the main process steps a slice, and why waits spin briefly before blocking: on a 2-core VM
(LunarLander-v3, 8 envs) waking a process that sleeps on another core costs tens of
microseconds, a large part of a ~300 us step. Measured there: main + 1 worker with
spin-then-block waits about 28k steps/s, with blocking waits about 22k; 2 workers and a
blocking main process about 16k; the serial stepper about 21k. Spinning calls ``sched_yield``
so that it stays cheap when other work competes for the cores (without it, spinning was
several times slower than blocking there).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
import traceback
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from rlfleet.envs.gym_env import env_fault, mark_env_fault
from rlfleet.errors import SamplerWorkerDied
from rlfleet.samplers.env_group import EnvGroup, StepBuffers, step_buffers_from_env
from rlfleet.samplers.steppers import EnvFactory
from rlfleet.utils.buffers import buffer_from_example, map_buffer
from rlfleet.utils.namedarraytuple import namedarraytuple

_STEP, _CALL, _CLOSE = 0, 1, 2
_ALIGN = 64  # byte alignment of each array in the shared block
_SPIN_S = 0.0005  # spin this long on a semaphore before blocking
_POLL_S = 0.5  # while blocked, check this often that the other side is still alive

_SharedBlock = namedarraytuple("SharedBlock", ["step", "action", "error", "command"])


class ParallelWorkerError(RuntimeError):
    """An exception raised in (or the death of) a parallel sampler worker; marked with the
    env's fault (`rlfleet.envs.gym_env.env_fault`) when an env's ``step`` or ``reset`` raised it
    (the runner reports those as `EnvError`)."""


class ParallelWorkerDied(ParallelWorkerError, SamplerWorkerDied):
    """A sampler worker process died (one line for the CLI: which worker, its exit code or signal)."""


def _error_report() -> tuple[str, tuple[str, str, str] | None]:
    """What a worker sends for the exception being handled: its traceback and, if an env's
    ``step`` or ``reset`` raised it, ``(env name, method, repr)``."""
    return traceback.format_exc(), env_fault(sys.exc_info()[1])


def _exit_description(exitcode: int | None) -> str:
    """``killed by signal SIGKILL`` (a negative exit code), ``exit code 1``, ..."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


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
    """numpy views of ``raw`` (a shared ctypes byte array) following ``specs``."""
    base = np.frombuffer(raw, dtype=np.uint8)
    return map_buffer(lambda s: np.ndarray(s.shape, np.dtype(s.dtype), buffer=base, offset=s.offset), specs)


def _acquire(sem: Any, still_waiting: Callable[[], bool]) -> bool:
    """Acquire ``sem``: spin (yielding the CPU) for up to `_SPIN_S`, then block. While blocked,
    ``still_waiting()`` is asked every `_POLL_S`; returns False (not acquired) once it says no."""
    deadline = time.perf_counter() + _SPIN_S
    while not sem.acquire(False):
        if time.perf_counter() > deadline:
            while not sem.acquire(timeout=_POLL_S):
                if not still_waiting():
                    return False
            break
        os.sched_yield()
    return True


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
    """Worker process: build the envs of ``env_slice``, then serve commands until told to close."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle (it closes us)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    start, stop = env_slice
    shared = _views(specs, raw)
    try:
        group = EnvGroup([env_factory() for _ in range(start, stop)], shared.step[start:stop], discount)
    except Exception:  # noqa: BLE001 - reported to the main process
        conn.send(("error", _error_report()))
    else:
        conn.send(("ok", None))
        _serve(index, group, shared.action[start:stop], shared, go, done, conn, parent_pid)
        for env in group.envs:
            env.close()
    conn.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip the interpreter teardown (about a second with torch loaded)


def _serve(
    index: int,
    group: EnvGroup,
    actions: np.ndarray,
    shared: Any,
    go: Any,
    done: Any,
    conn: Connection,
    parent_pid: int,
) -> None:
    """On each *go*: step the group with ``actions`` (this worker's ``[n, ...]`` rows of the
    shared action buffer) and post *done*, or run the `EnvGroup` method sent through ``conn``
    and reply there, or return (close, or the main process is gone)."""
    command, error = shared.command, shared.error

    def parent_alive() -> bool:
        return os.getppid() == parent_pid

    while _acquire(go, parent_alive):
        cmd = command[0]
        if cmd == _STEP:
            try:
                group.step(actions)
            except Exception:  # noqa: BLE001 - reported to the main process
                error[index] = 1
                conn.send(("error", _error_report()))
            done.release()
        elif cmd == _CALL:
            method, args = conn.recv()
            try:
                conn.send(("ok", getattr(group, method)(*args)))
            except Exception:  # noqa: BLE001 - reported to the main process
                conn.send(("error", _error_report()))
        else:
            return


def _shutdown(
    group: EnvGroup, processes: list[Any], command: np.ndarray, gos: list[Any], conns: list[Connection]
) -> None:
    """Ask the workers to exit (terminating stragglers) and close this process's envs."""
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
    for env in group.envs:
        env.close()


class ParallelStepper:
    """Steps B envs in ``n_workers`` slices at once: slice 0 in this process (unless
    ``main_slice=False``), the others in worker processes (``spawn``). A drop-in replacement
    for `SerialStepper`.

    Args:
        env_factory: picklable ``f() -> GymEnv``.
        n_envs: B.
        discount: for trajectory statistics.
        n_workers: env slices stepped at the same time, this process's included (so
            ``n_workers - 1`` worker processes); default ``min(n_envs, os.cpu_count())``.
        main_slice: whether this process steps slice 0; with False every slice has a worker
            process (``n_workers`` of them) and this process is free while they step.

    Attributes:
        buffers: ``[B, ...]`` StepBuffers in shared memory.
        env_spaces: the envs' spaces.
        n_envs: B.
    """

    def __init__(
        self,
        env_factory: EnvFactory,
        n_envs: int,
        discount: float = 0.99,
        n_workers: int | None = None,
        main_slice: bool = True,
    ):
        n_workers = min(n_envs, n_workers or os.cpu_count() or 1)
        bounds = np.linspace(0, n_envs, n_workers + 1).round().astype(int)
        self._slices = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
        self._worker_slices = self._slices[1:] if main_slice else self._slices
        local_envs = [env_factory() for _ in range(*self._slices[0])] if main_slice else []
        probe = local_envs[0] if main_slice else env_factory()
        self.env_spaces = probe.spaces
        self.n_envs = n_envs
        example = _SharedBlock(
            step=step_buffers_from_env(probe, n_envs),
            action=buffer_from_example(self.env_spaces.action.null_value(), n_envs),
            error=np.zeros(len(self._worker_slices), np.uint8),
            command=np.zeros(1, np.int32),
        )
        if not main_slice:
            probe.close()
        specs, nbytes = _layout(example)
        ctx = mp.get_context("spawn")
        raw = ctx.RawArray("B", nbytes)
        shared = _views(specs, raw)
        self.buffers: StepBuffers = shared.step
        self._actions, self._error, self._command = shared.action, shared.error, shared.command
        start, stop = self._slices[0] if main_slice else (0, 0)
        self._group = EnvGroup(local_envs, self.buffers[start:stop], discount)
        self._local_actions = self._actions[start:stop]
        self._gos = [ctx.Semaphore(0) for _ in self._worker_slices]
        self._dones = [ctx.Semaphore(0) for _ in self._worker_slices]
        self._stepping = np.zeros(len(self._worker_slices), bool)  # workers posted *go* and not yet waited for
        self._conns: list[Connection] = []
        self._processes: list[Any] = []
        # Registered before any worker starts; also runs at interpreter exit.
        self._finalizer = weakref.finalize(
            self, _shutdown, self._group, self._processes, self._command, self._gos, self._conns
        )
        try:
            for w, env_slice in enumerate(self._worker_slices):
                parent_conn, child_conn = ctx.Pipe()
                args = (w, env_factory, env_slice, discount, raw, specs, self._gos[w], self._dones[w], child_conn)
                proc = ctx.Process(target=_worker, args=(*args, os.getpid()), name=f"rlfleet-sampler-{w}", daemon=True)
                proc.start()
                child_conn.close()
                self._conns.append(parent_conn)
                self._processes.append(proc)
            for w in range(len(self._processes)):
                status, message = self._reply(w)
                if status == "error":
                    raise self._failure(w, message)
        except BaseException:
            self.close()
            raise

    @property
    def n_workers(self) -> int:
        """Env slices stepped at the same time (this process and the worker processes)."""
        return len(self._slices)

    @property
    def worker_slices(self) -> list[tuple[int, int]]:
        """``(start, stop)`` env rows of each worker process, in worker order."""
        return list(self._worker_slices)

    def _check_open(self) -> None:
        if not self._finalizer.alive:
            raise RuntimeError("ParallelStepper is closed")

    def _failure(self, w: int, report: tuple[str, tuple[str, str, str] | None]) -> ParallelWorkerError:
        """The error for worker ``w``'s `_error_report`."""
        message, fault = report
        err = ParallelWorkerError(f"sampler worker {w} (envs {self._worker_slices[w]}) failed:\n{message}")
        mark_env_fault(err, fault)
        return err

    def _died(self, w: int) -> ParallelWorkerError:
        """Close this stepper (a worker is gone) and return the error to raise."""
        pid = self._processes[w].pid
        self.close()
        return ParallelWorkerDied(
            f"sampler worker {w} (envs {self._worker_slices[w]}, pid {pid}) died: "
            f"{_exit_description(self._processes[w].exitcode)}"
        )

    def _reply(self, w: int) -> tuple[str, Any]:
        """The next ``(status, value)`` message of worker ``w``; raises if the worker died."""
        conn = self._conns[w]
        while not conn.poll(_POLL_S):
            if not self._processes[w].is_alive():
                raise self._died(w)
        try:
            return conn.recv()
        except EOFError:
            raise self._died(w) from None

    def step_workers_async(self, workers: range, actions: np.ndarray) -> None:
        """Start stepping the envs of ``workers`` (consecutive worker processes) with ``actions``
        (``[n, ...]``, one row per env of those workers, in env order) and return at once;
        `wait_workers` collects them. Their results land in their rows of ``buffers``."""
        self._check_open()
        if self._stepping[workers.start : workers.stop].any():
            raise RuntimeError(f"workers {list(workers)} are already stepping; wait_workers first")
        start, stop = self._worker_slices[workers.start][0], self._worker_slices[workers.stop - 1][1]
        self._actions[start:stop] = actions
        self._stepping[workers.start : workers.stop] = True
        for go in self._gos[workers.start : workers.stop]:
            go.release()

    def wait_workers(self, workers: range) -> None:
        """Wait until ``workers`` (started by `step_workers_async`) finished their step; raise
        the errors they reported."""
        try:
            for w in workers:
                if not _acquire(self._dones[w], self._processes[w].is_alive):
                    raise self._died(w)
        except BaseException:
            self.close()  # interrupted half-way: workers and semaphores are out of step
            raise
        self._stepping[workers.start : workers.stop] = False
        errors = self._error[workers.start : workers.stop]
        if errors.any():
            failed = [workers.start + int(w) for w in np.flatnonzero(errors)]
            errors[:] = 0
            reports = [self._failure(w, self._reply(w)[1]) for w in failed]
            if len(reports) == 1:
                raise reports[0]
            err = ParallelWorkerError("\n".join(map(str, reports)))
            mark_env_fault(err, next((env_fault(r) for r in reports if env_fault(r) is not None), None))
            raise err

    def wait_all(self) -> None:
        """Wait for every worker still stepping (started by `step_workers_async`, not yet
        waited for), dropping the errors they report: after one worker's env raised, this
        leaves the others in step, so that the stepper still answers `state_dict`."""
        for w in np.flatnonzero(self._stepping):
            if not self._finalizer.alive:
                return
            try:
                self.wait_workers(range(w, w + 1))
            except Exception:  # noqa: BLE001 - the first error is the one being reported
                pass

    def _call(self, method: str, args: Sequence[tuple]) -> list[Any]:
        """``EnvGroup.method(*args[k])`` for every slice ``k``; returns the results in slice order."""
        self._check_open()
        if self._stepping.any():
            raise RuntimeError(f"{method} while workers {list(np.flatnonzero(self._stepping))} are stepping")
        n_local = len(self._slices) - len(self._worker_slices)
        local_error = None
        try:
            self._command[0] = _CALL
            for w, (conn, go, worker_args) in enumerate(zip(self._conns, self._gos, args[n_local:])):
                # wake the worker first: it reads the pipe only once woken, and a message larger
                # than the pipe's buffer (env states of a resumed run) would block this send
                go.release()
                try:
                    conn.send((method, worker_args))
                except (BrokenPipeError, ConnectionResetError):
                    self._processes[w].join(timeout=1.0)  # gone, or about to be
                    raise self._died(w) from None
            try:
                local = [getattr(self._group, method)(*a) for a in args[:n_local]]
            except Exception as err:  # noqa: BLE001 - raised below, once the workers have replied
                local, local_error = [], err
            replies = [self._reply(w) for w in range(len(self._processes))]
            self._command[0] = _STEP
        except BaseException:
            self.close()  # interrupted half-way: workers and pipes are out of step
            raise
        if local_error is not None:
            raise local_error
        for w, (status, value) in enumerate(replies):
            if status == "error":
                raise self._failure(w, value)
        return local + [value for _, value in replies]

    def reset(self, seeds: Sequence[int | None]) -> None:
        """Reset every env (env ``b`` with ``seeds[b]``); observations land in ``buffers``."""
        self._call("reset", [(list(seeds[a:b]),) for a, b in self._slices])

    def step(self, actions: np.ndarray) -> None:
        """Step every env with ``actions`` ``[B, ...]``; results land in ``buffers``."""
        self._check_open()
        workers = range(len(self._worker_slices))
        start = self._worker_slices[0][0] if self._worker_slices else self.n_envs
        self._actions[:start] = actions[:start]
        if self._worker_slices:
            self.step_workers_async(workers, actions[start:])
        try:
            self._group.step(self._local_actions)
        finally:
            self.wait_workers(workers)

    def pop_completed(self) -> list[dict[str, float]]:
        """Trajectories completed since the last call, in slice order, then completion order."""
        return [traj for completed in self._call("pop_completed", [()] * self.n_workers) for traj in completed]

    def state_dict(self) -> dict[str, Any]:
        """``{"slices": [(start, stop)], "groups": [EnvGroup.state_dict() per slice]}``."""
        return {"slices": list(self._slices), "groups": self._call("state_dict", [()] * self.n_workers)}

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        """Restore every slice's envs; True only if all were restored exactly (envs that
        cannot be pickled are reset instead). The env slices must match this stepper's."""
        if [tuple(s) for s in state["slices"]] != self._slices:
            raise ValueError(f"state was saved with env slices {state['slices']}, this stepper has {self._slices}")
        return all(self._call("load_state_dict", [(group,) for group in state["groups"]]))

    def close(self) -> None:
        """Stop the workers and close every env; idempotent."""
        self._finalizer()
