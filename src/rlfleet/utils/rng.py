"""Random draws from a checkpointed generator, delivered on any device.

Agents and algorithms draw from their own ``torch.Generator`` (CPU, saved in checkpoints) so
that runs are reproducible; torch only samples on the generator's device, so these helpers draw
there and move the result to where it is used (a no-op on CPU)."""

from __future__ import annotations

import torch


def _device(generator: torch.Generator | None, device: torch.device | str) -> torch.device | str:
    return generator.device if generator is not None else device


def rand(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device | str) -> torch.Tensor:
    """``U[0, 1)`` of ``shape`` on ``device``."""
    return torch.rand(shape, generator=generator, device=_device(generator, device)).to(device)


def randn(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device | str) -> torch.Tensor:
    """``N(0, 1)`` of ``shape`` on ``device``."""
    return torch.randn(shape, generator=generator, device=_device(generator, device)).to(device)


def randint(
    high: int, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device | str
) -> torch.Tensor:
    """Integers in ``[0, high)`` of ``shape`` on ``device``."""
    return torch.randint(high, shape, generator=generator, device=_device(generator, device)).to(device)
