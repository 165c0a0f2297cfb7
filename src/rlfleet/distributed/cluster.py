"""Connecting to Ray: a local Ray started in this process, or a cluster joined by address."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

# Ray puts unix sockets under its temp dir (``session_<date>_<pid>/sockets/plasma_store``, about
# 65 characters) and a socket path may not exceed 107: longer temp dirs move to /tmp.
_MAX_TEMP_DIR = 40


def ray_temp_dir(run_root: Path | None) -> tuple[str, bool]:
    """Where a local Ray writes its session files: ``<run_root>/.ray`` (beside the run
    directories of one name), or a fresh ``/tmp/rlfleet-ray-*`` when that path is too long
    for Ray's sockets or there is no run directory. Returns ``(path, whether it is a fresh
    /tmp directory to remove after shutdown)``."""
    if run_root is not None:
        candidate = (Path(run_root) / ".ray").resolve()
        if len(str(candidate)) <= _MAX_TEMP_DIR:
            candidate.mkdir(parents=True, exist_ok=True)
            return str(candidate), False
    return tempfile.mkdtemp(prefix="rlfleet-ray-", dir="/tmp"), True


class RayConnection:
    """This process's link to Ray, made by `connect`; `close` disconnects if `connect` did
    connect (and removes a fresh /tmp temp dir)."""

    def __init__(self, owned: bool, temp_dir: str | None = None):
        self.owned, self.temp_dir = owned, temp_dir

    def close(self) -> None:
        if not self.owned:
            return
        import ray

        ray.shutdown()
        self.owned = False
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)


def connect(address: str, run_root: Path | None, num_cpus: float) -> RayConnection:
    """Start or join Ray unless this process already is connected. ``address``: ``local``
    (a Ray of at least ``num_cpus`` logical CPUs in this process, dashboard off, its workers at
    nice 0, temp files at `ray_temp_dir`), ``auto`` or ``HOST:PORT`` (an existing cluster)."""
    import ray

    if ray.is_initialized():
        return RayConnection(owned=False)
    if address != "local":
        ray.init(address=address, log_to_driver=False, configure_logging=False)
        return RayConnection(owned=True)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Ray runs its workers at nice 15 by default: on one machine the learner (nice 0) would
    # then starve the actor workers whenever it is busy.
    os.environ.setdefault("RAY_worker_niceness", "0")
    temp_dir, fresh = ray_temp_dir(run_root)
    ray.init(
        num_cpus=max(os.cpu_count() or 1, int(-(-num_cpus // 1))),
        include_dashboard=False,
        _temp_dir=temp_dir,
        log_to_driver=False,
        configure_logging=False,
    )
    return RayConnection(owned=True, temp_dir=temp_dir if fresh else None)
