"""Checkpoints: one file per save under ``run_dir/checkpoints/``, written atomically."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlfleet.errors import CheckpointError
from rlfleet.utils.atomic import atomic_write

FORMAT_VERSION = 1
_NAME = re.compile(r"^ckpt_(\d+)\.pt$")


def rng_state() -> dict[str, Any]:
    """The global RNGs (python, numpy, torch)."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


class Checkpointer:
    """Saves ``ckpt_<env_steps>.pt`` files and keeps the newest ``keep`` of them.

    Args:
        directory: ``run_dir/checkpoints``.
        keep: how many checkpoints to keep (older ones are deleted after a successful save).
    """

    def __init__(self, directory: str | os.PathLike, keep: int = 3):
        self.directory = Path(directory)
        self.keep = keep

    def checkpoints(self) -> list[Path]:
        """Existing checkpoints, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.directory.iterdir() if (m := _NAME.match(p.name))]
        return [p for _, p in sorted(found)]

    def save(self, state: dict[str, Any], env_steps: int) -> Path:
        path = self.directory / f"ckpt_{env_steps:010d}.pt"
        with atomic_write(path, "wb") as f:
            torch.save({"format_version": FORMAT_VERSION, **state}, f)
        for old in self.checkpoints()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def latest(self) -> Path:
        found = self.checkpoints()
        if not found:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        return found[-1]


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint file; CheckpointError for a missing, truncated or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - torch raises many types for damaged files
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(err).__name__})") from None
    if not isinstance(state, dict) or "format_version" not in state:
        raise CheckpointError(f"{path} is not an rlfleet checkpoint")
    if state["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format {state['format_version']}, this rlfleet reads format {FORMAT_VERSION}"
        )
    return state
