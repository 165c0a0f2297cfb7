"""Spectral normalisation (Miyato et al. 2018) of a module's linear and conv layers."""

from __future__ import annotations

from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """``module`` with every ``nn.Linear`` and ``nn.Conv2d`` weight spectrally normalised (in
    place; returned for chaining). ``torch.nn.utils.parametrizations.spectral_norm`` divides the
    weight (a conv's reshaped to ``[out, -1]``) by its largest singular value, estimated by one
    power iteration per training-mode forward; a layer already parametrised is left alone."""
    layers = [m for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    for layer in layers:
        if not parametrize.is_parametrized(layer, "weight"):
            spectral_norm(layer)
    return module
