"""Model weights published by one process and picked up by others, through shared memory."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class SharedParameters:
    """A CPU shared-memory copy of a module's ``state_dict`` tensors (parameters and buffers)
    with a version counter.

    The owner `publish`es its module's current tensors (from any device) under a lock and
    bumps the version; a reader `pull`s them into its own copy of the module when the version
    changed. A reader never waits: if the owner holds the lock (a publish is under way) the
    pull is skipped and the reader keeps its weights until its next pull. Copies never tear,
    since both sides copy under the lock.

    Picklable for ``spawn`` (the tensors travel as shared memory, the lock and counter by
    inheritance), so it must be handed to a process as an argument when it is started.

    Args:
        module: the module whose tensors are shared (the first version is published).
        ctx: the multiprocessing context of the reading processes.
    """

    def __init__(self, module: nn.Module, ctx: Any):
        self.names = list(module.state_dict())
        self.tensors = [t.detach().to("cpu", copy=True).share_memory_() for t in module.state_dict().values()]
        self.lock = ctx.Lock()
        self._version = ctx.RawValue("q", 1)

    @property
    def version(self) -> int:
        """Publications so far (the first, at construction, is version 1)."""
        return int(self._version.value)

    def _targets(self, module: nn.Module) -> list[torch.Tensor]:
        state = module.state_dict()
        if list(state) != self.names:
            raise ValueError("the module's state_dict keys differ from the shared parameters'")
        return list(state.values())

    @torch.no_grad()
    def publish(self, module: nn.Module) -> int:
        """Copy ``module``'s tensors into shared memory; returns the new version."""
        sources = self._targets(module)
        with self.lock:
            for shared, source in zip(self.tensors, sources):
                shared.copy_(source)
            self._version.value += 1
            return int(self._version.value)

    @torch.no_grad()
    def pull(self, module: nn.Module, seen: int) -> int:
        """Copy the shared tensors into ``module`` if a version newer than ``seen`` is published
        and the lock is free right now; returns the version ``module`` holds afterwards."""
        if self._version.value == seen or not self.lock.acquire(block=False):
            return seen
        try:
            for target, shared in zip(self._targets(module), self.tensors):
                target.copy_(shared)
            return int(self._version.value)
        finally:
            self.lock.release()
