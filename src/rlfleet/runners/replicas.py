"""Processes for data parallelism: start N replicas in one process group, collect their results,
and stop all of them when one fails.

``launch(fn, n_replicas, backend, args)`` spawns N processes (``spawn`` start method); each
joins a ``torch.distributed`` process group through a ``file://`` rendezvous in a temporary
directory (no port to choose, no race for one), runs ``fn(replica, *args)`` and sends its
return value back. The launcher guarantees:

- the first exception raised in any replica (or a replica dying without one) terminates all
  the others and is raised in the launching process, with the replica's traceback;
- replicas exit when the launching process dies (a watchdog thread), so none is orphaned;
- Ctrl-C in the launching process sets ``replica.stop_event``, which the replicas poll to stop
  cleanly (a second Ctrl-C terminates them); replicas ignore SIGINT until their code installs
  a handler, so a Ctrl-C during start-up cannot kill one half-way.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import shutil
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import torch.distributed as dist

from rlfleet.errors import RlfleetError

_TERMINATE_GRACE_S = 10.0
_REPORT_GRACE_S = 1.0


class ReplicaError(RuntimeError):
    """A replica raised an exception or died; all replicas were stopped."""


@dataclass
class Replica:
    """What a replica's function receives.

    Attributes:
        rank: this replica's index, 0 .. n_replicas - 1 (rank 0 is the one that logs).
        n_replicas: the number of replicas (the process group's world size).
        control_group: a gloo group for CPU-side coordination (votes, Python objects); the
            default group itself when it is gloo.
        stop_event: set when the launching process was asked to stop (Ctrl-C).
    """

    rank: int
    n_replicas: int
    control_group: Any
    stop_event: Event


def launch(fn: Callable[..., Any], n_replicas: int, backend: str, args: Sequence[Any] = ()) -> list[Any]:
    """Run ``fn(replica, *args)`` in ``n_replicas`` processes; returns their results by rank.

    ``fn`` and ``args`` must pickle (``fn`` a module-level function). ``backend`` is the
    default group's (``gloo`` or ``nccl``). Raises the earliest replica failure (`RlfleetError`
    and KeyboardInterrupt as they are, so the CLI prints one line; others as `ReplicaError`
    carrying the replica's traceback) after every replica has been stopped.
    """
    ctx = mp.get_context("spawn")
    stop_event = ctx.Event()
    rendezvous = Path(tempfile.mkdtemp(prefix="rlfleet-rendezvous-"))
    processes: list[mp.process.BaseProcess] = []
    readers: dict[Connection, int] = {}
    previous_handler = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame) -> None:
        if stop_event.is_set():  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        stop_event.set()

    try:
        signal.signal(signal.SIGINT, on_sigint)
        for rank in range(n_replicas):
            reader, writer = ctx.Pipe(duplex=False)
            process = ctx.Process(
                target=_replica_main,
                args=(rank, n_replicas, backend, str(rendezvous / "store"), fn, tuple(args), writer, stop_event),
                name=f"rlfleet-replica-{rank}",
            )
            process.start()
            writer.close()  # the replica holds the only writer: its exit shows as EOF here
            processes.append(process)
            readers[reader] = rank
        return _collect(readers, processes)
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        _stop(processes)
        for reader in readers:
            reader.close()
        shutil.rmtree(rendezvous, ignore_errors=True)


def _collect(readers: dict[Connection, int], processes: list[mp.process.BaseProcess]) -> list[Any]:
    """Wait for every replica's message; raise the first failure (see `_raise_first`)."""
    results: list[Any] = [None] * len(processes)
    pending = dict(readers)
    while pending:
        for reader in wait(list(pending)):
            rank = pending.pop(reader)
            message = _receive(reader, rank, processes[rank])
            if message[0] != "result":
                _raise_first([message, *_more_failures(pending, processes)], len(processes))
            results[rank] = message[1]
    return results


def _receive(reader: Connection, rank: int, process: mp.process.BaseProcess) -> tuple[Any, ...]:
    """A replica's message; a failure message when it died without sending one."""
    try:
        return pickle.loads(reader.recv_bytes())
    except EOFError:
        process.join(_TERMINATE_GRACE_S)
        died = ReplicaError(f"it died without a result (exit code {process.exitcode})")
        return ("error", died, "", time.time(), rank)


def _more_failures(pending: dict[Connection, int], processes: list[mp.process.BaseProcess]) -> list[tuple[Any, ...]]:
    """The failures the other replicas report within a short grace period after the first one
    (one failure usually makes the others fail too, a moment later)."""
    failures, deadline = [], time.monotonic() + _REPORT_GRACE_S
    while pending and (remaining := deadline - time.monotonic()) > 0:
        for reader in wait(list(pending), timeout=remaining):
            rank = pending.pop(reader)
            message = _receive(reader, rank, processes[rank])
            if message[0] != "result":
                failures.append(message)
    return failures


def _raise_first(failures: list[tuple[Any, ...]], n_replicas: int) -> None:
    """Raise the earliest failure: `RlfleetError` and KeyboardInterrupt as they are, anything
    else as `ReplicaError` with the replica's traceback."""
    _, error, remote_traceback, _, rank = min(failures, key=lambda failure: failure[3])
    if isinstance(error, (RlfleetError, KeyboardInterrupt)):
        raise error
    detail = f"its traceback:\n{remote_traceback}" if remote_traceback else str(error)
    raise ReplicaError(f"data-parallel replica {rank} of {n_replicas} failed, all replicas were stopped; {detail}")


def _stop(processes: list[mp.process.BaseProcess]) -> None:
    """Terminate replicas still running (SIGTERM, then SIGKILL after a grace period) and reap all."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(_TERMINATE_GRACE_S)
        if process.is_alive():
            process.kill()
            process.join()


def _exit_with_parent() -> None:
    """Exit this replica at once if the launching process dies (no orphans)."""
    parent = mp.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="rlfleet-parent-watchdog", daemon=True).start()


def _replica_main(
    rank: int,
    n_replicas: int,
    backend: str,
    store_path: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    writer: Connection,
    stop_event: Event,
) -> None:
    """A replica process: join the group, run ``fn``, send ``("result", value)`` or
    ``("error", exception, traceback, time, rank)`` to the launcher."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    try:
        dist.init_process_group(backend, init_method=f"file://{store_path}", rank=rank, world_size=n_replicas)
        control_group = dist.group.WORLD if backend == "gloo" else dist.new_group(backend="gloo")
        # pickled here, by value: multiprocessing would share tensors through shared memory
        # that disappears when this process exits, before the launcher has read them
        message = pickle.dumps(("result", fn(Replica(rank, n_replicas, control_group, stop_event), *args)))
    except BaseException as err:  # noqa: BLE001 - every failure goes to the launcher
        message = pickle.dumps(("error", _picklable(err), traceback.format_exc(), time.time(), rank))
    try:
        writer.send_bytes(message)
    finally:
        writer.close()
        if dist.is_initialized():
            dist.destroy_process_group()


def _picklable(err: BaseException) -> BaseException:
    """``err`` if it survives pickling, else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(err))
    except Exception:  # noqa: BLE001 - any exception type may refuse to pickle
        return RuntimeError(f"{type(err).__name__}: {err}")
    return err
