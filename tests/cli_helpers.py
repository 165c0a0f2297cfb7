"""Running the ``rlfleet`` CLI as a real subprocess from tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from conftest import TESTS_DIR, read_progress


def rlfleet_cmd(*args: str) -> list[str]:
    """The command line of ``python -m rlfleet ARGS`` (this interpreter)."""
    return [sys.executable, "-m", "rlfleet", *args]


def cli_env() -> dict[str, str]:
    """This process's environment, the tests folder on ``PYTHONPATH`` (custom components) and
    output unbuffered."""
    pythonpath = os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1"}


def rlfleet(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m rlfleet ARGS`` in ``cwd``; the tests folder is importable (custom components)."""
    return subprocess.run(rlfleet_cmd(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=cli_env())


def run_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m rlfleet ARGS`` in ``cwd`` (the environment as it is), which must succeed."""
    proc = subprocess.run(rlfleet_cmd(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc


def run_cli_concurrently(commands: list[list[str]], cwd: Path, timeout: float = 300) -> None:
    """``python -m rlfleet ARGS`` for each ``ARGS`` in ``commands``, all at once; each must succeed."""
    procs = [
        subprocess.Popen(rlfleet_cmd(*c), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, err


def interrupt_after_rows(
    cmd: list[str], cwd: Path, run_dir: Path, rows: int, before_interrupt: Callable[[int], None] | None = None
) -> tuple[int, str, str]:
    """Run ``cmd``; once ``run_dir``'s progress.csv has ``rows`` rows, call
    ``before_interrupt(pid)`` (if given) and send SIGINT (Ctrl-C). Returns (exit code, stdout,
    stderr); the process is killed if anything goes wrong on the way."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ((run_dir / "progress.csv").is_file() and len(read_progress(run_dir)) >= rows):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, f"fewer than {rows} progress rows after 120 s"
            time.sleep(0.05)
        if before_interrupt is not None:
            before_interrupt(proc.pid)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err
